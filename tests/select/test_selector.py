"""Selector on a real tree: Thompson parents, tournaments, replicates and successive halving up the
ladder within paced budgets, failures, rescoring; RandomSelector."""

from __future__ import annotations

import pytest

from model_discovery.evolution import EvolutionTree
from model_discovery.gau import LADDER
from model_discovery.select import Budget, PolicyConfig, RandomSelector, Selector, SelectorConfig, VerifyPick
from model_discovery.verify import Replicate, VerifyResult

SCALES = ["micro", "14M", "31M"]
BUDGETS = {"micro": 30, "14M": 6, "31M": 2}
GREEDY = PolicyConfig(warmup_steps=0, restart_prob=0.0, noise_sd=0.001)


def true_loss(name: str) -> float:
    """Synthetic validation loss: gpt2 is 3.5; a width m scores 3.0 + |m - 8| / 20."""
    return 3.5 if name == "gpt2" else 3.0 + abs(int(name[1:]) - 8) / 20


def record(name: str, scale: str, first_seed: int = 0, seeds: int = 1) -> VerifyResult:
    """A verification result with a little seed noise (what the runner returns)."""
    runs = [Replicate(seed=s, final_val_loss=true_loss(name) - 0.1 * SCALES.index(scale) + 0.004 * ((s % 3) - 1))
            for s in range(first_seed, first_seed + seeds)]
    return VerifyResult(design=name, fingerprint="f" * 16, scale=scale, status="ok", seed=first_seed,
                        final_val_loss=sum(r.final_val_loss for r in runs) / len(runs),
                        replicates=runs if seeds > 1 else [])


def failed(name: str, scale: str) -> VerifyResult:
    return VerifyResult(design=name, fingerprint="f" * 16, scale=scale, status="failed", error="diverged")


def _run_ladder(tree: EvolutionTree, sel: Selector, owner: str = "w") -> list[VerifyPick]:
    """Verify until the selector has nothing left to pick; returns every pick in order."""
    history: list[VerifyPick] = []
    for _ in range(80):
        picks = sel.select_verifications(tree, BUDGETS, owner=owner)
        if not picks:
            break
        for p in picks:
            sel.record_result(tree, p.design, p.scale, record(p.design, p.scale, p.first_seed, p.seeds))
        history += picks
    return history


