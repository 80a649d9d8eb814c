"""The scheduler: keeps every verification worker busy and records results as they land.

Invariants:

- at most ``runner.capacity`` jobs are in flight; each holds a lease on its (design, scale) in
  the tree, claimed within the rung's budget by ``select_verifications(owner=...)`` and renewed
  by one heartbeat thread until its result is stored (``lease_ttl_s`` after a crash it expires
  and another node may take the pick over);
- a result is stored once, through ``selector.record_result`` (which releases the lease); a
  result whose lease was lost meanwhile is dropped, since the node that took the pick over
  stores its own;
- nothing is written anywhere else, so a ``kill -9`` at any moment loses only work in flight
  (its leases expire or are released by the next run of this host; the verification resumes
  from its checkpoint) and duplicates nothing.

``Scheduler.run`` is the loop of a verification node (``modis serve``); ``DiscoverySystem``
runs the same loop in a background thread while it takes design steps, so design steps never
wait for a verification and new designs are picked up as soon as a worker is free.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from model_discovery.errors import one_line
from model_discovery.evolution import EvolutionTree
from model_discovery.records import ResultRecord, VerifyJob, VerifyOptions, VerifyPick, VerifyResult
from model_discovery.runners import Runner
from model_discovery.select import Selector

log = logging.getLogger(__name__)

Emit = Callable[..., None]
"""``emit(event, **fields)``: where the scheduler reports what it does (``claimed``, ``verified``...)."""

OnResult = Callable[[VerifyJob, VerifyPick, ResultRecord, VerifyResult], None]
"""Called in the scheduler's thread after a result is stored."""


def json_events(event: str, **fields: Any) -> None:
    """Print one event as a JSON line on stdout (what ``modis serve`` shows)."""
    print(json.dumps({"event": event, "t": round(time.time(), 3), **fields}), flush=True)


def no_events(event: str, **fields: Any) -> None:
    """Report nothing."""


@dataclass
class Flight:
    """A submitted job and the pick (lease) it came from."""

    pick: VerifyPick
    job: VerifyJob
    lost: bool = False
    started: float = field(default_factory=time.monotonic)


