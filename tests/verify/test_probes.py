"""Synthetic probes: data generators are well-formed, scores lie in [0, 1] and are deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_discovery.gau import load_seed
from model_discovery.verify.probes import (COPY, IGNORE, KEYS, MEM_KEYS, PROBE_SCALE, PROBES, VALUES, ProbeConfig,
                                           ProbeError, gen_compression, gen_fuzzy_recall, gen_noisy_recall, gen_recall,
                                           gen_selective_copy, make_gen_memorization, memorization_map, run_probes)

FAST = ProbeConfig(steps=4, batch_size=8, eval_examples=16)


@pytest.fixture(scope="module")
def gpt2():
    return load_seed("gpt2")


@pytest.mark.parametrize("gen", [gen_recall, gen_noisy_recall, gen_fuzzy_recall])
def test_recall_targets_are_the_values_bound_in_context(gen):
    batch = gen(np.random.default_rng(0), 8, 64)
    assert batch.inputs.shape == batch.targets.shape == (8, 64)
    key_len = 2 if gen is gen_fuzzy_recall else 1
    for tokens, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        scored = [t for t, y in enumerate(targets) if y != IGNORE]
        assert len(scored) >= 8
        for t in scored:
            # the target is the token that followed the same key (and value prefix) at its first occurrence
            span = key_len + (1 if VALUES[0] <= tokens[t] < VALUES[1] else 0)
            window = tokens[t - span + 1: t + 1]
            first = next(i for i in range(len(tokens)) if tokens[i: i + len(window)] == window)
            assert first + len(window) < t + 1 and tokens[first + len(window)] == targets[t]
            assert tokens[t + 1] == targets[t]
            assert KEYS[0] <= tokens[t - span + 1] < KEYS[1] and VALUES[0] <= targets[t] < VALUES[1]


def test_selective_copy_targets_are_the_content_in_order():
    batch = gen_selective_copy(np.random.default_rng(1), 4, 64)
    for tokens, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        cut = tokens.index(COPY)
        content = [t for t in tokens[:cut] if t != 0]
        assert [y for y in targets if y != IGNORE] == content
        assert tokens[cut + 1: cut + 1 + len(content)] == content


def test_compression_and_memorization_data():
    comp = gen_compression(np.random.default_rng(2), 4, 64)
    assert torch.equal(comp.inputs[:, :-1], comp.targets)
    table = memorization_map(0)
    assert np.array_equal(table, memorization_map(0)) and not np.array_equal(table, memorization_map(1))
    mem = make_gen_memorization(table)(np.random.default_rng(3), 4, 64)
    for tokens, targets in zip(mem.inputs.tolist(), mem.targets.tolist()):
        keys = [tuple(tokens[i: i + 2]) for i in range(0, 63, 3)]
        assert len(set(keys)) == len(keys)  # each key once: the value cannot be copied from context
        assert [targets[i + 1] for i in range(0, 63, 3)] == [int(table[a - MEM_KEYS[0], b - MEM_KEYS[0]])
                                                             for a, b in keys]
        assert [tokens[i + 2] for i in range(0, 63, 3)] == [targets[i + 1] for i in range(0, 63, 3)]


def test_every_probe_scores_in_unit_interval_and_is_deterministic(gpt2):
    state = torch.get_rng_state()
    first = run_probes(gpt2, config=FAST, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is left alone
    assert set(first) == {f"probe/{p}" for p in PROBES} | {"probe/mean"}
    assert all(0.0 <= v <= 1.0 for v in first.values())
    assert first["probe/mean"] == pytest.approx(np.mean([first[f"probe/{p}"] for p in PROBES]))
    again = run_probes(gpt2, config=FAST, seed=3)
    assert again == first
    other = run_probes(gpt2, probes=["recall", "selective_copy"], config=FAST, seed=4)
    assert other != {k: first[k] for k in other}


def test_steps_override_and_clear_errors(gpt2):
    few = run_probes(gpt2, probes=["memorization"], steps=2, config=FAST)
    assert set(few) == {"probe/memorization", "probe/mean"}
    with pytest.raises(ProbeError, match="unknown probe"):
        run_probes(gpt2, probes=["recal"])
    with pytest.raises(ProbeError, match="context_len"):
        run_probes(gpt2, scale=PROBE_SCALE.model_copy(update={"context_len": 32}), probes=["recall"])


@pytest.mark.slow
def test_attention_beats_chance_on_associative_recall(gpt2):
    score = run_probes(gpt2, probes=["recall"], steps=300)["probe/recall"]
    chance = 1 / (VALUES[1] - VALUES[0])
    assert score > 2.5 * chance
