"""The corpus: text and token streams for verification and the checker's effectiveness check.

Two sources, chosen by :class:`DataConfig`:

- ``stdlib`` (default, needs no network): the ``.py`` sources of the running Python's standard
  library, one document per file. Files are assigned to train/val/test by a hash of their path,
  so the split is by file and identical on every run; ``max_bytes`` caps the corpus.
- ``hf``: any Hugging Face dataset (streamed) and optionally a hub tokenizer; documents are
  assigned to splits by a hash of their text.

Built artefacts live under ``$MODIS_CACHE`` (default ``~/.cache/model_discovery``)::

    corpus/<corpus key>/{train,val,test}.jsonl, meta.json        raw documents
    tokens/<corpus key>-v<vocab>/tokenizer.json, {train,val,test}.bin, meta.json

``.bin`` files are flat ``uint16`` token ids, documents separated by the end-of-text token, read
back as memory maps. Every directory is built in a temporary sibling and renamed into place under
a file lock, so concurrent builders neither corrupt nor duplicate it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from model_discovery.records.data import FORMAT_VERSION, DataConfig
from model_discovery.paths import cache_root
from model_discovery.train.tokenizer import MAX_UINT16_VOCAB, eot_id, load_tokenizer, train_bpe

SPLITS: tuple[str, ...] = ("train", "val", "test")
_ENCODE_CHUNK = 256  # documents per encode_batch call


class DataError(RuntimeError):
    """The corpus or token data cannot be built or read; the message is one line."""


@dataclass
class TokenData:
    """A tokenizer and the three packed token streams (read-only ``uint16`` memory maps)."""

    tokenizer: Tokenizer
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    vocab_size: int
    eot_id: int
    path: Path

    @classmethod
    def open(cls, path: str | Path) -> "TokenData":
        """Open a built token directory (as made by :func:`load_token_data`)."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise DataError(f"{path}: not a built token directory (no meta.json)")
        meta = json.loads(meta_path.read_text())
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        arrays = {}
        for split in SPLITS:
            file = path / f"{split}.bin"
            arrays[split] = (np.memmap(file, dtype=np.uint16, mode="r") if file.stat().st_size
                             else np.zeros(0, dtype=np.uint16))
        return cls(tokenizer=tok, vocab_size=int(meta["vocab_size"]), eot_id=int(meta["eot_id"]),
                   path=path, **arrays)

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, name)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def build_atomic(final: Path, build: Callable[[Path], None]) -> Path:
    """Return ``final``, building it first with ``build(tmp_dir)`` if it is not complete yet.

    The build writes into a temporary sibling that is renamed into place; ``meta.json`` marks a
    complete directory. A lock file serialises concurrent builders of the same directory.
    """
    if (final / "meta.json").exists():
        return final
    with _file_lock(final.parent / f".{final.name}.lock"):
        if (final / "meta.json").exists():
            return final
        if final.exists():  # left by something else; never complete, so rebuild
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            build(tmp)
            if not (tmp / "meta.json").exists():
                raise DataError(f"{final}: build wrote no meta.json")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


