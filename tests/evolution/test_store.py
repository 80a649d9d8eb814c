"""Evolution tree store: round trips, transactions, idempotency, lineage, results, export."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from model_discovery.evolution import DuplicateNameError, EvolutionTree, TreeError, UnknownDesignError
from model_discovery.gau import Design
from model_discovery.records import Proposal, Review
from tests.evolution.integrity import integrity_problems


def _proposal(parents: list[str], refs: list[str] = ()) -> Proposal:
    return Proposal(title="narrower MLP", motivation="cheaper", change="GeluMLP mult 4 -> 3",
                    operator="hparam", parents=parents, references=list(refs))


def _review(rating: float = 4.0, accept: bool = True) -> Review:
    return Review(rating=rating, accept=accept, novelty=0.3, reasons=["small change"])


def test_round_trip_of_every_record(tree: EvolutionTree, seed: Design, variant, tmp_path: Path) -> None:
    root = tree.add_design(seed, check={"passed": True, "seconds": 1.5, "checks": {"forward": "ok"}})
    assert root.is_seed and root.generation == 0 and root.operator == "seed" and root.status == "checked"
    child = variant(seed, "child", ["gpt2"], 3)
    prop, revs = _proposal(["gpt2"], ["gpt2", "arxiv:1706.03762"]), [_review(4.0), _review(2.0, False)]
    rec = tree.add_design(child, prop, revs, {"passed": False, "seconds": 0.25}, references=None)
    assert rec.design == child and rec.fingerprint == child.fingerprint()
    assert rec.status == "failed" and rec.operator == "hparam" and rec.generation == 1
    assert rec.parents == ["gpt2"] and rec.references == []  # a parent is not also a reference
    assert tree.get_design("child") == rec
    assert [p.proposal for p in tree.proposals("child")] == [prop]
    assert [(r.review, r.rating, r.accept) for r in tree.reviews("child")] == [
        (revs[0], 4.0, True), (revs[1], 2.0, False)]
    (chk,) = tree.checks("gpt2")
    assert chk.passed and chk.seconds == 1.5 and chk.report["checks"] == {"forward": "ok"}
    assert integrity_problems(tree) == []  # unit rows and parent edges mirror the stored JSON

    res = tree.add_result("gpt2", "micro", {"val_loss": 4.1, "evals": {"piqa": 0.55}}, fitness=0.0)
    assert tree.results() == [res] and tree.get_design("gpt2").status == "verified"
    assert tree.results("gpt2", "micro")[0].record == {"val_loss": 4.1, "evals": {"piqa": 0.55}}
    assert tree.results(scale="14M") == []
    assert tree.claim_verification("child", "micro", "w1", ttl_s=60)
    (lease,) = tree.leases()
    assert (lease.design, lease.scale, lease.owner, lease.expired) == ("child", "micro", "w1", False)
    tree.set_budget("micro", 7)
    assert tree.budgets() == {"micro": 7}

    path = tmp_path / "tree.jsonl"
    assert tree.export(path) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["meta", "design", "design", "result", "budget"]
    gpt2, exported = lines[1], lines[2]
    assert (gpt2["name"], exported["name"]) == ("gpt2", "child") and Design.model_validate(exported["design"]) == child
    assert [r["data"] for r in exported["reviews"]] == [r.model_dump(mode="json") for r in revs]
    assert [p["data"] for p in exported["proposals"]] == [prop.model_dump(mode="json")]
    assert gpt2["checks"][0]["passed"] and gpt2["checks"][0]["data"]["checks"] == {"forward": "ok"}
    assert lines[3]["record"] == res.record and lines[4] == {"kind": "budget", "scale": "micro", "limit": 7}


def test_failure_mid_add_leaves_nothing(tree: EvolutionTree, seed: Design, variant) -> None:
    tree.add_design(seed)
    before = tree.stats()

    def boom(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT INTO CHECKS"):
            raise RuntimeError("disk on fire")

    event.listen(tree.engine, "before_cursor_execute", boom)
    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            tree.add_design(variant(seed, "doomed", ["gpt2"], 2), _proposal(["gpt2"]), [_review()],
                            {"passed": True, "seconds": 1.0})
    finally:
        event.remove(tree.engine, "before_cursor_execute", boom)
    assert [d.name for d in tree.list_designs()] == ["gpt2"] and not tree.has_design("doomed")
    assert tree.stats() == before
    assert tree.children("gpt2") == []
    # the same add then succeeds in full
    rec = tree.add_design(variant(seed, "doomed", ["gpt2"], 2), _proposal(["gpt2"]), [_review()],
                          {"passed": True, "seconds": 1.0})
    assert rec.status == "checked" and len(tree.reviews("doomed")) == 1 and integrity_problems(tree) == []


def test_bad_inputs_fail_cleanly(tree: EvolutionTree, seed: Design, variant) -> None:
    with pytest.raises(UnknownDesignError, match="parent 'ghost' is not in the tree"):
        tree.add_design(variant(seed, "orphan", ["ghost"], 2))
    assert tree.count() == 0
    tree.add_design(seed)
    with pytest.raises(UnknownDesignError, match="reference 'ghost'"):
        tree.add_design(variant(seed, "x", ["gpt2"], 2), references=["ghost"])
    with pytest.raises(TreeError, match="no boolean 'passed'"):
        tree.add_design(variant(seed, "x", ["gpt2"], 2), check={"seconds": 1})
    with pytest.raises(TreeError, match="unknown status"):
        tree.set_status("gpt2", "great")
    with pytest.raises(UnknownDesignError, match="no design named 'nope'"):
        tree.get_design("nope")
    assert tree.count() == 1


def test_idempotent_on_fingerprint(tree: EvolutionTree, seed: Design, variant) -> None:
    first = tree.add_design(seed, check={"passed": True})
    again = tree.add_design(seed, check={"passed": True})
    assert again == first and tree.count() == 1 and len(tree.checks("gpt2")) == 1
    renamed = seed.model_copy(update={"name": "gpt2-copy", "summary": "same thing"})
    assert tree.add_design(renamed).name == "gpt2"  # same fingerprint: the stored design
    assert tree.find_fingerprint(seed.fingerprint()) and tree.find_fingerprint("0" * 16) is None
    with pytest.raises(DuplicateNameError, match="'gpt2' is taken"):
        tree.add_design(variant(seed, "gpt2", [], 2))
    assert tree.fingerprints() == {seed.fingerprint()}


def test_lineage_queries(tree: EvolutionTree, seed: Design, variant) -> None:
    tree.add_design(seed)
    tree.add_design(variant(seed, "seed2", [], 2, n_head=2))
    tree.add_design(variant(seed, "a", ["gpt2"], 3))
    tree.add_design(variant(seed, "b", ["a"], 5), _proposal(["a"], ["seed2", "paper"]))
    tree.add_design(variant(seed, "c", ["b", "seed2"], 6), operator="crossover")
    tree.add_design(variant(seed, "d", ["gpt2"], 7))
    assert tree.parents("c") == ["seed2", "b"]  # in insertion order of the parents
    assert tree.get_design("c").parents == ["b", "seed2"]  # order of design.parents
    assert tree.children("gpt2") == ["a", "d"] and tree.children("c") == []
    assert tree.lineage("c").ancestors == ["seed2", "b", "a", "gpt2"]  # nearest first
    assert tree.lineage("gpt2").descendants == ["a", "d", "b", "c"]
    assert tree.references("b") == ["seed2"]
    assert [r.generation for r in tree.list_designs()] == [0, 0, 1, 2, 3, 1]
    lin = tree.lineage("b")
    assert lin.ancestors == ["a", "gpt2"] and lin.descendants == ["c"]
    assert {(e.child, e.parent) for e in lin.edges} == {("b", "a"), ("a", "gpt2"), ("c", "b")}
    assert [d.name for d in tree.list_designs(seeds_only=True)] == ["gpt2", "seed2"]
    graph = tree.graph()
    assert [n.name for n in graph.nodes if n.seed] == ["gpt2", "seed2"]
    assert len(graph.edges) == 6 and {e.kind for e in graph.edges} == {"parent", "reference"}


def test_listing_status_and_stats(tree: EvolutionTree, seed: Design, variant) -> None:
    tree.add_design(seed, check={"passed": True})
    for i in range(2, 8):
        tree.add_design(variant(seed, f"v{i}", ["gpt2"], 10 + i), operator="hparam")
    tree.set_status("v2", "checked")
    tree.set_status("v3", "failed")
    tree.add_result("v2", "micro", {"val_loss": 3.0}, fitness=1.0)
    assert tree.get_design("v2").status == "verified" and tree.get_design("v3").status == "failed"
    assert [d.name for d in tree.list_designs("proposed")] == ["v4", "v5", "v6", "v7"]
    assert [d.name for d in tree.list_designs(["proposed"], limit=2, offset=1)] == ["v5", "v6"]
    assert [d.name for d in tree.list_designs(limit=2, newest_first=True)] == ["v7", "v6"]
    assert [d.name for d in tree.list_designs(operator="hparam", generation=1, limit=1)] == ["v2"]
    st = tree.stats()
    assert st.designs == 7 and st.by_status == {"checked": 1, "proposed": 4, "failed": 1, "verified": 1}
    assert st.by_operator == {"seed": 1, "hparam": 6} and st.seeds == 1 and st.edges == 6
    assert st.results_by_scale == {"micro": 1} and st.max_generation == 1
    assert st.units == 28 and st.distinct_units == 4


def test_results_and_leaderboard(tree: EvolutionTree, seed: Design, variant) -> None:
    tree.add_design(seed)
    for i, (loss, fit) in enumerate([(3.5, 0.2), (3.0, 0.9), (3.2, 0.5)], start=2):
        tree.add_design(variant(seed, f"v{i}", ["gpt2"], 10 + i))
        tree.add_result(f"v{i}", "micro", {"val_loss": loss, "evals": {"acc": fit}}, fitness=fit)
    tree.add_result("v3", "14M", {"val_loss": 2.5}, fitness=0.7)
    tree.add_result("v4", "micro", {"val_loss": 3.1, "evals": {"acc": 0.6}}, fitness=0.6)  # replaces
    assert len(tree.results(scale="micro")) == 3 and tree.results("v4", "micro")[0].fitness == 0.6
    board = tree.leaderboard("micro")
    assert [(r.rank, r.design) for r in board] == [(1, "v3"), (2, "v4"), (3, "v2")]
    assert [r.design for r in tree.leaderboard("micro", metric="val_loss")] == ["v3", "v4", "v2"]
    assert [r.value for r in tree.leaderboard("micro", metric="evals.acc", limit=2)] == [0.9, 0.6]
    assert [(r.scale, r.design) for r in tree.leaderboard()][:2] == [("14M", "v3"), ("micro", "v3")]
    assert [r.value for r in tree.leaderboard("micro", metric="missing.key")] == [None, None, None]
    tree.set_fitness("v2", "micro", 2.0)
    assert tree.leaderboard("micro")[0].design == "v2"
    with pytest.raises(TreeError, match="no result at scale '70M'"):
        tree.set_fitness("v2", "70M", 1.0)
    node = {n.name: n for n in tree.graph().nodes}["v3"]
    assert (node.best_scale, node.fitness) == ("14M", 0.7)


def test_a_tree_from_before_fitness_errors_is_upgraded_in_place(tmp_path, seed) -> None:  # noqa: ANN001
    import sqlite3

    path = tmp_path / "old.db"
    tree = EvolutionTree(path)
    tree.add_design(seed)
    tree.add_result(seed.name, "micro", {"final_val_loss": 5.0}, 0.0)
    tree.close()
    with sqlite3.connect(path) as db:  # the columns an older version did not have
        for table, column in (("results", "fitness_se"), ("results", "seeds"), ("leases", "seeds")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    tree = EvolutionTree(path)
    res = tree.results(seed.name, "micro")[0]
    assert (res.fitness, res.fitness_se, res.seeds) == (0.0, None, 1)
    tree.add_result(seed.name, "micro", {"final_val_loss": 5.0}, 0.01, fitness_se=0.002, seeds=3)
    assert tree.spent("micro") == 3
    row = tree.leaderboard(scale="micro")[0]
    assert (row.fitness, row.fitness_se, row.seeds) == (0.01, 0.002, 3)


def _open_and_close(path: str, errors: Any) -> None:
    try:
        EvolutionTree(path).close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"{type(exc).__name__}: {exc}".splitlines()[0])


def test_processes_opening_a_new_tree_at_once_all_succeed(tmp_path: Path) -> None:
    """Schema creation takes the write lock up front: a second process waits instead of 'database is locked'."""
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for i in range(5):
        procs = [ctx.Process(target=_open_and_close, args=(str(tmp_path / f"t{i}.sqlite"), errors)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
