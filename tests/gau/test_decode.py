"""Incremental decoding: a DecodeCache gives the logits of the full forward, one chunk at a time."""

from __future__ import annotations

import random

import pytest
import torch

from model_discovery.gau import build_lm, catalogue, get_scale, list_seeds, load_seed
from model_discovery.genome.code_edits import CODE_EDITS
from model_discovery.records import Design, UnitSpec
from tests.gau.decoding import assert_decodes_exactly, decode_mode, decoded, greedy_uncached

MICRO = get_scale("micro")
VOCAB = 96


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


@pytest.mark.parametrize("name", list_seeds() + ["hybrid"])
def test_decoding_matches_full_forward(name: str) -> None:
    torch.manual_seed(0)
    design = hybrid() if name == "hybrid" else load_seed(name)
    lm = build_lm(design, MICRO, vocab_size=VOCAB).eval()
    idx = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(3))
    assert_decodes_exactly(lm, idx)


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
    assert torch.equal(lm.generate(idx, max_new_tokens=12, top_k=1), greedy_uncached(lm, idx, 12))


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
