"""Corpus, tokenizer and token-stream tests (stdlib source; builds take about a second)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from model_discovery.records import DataConfig
from model_discovery.train.corpus import SPLITS, DataError, TokenData, corpus_documents, load_token_data, stdlib_files
from model_discovery.train.tokenizer import EOT_TOKEN, TokenizerError, train_bpe

SMALL = DataConfig(max_bytes=300_000)


def test_split_is_by_file_and_deterministic(tmp_path: Path) -> None:
    files = stdlib_files(SMALL)
    assert files == stdlib_files(SMALL)
    texts = {path.read_text(encoding="utf-8"): rel for rel, path, _ in files}
    seen: dict[str, str] = {}
    for split in SPLITS:
        docs = corpus_documents(split, SMALL, tmp_path)
        assert docs == corpus_documents(split, SMALL, tmp_path / "again")  # rebuilt elsewhere: same
        for doc in docs:
            rel = texts[doc]  # every document is one whole stdlib file
            assert rel not in seen, f"{rel} is in both {seen[rel]} and {split}"
            seen[rel] = split
    assert set(seen.values()) == set(SPLITS)
    other = DataConfig(max_bytes=300_000, salt="other")
    assert corpus_documents("test", other, tmp_path) != corpus_documents("test", SMALL, tmp_path)


def test_max_bytes_caps_the_corpus() -> None:
    files = stdlib_files(SMALL)
    for split, share in (("val", 0.05), ("test", 0.05), ("train", 0.9)):
        sizes = [path.stat().st_size for _, path, s in files if s == split]
        assert sum(sizes[:-1]) < share * SMALL.max_bytes <= sum(sizes)  # filled to its share, no more
    assert len(stdlib_files(DataConfig(max_bytes=2_000_000))) > len(files)


def test_bpe_round_trips_text_and_has_the_requested_vocab() -> None:
    texts = [path.read_text(encoding="utf-8") for _, path, _ in stdlib_files(SMALL)[:4]]
    tok = train_bpe(texts, 300)
    assert tok.get_vocab_size() == 300
    assert tok.token_to_id(EOT_TOKEN) == 0
    for text in [*texts[:2], "  naïve café ✓ 漢字\r\n\n\tend", ""]:
        assert tok.decode(tok.encode(text).ids) == text
    with pytest.raises(TokenizerError, match="vocab_size 100"):
        train_bpe(texts, 100)


def test_token_streams_are_uint16_memmaps_of_the_documents(tmp_path: Path) -> None:
    data = load_token_data(512, SMALL, tmp_path)
    meta = json.loads((data.path / "meta.json").read_text())
    assert data.vocab_size == 512 and data.tokenizer.get_vocab_size() == 512
    for split in SPLITS:
        arr = data.split(split)
        assert isinstance(arr, np.memmap) and arr.dtype == np.uint16 and arr.ndim == 1
        assert arr.size == meta["tokens"][split] == (data.path / f"{split}.bin").stat().st_size // 2
        assert int(arr.max()) < data.vocab_size
        docs = corpus_documents(split, SMALL, tmp_path)
        assert int((arr == data.eot_id).sum()) == len(docs)  # one end-of-text per document
    first = corpus_documents("val", SMALL, tmp_path)[0]
    end = int(np.argmax(data.val == data.eot_id))
    assert data.tokenizer.decode(data.val[:end].tolist()) == first
    with pytest.raises(DataError, match="unknown split"):
        data.split("dev")


def test_cache_is_reused_and_concurrent_builders_agree(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(load_token_data(400, SMALL, tmp_path).path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    path = results[0]
    stamp = (path / "train.bin").stat().st_mtime_ns
    assert load_token_data(400, SMALL, tmp_path).path == path
    assert (path / "train.bin").stat().st_mtime_ns == stamp
    leftovers = [p.name for p in path.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    reopened = TokenData.open(path)
    assert np.array_equal(reopened.train, np.fromfile(path / "train.bin", dtype=np.uint16))


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hf_dataset is required"):
        DataConfig(source="hf")
    with pytest.raises(DataError, match="vocab_size 70000"):
        load_token_data(70000, SMALL, tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        corpus_documents("dev", SMALL, tmp_path)


def test_unreachable_hf_dataset_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = DataConfig(source="hf", hf_dataset="modis-test/does-not-exist", max_bytes=1000)
    with pytest.raises(DataError) as info:
        load_token_data(512, config, tmp_path)
    message = str(info.value)
    assert "'modis-test/does-not-exist' is unreachable" in message and "\n" not in message
    assert not list((tmp_path / "corpus").glob("hf-*"))  # nothing half-built left behind
