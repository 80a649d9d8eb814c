"""Verification results (one per design and rung), the leaderboard over them, the tree's counts.

* Storing a result replaces the one at that rung and, in the same transaction, drops the lease
  on it and marks the design 'verified' when the result is 'ok'.
* ``fitness`` is the mean over the result's training seeds, ``fitness_se`` its standard error;
  :meth:`ResultsMixin.set_fitness` rewrites both later and leaves the record as it is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from model_discovery.evolution.schema import DesignRow, EdgeRow, LeaseRow, ResultRow, UnitRow
from model_discovery.evolution.store import TreeError, TreeStore, _dt, _jsonable, _now, _scale_rank
from model_discovery.records import LeaderboardRow, ResultRecord, TreeStats

#: metrics where lower is better (used by :meth:`ResultsMixin.leaderboard` by default)
LOWER_IS_BETTER = ("loss", "bpb", "bits_per_byte", "ppl", "perplexity", "seconds", "time")


def _dig(data: Mapping[str, Any], path: str) -> float | None:
    """A number at a dotted path in a result record, or None."""
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, bool) or not isinstance(cur, (int, float)):
        return None
    return float(cur)


class ResultsMixin(TreeStore):
    """Storing, rescoring, listing and ranking verification results; counts of the whole tree."""

    def add_result(self, name: str, scale: str, record: Any, fitness: float | None = None,
                   status: str = "ok", *, fitness_se: float | None = None, seeds: int = 1) -> ResultRecord:
        """Store (or replace) the verification result of ``name`` at ``scale``.

        ``record`` is a mapping or pydantic model (stored as JSON); ``fitness`` is the mean over
        ``seeds`` training seeds and ``fitness_se`` its standard error. The lease on (name, scale)
        is released, and a design with an 'ok' result becomes 'verified'.
        """
        data = _jsonable(record)
        if not isinstance(data, Mapping):
            raise TreeError(f"result record must be a mapping or pydantic model, got {type(record).__name__}")
        text = json.dumps(data, sort_keys=True)
        fit = None if fitness is None else float(fitness)
        se = None if fitness_se is None else float(fitness_se)
        now = _now()
        for attempt in range(2):
            try:
                with self._tx(write=True) as s:
                    row = self._row(s, name)
                    res = s.scalar(select(ResultRow).where(ResultRow.design_id == row.id, ResultRow.scale == scale))
                    if res is None:
                        s.add(ResultRow(design_id=row.id, scale=scale, data=text, fitness=fit, fitness_se=se,
                                        seeds=seeds, status=status, created_at=now))
                    else:
                        res.data, res.fitness, res.status, res.created_at = text, fit, status, now
                        res.fitness_se, res.seeds = se, seeds
                    s.execute(delete(LeaseRow).where(LeaseRow.design_id == row.id, LeaseRow.scale == scale))
                    if status == "ok":
                        row.status = "verified"
                break
            except IntegrityError:
                if attempt:
                    raise
        return ResultRecord(design=name, scale=scale, record=dict(data), fitness=fit, fitness_se=se, seeds=seeds,
                            status=status, created_at=_dt(now))

    def set_fitness(self, name: str, scale: str, fitness: float | None, fitness_se: float | None = None) -> None:
        """Rewrite the fitness (and its standard error) of a stored result, e.g. once the
        baseline at that rung exists."""
        with self._tx(write=True) as s:
            did = self._id(s, name)
            n = s.execute(update(ResultRow).where(ResultRow.design_id == did, ResultRow.scale == scale)
                          .values(fitness=fitness, fitness_se=fitness_se)).rowcount
            if not n:
                raise TreeError(f"design {name!r} has no result at scale {scale!r}")

    def results(self, name: str | None = None, scale: str | None = None) -> list[ResultRecord]:
        """Verification results, optionally of one design and/or at one scale, oldest first."""
        q = select(ResultRow, DesignRow.name).join(DesignRow, DesignRow.id == ResultRow.design_id)
        with self._tx() as s:
            if name is not None:
                q = q.where(ResultRow.design_id == self._id(s, name))
            if scale is not None:
                q = q.where(ResultRow.scale == scale)
            q = q.order_by(ResultRow.created_at, ResultRow.id)
            return [ResultRecord(design=n, scale=r.scale, record=json.loads(r.data), fitness=r.fitness,
                                 fitness_se=r.fitness_se, seeds=r.seeds, status=r.status,
                                 created_at=_dt(r.created_at)) for r, n in s.execute(q)]

    def leaderboard(self, scale: str | None = None, metric: str = "fitness", *,
                    descending: bool | None = None, limit: int | None = None) -> list[LeaderboardRow]:
        """Results ranked by ``metric`` ('fitness' or a dotted path into the result record).

        Loss-like metrics (names containing loss, bpb, ppl, ...) rank ascending, others
        descending, unless ``descending`` says otherwise. Without ``scale``, larger rungs come
        first and rank within each rung. Rows with no value come last.
        """
        if descending is None:
            descending = not any(tag in metric.lower() for tag in LOWER_IS_BETTER)
        q = (select(ResultRow, DesignRow.name, DesignRow.operator, DesignRow.generation)
             .join(DesignRow, DesignRow.id == ResultRow.design_id))
        if scale is not None:
            q = q.where(ResultRow.scale == scale)
        with self._tx() as s:
            raw = []
            for r, n, op, gen in s.execute(q):
                data = json.loads(r.data)
                value = r.fitness if metric == "fitness" else _dig(data, metric)
                raw.append((r.scale, n, value, r.fitness, r.status, op, gen, r.id, r.fitness_se, r.seeds))

        def key(item: tuple) -> tuple:
            value = item[2]
            missing = value is None
            v = 0.0 if missing else (-value if descending else value)
            return (-_scale_rank(item[0]), item[0], missing, v, item[7])

        raw.sort(key=key)
        rows: list[LeaderboardRow] = []
        rank_in: dict[str, int] = defaultdict(int)
        for sc, n, value, fit, st, op, gen, _, se, seeds in raw:
            rank_in[sc] += 1
            rows.append(LeaderboardRow(rank=rank_in[sc], design=n, scale=sc, value=value, fitness=fit, status=st,
                                       operator=op, generation=gen, fitness_se=se, seeds=seeds))
        return rows[:limit] if limit is not None else rows

    def stats(self) -> TreeStats:
        """Counts of the whole tree: designs by status and operator, units, edges, results, live leases."""
        now = _now()
        with self._tx() as s:
            by_status = {k: int(v) for k, v in s.execute(select(DesignRow.status, func.count()).group_by(DesignRow.status))}
            by_op = {k: int(v) for k, v in s.execute(select(DesignRow.operator, func.count()).group_by(DesignRow.operator))}
            res = {k: int(v) for k, v in s.execute(select(ResultRow.scale, func.count()).group_by(ResultRow.scale))}
            leases = {k: int(v) for k, v in s.execute(select(LeaseRow.scale, func.count())
                                                      .where(LeaseRow.expires_at > now).group_by(LeaseRow.scale))}
            return TreeStats(
                designs=sum(by_status.values()), by_status=by_status, by_operator=by_op,
                seeds=int(s.scalar(select(func.count()).select_from(DesignRow).where(DesignRow.n_parents == 0)) or 0),
                units=int(s.scalar(select(func.count()).select_from(UnitRow)) or 0),
                distinct_units=int(s.scalar(select(func.count(func.distinct(UnitRow.source_hash)))) or 0),
                edges=int(s.scalar(select(func.count()).select_from(EdgeRow)) or 0),
                results_by_scale=dict(sorted(res.items(), key=lambda kv: _scale_rank(kv[0]))),
                leases_by_scale=leases,
                max_generation=int(s.scalar(select(func.max(DesignRow.generation))) or 0))
