"""Incremental decoding: a DecodeCache gives the logits of the full forward, one chunk at a time."""

from __future__ import annotations

import ast
import random
import sys

import pytest
import torch

from model_discovery.gau import build_lm, catalogue, get_scale, list_seeds, load_seed
from model_discovery.genome.code_edits import CODE_EDITS
from model_discovery.records import Design, UnitSpec

MICRO = get_scale("micro")
VOCAB = 96


def decode_mode(source: str, name: str) -> str:
    """How a unit decodes: ``positionwise``, its own ``step``, or the base class's ``replay``."""
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name)
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "positionwise" for t in node.targets):
            return "positionwise"
        if isinstance(node, ast.FunctionDef) and node.name == "_step":
            return "step"
    return "replay"


def hybrid() -> Design:
    """Every composite catalogue unit in one design, around attention, SSM and token-shift units."""
    cat = catalogue()

    def unit(name: str, **children: str) -> UnitSpec:
        return UnitSpec(role=cat[name].role, source=cat[name].source, children=children)

    return Design(name="hybrid", root="InterleaveBlock", units={
        "InterleaveBlock": unit("InterleaveBlock", even="PreNormBlock", odd="PreNormMixerBlock"),
        "PreNormBlock": unit("PreNormBlock", norm1="RMSNormUnit", mixer="ParallelMixer", norm2="LayerNormUnit",
                             mlp="GatedChannelMixer"),
        "ParallelMixer": unit("ParallelMixer", a="ShortConvPrefix", b="Mamba2Mixer"),
        "ShortConvPrefix": unit("ShortConvPrefix", mixer="RoPEAttention"),
        "RoPEAttention": unit("RoPEAttention"),
        "Mamba2Mixer": unit("Mamba2Mixer", conv="ShortConv"),
        "ShortConv": unit("ShortConv"),
        "GatedChannelMixer": unit("GatedChannelMixer", mlp="RWKVChannelMix"),
        "RWKVChannelMix": unit("RWKVChannelMix"),
        "PreNormMixerBlock": unit("PreNormMixerBlock", norm="RMSNormUnit", mixer="CausalSelfAttention"),
        "RMSNormUnit": unit("RMSNormUnit"),
        "LayerNormUnit": unit("LayerNormUnit"),
        "CausalSelfAttention": unit("CausalSelfAttention"),
    })


def cache_class(lm: torch.nn.Module) -> type:
    return sys.modules[type(lm).__module__].DecodeCache


def decoded(lm: torch.nn.Module, idx: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    """Logits of ``idx`` fed through one cache in chunks of the given sizes."""
    cache, parts, start = cache_class(lm)(), [], 0
    for size in chunks:
        parts.append(lm(idx[:, start:start + size], cache))
        start += size
    assert cache.length == start == idx.size(1)
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("name", list_seeds() + ["hybrid"])
def test_decoding_matches_full_forward(name: str) -> None:
    torch.manual_seed(0)
    design = hybrid() if name == "hybrid" else load_seed(name)
    lm = build_lm(design, MICRO, vocab_size=VOCAB).eval()
    idx = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = lm(idx)
        for chunks in ([7] + [1] * 14, [1] * 5 + [3, 4, 9], [21]):
            torch.testing.assert_close(decoded(lm, idx, chunks), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list_seeds())
def test_decoding_in_bfloat16_stays_close(name: str) -> None:
    """With bfloat16 weights the kept state keeps its dtype and decoding stays within bfloat16 rounding."""
    torch.manual_seed(0)
    lm = build_lm(load_seed(name), MICRO, vocab_size=VOCAB).eval().to(torch.bfloat16)
    idx = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(decoded(lm, idx, [7] + [1] * 5 + [9]).float(), lm(idx).float(),
                                   rtol=0.0, atol=3e-2)


def test_generate_with_cache_equals_recomputing_past_the_context() -> None:
    """Greedy generate (cached) equals the uncached loop, also once the sequence outgrows the context."""
    torch.manual_seed(0)
    lm = build_lm(load_seed("llama"), MICRO.model_copy(update={"context_len": 12}), vocab_size=VOCAB).eval()
    idx = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(4))
    expected = idx
    with torch.no_grad():
        for _ in range(12):
            nxt = lm(expected[:, -12:])[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, nxt], dim=1)
        got = lm.generate(idx, max_new_tokens=12, top_k=1)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", sorted(catalogue()))
def test_catalogue_units_decode_without_replay(name: str) -> None:
    """Every catalogue unit is position-wise or keeps a cache of its own (none recomputes its prefix)."""
    assert decode_mode(catalogue()[name].source, name) != "replay"


@pytest.mark.parametrize("edit", ["swap_activation", "add_output_gate", "add_qk_norm", "change_feature_map",
                                  "change_decay"])
def test_code_edits_of_a_stateful_unit_decode_alike(edit: str) -> None:
    """A code edit rewrites ``_forward``; the unit's ``_step`` runs that same code, so it decodes alike."""
    design = load_seed("gla")
    unit = design.units["GatedLinearAttention"]
    edited = CODE_EDITS[edit](random.Random(4), unit.source)
    design.units["GatedLinearAttention"] = unit.model_copy(update={"source": edited.source})
    torch.manual_seed(0)
    lm = build_lm(design, MICRO, vocab_size=VOCAB).eval()
    idx = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(decoded(lm, idx, [7] + [1] * 5 + [9]), lm(idx), rtol=1e-4, atol=1e-5)
