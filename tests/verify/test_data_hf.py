"""The Hugging Face data path, run for real on a local dataset folder and a tokenizer.json."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from model_discovery.records import DataConfig
from model_discovery.train.corpus import DataError, load_token_data

WORDS = ("the cat sat on a mat while the dog ran over hills and rivers under a quiet moon "
         "people build models that learn language from text one token at a time").split()


def _dataset(root: Path, n_docs: int = 300) -> Path:
    rng = random.Random(0)
    root.mkdir(parents=True)
    with (root / "train.jsonl").open("w") as fh:
        for i in range(n_docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            fh.write(json.dumps({"id": i, "story": f"Story {i}. {text}."}) + "\n")
    return root


def test_local_hf_dataset_builds_splits_and_tokenizer(tmp_path: Path) -> None:
    cfg = DataConfig(source="hf", hf_dataset=str(_dataset(tmp_path / "stories")), text_field="story",
                     max_bytes=200_000)
    data = load_token_data(512, cfg, cache_dir=tmp_path / "cache")
    assert data.vocab_size == 512 and all(len(s) > 0 for s in (data.train, data.val, data.test))
    assert data.train.dtype == np.uint16 and int(data.train.max()) < 512
    text = "Story 7. the cat sat on a mat."
    assert data.tokenizer.decode(data.tokenizer.encode(text).ids) == text
    again = load_token_data(512, cfg, cache_dir=tmp_path / "cache")  # cached: same tokens
    assert np.array_equal(np.asarray(again.train), np.asarray(data.train))

    tok_path = tmp_path / "tok.json"
    data.tokenizer.save(str(tok_path))
    named = load_token_data(512, cfg.model_copy(update={"hf_tokenizer": str(tok_path)}), cache_dir=tmp_path / "c2")
    assert named.vocab_size == data.tokenizer.get_vocab_size() and len(named.train) == len(data.train)


def test_missing_text_field_names_the_field(tmp_path: Path) -> None:
    cfg = DataConfig(source="hf", hf_dataset=str(_dataset(tmp_path / "stories", 20)), text_field="text")
    with pytest.raises(DataError, match=r"field text_field='text' not in row keys \['id', 'story'\]"):
        load_token_data(512, cfg, cache_dir=tmp_path / "cache")


def test_verification_job_trains_on_the_configured_dataset(tmp_path: Path) -> None:
    from model_discovery.gau import load_seed
    from model_discovery.records import VerifyOptions
    from model_discovery.runners import VerifyJob, execute_job

    data = {"source": "hf", "hf_dataset": str(_dataset(tmp_path / "stories")), "text_field": "story",
            "max_bytes": 200_000}
    job = VerifyJob(design=load_seed("gpt2"), scale="micro", out_dir=str(tmp_path / "v"),
                    options=VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=4096, data=data))
    record = execute_job(job)
    assert record.status == "ok", record.error
    meta = json.loads((Path(record.data_dir) / "meta.json").read_text())
    assert "stories" in json.dumps(meta) and record.train is not None and record.train.tokens >= 4096
