"""The judge's graph: an exported LM runs without its Python, gives the same numbers, and a
bundle that is not a pure ATen function of the weights and tokens is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_discovery.check.graph import SPEC_FILE, GraphError, export_lm, load_graph_lm
from model_discovery.gau import build_lm, get_scale, load_seed


class Tiny(torch.nn.Module):
    def __init__(self, body: str = "h") -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(16, 8)
        self.lin = torch.nn.Linear(8, 8)
        self.register_buffer("mem", torch.zeros(8))
        self.body = body

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(self.wte(x))
        if self.body == "stateful":
            self.mem.add_(h.detach().mean((0, 1)))
        if self.body == "scratch":
            y = torch.empty_like(h)
            y[:, 0] = 1.0  # in place on a fresh tensor: allowed
            return h + y * 0
        return h + self.mem


def export(model: torch.nn.Module, tmp_path: Path) -> Path:
    export_lm(model, [("train", 2, 6), ("eval", 2, 6), ("eval", 2, 4)], tmp_path)
    return tmp_path


def test_a_seed_runs_from_its_graph_with_the_same_numbers(tmp_path: Path) -> None:
    scale = get_scale("micro")
    torch.manual_seed(0)
    model = build_lm(load_seed("llama"), scale)
    export_lm(model, [("train", 4, 128), ("eval", 4, 128)], tmp_path)
    lm = load_graph_lm(tmp_path)
    x, y = torch.randint(0, 2048, (4, 128)), torch.randint(0, 2048, (4, 128))
    a, b = model.loss(x, y), lm.loss(x, y)
    a.backward()
    b.backward()
    assert float(a.detach()) == pytest.approx(float(b.detach()), abs=1e-6)
    assert torch.allclose(model.wte.weight.grad, lm.embedding.grad, atol=1e-6)
    assert lm.num_params() == model.num_params()
    assert set(lm.state_dict()) == set(model.state_dict()) - {"lm_head.weight"}
    lm.eval()
    model.eval()
    short = torch.randint(0, 2048, (3, 50))  # padded to the traced batch and length
    assert torch.allclose(model(short), lm(short), atol=1e-5)


def test_stateful_graphs_are_refused_and_fresh_scratch_is_fine(tmp_path: Path) -> None:
    lm = load_graph_lm(export(Tiny("stateful"), tmp_path / "a"))
    with pytest.raises(GraphError, match="writes into the weights"):
        lm(torch.randint(0, 16, (2, 6)))
    ok = load_graph_lm(export(Tiny("scratch"), tmp_path / "b"))
    assert torch.isfinite(ok(torch.randint(0, 16, (2, 6)))).all()


@pytest.mark.parametrize("target,match", [("builtins.exec", "not an ATen operator"),
                                          ("aten.from_file.default", "not allowed"),
                                          ("aten.no_such_op.default", "unknown operator"),
                                          ("prims.add.default", "not an ATen operator")])
def test_only_aten_operators_are_admitted(tmp_path: Path, target: str, match: str) -> None:
    export(Tiny(), tmp_path)
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    spec["graphs"][0]["nodes"][0]["target"] = target
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(GraphError, match=match):
        load_graph_lm(tmp_path)


def test_malformed_bundles_name_the_problem(tmp_path: Path) -> None:
    export(Tiny(), tmp_path)
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    spec["graphs"][0]["nodes"][0]["args"] = [{"$node": "later_node"}]
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(GraphError, match="before it is computed"):
        load_graph_lm(tmp_path)
    (tmp_path / SPEC_FILE).unlink()
    (tmp_path / SPEC_FILE).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(GraphError, match="cannot read the graph bundle"):
        load_graph_lm(tmp_path)


def test_graphs_compile_and_the_write_guard_holds_when_compiled(tmp_path: Path) -> None:
    """torch.compile traces a pure graph whole; a graph that writes into its weights is still refused."""
    lm = load_graph_lm(export(Tiny(), tmp_path / "a"))
    x = torch.randint(0, 16, (2, 6))
    assert torch.allclose(torch.compile(lm, fullgraph=True)(x), lm(x), atol=1e-6)
    bad = load_graph_lm(export(Tiny("stateful"), tmp_path / "b"))
    with pytest.raises(Exception, match="writes into the weights"):
        torch.compile(bad)(x)
