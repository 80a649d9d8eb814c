"""Unit catalogue contract, and the fast (chunked) paths of the recurrent mixers against their
step-by-step references (fla-style naive parity)."""

from __future__ import annotations

import ast

import pytest
import torch

from model_discovery.gau import catalogue
from model_discovery.records import ROLES

ALLOWED_IMPORT_ROOTS = {"torch", "math", "typing", "functools", "__future__"}
UNITS = sorted(catalogue())


@pytest.mark.parametrize("name", UNITS)
def test_unit_file_contract(name: str) -> None:
    """One GAUBase subclass named like the file, literal hparam defaults, allowed imports only."""
    unit = catalogue()[name]
    assert unit.role in ROLES and unit.path.parent.name == unit.role
    tree = ast.parse(unit.source)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [c.name for c in classes] == [name], f"{unit.path}: expected exactly one class {name}"
    assert any(isinstance(b, ast.Name) and b.id == "GAUBase" for b in classes[0].bases)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "") == "model_discovery.gau.runtime":
                continue
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert roots <= ALLOWED_IMPORT_ROOTS, f"{unit.path}: imports {sorted(roots - ALLOWED_IMPORT_ROOTS)}"
    init = next(n for n in classes[0].body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert [a.arg for a in init.args.args[:4]] == ["self", "d_model", "block_loc", "ctx"]
    assert set(unit.defaults) == {a.arg for a in init.args.args[4:]}, f"{unit.path}: non-literal defaults"


def test_units_are_reused_across_seeds() -> None:
    from model_discovery.gau import list_seeds, load_seed

    uses: dict[str, int] = {}
    for seed in list_seeds():
        for unit in load_seed(seed).units:
            uses[unit] = uses.get(unit, 0) + 1
    for shared in ("PreNormBlock", "RMSNormUnit", "LayerNormUnit", "SwiGLU", "ShortConv"):
        assert uses.get(shared, 0) >= 2, f"{shared} is used by {uses.get(shared, 0)} seed(s)"


def _mixer(seed: str, micro_lm):
    return micro_lm(seed).blocks[0].mixer


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("T", [1, 23, 64])
def test_mamba2_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("mamba2", micro_lm)
    g = _gen()
    b, h, p, n = 2, 3, 4, 5
    x = torch.randn(b, T, h, p, generator=g)
    a = -torch.rand(b, T, h, generator=g)
    B, C = torch.randn(b, T, n, generator=g), torch.randn(b, T, n, generator=g)
    torch.testing.assert_close(mixer.scan_chunked(x, a, B, C), mixer.scan_recurrent(x, a, B, C),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("T", [1, 23, 40])
def test_gla_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("gla", micro_lm)
    g = _gen()
    q, k = torch.randn(2, 2, T, 8, generator=g), torch.randn(2, 2, T, 8, generator=g)
    v = torch.randn(2, 2, T, 6, generator=g)
    log_a = torch.nn.functional.logsigmoid(torch.randn(2, 2, T, 8, generator=g)) / 4
    torch.testing.assert_close(mixer.chunked(q, k, v, log_a), mixer.recurrent(q, k, v, log_a),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("T", [1, 23, 40])
def test_rwkv_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("rwkv", micro_lm)
    g = _gen()
    r, k, v = (torch.randn(2, 2, T, 8, generator=g) for _ in range(3))
    log_w = -torch.rand(2, 8, generator=g)
    u = torch.randn(2, 8, generator=g)
    torch.testing.assert_close(mixer.chunked(r, k, v, log_w, u), mixer.recurrent(r, k, v, log_w, u),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("T", [1, 23, 70])
def test_deltanet_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("deltanet", micro_lm)
    g = _gen()
    q = torch.nn.functional.normalize(torch.randn(2, 2, T, 8, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(2, 2, T, 8, generator=g), dim=-1)
    v = torch.randn(2, 2, T, 8, generator=g)
    beta = torch.rand(2, 2, T, generator=g)
    torch.testing.assert_close(mixer.chunked(q, k, v, beta), mixer.recurrent(q, k, v, beta),
                               atol=1e-4, rtol=1e-4)


def test_retention_decay_mask_is_causal(micro_lm) -> None:
    mixer = _mixer("retnet", micro_lm)
    mask = mixer.decay_mask(9, torch.device("cpu"))
    assert mask.shape == (mixer.n_head, 9, 9)
    assert torch.all(mask.triu(1) == 0) and torch.all(mask.diagonal(dim1=-2, dim2=-1) > 0)


def test_hyena_filter_independent_of_length(micro_lm) -> None:
    """The implicit filter at lag t is the same whatever the sequence length."""
    mixer = _mixer("hyena", micro_lm)
    with torch.no_grad():
        short, full = mixer.filters(10, torch.device("cpu")), mixer.filters(100, torch.device("cpu"))
    torch.testing.assert_close(short, full[:, :10])
