"""The lm-eval adapter and the local tasks, on a tiny GPT-2 seed model with a tiny BPE tokenizer."""

from __future__ import annotations

import json
import logging
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from model_discovery.gau import build_lm, load_seed
from model_discovery.records import ScaleConfig
from model_discovery.train.tokenizer import train_bpe
from model_discovery.verify.evaluation import (EvalConfig, EvalError, LocalTaskConfig, ModisLM, evaluate,
                                               flatten_results, score_windows, write_local_tasks)

TINY = ScaleConfig(name="micro", d_model=32, n_block=1, context_len=32, vocab_size=300)


@pytest.fixture(scope="module")
def documents() -> list[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    names = ["abc.py", "bisect.py", "colorsys.py", "copy.py", "fnmatch.py", "heapq.py", "keyword.py",
             "numbers.py", "operator.py", "queue.py", "shlex.py", "stat.py", "string.py", "textwrap.py"]
    return [(lib / n).read_text() for n in names if (lib / n).exists()]


@pytest.fixture(scope="module")
def tokenizer(documents):
    return train_bpe(documents[:6], 300)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_lm(load_seed("gpt2"), TINY, vocab_size=tokenizer.get_vocab_size()).eval()


@pytest.fixture(scope="module")
def lm(model, tokenizer) -> ModisLM:
    return ModisLM(model, tokenizer, batch_size=4, device="cpu")


def _inst(kind: str, args: tuple) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_registered_as_modis(model, tokenizer):
    cls = get_model("modis")
    assert cls is ModisLM
    built = cls.create_from_arg_obj({"model": model, "tokenizer": tokenizer}, {"batch_size": "auto", "device": None})
    assert built.max_length == TINY.context_len and built.batch_size == 16


def test_score_windows_predict_each_token_once():
    for n_tokens, n_pred, max_len in [(10, 9, 4), (33, 32, 32), (5, 2, 8), (100, 40, 7)]:
        predicted = []
        for start, end, n in score_windows(n_tokens, n_pred, max_len):
            assert 0 <= start < end and end - start <= max_len and n <= end - start
            predicted += list(range(end - n + 1, end + 1))
        assert predicted == list(range(n_tokens - n_pred, n_tokens))


def test_loglikelihood_matches_direct_computation(lm, model, tokenizer):
    context, continuation = "def add(a, b):\n    return", " a + b\n"
    (ll, greedy), = lm.loglikelihood([_inst("loglikelihood", (context, continuation))])
    whole = tokenizer.encode(context + continuation).ids
    n_ctx = len(tokenizer.encode(context).ids)
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([whole[:-1]])).float(), dim=-1)[0]
    targets = torch.tensor(whole[n_ctx:])
    rows = logp[n_ctx - 1:]
    expected = float(rows.gather(-1, targets[:, None]).sum())
    assert ll == pytest.approx(expected, abs=1e-4)
    assert greedy == bool((rows.argmax(-1) == targets).all())


def test_loglikelihood_batching_is_order_free(lm, model, tokenizer):
    reqs = [("import os\n", "import sys\n"), ("x = 1", " + 2"), ("", "hello world"), ("class A:", "\n    pass")]
    batched = lm.loglikelihood([_inst("loglikelihood", r) for r in reqs])
    single = ModisLM(model, tokenizer, batch_size=1, device="cpu")
    one_by_one = [single.loglikelihood([_inst("loglikelihood", r)])[0] for r in reqs]
    for (a, ga), (b, gb) in zip(batched, one_by_one):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb


def test_loglikelihood_rolling_counts_every_token(lm, model, tokenizer, documents):
    text = documents[7][:600]
    tokens = tokenizer.encode(text).ids
    assert len(tokens) > 2 * TINY.context_len  # several windows
    counted = []
    original = lm._score

    def spy(seqs, **kw):
        for toks, n_pred in seqs:
            for _, end, n in score_windows(len(toks), n_pred, lm.max_length):
                counted.extend(range(end - n + 1, end + 1))
        return original(seqs, **kw)

    lm._score = spy
    try:
        (ll,) = lm.loglikelihood_rolling([_inst("loglikelihood_rolling", (text,))])
    finally:
        del lm._score
    assert len(counted) == len(tokens) and sorted(set(counted)) == counted
    # independent check: sum over the same windows computed by hand from the logits
    full = [lm.eot_token_id] + tokens
    expected = 0.0
    with torch.no_grad():
        for start, end, n in score_windows(len(full), len(tokens), TINY.context_len):
            logp = F.log_softmax(model(torch.tensor([full[start:end]])).float(), dim=-1)[0, -n:]
            expected += float(logp.gather(-1, torch.tensor(full[end - n + 1:end + 1])[:, None]).sum())
    assert ll == pytest.approx(expected, rel=1e-5)
    assert lm.loglikelihood_rolling([_inst("loglikelihood_rolling", ("",))]) == [0.0]


def test_generate_until_greedy_and_stops(lm, model, tokenizer):
    context = "def f(x):\n    return x\n"
    free, = lm.generate_until([_inst("generate_until", (context, {"until": [], "max_gen_toks": 12}))])
    ids = torch.tensor([tokenizer.encode(context).ids])
    expected = []
    with torch.no_grad():
        for _ in range(12):
            nxt = int(model(ids[:, -TINY.context_len:])[0, -1].argmax())
            if nxt == lm.eot_token_id:
                break
            expected.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    assert free == tokenizer.decode(expected)
    assert len(free) > 2
    stop = free[1:3]
    cut, = lm.generate_until([_inst("generate_until", (context, {"until": [stop], "max_gen_toks": 12}))])
    assert cut == free[: free.index(stop)] and stop not in cut
    short, = lm.generate_until([_inst("generate_until", (context, {"until": ["\x00"], "max_gen_toks": 2}))])
    assert short == tokenizer.decode(expected[:2])


