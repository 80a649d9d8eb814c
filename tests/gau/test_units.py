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


def assert_scans_agree(chunked, recurrent, args: tuple, T: int, split: int) -> None:
    """``chunked`` equals the step-by-step ``recurrent`` (outputs and final state), also when
    the sequence is cut at ``split`` and the second part continues the first part's state.

    ``args`` are the per-position tensors (time on dimension ``T`` is found by size) followed by
    any per-head constants; both functions take the state as their last argument.
    """
    def cut(lo: int, hi: int) -> tuple:
        return tuple(a.narrow(list(a.shape).index(T), lo, hi - lo) if T in a.shape else a for a in args)

    want_y, want_state = recurrent(*args)
    y, state = chunked(*args)
    torch.testing.assert_close(y, want_y, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(state, want_state, atol=1e-4, rtol=1e-4)
    for second in (chunked, recurrent) if 0 < split < T else ():
        y1, s1 = chunked(*cut(0, split))
        y2, s2 = second(*cut(split, T), s1)
        time_dim = list(want_y.shape).index(T)
        torch.testing.assert_close(torch.cat([y1, y2], dim=time_dim), want_y, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(s2, want_state, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("T", [1, 23, 64])
def test_mamba2_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("mamba2", micro_lm)
    g = _gen()
    b, h, p, n = 2, 3, 4, 5
    x = torch.randn(b, T, h, p, generator=g)
    a = -torch.rand(b, T, h, generator=g)
    B, C = torch.randn(b, T, n, generator=g), torch.randn(b, T, n, generator=g)
    assert_scans_agree(mixer.scan_chunked, mixer.scan_recurrent, (x, a, B, C), T, T // 3)


@pytest.mark.parametrize("T", [1, 23, 40])
def test_gla_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("gla", micro_lm)
    g = _gen()
    q, k = torch.randn(2, 2, T, 8, generator=g), torch.randn(2, 2, T, 8, generator=g)
    v = torch.randn(2, 2, T, 6, generator=g)
    log_a = torch.nn.functional.logsigmoid(torch.randn(2, 2, T, 8, generator=g)) / 4
    assert_scans_agree(mixer.chunked, mixer.recurrent, (q, k, v, log_a), T, T // 3)


@pytest.mark.parametrize("T", [1, 23, 40])
def test_rwkv_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("rwkv", micro_lm)
    g = _gen()
    r, k, v = (torch.randn(2, 2, T, 8, generator=g) for _ in range(3))
    log_w = -torch.rand(2, 8, generator=g)
    u = torch.randn(2, 8, generator=g)
    assert_scans_agree(mixer.chunked, mixer.recurrent, (r, k, v, log_w, u), T, T // 3)


@pytest.mark.parametrize("T", [1, 23, 70])
def test_deltanet_chunked_matches_recurrent(T: int, micro_lm) -> None:
    mixer = _mixer("deltanet", micro_lm)
    g = _gen()
    q = torch.nn.functional.normalize(torch.randn(2, 2, T, 8, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(2, 2, T, 8, generator=g), dim=-1)
    v = torch.randn(2, 2, T, 8, generator=g)
    beta = torch.rand(2, 2, T, generator=g)
    assert_scans_agree(mixer.chunked, mixer.recurrent, (q, k, v, beta), T, T // 3)


@pytest.mark.parametrize(("T", "split"), [(1, 1), (40, 16), (40, 21), (40, 5)])
def test_ttt_chunked_matches_recurrent(T: int, split: int, micro_lm) -> None:
    """The dual form equals the explicit weights, also continued from inside a mini-batch."""
    mixer = _mixer("ttt", micro_lm)
    g = _gen()
    q = torch.nn.functional.normalize(torch.randn(2, 2, T, 8, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(2, 2, T, 8, generator=g), dim=-1)
    v = torch.randn(2, 2, T, 8, generator=g)
    eta = 0.5 * torch.rand(2, 2, T, generator=g)
    W0 = 0.1 * torch.randn(2, 8, 8, generator=g)
    want_y, want_W, want_start = mixer.recurrent(q, k, v, eta, W0)
    y, W, W_start = mixer.chunked(q, k, v, eta, W0)
    for got, want in ((y, want_y), (W, want_W), (W_start, want_start)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for second in (mixer.chunked, mixer.recurrent) if split < T else ():
        y1, W1, start1 = mixer.chunked(q[:, :, :split], k[:, :, :split], v[:, :, :split], eta[:, :, :split], W0)
        y2, W2, _ = second(q[:, :, split:], k[:, :, split:], v[:, :, split:], eta[:, :, split:], W1, start1, split)
        torch.testing.assert_close(torch.cat([y1, y2], dim=2), want_y, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(W2, want_W, atol=1e-4, rtol=1e-4)


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


@pytest.mark.parametrize("T", [1, 9, 20])
def test_hyena_conv_tail_matches_long_conv(T: int, micro_lm) -> None:
    """The last T outputs of the decoding convolution equal those of the whole FFT convolution."""
    mixer = _mixer("hyena", micro_lm)
    g = _gen()
    u, h = torch.randn(2, 30, 8, generator=g), torch.randn(40, 8, generator=g)
    torch.testing.assert_close(mixer.conv_tail(u, h, T), mixer.long_conv(u, h[:30])[:, -T:], atol=1e-4, rtol=1e-4)
