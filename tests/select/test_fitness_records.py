"""Fitness reads the verification engine's own record shape."""

from __future__ import annotations

from model_discovery.select import fitness, read_metrics


def _record(bpb: float, acc: float, probe: float) -> dict:
    return {"status": "ok", "final_val_loss": 4.0,
            "eval_metrics": {"local_ppl/bits_per_byte": bpb, "local_ppl/word_perplexity": 900.0,
                             "local_nextline/acc": acc - 0.1, "local_nextline/acc_norm": acc},
            "probe_scores": {"probe/recall": probe, "probe/copy": probe, "probe/mean": 0.99}}


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
    assert fitness({"final_val_loss": 3.0}) > fitness({"final_val_loss": 3.5})
