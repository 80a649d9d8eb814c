"""The selection rules on plain numbers: estimates, parents, promotion, recommendation, surrogate."""

from __future__ import annotations

import random

import pytest

from model_discovery.select.policy import (Estimate, PolicyConfig, Surrogate, choose_parent, confirmed_best,
                                           estimate, promotions, recommend, replicate_candidates, spearman,
                                           tournament)


def test_estimate_pools_seed_spread_with_the_noise_model() -> None:
    one = estimate([0.05], noise_sd=0.01)
    assert (one.mean, one.n) == (0.05, 1) and one.se == pytest.approx(0.01)
    tight = estimate([0.05, 0.05, 0.05], noise_sd=0.01)
    assert tight.se < one.se and tight.se > 0  # the prior keeps three equal seeds from claiming certainty
    wide = estimate([0.0, 0.1, 0.05], noise_sd=0.01)
    assert wide.se > tight.se
    assert wide.lcb(1.0) == pytest.approx(wide.mean - wide.se)
    with pytest.raises(ValueError):
        estimate([], 0.01)


def test_parents_warm_up_at_random_then_follow_thompson_draws() -> None:
    cfg = PolicyConfig(warmup_steps=2, restart_prob=0.0)
    est = {"good": Estimate(mean=0.1, se=0.001, n=3), "bad": Estimate(mean=-0.1, se=0.001, n=3), "new": None}
    rng = random.Random(0)
    early = {choose_parent(list(est), [], est, 0, cfg, rng) for _ in range(60)}
    assert early == {"good", "bad", "new"}
    late = {choose_parent(list(est), [], est, 5, cfg, rng) for _ in range(60)}
    assert late == {"good"}
    restart = PolicyConfig(warmup_steps=0, restart_prob=1.0)
    assert {choose_parent(list(est), ["bad"], est, 9, restart, rng) for _ in range(20)} == {"bad"}
    close = {"a": Estimate(mean=0.0, se=0.05, n=1), "b": Estimate(mean=0.01, se=0.05, n=1)}
    picks = [choose_parent(["a", "b"], [], close, 9, PolicyConfig(restart_prob=0), rng) for _ in range(200)]
    assert 40 < picks.count("a") < 160  # noisy estimates: both get chosen


def test_tournament_reaches_every_partner() -> None:
    est = {f"d{i}": Estimate(mean=i / 10, se=0.01, n=1) for i in range(6)}
    rng = random.Random(1)
    cfg = PolicyConfig(tournament=2)
    winners = {tournament(list(est), est, cfg, rng, exclude=["d5"]) for _ in range(300)}
    assert "d5" not in winners and winners >= {"d1", "d2", "d3", "d4"}
    assert tournament(["d0"], est, cfg, rng, exclude=["d0"]) is None


def test_successive_halving_promotes_the_top_third_as_results_arrive() -> None:
    assert promotions({"a": 0.1}, set(), 3) == ["a"]  # one may always move on
    finished = {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.0, "e": -0.1, "f": 0.05}
    assert promotions(finished, set(), 3) == ["b", "c"]
    assert promotions(finished, {"b"}, 3) == ["c"]
    assert promotions(finished, {"b", "c"}, 3) == []


def test_recommendation_needs_seeds_and_uses_the_lower_bound() -> None:
    cfg = PolicyConfig(min_seeds=3, z=1.0)
    est = {"lucky": Estimate(mean=0.2, se=0.01, n=1), "solid": Estimate(mean=0.1, se=0.01, n=3),
           "shaky": Estimate(mean=0.12, se=0.05, n=3), "seed": Estimate(mean=0.05, se=0.01, n=3)}
    assert recommend(est, cfg) == "solid"
    assert recommend(est, cfg.model_copy(update={"noise_model": False})) == "lucky"
    assert recommend({"x": Estimate(mean=0.0, se=0.01, n=1), "y": Estimate(mean=0.1, se=0.01, n=1)}, cfg) == "y"
    assert recommend({}, cfg) is None
    assert confirmed_best(est, ["seed"], cfg) == "solid"
    assert confirmed_best(est, ["solid"], cfg) is None  # nothing beats the seed's 0.1 by a lower bound
    one = {**est, "seed": Estimate(mean=0.05, se=0.01, n=1)}
    assert confirmed_best(one, ["seed"], cfg) is None  # the best seed's one-seed mean is no bar


def test_surrogate_tracks_its_online_rank_correlation() -> None:
    cfg = PolicyConfig(min_rho=0.1)
    good, bad = Surrogate(cfg), Surrogate(cfg)
    rng = random.Random(0)
    for i in range(40):
        x = rng.choice(["a", "b", "c", "d"])
        value = {"a": 0.3, "b": 0.1, "c": -0.1, "d": -0.3}[x] + rng.gauss(0, 0.01)
        good.observe([x], value)
        bad.observe([x], rng.gauss(0, 1))
    assert good.rho() > 0.8 and good.useful()
    assert good.rank([["d"], ["a"], ["c"]], rng) == [1, 2, 0]
    assert bad.rho() < 0.5
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0
    prior = good.prior(["a"])
    assert prior is not None and prior.n == 0 and prior.mean > 0.2


def test_replicate_seeds_go_to_contenders_only() -> None:
    est = {"a": Estimate(mean=0.10, se=0.005, n=1), "b": Estimate(mean=0.095, se=0.005, n=1),
           "c": Estimate(mean=0.05, se=0.005, n=1), "d": Estimate(mean=0.0, se=0.005, n=1)}
    finished = {n: e.mean for n, e in est.items()}
    cfg = PolicyConfig(eta=1.5, z=1.0, replicate_after=2)
    assert promotions(finished, set(), 1.5) == ["a", "b"]
    assert replicate_candidates(finished, set(), est, cfg) == ["a", "b"]  # b could still beat a
    # no replicate seeds before replicate_after designs that are not seeds have a result
    assert replicate_candidates(finished, set(), est, cfg, seeds={"a", "b", "c"}) == []
    assert replicate_candidates(finished, set(), est, cfg, seeds={"a", "b"}) == ["a", "b"]
    far = {**est, "b": Estimate(mean=0.07, se=0.005, n=1)}
    assert replicate_candidates({n: e.mean for n, e in far.items()}, set(), far, cfg) == ["a"]
    top = cfg.model_copy(update={"replicate": "top"})
    assert replicate_candidates({n: e.mean for n, e in far.items()}, set(), far, top) == ["a", "b"]
