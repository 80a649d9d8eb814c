"""Symbolic agents: GP operators, renaming, proposer determinism, reviewer gates, coder repairs.

Designs built here consist of catalogue code and code from the genome generator (both trusted:
written by the project), so the tests execute them in-process.
"""

from __future__ import annotations

import random

import pytest
import torch

from model_discovery.agents.symbolic import (OPERATORS, NotApplicable, SymbolicCoder, SymbolicConfig,
                                             SymbolicProposer, SymbolicReviewer, novelty)
from model_discovery.agents.symbolic.draft import Draft, design_problems
from model_discovery.agents.symbolic.params import is_trusted, meta_count, static_count
from model_discovery.agents.symbolic.source import canonical_source, rename_unit_source
from model_discovery.gau import Design, build_lm, compile_design, get_scale, list_seeds, load_seed
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit
from model_discovery.genome.spec import DeltaRule, MixerGenome
from model_discovery.records import Proposal, ReviewContext, UnitPlan

MICRO = get_scale("micro")
SEEDS = list_seeds()
OTHER = {"gpt2": "mamba2"}


def _seed(name: str) -> Design:
    return load_seed(name)


def _partner(name: str) -> Design:
    others = [s for s in SEEDS if s != name]
    return _seed(OTHER.get(name, "gpt2") if OTHER.get(name, "gpt2") in others else others[0])


