"""Fitness reads the fields of the verification engine's result."""

from __future__ import annotations

from model_discovery.select import fitness, read_metrics
from model_discovery.select.fitness import per_seed
from model_discovery.verify import Replicate, VerifyResult


def _result(final_val_loss: float = 4.0, **fields: object) -> VerifyResult:
    return VerifyResult(design="d", fingerprint="f" * 16, scale="micro", status="ok", final_val_loss=final_val_loss,
                        **fields)


def _record(bpb: float, acc: float, probe: float) -> VerifyResult:
    return _result(eval_metrics={"local_ppl/bits_per_byte": bpb, "local_ppl/word_perplexity": 900.0,
                                 "local_nextline/acc": acc - 0.1, "local_nextline/acc_norm": acc},
                   probe_scores={"probe/recall": probe, "probe/copy": probe, "probe/mean": 0.99})


def test_verify_record_metrics_are_read() -> None:
    m = read_metrics(_record(1.5, 0.4, 0.3))
    assert m.loss == 1.5 and m.loss_unit == "bpb"
    assert m.evals == {"local_nextline": 0.4} and m.probes == {"recall": 0.3, "copy": 0.3}


def test_better_bpb_and_accuracy_give_higher_fitness() -> None:
    base = _record(2.0, 0.3, 0.2)
    assert fitness(base, base) == 0.0
    assert fitness(_record(1.8, 0.3, 0.2), base) > 0 > fitness(_record(2.2, 0.3, 0.2), base)
    assert fitness(_record(2.0, 0.5, 0.2), base) > 0


def test_training_loss_alone_is_enough() -> None:
    assert fitness(_result(3.0)) > fitness(_result(3.5))


def test_replicates_give_one_metrics_per_seed_and_merge_into_means() -> None:
    two = _result(3.5, replicates=[Replicate(seed=0, final_val_loss=3.0), Replicate(seed=1, final_val_loss=4.0)],
                  probe_scores={"probe/copy": 0.5})
    assert [x.loss for x in per_seed(two)] == [3.0, 4.0] and per_seed(two)[1].probes == {"copy": 0.5}
    third = _result(5.0, seed=2, wall_s=1.0)
    merged = two.merged(third)
    assert merged.seeds() == {0, 1, 2} and merged.final_val_loss == 4.0
    assert merged.spread["final_val_loss"] == 1.0 and merged.wall_s == 1.0
