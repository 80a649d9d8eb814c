"""Selector: UCB parents, references, budgeted verification up the ladder; RandomSelector."""

from __future__ import annotations

import pytest

from model_discovery.evolution import EvolutionTree
from model_discovery.gau import LADDER
from model_discovery.select import Budget, RandomSelector, Selector, SelectorConfig

SCALES = ["micro", "14M", "31M"]
BUDGETS = {"micro": 10, "14M": 4, "31M": 2}


def true_loss(name: str) -> float:
    """Synthetic validation loss: gpt2 is 3.5; a width m scores 3.0 + |m - 8| / 20."""
    return 3.5 if name == "gpt2" else 3.0 + abs(int(name[1:]) - 8) / 20


def _run_ladder(tree: EvolutionTree, sel: Selector, owner: str = "w") -> list[tuple[str, str]]:
    """Verify until the selector has nothing left to pick; returns every pick in order."""
    history: list[tuple[str, str]] = []
    for _ in range(50):
        picks = sel.select_verifications(tree, BUDGETS, owner=owner)
        if not picks:
            break
        for name, scale in picks:
            sel.record_result(tree, name, scale, {"val_loss": true_loss(name) - 0.1 * SCALES.index(scale)})
        history += picks
    return history


def test_ucb_prefers_high_fitness(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([6, 12])
    sel = Selector(SelectorConfig(exploration=0.1, seed=0))
    for name in ("gpt2", "m6", "m12"):
        sel.record_result(tree, name, "micro", {"val_loss": true_loss(name)})
    assert tree.results("m6", "micro")[0].fitness > tree.results("m12", "micro")[0].fitness > 0
    assert [p.name for p in sel.select_parents(tree)] == ["m6"]
    pair = sel.select_parents(tree, k=2)
    assert len({p.name for p in pair}) == 2 and pair[0].name == "m6"


def test_ucb_explores_unvisited(make_tree, seed) -> None:  # noqa: ANN001
    tree = make_tree([6, 12])
    sel = Selector(SelectorConfig(exploration=5.0, seed=0))
    for name in ("gpt2", "m6", "m12"):
        sel.record_result(tree, name, "micro", {"val_loss": true_loss(name)})
    for i in range(3):  # m6 and gpt2 already have many children; m12 has none
        d = seed.model_copy(deep=True)
        d.name, d.parents = f"kid{i}", ["m6"]
        d.units["GeluMLP"].hparams["mult"] = 40 + i
        tree.add_design(d, check={"passed": False})
    values = sel.ucb(tree)
    assert "kid0" not in values  # failed designs are no parents
    assert sel.select_parents(tree)[0].name == "m12"
    # pending picks count as visits: repeated calls spread over the pool
    names = [sel.select_parents(tree)[0].name for _ in range(6)]
    assert len(set(names)) >= 2


def test_seeds_are_usable_parents_in_an_empty_tree(tmp_path, seed) -> None:  # noqa: ANN001
    tree = EvolutionTree(tmp_path / "t.db")
    with pytest.raises(LookupError, match="no design can be a parent"):
        Selector().select_parents(tree)
    tree.add_design(seed)  # 'proposed', but a seed
    assert [p.name for p in Selector().select_parents(tree)] == ["gpt2"]


def test_budgets_hold_and_narrow_and_promote_the_best(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([2, 3, 5, 7, 8, 9, 11, 14, 16, 20, 24])  # 12 designs, micro budget 10
    sel = Selector(SelectorConfig(scales=SCALES, seed=1))
    history = _run_ladder(tree, sel)
    per_scale = {s: sum(1 for _, sc in history if sc == s) for s in SCALES}
    assert per_scale == BUDGETS  # every budget used, none exceeded
    assert len(set(history)) == len(history)  # never the same (design, scale) twice
    assert tree.stats().results_by_scale == BUDGETS
    # each rung promotes only designs verified below, best first (the baseline always goes up)
    for lower, upper in zip(SCALES, SCALES[1:]):
        below = {r.design: r.fitness for r in tree.results(scale=lower)}
        up = [n for n, s in history if s == upper]
        assert set(up) <= set(below)
        others = sorted((n for n in up if n != "gpt2"), key=lambda n: -below[n])
        best = sorted((n for n in below if n != "gpt2"), key=lambda n: -below[n])
        assert others == best[:len(others)]
    assert {n for n, s in history if s == "31M"} == {"gpt2", "m8"}
    # a second node gets nothing more: budgets are spent
    assert sel.select_verifications(tree, BUDGETS, owner="other") == []


def test_verifications_go_to_the_lowest_rung_first(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([3, 5])
    sel = Selector(SelectorConfig(scales=SCALES))
    first = sel.select_verifications(tree, BUDGETS)
    assert first == [("gpt2", "micro"), ("m3", "micro"), ("m5", "micro")]
    assert tree.leases() == []  # without an owner nothing is claimed
    claimed = sel.select_verifications(tree, BUDGETS, owner="a", limit=2)
    assert claimed == [("gpt2", "micro"), ("m3", "micro")]
    assert sel.select_verifications(tree, BUDGETS, owner="b") == [("m5", "micro")]  # disjoint


def test_budget_object_is_persisted(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([3])
    default = Budget.from_tree(tree)
    assert default.limits == {s: c.verify_budget for s, c in LADDER.items()} and default.narrows()
    Budget(limits={"micro": 1, "14M": 1}).save(tree)
    b = Budget.from_tree(tree, scales=["micro", "14M"])
    assert b.limits == {"micro": 1, "14M": 1}
    assert Budget.from_tree(tree, {"14M": 5}, ["micro", "14M"]).narrows() is False
    sel = Selector(SelectorConfig(scales=["micro", "14M"]))
    assert sel.select_verifications(tree, owner="a") == [("gpt2", "micro")]  # stored budget: 1
    assert b.remaining(tree, "micro") == 0 and b.spent(tree) == {"micro": 1, "14M": 0}


def test_references_are_diverse(make_tree, seed) -> None:  # noqa: ANN001
    tree = make_tree([3])
    d = seed.model_copy(deep=True)
    d.name, d.parents = "far", ["gpt2"]
    d.units["GeluMLP"].hparams["mult"] = 6
    d.units["CausalSelfAttention"].hparams["n_head"] = 2
    tree.add_design(d, check={"passed": True})
    refs = Selector().select_references(tree, 2, exclude=["gpt2"])
    assert [r.name for r in refs] == ["far", "m3"]
    assert Selector().select_references(tree, 0) == []


def test_random_selector_same_interface(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([2, 3, 5, 7, 8, 9, 11, 14, 16, 20, 24])
    sel = RandomSelector(SelectorConfig(scales=SCALES, seed=3, k_parents=2))
    history = _run_ladder(tree, sel)
    per_scale = {s: sum(1 for _, sc in history if sc == s) for s in SCALES}
    assert per_scale == BUDGETS and len(set(history)) == len(history)
    for lower, upper in zip(SCALES, SCALES[1:]):
        assert {n for n, s in history if s == upper} <= {n for n, s in history if s == lower}
    parents = sel.select_parents(tree)
    assert len(parents) == 2 and parents[0].name != parents[1].name
    assert len(sel.select_references(tree, 3, exclude=[p.name for p in parents])) == 3
    with pytest.raises(ValueError, match="scales must be"):
        SelectorConfig(scales=["huge"])