def forward_ok(design: Design, seq: int = 24) -> None:
    """Build at micro, run forward, and check that a change after position t leaves <= t alone."""
    torch.manual_seed(0)
    lm = build_lm(design, MICRO)
    lm.eval()
    idx = torch.randint(0, MICRO.vocab_size, (1, seq))
    alt = idx.clone()
    alt[0, seq // 2:] = torch.randint(0, MICRO.vocab_size, (seq - seq // 2,))
    with torch.no_grad():
        y, y2 = lm(idx), lm(alt)
    assert y.shape == (1, seq, MICRO.vocab_size)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[0, : seq // 2], y2[0, : seq // 2], atol=1e-4), "output depends on future tokens"


def _apply(op: str, seed: str, rng_seed: int = 0) -> tuple[Design, Design]:
    a = _seed(seed)
    proposer = SymbolicProposer(SymbolicConfig(seed=rng_seed))
    b = _partner(seed)
    if op == "remove":  # remove undoes an insert; seeds have no combinator of their own
        a = proposer.build("insert", a).design
    if op in ("mutate_unit", "cross_unit"):  # these edit invented units: give both designs one
        a = with_unit(a, *genome_unit(GenomeEdit(MixerGenome(), "sample", "test genome")))
        b = with_unit(b, *genome_unit(GenomeEdit(MixerGenome(token_mixer=DeltaRule()), "sample", "test genome")))
    return a, proposer.build(op, a, b).design


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("seed", ["gpt2", "mamba2", "rwkv"])
def test_operator_gives_valid_compilable_different_design(op: str, seed: str) -> None:
    if seed not in SEEDS:
        pytest.skip(f"seed {seed} not in the library")
    parent, child = _apply(op, seed)
    assert design_problems(child) == []
    assert compile_design(child)
    assert child.fingerprint() != parent.fingerprint()
    assert child.name.startswith(seed) and f"-{op}-" in child.name
    assert parent.name in child.parents and child.summary.startswith(op)
    forward_ok(child)


def test_crossover_and_interleave_mix_two_seeds() -> None:
    a, b = _seed("gpt2"), _seed("mamba2")
    proposer = SymbolicProposer(SymbolicConfig(seed=3))
    inter = proposer.build("interleave", a, b).design
    assert inter.units[inter.root].role == "block" and inter.root.startswith("InterleaveBlock")
    even, odd = inter.units[inter.root].children["even"], inter.units[inter.root].children["odd"]
    assert {"CausalSelfAttention", "Mamba2Mixer"} <= set(inter.units)
    assert even != odd and inter.parents == ["gpt2", "mamba2"]
    forward_ok(inter)
    cross = proposer.build("crossover", a, b).design
    assert set(cross.units) - set(a.units), "crossover brought in no unit from the other seed"
    assert set(cross.parents) == {"gpt2", "mamba2"}
    forward_ok(cross)
    again = proposer.build("crossover", cross, _seed("llama")).design  # names do not grow by generation
    assert again.name.startswith("gpt2+llama-crossover-") and len(again.name) <= len(cross.name) + 1


def test_name_clash_renames_unit_and_class_consistently() -> None:
    a = _seed("gpt2")
    b = a.model_copy(deep=True)
    b.units["GeluMLP"] = b.units["GeluMLP"].model_copy(update={"hparams": {"mult": 2}})
    draft = Draft.of(a)
    new = draft.import_subtree(b, "GeluMLP")
    assert new == "GeluMLP_2"
    src = draft.units[new].source
    assert "class GeluMLP_2(GAUBase)" in src and "class GeluMLP(" not in src
    assert canonical_source(src) == canonical_source(a.units["GeluMLP"].source)
    # an identical unit is reused, not duplicated
    assert draft.import_subtree(a, "GeluMLP") == "GeluMLP"
    draft.set_child("PreNormBlock", "mlp", new)
    design = draft.to_design("gpt2-clash", ["gpt2"], "mlp from a variant")
    assert "GeluMLP" not in design.units and design_problems(design) == []
    forward_ok(design)


def test_rename_also_renames_clashing_helpers() -> None:
    src = ("import torch\n\nSCALE = 2\n\ndef helper(x):\n    return x * SCALE\n\n\n"
           "class Foo:\n    def f(self, x):\n        # keep this comment\n        return helper(x)\n")
    out, mapping = rename_unit_source(src, "Foo", "Foo_2", taken={"Foo", "helper"})
    assert mapping == {"Foo": "Foo_2", "helper": "helper_2"}
    assert "def helper_2(x)" in out and "return helper_2(x)" in out and "class Foo_2:" in out
    assert "# keep this comment" in out and "SCALE = 2" in out


def test_proposer_is_deterministic_for_a_fixed_seed() -> None:
    parents, refs = [_seed("gpt2")], [_partner("gpt2")]
    runs = []
    for _ in range(2):
        proposer = SymbolicProposer(SymbolicConfig(seed=11))
        runs.append([proposer.propose(parents, refs, [], []).design.fingerprint() for _ in range(6)])
    assert runs[0] == runs[1]
    other = SymbolicProposer(SymbolicConfig(seed=12))
    assert [other.propose(parents, refs, [], []).design.fingerprint() for _ in range(6)] != runs[0]


def test_operator_weights_select_operators() -> None:
    proposer = SymbolicProposer(SymbolicConfig(seed=0, operator_weights={"hparam": 1.0}))
    assert {proposer.propose([_seed("gpt2")], [], [], []).operator for _ in range(4)} == {"hparam"}
    with pytest.raises(ValueError):
        SymbolicConfig(operator_weights={"teleport": 1.0})


def test_remove_not_applicable_without_combinator() -> None:
    with pytest.raises(NotApplicable):
        SymbolicProposer().build("remove", _seed("gpt2"))


def test_param_counts_static_close_to_meta() -> None:
    for name in ("gpt2", "llama", "mamba2"):
        d = _seed(name)
        assert is_trusted(d)
        exact = meta_count(d, MICRO)
        assert exact == build_lm(d, MICRO).num_params()
        assert abs(static_count(d, MICRO) - exact) / exact < 0.1


def _proposal(design: Design, op: str = "swap") -> Proposal:
    return Proposal(title=op, motivation="test", change=op, operator=op, parents=design.parents, design=design)


def test_reviewer_rejects_duplicates_noops_and_over_budget() -> None:
    gpt2 = _seed("gpt2")
    reviewer = SymbolicReviewer()
    ctx = ReviewContext(parents=[gpt2], known_fingerprints={gpt2.fingerprint()}, scale=MICRO)
    dup = reviewer.review(_proposal(gpt2.model_copy(update={"name": "gpt2-copy"})), ctx)
    assert not dup.accept and dup.rating == 1 and "duplicate" in dup.reasons[0]
    # renaming a unit only is a structural no-op
    draft = Draft.of(gpt2)
    draft.units["GeluMLP_2"] = draft.units.pop("GeluMLP").model_copy(
        update={"source": rename_unit_source(gpt2.units["GeluMLP"].source, "GeluMLP", "GeluMLP_2", set())[0]})
    draft.set_child("PreNormBlock", "mlp", "GeluMLP_2")
    noop = reviewer.review(_proposal(draft.to_design("gpt2-renamed", ["gpt2"], "rename")), ctx)
    assert not noop.accept and "no-op" in noop.reasons[0]
    big = gpt2.model_copy(deep=True)
    big.units["GeluMLP"].hparams["mult"] = 64
    over = reviewer.review(_proposal(big.model_copy(update={"name": "gpt2-big"}), "hparam"), ctx)
    assert not over.accept and "above the limit" in over.reasons[0]


def test_reviewer_novelty_grows_with_difference_and_accepts_fitting_designs() -> None:
    gpt2 = _seed("gpt2")
    proposer = SymbolicProposer(SymbolicConfig(seed=5))
    near = proposer.build("hparam", gpt2).design
    far = proposer.build("interleave", gpt2, _seed("mamba2")).design
    assert novelty(far, [gpt2]) > novelty(near, [gpt2]) > 0
    reviewer = SymbolicReviewer()
    ctx = ReviewContext(parents=[gpt2], known_fingerprints={gpt2.fingerprint()}, scale=MICRO)
    r_near, r_far = reviewer.review(_proposal(near, "hparam"), ctx), reviewer.review(_proposal(far, "interleave"), ctx)
    assert r_far.novelty > r_near.novelty
    assert r_far.rating > r_near.rating and r_far.accept
    assert 1 <= r_near.rating <= 5


def test_coder_returns_units_and_repairs_deterministically() -> None:
    gpt2 = _seed("gpt2")
    proposal = SymbolicProposer(SymbolicConfig(seed=2)).propose([gpt2], [], [], [])
    coder = SymbolicCoder({"gpt2": gpt2})
    design = proposal.design
    assert design is not None
    for plan in proposal.units:
        impl = coder.implement(proposal, design, plan, None)
        assert impl.source == design.units[plan.name].source and impl.hparams == design.units[plan.name].hparams
    # snap an invalid head count named by the error
    bad = gpt2.model_copy(deep=True)
    bad.units["CausalSelfAttention"].hparams["n_head"] = 6
    plan = UnitPlan(name="CausalSelfAttention", role="mixer", description="attention")
    fix = coder.implement(_proposal(bad), bad, plan, "ValueError: d_model 64 not divisible by n_head 6")
    assert fix.hparams["n_head"] == 4 and "snapped" in fix.rationale
    # revert a changed unit to the parent's version
    changed = gpt2.model_copy(deep=True)
    changed.units["GeluMLP"].hparams["mult"] = 6
    prop = _proposal(changed.model_copy(update={"parents": ["gpt2"]}), "hparam")
    rev = coder.implement(prop, changed, UnitPlan(name="GeluMLP", role="channel_mixer", description="mlp"),
                          "loss did not fall")
    assert rev.hparams["mult"] == 4 and "reverted" in rev.rationale
    same = coder.implement(_proposal(gpt2), gpt2, UnitPlan(name="GeluMLP", role="channel_mixer", description="mlp"),
                           "some error")
    assert same.source == gpt2.units["GeluMLP"].source and "unchanged" in same.rationale


@pytest.mark.slow
def test_batch_success_rate_across_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    """30 proposals across the seeds: >= 80% build, run forward and stay causal at micro."""
    seeds = [_seed(s) for s in SEEDS]
    proposer = SymbolicProposer(SymbolicConfig(seed=7))
    rng = random.Random(7)
    ok, per_op, failures = 0, {}, []
    for i in range(30):
        a = seeds[i % len(seeds)]
        b = rng.choice([s for s in seeds if s is not a]) if len(seeds) > 1 else None
        proposal = proposer.propose([a], [b] if b else [], [], [])
        good, total = per_op.get(proposal.operator, (0, 0))
        try:
            forward_ok(proposal.design, seq=16)
            ok += 1
            per_op[proposal.operator] = (good + 1, total + 1)
        except Exception as exc:  # noqa: BLE001 - counted as a failed proposal
            per_op[proposal.operator] = (good, total + 1)
            failures.append(f"{proposal.design.name}: {exc}")
    with capsys.disabled():
        print(f"\nsymbolic proposals passing build+forward+causality at micro: {ok}/30 = {ok / 30:.0%}; "
              + ", ".join(f"{op} {g}/{t}" for op, (g, t) in sorted(per_op.items())))
        for f in failures:
            print("  failed:", f[:200])
    assert ok / 30 >= 0.8


def test_untrusted_sources_are_never_built_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit that is not catalogue code is counted in the sandbox or statically, not exec'd here."""
    from model_discovery.agents.symbolic import params

    design = _seed("gpt2").model_copy(deep=True)
    design.units["GeluMLP"].source = design.units["GeluMLP"].source.replace("F.gelu", "F.silu")
    assert not params.is_trusted(design)

    def boom(*args: object, **kwargs: object) -> int:
        raise AssertionError("untrusted design built in-process")

    monkeypatch.setattr(params, "meta_count", boom)
    est = params.count_params(design, MICRO, meta_build=False)
    assert est.method == "static" and abs(est.n_params - 115264) / 115264 < 0.05


@pytest.mark.slow
def test_sandboxed_param_count_and_run_checks_gate() -> None:
    """Untrusted designs are counted in the sandbox; symbolic proposals pass the real checker."""
    pytest.importorskip("model_discovery.check.sandbox")
    check = pytest.importorskip("model_discovery.check")
    if not hasattr(check, "run_checks"):
        pytest.skip("checker not available")
    from model_discovery.agents.symbolic.params import count_params

    design = _seed("gpt2").model_copy(deep=True)
    design.units["GeluMLP"].source = design.units["GeluMLP"].source.replace("F.gelu", "F.silu")
    est = count_params(design, MICRO)
    assert est.method == "sandbox" and est.n_params == 115264, est
    proposer = SymbolicProposer(SymbolicConfig(seed=21))
    seeds = [_seed(s) for s in SEEDS]
    passed = 0
    for i in range(4):
        proposal = proposer.propose([seeds[i % len(seeds)]], [seeds[(i + 3) % len(seeds)]], [], [])
        report = check.run_checks(proposal.design, "micro")
        passed += bool(report.passed)
    assert passed >= 3


@pytest.mark.parametrize("op", ["invent", "mutate_unit", "cross_unit", "code_edit"])
def test_invention_operators_make_new_units_with_lineage(op: str) -> None:
    parent, child = _apply(op, "gpt2", rng_seed=5)
    known = {canonical_source(u.source) for u in parent.units.values()}
    new = [n for n, u in child.units.items() if canonical_source(u.source) not in known]
    assert new, f"{op} made no new unit"
    for name in new:
        origin = child.units[name].origin
        assert origin is not None and origin.edit
        assert f"class {name}(GAUBase)" in child.units[name].source
        if op == "code_edit":
            assert origin.operator == "code" and origin.parents and origin.genome is None
        else:
            assert origin.genome is not None and origin.operator in ("sample", "point", "subtree", "crossover")
    if op in ("mutate_unit", "cross_unit"):
        assert child.units[new[0]].origin.parents  # type: ignore[union-attr]


def test_reviewer_rejects_an_invented_unit_that_exists_under_another_name() -> None:
    proposer = SymbolicProposer(SymbolicConfig(seed=11))
    gpt2 = _seed("gpt2")
    proposal = proposer.build("invent", gpt2)
    name = next(n for n, u in proposal.design.units.items() if u.origin is not None)  # type: ignore[union-attr]
    spec = proposal.design.units[name]  # type: ignore[union-attr]
    source, _ = rename_unit_source(spec.source, name, "SameUnitRenamed", set())
    other = with_unit(_seed("llama"), "SameUnitRenamed", spec.model_copy(update={"source": source}))
    reviewer = SymbolicReviewer(SymbolicConfig(meta_build=False))
    fresh = reviewer.review(proposal, ReviewContext(parents=[gpt2]))
    assert not any("duplicate" in r for r in fresh.reasons)
    review = reviewer.review(proposal, ReviewContext(parents=[gpt2], known_designs=[other]))
    assert not review.accept and review.rating == 1
    assert f"unit {name} duplicates unit SameUnitRenamed of {other.name}" in review.reasons[0]
