"""Shared parametrized harness over every seed in the library (one case per seed)."""

from __future__ import annotations

import time

import pytest
import torch

from model_discovery.gau import build_lm, get_scale, list_seeds, load_seed
from model_discovery.gau.library import library_root, seed_notes

SEEDS = list_seeds()
MICRO = get_scale("micro")
EXPECTED_SEEDS = {"gpt2", "llama", "retnet", "mamba2", "gla", "rwkv", "hyena", "deltanet"}


def test_library_has_the_expected_seeds() -> None:
    assert EXPECTED_SEEDS <= set(SEEDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_has_notes(seed: str) -> None:
    notes = seed_notes(seed)
    lines = [line for line in notes.splitlines() if line.strip()]
    assert 5 <= len(lines) <= 25, f"notes of {seed} have {len(lines)} lines"
    assert "arXiv" in notes or "no arXiv id" in notes


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_shape_and_finite(seed: str, micro_lm) -> None:
    model = micro_lm(seed)
    idx = torch.randint(0, MICRO.vocab_size, (2, 37))  # not a multiple of any chunk size
    with torch.no_grad():
        logits = model(idx)
    assert logits.shape == (2, 37, MICRO.vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_causal(seed: str, micro_lm) -> None:
    """Changing tokens after position t leaves logits at positions <= t unchanged."""
    model = micro_lm(seed)
    gen = torch.Generator().manual_seed(1)
    T, t = MICRO.context_len, 70
    idx = torch.randint(0, MICRO.vocab_size, (2, T), generator=gen)
    other = idx.clone()
    other[:, t + 1:] = torch.randint(0, MICRO.vocab_size, (2, T - t - 1), generator=gen)
    with torch.no_grad():
        a, b = model(idx), model(other)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:]), "future tokens should change later logits"


@pytest.mark.parametrize("seed", SEEDS)
def test_param_band_micro(seed: str, micro_lm) -> None:
    lo, hi = MICRO.param_limits()
    n = micro_lm(seed).num_params()
    assert lo <= n <= hi, f"{seed}: {n} non-embedding params outside micro band [{lo}, {hi}]"


@pytest.mark.parametrize("seed", SEEDS)
def test_param_band_14m(seed: str) -> None:
    scale = get_scale("14M")
    lo, hi = scale.param_limits()
    with torch.device("meta"):
        n = build_lm(load_seed(seed), scale).num_params()
    assert lo <= n <= hi, f"{seed}: {n} non-embedding params outside 14M band [{lo}, {hi}]"


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_speed_micro(seed: str, micro_lm) -> None:
    """A micro forward (batch 8, full context) stays well under half a second of one CPU core.

    Measured as process CPU time on one thread, so other processes on the machine do not count.
    """
    model = micro_lm(seed)
    idx = torch.randint(0, MICRO.vocab_size, (8, MICRO.context_len))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model(idx)
            best = min(_cpu_timed(model, idx) for _ in range(3))
    finally:
        torch.set_num_threads(threads)
    assert best < 0.5, f"{seed}: micro forward took {best:.3f} CPU seconds"


def _cpu_timed(model, idx) -> float:
    start = time.process_time()
    model(idx)
    return time.process_time() - start


@pytest.mark.parametrize("seed", SEEDS)
def test_training_reduces_loss(seed: str) -> None:
    torch.manual_seed(0)
    model = build_lm(load_seed(seed), MICRO, vocab_size=256)
    gen = torch.Generator().manual_seed(2)
    data = torch.randint(0, 256, (2, 25), generator=gen)
    x, y = data[:, :-1], data[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.5, f"{seed}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("seed", SEEDS)
def test_other_width_and_length(seed: str) -> None:
    """Units work at any d_model divisible by 64 and any length up to the context."""
    torch.manual_seed(0)
    model = build_lm(load_seed(seed), MICRO.model_copy(update={"d_model": 128, "n_block": 1}), vocab_size=64)
    for T in (1, 5, MICRO.context_len):
        with torch.no_grad():
            out = model(torch.randint(0, 64, (1, T)))
        assert out.shape == (1, T, 64) and torch.isfinite(out).all()


def test_seed_files_are_listed_from_library() -> None:
    names = {p.stem for p in (library_root() / "seeds").glob("*.yaml")}
    assert names == set(SEEDS)