def test_thompson_prefers_high_fitness_and_tournament_finds_a_partner(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([6, 12])
    sel = Selector(SelectorConfig(policy=GREEDY, seed=0))
    for name in ("gpt2", "m6", "m12"):
        sel.record_result(tree, name, "micro", record(name, "micro"))
    assert tree.results("m6", "micro")[0].fitness > tree.results("m12", "micro")[0].fitness > 0
    assert tree.results("m6", "micro")[0].fitness_se == pytest.approx(0.001)
    assert {sel.select_parents(tree)[0].name for _ in range(10)} == {"m6"}
    pair = sel.select_parents(tree, k=2)
    assert len({p.name for p in pair}) == 2 and pair[0].name == "m6"


def test_warm_up_and_failures(make_tree, seed) -> None:  # noqa: ANN001
    tree = make_tree([6, 12])
    sel = Selector(SelectorConfig(policy=GREEDY.model_copy(update={"warmup_steps": 10}), seed=0))
    for name in ("gpt2", "m6", "m12"):
        sel.record_result(tree, name, "micro", record(name, "micro"))
    assert sel.design_steps(tree) == 2  # read from the tree: resumes see the same count
    assert {sel.select_parents(tree)[0].name for _ in range(40)} == {"gpt2", "m6", "m12"}
    sel.record_result(tree, "m6", "micro", failed("m6", "micro"))
    assert tree.get_design("m6").status == "failed"
    kept = tree.results("m6", "micro")[0]  # a failed replicate keeps the seed that trained
    assert kept.status == "ok" and kept.record["final_val_loss"] == record("m6", "micro").final_val_loss
    sel.record_result(tree, "m12", "14M", failed("m12", "14M"))
    assert tree.results("m12", "14M")[0].status == "failed"  # nothing trained there: the failure is stored
    assert "m6" not in {sel.select_parents(tree)[0].name for _ in range(40)}
    d = seed.model_copy(deep=True)
    d.name, d.parents = "kid", ["m12"]
    d.units["GeluMLP"].hparams["mult"] = 40
    tree.add_design(d, check={"passed": False})
    assert "kid" not in {sel.select_parents(tree)[0].name for _ in range(40)}  # failed checks are no parents


def test_results_before_the_baseline_are_rescored(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([6])
    sel = Selector(SelectorConfig(policy=GREEDY))
    sel.record_result(tree, "m6", "micro", record("m6", "micro"))
    raw = tree.results("m6", "micro")[0].fitness
    assert raw == pytest.approx(-true_loss("m6") + 0.004, abs=1e-9)  # no baseline yet: -loss
    sel.record_result(tree, "gpt2", "micro", record("gpt2", "micro"))
    rel = tree.results("m6", "micro")[0].fitness
    assert rel == pytest.approx((true_loss("gpt2") - true_loss("m6")) / true_loss("gpt2"), abs=0.01)
    fresh = Selector(SelectorConfig(policy=GREEDY))  # nothing kept in memory: a resumed run agrees
    assert fresh.estimates(tree) == sel.estimates(tree)


def test_results_on_another_footing_are_kept_apart(make_tree) -> None:  # noqa: ANN001
    """A result verified with lm-eval off (its loss in nats, not bits per byte) is not ranked
    against a baseline verified with it on: it gets no fitness, the others are unchanged."""
    tree = make_tree([6, 12])
    sel = Selector(SelectorConfig(policy=GREEDY))
    evald = {"local_ppl/bits_per_byte": 1.2}
    for name in ("gpt2", "m6"):
        sel.record_result(tree, name, "micro", record(name, "micro").model_copy(update={"eval_metrics": evald}))
    sel.record_result(tree, "m12", "micro", record("m12", "micro"))  # lm-eval skipped
    rows = {r.design: r for r in tree.results(scale="micro")}
    assert rows["m12"].fitness is None and rows["m12"].status == "ok"
    assert rows["m12"].result.footing() == "not trained · lm-eval off · probes off"
    assert sel.footing(tree, "micro") == rows["gpt2"].result.footing() == "not trained · lm-eval on · probes off"
    assert rows["m6"].fitness == pytest.approx(0.0, abs=1e-9)  # the same bits per byte as the baseline
    assert "m12" not in sel.estimates(tree, "micro")


def test_footing_counts_tokens_per_parameter_on_chinchilla_rungs() -> None:
    from model_discovery.records import TrainResult

    def trained(n_params: int, tokens: int) -> VerifyResult:
        train = TrainResult(n_params=n_params, n_params_total=n_params, steps=1, max_steps=1, tokens=tokens,
                            completed=True, final_val_loss=3.0, tokens_per_s=1.0, peak_memory_bytes=0, wall_s=1.0,
                            device="cpu", dtype="float32")
        return record("m6", "14M").model_copy(update={"train": train})

    small, large = trained(10_000_000, 200_000_000), trained(14_000_000, 280_000_000)
    assert LADDER["14M"].train_tokens is None  # 20 tokens per parameter
    assert small.footing(LADDER["14M"]) == large.footing(LADDER["14M"]) == "20 tokens/param · lm-eval off · probes off"
    assert small.footing() != large.footing()  # counted in tokens, two budgets differ


def test_replicates_then_promotion_within_paced_budgets(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([2, 3, 5, 7, 8, 9, 11, 14, 16, 20, 24])  # 12 designs
    sel = Selector(SelectorConfig(scales=SCALES, seed=1, policy=GREEDY, pacing=0.25))
    history = _run_ladder(tree, sel)
    runs = {s: sum(p.seeds for p in history if p.scale == s) for s in SCALES}
    assert runs["micro"] <= BUDGETS["micro"] and runs["14M"] <= BUDGETS["14M"] and runs["31M"] <= BUDGETS["31M"]
    assert runs["14M"] <= 0.25 * runs["micro"] and runs["31M"] <= 0.25 * runs["14M"]  # paced
    assert tree.spent("micro") == runs["micro"]  # budgets count training runs (seeds)
    reps = [p for p in history if p.replicate]
    assert reps and all(p.first_seed == 1 and p.seeds == 2 for p in reps)
    # replicated designs are the best single-seed ones, and hold 3 seeds with a smaller error
    micro = {r.design: r for r in tree.results(scale="micro")}
    assert {p.design for p in reps if p.scale == "micro"} <= {"m7", "m8", "m9", "m5", "m11", "gpt2"}
    m8 = micro["m8"]
    assert m8.seeds == 3 and len(m8.record["replicates"]) == 3 and m8.fitness_se < 0.001
    # only replicated designs move up, best first
    up = [p.design for p in history if p.scale == "14M"]
    assert up and up[0] == "gpt2" and "m8" in up
    assert all(micro[n].seeds == 3 for n in up if n != "gpt2")  # the baseline always goes up
    best, confirmed = sel.best(tree, "micro")
    assert best == "m8" and confirmed == "m8"
    assert sel.select_verifications(tree, BUDGETS, owner="other") == []


def test_no_replicate_seeds_before_enough_new_designs_have_results(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([3, 5, 8])
    sel = Selector(SelectorConfig(scales=["micro"], policy=GREEDY.model_copy(update={"replicate_after": 4})))
    history = _run_ladder(tree, sel)
    assert not any(p.replicate for p in history)  # 3 new designs: the leader is not replicated yet
    for m in (9, 11):
        d = tree.get_design("m8").design.model_copy(deep=True)
        d.name, d.parents = f"m{m}", ["gpt2"]
        d.units["GeluMLP"].hparams["mult"] = m
        tree.add_design(d, check={"passed": True}, operator="hparam")
    history = _run_ladder(tree, sel)
    assert [p.design for p in history if p.replicate][:1] == ["m8"]  # 5 new designs in: the best gets seeds


def test_rung_noise_is_measured_from_replicated_designs(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([3, 8])
    sel = Selector(SelectorConfig(scales=["micro"], policy=GREEDY.model_copy(update={"noise_sd": 0.05})))
    assert sel.rung_noise([[0.1], [0.2, 0.2]]) == 0.05  # 1 degree of freedom: the configured noise
    assert sel.rung_noise([[0.1, 0.3], [0.0, 0.2], [0.5, 0.7, 0.6], [9.0]]) == pytest.approx((0.06 / 4) ** 0.5)
    sel.record_result(tree, "gpt2", "micro", record("gpt2", "micro"))
    sel.record_result(tree, "m3", "micro", record("m3", "micro"))
    one = tree.results("m3", "micro")[0].fitness_se
    for name in ("m3", "m8"):  # two designs with three seeds each: 4 degrees of freedom
        sel.record_result(tree, name, "micro", record(name, "micro", first_seed=1 if name == "m3" else 0,
                                                      seeds=2 if name == "m3" else 3))
    assert one == pytest.approx(0.05)  # one seed, no measured noise yet: the configured one
    m3 = tree.results("m3", "micro")[0]
    assert m3.seeds == 3 and m3.fitness_se < 0.01  # the measured spread (about 0.004 / 3.5) replaced 0.05


def test_a_claim_waits_for_the_best_seed_on_min_seeds(make_tree, seed) -> None:  # noqa: ANN001
    tree = make_tree([3, 5, 8, 9, 11])
    other = seed.model_copy(deep=True)
    other.name, other.parents = "s7", []  # a second seed, second best of all (width 7)
    other.units["GeluMLP"].hparams["mult"] = 7
    tree.add_design(other, check={"passed": True})
    sel = Selector(SelectorConfig(scales=["micro"], policy=GREEDY.model_copy(update={"replicate_after": 2})))
    history = _run_ladder(tree, sel)
    assert "s7" in {p.design for p in history if p.replicate}  # the bar is measured on min_seeds too
    assert sel.best(tree, "micro") == ("m8", "m8")


def test_verifications_go_to_the_lowest_rung_first(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([3, 5])
    sel = Selector(SelectorConfig(scales=SCALES))
    first = sel.select_verifications(tree, BUDGETS)
    assert first[0] == VerifyPick("gpt2", "micro")  # the baseline first; the rest in the surrogate's order
    assert {(p.design, p.scale) for p in first} == {("gpt2", "micro"), ("m3", "micro"), ("m5", "micro")}
    assert tree.leases() == []  # without an owner nothing is claimed
    claimed = sel.select_verifications(tree, BUDGETS, owner="a", limit=2)
    assert len(claimed) == 2 and claimed[0].design == "gpt2"
    rest = sel.select_verifications(tree, BUDGETS, owner="b")
    assert {p.design for p in rest} | {p.design for p in claimed} == {"gpt2", "m3", "m5"}
    assert not {p.design for p in rest} & {p.design for p in claimed}  # disjoint


def test_budget_object_is_persisted(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([3])
    default = Budget.from_tree(tree)
    assert default.limits == {s: c.verify_budget for s, c in LADDER.items()}
    Budget(limits={"micro": 1, "14M": 1}).save(tree)
    b = Budget.from_tree(tree, scales=["micro", "14M"])
    assert b.limits == {"micro": 1, "14M": 1}
    assert Budget.from_tree(tree, {"14M": 5}, ["micro", "14M"]).limits == {"micro": 1, "14M": 5}
    sel = Selector(SelectorConfig(scales=["micro", "14M"]))
    assert sel.select_verifications(tree, owner="a") == [VerifyPick("gpt2", "micro")]  # stored budget: 1
    assert b.spent(tree) == {"micro": 1, "14M": 0}


def test_references_start_with_a_tournament_then_diversity(make_tree, seed) -> None:  # noqa: ANN001
    tree = make_tree([3])
    d = seed.model_copy(deep=True)
    d.name, d.parents = "far", ["gpt2"]
    d.units["GeluMLP"].hparams["mult"] = 6
    d.units["CausalSelfAttention"].hparams["n_head"] = 2
    tree.add_design(d, check={"passed": True})
    firsts = set()
    for i in range(30):
        refs = Selector(SelectorConfig(seed=i)).select_references(tree, 2, exclude=["gpt2"])
        assert sorted(r.name for r in refs) == ["far", "m3"]
        firsts.add(refs[0].name)
    assert firsts == {"far", "m3"}  # the crossover partner is sampled, not always the most unlike
    assert Selector().select_references(tree, 0) == []


def test_random_selector_same_interface(make_tree) -> None:  # noqa: ANN001
    tree = make_tree([2, 3, 5, 7, 8, 9, 11, 14, 16, 20, 24])
    sel = RandomSelector(SelectorConfig(scales=SCALES, seed=3, k_parents=2, pacing=None))
    history = _run_ladder(tree, sel)
    assert not any(p.replicate for p in history)  # no noise model: one seed each
    per_scale = {s: sum(1 for p in history if p.scale == s) for s in SCALES}
    assert per_scale == {"micro": 12, "14M": 6, "31M": 2}
    assert len({(p.design, p.scale) for p in history}) == len(history)
    for lower, upper in zip(SCALES, SCALES[1:]):
        assert {p.design for p in history if p.scale == upper} <= {p.design for p in history if p.scale == lower}
    parents = sel.select_parents(tree)
    assert len(parents) == 2 and parents[0].name != parents[1].name
    assert len(sel.select_references(tree, 3, exclude=[p.name for p in parents])) == 3
    with pytest.raises(ValueError, match="scales must be"):
        SelectorConfig(scales=["huge"])


def test_surrogate_prescreens_candidates_once_it_has_results(make_tree, seed) -> None:  # noqa: ANN001
    tree = make_tree([2, 3, 5, 7, 8, 9, 11])
    sel = Selector(SelectorConfig(policy=GREEDY.model_copy(update={"rho_pairs": 5}), seed=0))
    for name in ("gpt2", "m2", "m3", "m5", "m7", "m8", "m9", "m11"):
        sel.record_result(tree, name, "micro", record(name, "micro"))

    def variant(m: int):  # noqa: ANN202
        d = seed.model_copy(deep=True)
        d.units["GeluMLP"].hparams["mult"] = m
        return d, "hparam"

    assert sel.screen(tree, [variant(2), variant(8), variant(3)])[0] == 1  # width 8 measured best
    assert "online Spearman" in sel.surrogate_report(tree)
    rand = RandomSelector(SelectorConfig(seed=0))
    firsts = {rand.screen(tree, [variant(2), variant(8), variant(3)])[0] for _ in range(20)}
    assert len(firsts) > 1  # the random selector does not pre-screen
