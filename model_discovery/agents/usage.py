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
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_discovery.errors import field_error
from model_discovery.records.config_file import ConfigFile
from model_discovery.safe_io import write_text

#: file of a run directory that holds every LLM call of the run (a JSON list; a resumed run appends)
USAGE_FILE = "usage.json"

_CURRENT_DESIGN: contextvars.ContextVar[str | None] = contextvars.ContextVar("modis_design", default=None)


def default_price_file() -> Path:
    return Path(__file__).resolve().parents[2] / "etc" / "agent_spec" / "prices" / "llm_prices.yaml"


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    prompt_per_mtok: float = Field(ge=0)
    completion_per_mtok: float = Field(ge=0)


class PriceTable(ConfigFile):
    """Model name (or name prefix) -> price. Unknown models cost 0 and are reported unpriced."""

    config_kind: ClassVar[str] = "price table"
    model_config = ConfigDict(extra="forbid")
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PriceTable":
        """The table of ``path`` (default: the shipped one); :class:`ConfigError` names the file."""
        return super().load(path if path is not None else default_price_file())

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


class UsageBudget(BaseModel):
    """Limits on what the agents of a run may spend; None: no limit."""

    model_config = ConfigDict(extra="forbid")
    max_usd: float | None = Field(None, ge=0, description="US dollars over all LLM calls of the run")
    max_tokens: int | None = Field(None, ge=0, description="prompt + completion tokens over all LLM calls")

    def exceeded(self, totals: UsageTotals) -> str | None:
        """One line saying which limit ``totals`` reached, or None."""
        tokens = totals.prompt_tokens + totals.completion_tokens
        if self.max_usd is not None and totals.usd >= self.max_usd:
            return f"agent budget spent: ${totals.usd:.4f} of ${self.max_usd:g}"
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"agent budget spent: {tokens:,} of {self.max_tokens:,} tokens"
        return None


class BudgetExceeded(RuntimeError):
    """An LLM call was refused because the run's agent budget is spent; one line."""


class UsageLedger:
    """Thread-safe list of usage records with totals by role and by design.

    With a ``budget``, :meth:`guard` (called by every backend before a request) raises
    :class:`BudgetExceeded` once the totals reach a limit, so a run stops at a step boundary
    instead of spending more.
    """

    def __init__(self, prices: PriceTable | None = None, budget: UsageBudget | None = None) -> None:
        self.prices = prices if prices is not None else PriceTable.load()
        self.budget = budget or UsageBudget()
        self._records: list[UsageRecord] = []
        self._lock = threading.Lock()

    def guard(self) -> None:
        """Raise :class:`BudgetExceeded` when the budget is spent."""
        problem = self.exceeded()
        if problem:
            raise BudgetExceeded(problem)

    def exceeded(self) -> str | None:
        """Which limit of the budget is reached, or None."""
        return self.budget.exceeded(self.total())

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

    def retag(self, old: str, new: str) -> int:
        """Tag the records tagged ``old`` with ``new`` (a design run's id with the design it made)."""
        with self._lock:
            hits = [r for r in self._records if r.design == old]
            for r in hits:
                r.design = new
        return len(hits)

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
            detail = field_error(exc) if isinstance(exc, ValidationError) else " ".join(str(exc).split())[:200]
            raise ValueError(f"{path}: not a usage ledger: {detail}") from exc

    def save(self, path: str | Path) -> Path:
        """Write all records as a JSON list (atomically: a reader never sees half a file)."""
        return write_text(path, json.dumps([r.model_dump() for r in self.records], indent=1))

    def load(self, path: str | Path) -> int:
        """Append the records of a file :meth:`save` wrote (a resumed run keeps its spending);
        a missing file adds nothing. Errors name the file."""
        path = Path(path)
        if not path.exists():
            return 0
        items = self.load_records(path)
        with self._lock:
            self._records.extend(items)
        return len(items)

    def summary(self) -> str:
        """One line for the run's summary: totals, then per role."""
        t = self.total()
        if not t.calls:
            return ""
        roles = "; ".join(f"{role} {r.calls} calls {r.prompt_tokens + r.completion_tokens:,} tok ${r.usd:.4f}"
                          for role, r in sorted(self.by_role().items()))
        unpriced = sorted({r.model for r in self.records if not r.priced})
        note = f" (unpriced: {', '.join(unpriced)})" if unpriced else ""
        return (f"agents: {t.calls} calls, {t.prompt_tokens:,} prompt + {t.completion_tokens:,} completion tokens, "
                f"${t.usd:.4f}{note} - {roles}")