# -- documents ---------------------------------------------------------------------------------
def _bucket(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _assign(key: str, config: DataConfig) -> str:
    u = _bucket(key, config.salt)
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


def stdlib_files(config: DataConfig) -> list[tuple[str, Path, str]]:
    """(relative path, path, split) of the stdlib ``.py`` files in the corpus, in corpus order.

    Each file's split comes from a hash of its relative path. Files are visited in the order of
    another hash (a spread-out sample) and a file is taken while its split holds less than its
    share of ``max_bytes`` (``val_fraction``, ``test_fraction``, the rest for train). Third-party
    packages and empty files are skipped.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"{root}: the standard library sources are not installed")
    entries = []
    for path in root.rglob("*.py"):
        if {"site-packages", "dist-packages", "__pycache__"} & set(path.parts):
            continue
        rel = path.relative_to(root).as_posix()
        entries.append((hashlib.sha256(f"{config.salt}:order:{rel}".encode()).hexdigest(), rel, path))
    entries.sort()
    share = {"val": config.val_fraction * config.max_bytes, "test": config.test_fraction * config.max_bytes}
    share["train"] = config.max_bytes - share["val"] - share["test"]
    filled = {s: 0 for s in SPLITS}
    out: list[tuple[str, Path, str]] = []
    for _, rel, path in entries:
        split = _assign(rel, config)
        if filled[split] >= share[split]:
            if all(filled[s] >= share[s] for s in SPLITS):
                break
            continue
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size:
            out.append((rel, path, split))
            filled[split] += size
    return out


def _stdlib_splits(config: DataConfig) -> dict[str, list[str]]:
    docs: dict[str, list[str]] = {s: [] for s in SPLITS}
    for _rel, path, split in stdlib_files(config):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            docs[split].append(text)
    return docs


def _hf_splits(config: DataConfig) -> dict[str, list[str]]:
    name = config.hf_dataset
    try:
        import datasets

        ds = datasets.load_dataset(name, config.hf_config, split=config.hf_split, streaming=True)
        docs: dict[str, list[str]] = {s: [] for s in SPLITS}
        total = 0
        for i, row in enumerate(ds):
            if config.text_field not in row:
                raise DataError(f"hf dataset {name!r}: field text_field={config.text_field!r} not in "
                                f"row keys {sorted(row)}")
            text = row[config.text_field]
            if not isinstance(text, str) or not text.strip():
                continue
            docs[_assign(f"{i}:{text[:256]}", config)].append(text)
            total += len(text.encode("utf-8"))
            if total >= config.max_bytes:
                break
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth, missing dataset: all one line
        raise DataError(f"hf dataset {name!r} is unreachable: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:300]}") from exc
    if not docs["train"]:
        raise DataError(f"hf dataset {name!r}: no text in field {config.text_field!r}")
    return docs


def _build_corpus(config: DataConfig, tmp: Path) -> None:
    docs = _stdlib_splits(config) if config.source == "stdlib" else _hf_splits(config)
    counts = {}
    for split in SPLITS:
        with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for text in docs[split]:
                fh.write(json.dumps(text) + "\n")
        counts[split] = {"documents": len(docs[split]),
                         "bytes": sum(len(t.encode("utf-8")) for t in docs[split])}
    (tmp / "meta.json").write_text(json.dumps({"config": config.model_dump(), "splits": counts}, indent=2))


def corpus_dir(config: DataConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """The built raw-corpus directory for ``config`` (built on first use)."""
    config = config or DataConfig()
    final = cache_root(cache_dir) / "corpus" / config.corpus_key()
    return build_atomic(final, lambda tmp: _build_corpus(config, tmp))


def corpus_documents(split: str, config: DataConfig | None = None,
                     cache_dir: str | Path | None = None) -> list[str]:
    """Raw text documents of one split (``train``, ``val`` or ``test``), in corpus order."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    path = corpus_dir(config, cache_dir) / f"{split}.jsonl"
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- tokens ------------------------------------------------------------------------------------
def _encode_to_file(tok: Tokenizer, docs: list[str], eot: int, path: Path) -> int:
    n = 0
    with open(path, "wb") as fh:
        for start in range(0, len(docs), _ENCODE_CHUNK):
            ids: list[int] = []
            for enc in tok.encode_batch(docs[start:start + _ENCODE_CHUNK], add_special_tokens=False):
                ids.extend(enc.ids)
                ids.append(eot)
            np.asarray(ids, dtype=np.uint16).tofile(fh)
            n += len(ids)
    return n


def _build_tokens(config: DataConfig, vocab_size: int, corpus: Path, tmp: Path) -> None:
    docs = {s: corpus_documents(s, config, corpus.parent.parent) for s in SPLITS}
    tok = load_tokenizer(config.hf_tokenizer) if config.hf_tokenizer else train_bpe(docs["train"], vocab_size)
    actual = tok.get_vocab_size()
    if actual > MAX_UINT16_VOCAB:
        raise DataError(f"tokenizer {config.hf_tokenizer!r} has {actual} entries; uint16 token files "
                        f"hold at most {MAX_UINT16_VOCAB}")
    eot = eot_id(tok)
    tok.save(str(tmp / "tokenizer.json"))
    sizes = {s: _encode_to_file(tok, docs[s], eot, tmp / f"{s}.bin") for s in SPLITS}
    meta = {"format": FORMAT_VERSION, "config": config.model_dump(), "requested_vocab_size": vocab_size,
            "vocab_size": actual, "eot_id": eot, "tokens": sizes}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_token_data(vocab_size: int, config: DataConfig | None = None,
                    cache_dir: str | Path | None = None) -> TokenData:
    """Tokenizer and packed train/val/test token streams for ``config`` at ``vocab_size``.

    Built once and cached (see the module docstring); later calls only open the memory maps.
    With ``hf_tokenizer`` set, the tokenizer's own vocabulary is used and ``vocab_size`` only
    keys the cache; ``TokenData.vocab_size`` is always the tokenizer's real size.
    """
    config = config or DataConfig()
    if not config.hf_tokenizer and not 257 <= vocab_size <= MAX_UINT16_VOCAB:
        raise DataError(f"vocab_size {vocab_size} must be within [257, {MAX_UINT16_VOCAB}]")
    corpus = corpus_dir(config, cache_dir)
    final = cache_root(cache_dir) / "tokens" / config.tokens_key(vocab_size)
    build_atomic(final, lambda tmp: _build_tokens(config, vocab_size, corpus, tmp))
    data = TokenData.open(final)
    if data.train.size == 0:
        raise DataError(f"{final}: the train split is empty (max_bytes={config.max_bytes} too small?)")
    return data
