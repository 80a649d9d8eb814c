"""Verification leases: one owner per (design, scale), expiry, budgets, racing threads."""

from __future__ import annotations

import threading
import time

import pytest

from model_discovery.evolution import EvolutionTree, TreeError
from model_discovery.gau import Design


@pytest.fixture
def populated(tree: EvolutionTree, seed: Design, variant) -> EvolutionTree:
    tree.add_design(seed)
    for i in range(6):
        tree.add_design(variant(seed, f"d{i}", ["gpt2"], 10 + i))
    return tree


def test_two_owners_one_wins(populated: EvolutionTree) -> None:
    t = populated
    assert t.claim_verification("d0", "micro", "alice")
    assert not t.claim_verification("d0", "micro", "bob")
    assert t.claim_verification("d0", "14M", "bob")  # another rung is another lease
    assert t.claim_verification("d0", "micro", "alice")  # the holder renews
    assert not t.release("d0", "micro", owner="bob") and t.release("d0", "micro", owner="alice")
    assert t.claim_verification("d0", "micro", "bob")
    t.add_result("d0", "micro", {"val_loss": 3.0}, 0.1)
    assert [l.scale for l in t.leases()] == ["14M"]  # the result released the lease
    assert not t.claim_verification("d0", "micro", "carol")  # never verified twice
    with pytest.raises(TreeError, match="ttl must be positive"):
        t.claim_verification("d1", "micro", "x", ttl_s=0)


def test_expired_lease_is_reclaimable(populated: EvolutionTree) -> None:
    t = populated
    assert t.claim_verification("d1", "micro", "crashed", ttl_s=0.05)
    assert not t.claim_verification("d1", "micro", "other")
    time.sleep(0.1)
    assert t.leases()[0].expired and t.leases(live_only=True) == []
    assert t.spent("micro") == 0
    assert t.claim_verification("d1", "micro", "other", ttl_s=60)
    (lease,) = t.leases()
    assert lease.owner == "other" and not lease.expired and t.spent("micro") == 1


def test_budgeted_claims(populated: EvolutionTree) -> None:
    t = populated
    t.add_result("d0", "14M", {"val_loss": 3.0}, 0.0)
    assert t.claim_verification("d1", "14M", "a", budget=3)
    assert t.claim_verification("d2", "14M", "a", budget=3)
    assert not t.claim_verification("d3", "14M", "a", budget=3)  # 1 result + 2 leases
    assert t.claim_verification("d2", "14M", "a", budget=3)  # renewal is not a new spend
    assert t.spent("14M") == 3 and t.stats().leases_by_scale == {"14M": 2}


def test_threads_racing_for_one_lease(populated: EvolutionTree, tree_url: str) -> None:
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        own = EvolutionTree(tree_url)  # its own engine, as another process would have
        barrier.wait()
        if own.claim_verification("d4", "micro", f"w{i}"):
            wins.append(f"w{i}")
        own.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(wins) == 1
    assert [l.owner for l in populated.leases()] == wins


def test_threads_racing_never_overrun_a_budget(populated: EvolutionTree) -> None:
    wins: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        barrier.wait()
        for name in ["gpt2"] + [f"d{j}" for j in range(6)]:
            if populated.claim_verification(name, "31M", f"w{i}", budget=3):
                with lock:
                    wins.append((name, f"w{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(wins) == 3 and len({n for n, _ in wins}) == 3
    assert populated.spent("31M") == 3
