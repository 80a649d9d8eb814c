"""Token and cost accounting: every LLM call is one :class:`UsageRecord` in a :class:`UsageLedger`.

Costs come from a small price table (``etc/agent_spec/prices/llm_prices.yaml``: USD per million
prompt / completion tokens, by model name or model-name prefix). Records are tagged with the
role and with the design being worked on, set by the design flow through
:meth:`UsageLedger.design_scope`, so totals can be read per role and per design.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from model_discovery.errors import field_error

#: folder of a run directory that holds the LLM usage records, one JSON list per process
USAGE_DIR = "usage"

_CURRENT_DESIGN: contextvars.ContextVar[str | None] = contextvars.ContextVar("modis_design", default=None)


def default_price_file() -> Path:
    return Path(__file__).resolve().parents[2] / "etc" / "agent_spec" / "prices" / "llm_prices.yaml"


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    prompt_per_mtok: float = Field(ge=0)
    completion_per_mtok: float = Field(ge=0)


class PriceTable(BaseModel):
    """Model name (or name prefix) -> price. Unknown models cost 0 and are reported unpriced."""

    model_config = ConfigDict(extra="forbid")
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PriceTable":
        path = Path(path) if path is not None else default_price_file()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ValueError(f"{path}: cannot read price table: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{path}: {field_error(exc)}") from exc

    def price(self, model: str) -> ModelPrice | None:
        """Exact match first, then the longest matching prefix (``gpt-4o`` prices ``gpt-4o-2024-08-06``)."""
        if model in self.models:
            return self.models[model]
        best = max((k for k in self.models if model.startswith(k)), key=len, default=None)
        return self.models[best] if best else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        p = self.price(model)
        if p is None:
            return None
        return (prompt_tokens * p.prompt_per_mtok + completion_tokens * p.completion_per_mtok) / 1e6


class UsageRecord(BaseModel):
    """One completed LLM call (all its retries counted in ``attempts``)."""

    model_config = ConfigDict(extra="forbid")
    role: str
    provider: str
    model: str
    design: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    priced: bool = True
    attempts: int = 1
    latency_s: float = 0.0
    ts: float = Field(default_factory=time.time)


class UsageTotals(BaseModel):
    """Sums over a set of records."""

    calls: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0

    def add(self, r: UsageRecord) -> None:
        self.calls += 1
        self.attempts += r.attempts
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.usd += r.usd


class UsageLedger:
    """Thread-safe list of usage records with totals by role and by design."""

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices if prices is not None else PriceTable.load()
        self._records: list[UsageRecord] = []
        self._lock = threading.Lock()

    @contextmanager
    def design_scope(self, design: str) -> Iterator[None]:
        """Tag every call made inside the block (in this thread / task) with ``design``."""
        token = _CURRENT_DESIGN.set(design)
        try:
            yield
        finally:
            _CURRENT_DESIGN.reset(token)

    def record(self, *, role: str, provider: str, model: str, prompt_tokens: int,
               completion_tokens: int, attempts: int = 1, latency_s: float = 0.0,
               design: str | None = None) -> UsageRecord:
        cost = self.prices.cost(model, prompt_tokens, completion_tokens)
        rec = UsageRecord(role=role, provider=provider, model=model,
                          design=design if design is not None else _CURRENT_DESIGN.get(),
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          usd=cost or 0.0, priced=cost is not None, attempts=attempts,
                          latency_s=latency_s)
        with self._lock:
            self._records.append(rec)
        return rec

    @property
    def records(self) -> list[UsageRecord]:
        with self._lock:
            return list(self._records)

    def total(self) -> UsageTotals:
        out = UsageTotals()
        for r in self.records:
            out.add(r)
        return out

    def _group(self, key: str) -> dict[str, UsageTotals]:
        out: dict[str, UsageTotals] = {}
        for r in self.records:
            out.setdefault(getattr(r, key) or "-", UsageTotals()).add(r)
        return out

    def by_role(self) -> dict[str, UsageTotals]:
        return self._group("role")

    def by_design(self) -> dict[str, UsageTotals]:
        """Totals per design tag (calls made outside any design scope are under ``"-"``)."""
        return self._group("design")

    @staticmethod
    def load_records(path: str | Path) -> list[UsageRecord]:
        """The records of a file written by :meth:`save` (raises ``ValueError`` naming the file)."""
        try:
            return [UsageRecord.model_validate(r) for r in json.loads(Path(path).read_text())]
        except (OSError, ValueError, TypeError, ValidationError) as exc:
            raise ValueError(f"{path}: {field_error(exc) if isinstance(exc, ValidationError) else exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write all records as a JSON list."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([r.model_dump() for r in self.records], indent=1))
        return path
