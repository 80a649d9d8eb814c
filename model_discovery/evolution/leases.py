"""Verification leases and per-rung budgets: no two workers verify the same (design, scale).

* A claim is an insert on the lease's primary key, which fails for everyone but the first; an
  expired lease can be taken over, the holder re-claiming renews it, and storing the result
  drops it (:meth:`~.results.ResultsMixin.add_result`, in the same transaction).
* A rung spends its results' seeds plus its live leases' seeds. A budgeted claim locks the
  rung's budget row, then checks budget and lease in the SAME transaction: concurrent claimers
  never overrun the budget.
"""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from model_discovery.evolution.schema import BudgetRow, DesignRow, LeaseRow, ResultRow
from model_discovery.evolution.store import TreeError, TreeStore, _dt, _now
from model_discovery.records import LeaseRecord


class LeasesMixin(TreeStore):
    """Claiming, releasing and listing verification leases; persisting and spending budgets."""

    @staticmethod
    def _spent(s: Session, scale: str, now: float) -> int:
        done = s.scalar(select(func.sum(ResultRow.seeds)).where(ResultRow.scale == scale)) or 0
        live = s.scalar(select(func.sum(LeaseRow.seeds))
                        .where(LeaseRow.scale == scale, LeaseRow.expires_at > now)) or 0
        return int(done) + int(live)

    @staticmethod
    def _lock_budget(s: Session, scale: str) -> BudgetRow:
        row = s.scalar(select(BudgetRow).where(BudgetRow.scale == scale).with_for_update())
        if row is None:
            with suppress(IntegrityError):
                with s.begin_nested():
                    s.add(BudgetRow(scale=scale, limit=None))
            row = s.scalar(select(BudgetRow).where(BudgetRow.scale == scale).with_for_update())
        assert row is not None
        return row

    def claim_verification(self, name: str, scale: str, owner: str, ttl_s: float = 3600.0,
                           budget: int | None = None, seeds: int = 1, replicate: bool = False) -> bool:
        """Try to take the lease to verify ``name`` at ``scale``; True if ``owner`` now holds it.

        The lease stands for ``seeds`` training runs. Fails when another owner holds a live
        lease, when a result already exists (with ``replicate``: when none does, since replicate
        seeds add to a stored result), or when ``budget`` is given and the rung's training runs
        (results' seeds plus live leases' seeds) would exceed it (checked in the same
        transaction, so concurrent claimers never overrun the budget). An expired lease is taken
        over; the holder re-claiming renews its lease.
        """
        if ttl_s <= 0:
            raise TreeError(f"lease ttl must be positive, got {ttl_s}")
        try:
            with self._tx(write=True) as s:
                did = self._id(s, name)
                if budget is not None:
                    self._lock_budget(s, scale)  # serialises budgeted claims of this rung
                exists = s.scalar(select(ResultRow.id).where(ResultRow.design_id == did, ResultRow.scale == scale))
                if bool(exists) != replicate:
                    return False
                now = _now()
                lease = s.scalar(select(LeaseRow).where(LeaseRow.design_id == did, LeaseRow.scale == scale)
                                 .with_for_update(skip_locked=True))
                if lease is not None:
                    if lease.owner != owner and lease.expires_at > now:
                        return False
                    renewing = lease.owner == owner and lease.expires_at > now
                    if budget is not None and not renewing and self._spent(s, scale, now) + seeds > budget:
                        return False
                    lease.owner, lease.expires_at, lease.seeds = owner, now + ttl_s, seeds
                    return True
                if budget is not None and self._spent(s, scale, now) + seeds > budget:
                    return False
                s.add(LeaseRow(design_id=did, scale=scale, owner=owner, expires_at=now + ttl_s, seeds=seeds))
                s.flush()
                return True
        except IntegrityError:
            return False  # another owner inserted the lease first (or holds it locked)

    def release(self, name: str, scale: str, owner: str | None = None) -> bool:
        """Drop the lease on (name, scale), only if held by ``owner`` when given; True if dropped."""
        with self._tx(write=True) as s:
            did = self._id(s, name)
            q = delete(LeaseRow).where(LeaseRow.design_id == did, LeaseRow.scale == scale)
            if owner is not None:
                q = q.where(LeaseRow.owner == owner)
            return bool(s.execute(q).rowcount)

    def leases(self, scale: str | None = None, *, live_only: bool = False) -> list[LeaseRecord]:
        """Leases (of one rung, only the live ones when asked), the soonest to expire first."""
        now = _now()
        q = select(LeaseRow, DesignRow.name).join(DesignRow, DesignRow.id == LeaseRow.design_id)
        if scale is not None:
            q = q.where(LeaseRow.scale == scale)
        if live_only:
            q = q.where(LeaseRow.expires_at > now)
        with self._tx() as s:
            return [LeaseRecord(design=n, scale=l.scale, owner=l.owner, expires_at=_dt(l.expires_at),
                                expired=l.expires_at <= now) for l, n in s.execute(q.order_by(LeaseRow.expires_at))]

    def set_budget(self, scale: str, limit: int | None) -> None:
        """Persist this run's verification budget of one rung (None: the ladder's default)."""
        if limit is not None and limit < 0:
            raise TreeError(f"budget of scale {scale!r} must be >= 0, got {limit}")
        with self._tx(write=True) as s:
            row = self._lock_budget(s, scale)
            row.limit = limit

    def budgets(self) -> dict[str, int | None]:
        """Budgets persisted with :meth:`set_budget` (scales never set are absent)."""
        with self._tx() as s:
            return {r.scale: r.limit for r in s.scalars(select(BudgetRow)) if r.limit is not None}

    def spent(self, scale: str) -> int:
        """Verifications used at a rung: stored results plus live leases."""
        with self._tx() as s:
            return self._spent(s, scale, _now())