class Scheduler:
    """Claims the selector's picks up to the runner's capacity, submits them, stores results."""

    def __init__(self, tree: EvolutionTree, selector: Selector, runner: Runner, *, budgets: dict[str, int],
                 owner: str, run_dir: str | Path, options: VerifyOptions,
                 on_result: OnResult | None = None, emit: Emit = no_events, select_every_s: float = 1.0) -> None:
        self.tree, self.selector, self.runner = tree, selector, runner
        self.budgets, self.owner, self.run_dir, self.options = budgets, owner, Path(run_dir), options
        self.lease_ttl_s: float = selector.config.lease_ttl_s  # the selector claims with it, the heartbeat renews
        self.on_result = on_result
        self.emit = emit
        self.select_every_s = select_every_s
        self.in_flight: dict[str, Flight] = {}
        self.done: list[str] = []
        self._lock = threading.Lock()  # in_flight, between the loop and the heartbeat
        self._last_select = float("-inf")
        self._idle_at: tuple[int, ...] | None = None  # the tree when a selection last found nothing
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- one round -------------------------------------------------------------------------------
    def fill(self, force: bool = False) -> list[Flight]:
        """Claim and submit picks until the runner is at capacity (at most every
        ``select_every_s`` seconds unless ``force``, and not again while the tree is as it was
        when the last selection found nothing); returns what was submitted."""
        room = self.runner.capacity - len(self.in_flight)
        if room <= 0 or (not force and time.monotonic() - self._last_select < self.select_every_s):
            return []
        self._last_select = time.monotonic()
        # designs (checked ones apart: they are the new work) and each rung's spending (results +
        # live leases) are what a selection reads that can change: cheap counts decide whether
        # the full selection is worth running
        state = (self.tree.count(), self.tree.count("checked"), *(self.tree.spent(s) for s in self.budgets))
        if not force and state == self._idle_at:
            return []
        picks = self.selector.select_verifications(self.tree, self.budgets, owner=self.owner, limit=room)
        self._idle_at = None if picks else state
        started = []
        for pick in picks:
            job = VerifyJob.for_pick(self.tree.get_design(pick.design).design, pick.scale, pick.seeds,
                                     pick.first_seed, self.run_dir, self.options)
            flight = Flight(pick, job)
            with self._lock:
                self.in_flight[self.runner.submit(job)] = flight
            self.emit("claimed", owner=self.owner, design=pick.design, scale=pick.scale, seeds=pick.seeds)
            started.append(flight)
        if started:
            self._start_heartbeat()
        return started

    def collect(self, timeout_s: float | None = 0.0) -> list[str]:
        """Store the results that have landed (waiting up to ``timeout_s`` for the first)."""
        landed = []
        for job_id, result in self.runner.collect(timeout_s):
            with self._lock:
                flight = self.in_flight.pop(job_id)
            pick = flight.pick
            if flight.lost:  # another node owns the pick now; its result wins
                continue
            stored = self.selector.record_result(self.tree, pick.design, pick.scale, result)
            key = flight.job.key + (f" (+{pick.seeds} seeds)" if pick.replicate else "")
            self.done.append(key)
            landed.append(key)
            self.emit("verified", owner=self.owner, design=pick.design, scale=pick.scale, status=result.status,
                      error=result.error, wall_s=round(time.monotonic() - flight.started, 1))
            if self.on_result is not None:
                try:
                    self.on_result(flight.job, pick, stored, result)
                except Exception as exc:  # noqa: BLE001 - a note that cannot be written stops nothing
                    log.warning("after the result of %s: %s", key, one_line(exc))
        if landed:
            self._last_select = float("-inf")  # a free worker: pick again at once
        return landed

    # -- the loop --------------------------------------------------------------------------------
    def run(self, *, until: threading.Event | None = None, abort: threading.Event | None = None,
            exit_when_idle: bool = True, max_jobs: int | None = None, poll_s: float = 1.0,
            progress: bool = False) -> list[str]:
        """Keep the runner full until there is nothing to do; returns what it verified.

        Idle (nothing in flight, nothing to claim) it stops when ``exit_when_idle`` and no live
        lease is left at its rungs (another node may still fail and free one) — once ``until``
        is set, when that is given (design steps may still add work before). ``abort`` stops at
        once, releasing the leases of jobs in flight. ``max_jobs`` stops after that many results.
        """
        bar = tqdm(desc="verify", unit="job", disable=not progress, leave=False)
        shown = -1  # jobs in flight the bar shows
        try:
            while not (abort is not None and abort.is_set()):
                if max_jobs is not None and len(self.done) >= max_jobs:
                    break
                if max_jobs is None or len(self.done) + len(self.in_flight) < max_jobs:
                    self.fill()
                if not self.in_flight:
                    may_stop = exit_when_idle and (until is None or until.is_set())
                    if may_stop and not self._live_leases():
                        self.fill(force=True)  # one last look: a lease may just have ended
                        if not self.in_flight:
                            self.emit("idle", owner=self.owner)
                            break
                    (until or abort or threading.Event()).wait(min(poll_s, self.select_every_s))
                    continue
                landed = self.collect(timeout_s=poll_s)
                if landed or shown != len(self.in_flight):
                    shown = len(self.in_flight)
                    bar.set_postfix(running=shown, refresh=False)
                    bar.update(len(landed))
        finally:
            bar.close()
            self.release_all()
        return self.done

    def _live_leases(self) -> bool:
        return any(lease.scale in self.budgets for lease in self.tree.leases(live_only=True))

    # -- leases ----------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._beat is None or not self._beat.is_alive():
            self._beat_stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        """Renew the lease of every job in flight every ``lease_ttl_s / 4`` seconds."""
        while not self._beat_stop.wait(max(self.lease_ttl_s / 4.0, 0.2)):
            with self._lock:
                flights = [f for f in self.in_flight.values() if not f.lost]
            for f in flights:
                p = f.pick
                try:
                    if not self.tree.claim_verification(p.design, p.scale, self.owner, self.lease_ttl_s,
                                                        seeds=p.seeds, replicate=p.replicate):
                        f.lost = True
                        self.emit("lease-lost", owner=self.owner, design=p.design, scale=p.scale)
                except Exception as exc:  # noqa: BLE001 - a flaky database must not kill the jobs
                    self.emit("heartbeat-error", owner=self.owner, design=p.design, scale=p.scale,
                              error=one_line(exc))

    def release_all(self) -> None:
        """Stop the heartbeat and release the leases of jobs in flight (their results are dropped)."""
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join()
        with self._lock:
            flights, self.in_flight = list(self.in_flight.values()), {}
        for f in flights:
            self.tree.release(f.pick.design, f.pick.scale, self.owner)