def test_local_task_files(documents, tmp_path):
    cfg = LocalTaskConfig(ppl_docs=3, nextline_items=5)
    names = write_local_tasks(documents, tmp_path, cfg)
    assert names == ["local_ppl", "local_nextline", "local_complete"]
    rows = [json.loads(x) for x in (tmp_path / "local_nextline.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert len(row["choices"]) == cfg.nextline_choices and len(set(row["choices"])) == cfg.nextline_choices
        assert 0 <= row["label"] < cfg.nextline_choices and row["context"].endswith("\n")
    completions = [json.loads(x) for x in (tmp_path / "local_complete.jsonl").read_text().splitlines()]
    assert [c["answer"] for c in completions] == [r["choices"][r["label"]] for r in rows]
    assert write_local_tasks(documents[:1], tmp_path / "one", cfg) == ["local_ppl"]  # no distractors


def test_evaluate_local_tasks_through_simple_evaluate(model, tokenizer, documents, tmp_path):
    model.train()
    try:
        metrics = evaluate(model, tokenizer, TINY, tmp_path, limit=4, documents=documents[6:])
        assert model.training  # the caller's mode is restored
    finally:
        model.eval()
    assert set(metrics) == {"local_ppl/word_perplexity", "local_ppl/byte_perplexity", "local_ppl/bits_per_byte",
                            "local_nextline/acc", "local_nextline/acc_norm"}
    assert 0.0 < metrics["local_ppl/bits_per_byte"] < 20.0
    assert 0.0 <= metrics["local_nextline/acc"] <= 1.0
    record = json.loads((tmp_path / "eval_results.json").read_text())
    assert record["metrics"] == metrics and record["skipped"] == {}


def test_generation_task_through_simple_evaluate(model, tokenizer, documents, tmp_path):
    metrics = evaluate(model, tokenizer, TINY, tmp_path, tasks=["local_complete"], limit=2, documents=documents[6:],
                       config=EvalConfig(local=LocalTaskConfig(complete_max_tokens=6)))
    assert set(metrics) == {"local_complete/exact_match"} and 0.0 <= metrics["local_complete/exact_match"] <= 1.0


def test_standard_task_offline_is_skipped_with_one_line(model, tokenizer, documents, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="model_discovery.verify.evaluation"):
        metrics = evaluate(model, tokenizer, TINY, tmp_path, tasks=["piqa", "local_nextline"], limit=3,
                           documents=documents[6:])
    assert set(metrics) == {"local_nextline/acc", "local_nextline/acc_norm"}
    lines = [r.getMessage() for r in caplog.records if "piqa" in r.getMessage()]
    assert len(lines) == 1 and "skipped" in lines[0] and "\n" not in lines[0]
    assert "piqa" in json.loads((tmp_path / "eval_results.json").read_text())["skipped"]


def test_empty_task_list_is_a_clear_error(model, tokenizer, documents, tmp_path):
    with pytest.raises(EvalError, match="no evaluation tasks"):
        evaluate(model, tokenizer, TINY, tmp_path, tasks=[], documents=documents)


@pytest.mark.slow  # indexes every built-in lm-eval task to know that the name is unknown
def test_unknown_task_is_a_clear_error(model, tokenizer, documents, tmp_path):
    with pytest.raises(EvalError, match="unknown evaluation task 'no_such_task'"):
        evaluate(model, tokenizer, TINY, tmp_path, tasks=["no_such_task"], documents=documents)


def test_flatten_results():
    res = {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A", "em,strict": 1.0, "x,none": float("nan")}}
    assert flatten_results(res) == {"t/acc": 0.5, "t/em_strict": 1.0}


@pytest.mark.slow  # lm-eval's hf model loads the exported folder through transformers (about a minute)
def test_export_scores_and_generates_the_same_under_lm_eval_hf(model, tokenizer, documents, tmp_path):
    """`lm_eval --model hf` on the exported folder gives our adapter's metrics and generations."""
    import lm_eval.models.huggingface  # noqa: F401 - registers the "hf" model
    from lm_eval import simple_evaluate

    from model_discovery.gau.hf_export import export_hf

    names = write_local_tasks(documents[6:], tmp_path / "tasks", LocalTaskConfig(complete_max_tokens=6))
    assert {"local_ppl", "local_nextline", "local_complete"} <= set(names)
    specs = [str(tmp_path / "tasks" / f"{n}.yaml") for n in ("local_ppl", "local_nextline", "local_complete")]
    folder = export_hf(load_seed("gpt2"), TINY, tmp_path / "hf", state_dict=model.state_dict(), tokenizer=tokenizer)
    kw = {"tasks": specs, "limit": 4, "bootstrap_iters": 0, "log_samples": True, "random_seed": 0,
          "numpy_random_seed": 0, "torch_random_seed": 0, "fewshot_random_seed": 0}
    ours = simple_evaluate(model=ModisLM(model, tokenizer, batch_size=4, device="cpu"), **kw)
    theirs = simple_evaluate(model="hf", model_args=f"pretrained={folder},trust_remote_code=True,dtype=float32",
                             device="cpu", **kw)
    assert flatten_results(ours["results"]) == flatten_results(theirs["results"])
    generated = [[s["resps"] for s in run["samples"]["local_complete"]] for run in (ours, theirs)]
    assert generated[0] == generated[1] and any(r[0][0].strip() for r in generated[0])
