"""Fitness function and learned prior."""

from __future__ import annotations

import pytest

from model_discovery.gau import Design
from model_discovery.select import FitnessConfig, FitnessError, Ridge, design_features, fitness, read_metrics
from model_discovery.select.fitness import Metrics, informative_tasks


def m(loss: float | None = None, evals: dict | None = None, probes: dict | None = None, unit: str = "nats") -> Metrics:
    return Metrics(loss=loss, loss_unit=unit if loss is not None else None, evals=evals or {}, probes=probes or {})


@pytest.mark.parametrize("baseline", [None, m(3.4, {"piqa": 0.6})])
def test_fitness_is_monotone_in_val_loss(baseline) -> None:  # noqa: ANN001
    values = [fitness(m(loss, {"piqa": 0.6}), baseline) for loss in (2.5, 3.0, 3.4, 4.0, 6.0)]
    assert values == sorted(values, reverse=True) and len(set(values)) == 5


def test_fitness_terms_and_baseline() -> None:
    base = m(3.0, {"a": 0.5, "b": 0.4}, {"copy": 0.2})
    assert fitness(base, base) == 0.0  # the baseline against itself
    better_acc = base.model_copy(update={"evals": {"a": 0.7, "b": 0.4}})
    assert fitness(better_acc, base) == pytest.approx(0.1)  # mean acc +0.1, eval weight 1
    assert fitness(m(2.7), base) == pytest.approx(0.1)  # 10% lower loss
    assert fitness(m(1.0, unit="bpb")) == -1.0
    both = read_metrics([m(3.0, probes={"p": 1.0}), m(4.0, probes={"p": 0.0})])
    assert (both.loss, both.loss_unit, both.probes) == (3.5, "nats", {"p": 0.5})
    assert fitness(m(probes={"p": 0.8}), config=FitnessConfig(probe_weight=2.0)) == pytest.approx(1.6)
    with pytest.raises(FitnessError, match="no loss"):
        fitness(m())


def test_ridge_learns_unit_effects(seed: Design) -> None:
    def feats(m: int, op: str = "hparam") -> list[str]:
        d = seed.model_copy(deep=True)
        d.units["GeluMLP"].hparams["mult"] = m
        return design_features(d, op)

    p = Ridge(alpha=0.1)
    assert p.predict(feats(2)) is None
    for m, f in [(2, 1.0), (2, 0.9), (3, -1.0), (5, -0.9)]:
        p.add(feats(m), f)
    assert len(p) == 4
    assert p.predict(feats(2)) > 0.5 > p.predict(feats(3))
    assert p.predict(feats(9, "unseen-op")) == pytest.approx(0.0, abs=0.3)  # falls back to the mean
    assert p.residual_sd() > 0
    with pytest.raises(ValueError, match="alpha"):
        Ridge(alpha=0)


def test_tasks_at_chance_do_not_count() -> None:
    at_chance = [m(5.0 + i / 10, {"local_nextline": 0.24 + i / 100, "piqa": 0.5 + i / 10, "mystery": 0.1})
                 for i in range(3)]
    counted = informative_tasks(at_chance)
    assert counted == {"piqa", "mystery"}  # nextline never beats 0.25 + 0.02; unknown chance always counts
    a, b = at_chance[0], at_chance[2]
    loss = (5.0 - 5.2) / 5.0
    assert fitness(b, a) == pytest.approx(loss + (0.26 + 0.7 + 0.1 - 0.24 - 0.5 - 0.1) / 3)
    assert fitness(b, a, counted={"piqa", "mystery"}) == pytest.approx(loss + (0.7 + 0.1 - 0.5 - 0.1) / 2)
    assert fitness(b, a, counted=set()) == pytest.approx(loss)
