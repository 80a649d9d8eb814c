"""Where the verification corpus comes from (:class:`DataConfig`); the corpus itself is
:mod:`model_discovery.train.corpus`."""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT_VERSION = 1


class DataConfig(BaseModel):
    """Where the verification corpus comes from and how it is split and capped."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["stdlib", "hf"] = "stdlib"
    max_bytes: int = Field(8_000_000, gt=0, description="cap on the corpus size (UTF-8 bytes, all splits)")
    val_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    salt: str = Field("modis", description="mixed into the split hash; change it for another split")
    hf_dataset: str | None = Field(None, description="hub dataset name (e.g. 'roneneldan/TinyStories') "
                                                   "or a local dataset folder (json/parquet/text files)")
    hf_config: str | None = None
    hf_split: str = "train"
    text_field: str = "text"
    hf_tokenizer: str | None = Field(None, description="hub tokenizer name or tokenizer.json path; "
                                     "None trains a byte-level BPE on the train split")

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.source == "hf" and not self.hf_dataset:
            raise ValueError("hf_dataset is required when source is 'hf'")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self

    def corpus_key(self) -> str:
        """Cache key of the raw corpus (settings + format + the Python that provides stdlib)."""
        fields = self.model_dump(exclude={"hf_tokenizer"})
        if self.source == "stdlib":
            fields.update(python=sys.version.split()[0], stdlib=sysconfig.get_paths()["stdlib"])
            for name in ("hf_dataset", "hf_config", "hf_split", "text_field"):
                fields.pop(name)
        blob = json.dumps({"format": FORMAT_VERSION, **fields}, sort_keys=True)
        return f"{self.source}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def tokens_key(self, vocab_size: int) -> str:
        tok = self.hf_tokenizer or "bpe"
        tag = hashlib.sha256(tok.encode()).hexdigest()[:6]
        return f"{self.corpus_key()}-v{vocab_size}-{tag}"
