"""Generated units decode with a cache: a design holding them gives the full forward's logits one
chunk at a time, none of them replays its inputs, and code edits keep decoding exact.

Generated code comes from the project's own generator (and the project's own code edits), so
these tests build it in-process; the sandboxed checker runs on it in ``test_checker.py``.
"""

from __future__ import annotations

import random
import typing

import pytest
import torch

from model_discovery.gau import build_lm, catalogue, get_scale, load_seed
from model_discovery.genome import spec as gs
from model_discovery.genome.code_edits import CODE_EDITS, EditNotApplicable
from model_discovery.genome.codegen import unit_name
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit, random_genome
from model_discovery.records import Design, UnitSpec
from tests.gau.decoding import CHUNK_PATTERNS, assert_decodes_exactly, cache_class, decode_mode, decoded

MICRO = get_scale("micro")
VOCAB = 96
#: the shared patterns, and a chunk longer than ``chunk_size`` after a state (the chunked form from a state)
PATTERNS = CHUNK_PATTERNS + ([3, 18],)

#: (mixer, channel) pairs that use every class of every gene and the scalar genes decoding depends on
#: (windows shorter than the sequence, every conv width, every decay form, both delta feature maps)
COVER: list[tuple[gs.MixerGenome, gs.ChannelGenome]] = [
    (gs.MixerGenome(featurizer=gs.ShortConv(width=2), token_mixer=gs.Attention(window=16, qk_norm=True),
                    combine=gs.Gate(activation="sigmoid")), gs.ChannelGenome(structure=gs.Dense())),
    (gs.MixerGenome(featurizer=gs.TokenShift(), token_mixer=gs.Attention(heads=2), combine=gs.Sum()),
     gs.ChannelGenome(structure=gs.Gated())),
    (gs.MixerGenome(featurizer=gs.LowRank(rank=16), token_mixer=gs.LinearRecurrence(
        decay=gs.NoDecay(), feature_map="elu1"), combine=gs.Mix()), gs.ChannelGenome(structure=gs.Grouped())),
    (gs.MixerGenome(token_mixer=gs.LinearRecurrence(decay=gs.StaticDecay()), combine=gs.Plain()),
     gs.ChannelGenome(structure=gs.Dense(activation="relu2"))),
    (gs.MixerGenome(featurizer=gs.ShortConv(width=4), token_mixer=gs.LinearRecurrence(
        decay=gs.StaticDecay(per_channel=True), key_ratio=1.0, feature_map="relu")), gs.ChannelGenome()),
    (gs.MixerGenome(featurizer=gs.TokenShift(), combine=gs.Sum(), token_mixer=gs.LinearRecurrence(
        decay=gs.DataDecay(per_channel=False, parameterisation="softplus"))),
     gs.ChannelGenome(structure=gs.Grouped(groups=2))),
    (gs.MixerGenome(featurizer=gs.LowRank(), combine=gs.Mix(), token_mixer=gs.LinearRecurrence(
        decay=gs.DataDecay(per_channel=True, parameterisation="softplus"), feature_map="silu")), gs.ChannelGenome()),
    (gs.MixerGenome(featurizer=gs.ShortConv(width=3), token_mixer=gs.DeltaRule(feature_map="identity"),
                    combine=gs.Plain()), gs.ChannelGenome(structure=gs.Gated(activation="gelu"))),
    (gs.MixerGenome(token_mixer=gs.DeltaRule(heads=2), combine=gs.Gate(activation="relu")), gs.ChannelGenome()),
    (gs.MixerGenome(featurizer=gs.ShortConv(width=2), token_mixer=gs.CausalConv(width=3), combine=gs.Mix()),
     gs.ChannelGenome(structure=gs.Dense())),
    (gs.MixerGenome(featurizer=gs.TokenShift(), token_mixer=gs.CausalConv(width=8), combine=gs.Gate()),
     gs.ChannelGenome()),
    (gs.MixerGenome(featurizer=gs.LowRank(), token_mixer=gs.LongConv(), combine=gs.Sum()), gs.ChannelGenome()),
]


def invented_design(*genomes: gs.MixerGenome | gs.ChannelGenome) -> Design:
    """The llama seed with its mixer and/or channel mixer replaced by units generated from ``genomes``."""
    design = load_seed("llama")
    for genome in genomes:
        design = with_unit(design, *genome_unit(GenomeEdit(genome, "sample", "test genome")))
    return design


def micro_lm(design: Design) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_lm(design, MICRO, vocab_size=VOCAB).eval()


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(3))


def assert_generated_units_keep_their_own_state(lm: torch.nn.Module, design: Design) -> None:
    """Every generated unit decodes as its kind should, and at run time none keeps replayed inputs."""
    generated = {n: u for n, u in design.units.items() if u.origin is not None and u.origin.genome is not None}
    assert generated
    for name, spec in generated.items():
        assert decode_mode(spec.source, name) == ("step" if spec.role == "mixer" else "positionwise"), name
    cache = cache_class(lm)()
    with torch.no_grad():
        decoded(lm, tokens()[:, :7], [5, 1, 1], cache)
    for module in lm.modules():
        name = type(module).__name__
        if name in generated and generated[name].role == "mixer":
            state = cache.units[id(module)]
            assert state and "inputs" not in state, f"{name} replays its inputs ({sorted(state)})"
        elif name in generated:
            assert id(module) not in cache.units, f"{name} is not decoded position-wise"


@pytest.mark.parametrize("case", range(len(COVER)))
def test_generated_units_decode_exactly(case: int) -> None:
    design = invented_design(*COVER[case])
    lm = micro_lm(design)
    assert_decodes_exactly(lm, tokens(), PATTERNS)
    assert_generated_units_keep_their_own_state(lm, design)


def test_cover_uses_every_class_of_every_gene() -> None:
    used = set().union(*(gs.gene_classes(g) for pair in COVER for g in pair))
    for union in (gs.Featurizer, gs.TokenMixer, gs.Decay, gs.Combine, gs.ChannelStructure):
        members = set(typing.get_args(typing.get_args(union)[0]))
        assert members <= used, f"no decoded design uses {sorted(c.__name__ for c in members - used)}"


def _random_design(seed: int) -> Design:
    rng = random.Random(seed)
    return invented_design(random_genome(rng, "mixer"), random_genome(rng, "channel"))


@pytest.mark.parametrize("seed", range(6))
def test_random_generated_units_decode_exactly(seed: int) -> None:
    design = _random_design(seed)
    lm = micro_lm(design)
    assert_decodes_exactly(lm, tokens(), PATTERNS)
    assert_generated_units_keep_their_own_state(lm, design)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6, 106))
def test_many_random_generated_units_decode_exactly(seed: int) -> None:
    design = _random_design(seed)
    lm = micro_lm(design)
    assert_decodes_exactly(lm, tokens(), PATTERNS)
    assert_generated_units_keep_their_own_state(lm, design)


def _with_source(design: Design, name: str, source: str) -> Design:
    units = dict(design.units)
    units[name] = units[name].model_copy(update={"source": source})
    return design.model_copy(update={"units": units})


def _catalogue_design(name: str) -> Design:
    """The llama seed with its unit of ``name``'s role replaced by the catalogue unit ``name``."""
    unit = catalogue()[name]
    return with_unit(load_seed("llama"), name, UnitSpec(role=unit.role, source=unit.source))


def _gated_mlp_design() -> Design:
    """The llama seed with its SwiGLU wrapped in the catalogue's GatedChannelMixer (position-wise, with a child)."""
    design = load_seed("llama")
    cat = catalogue()
    root = design.units[design.root]
    wrapped = root.model_copy(update={"children": {**root.children, "mlp": "GatedChannelMixer"}})
    units = {**design.units, design.root: wrapped}
    units["GatedChannelMixer"] = UnitSpec(role=cat["GatedChannelMixer"].role, source=cat["GatedChannelMixer"].source,
                                          children={"mlp": "SwiGLU"})
    return design.model_copy(update={"units": units})


#: a hand-written mixer whose ``_step`` (right after ``__init__``, where edits add lines) stands beside a
#: ``_forward`` that does the same work itself
SEPARATE_STEP = '''"""Linear attention with a data-dependent decay per head; its _step beside _forward."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class DecayedLinearAttention(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4):
        super().__init__(d_model, block_loc, ctx)
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.decay = nn.Linear(d_model, n_head)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _step(self, X, state, **Z):
        B, T, C = X.shape
        q, k, v = (self.heads(t) for t in self.qkv(X).split(C, dim=-1))
        log_a = F.logsigmoid(self.decay(X)).transpose(1, 2)
        start = state.get("S", q.new_zeros(B, self.n_head, C // self.n_head, C // self.n_head))
        y, state["S"] = self.scan(q, k, v, log_a, start)
        return self.out(y.transpose(1, 2).reshape(B, T, C)), {}

    def heads(self, t):
        B, T, C = t.shape
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def scan(self, q, k, v, log_a, state):
        outs = []
        for t in range(q.size(2)):
            state = torch.exp(log_a[:, :, t, None, None]) * state + k[:, :, t, :, None] * v[:, :, t, None, :]
            outs.append((q[:, :, t, None, :] @ state).squeeze(-2))
        return torch.stack(outs, dim=2), state

    def _forward(self, X, **Z):
        B, T, C = X.shape
        q, k, v = (self.heads(t) for t in self.qkv(X).split(C, dim=-1))
        log_a = F.logsigmoid(self.decay(X)).transpose(1, 2)
        y, _ = self.scan(q, k, v, log_a, q.new_zeros(B, self.n_head, C // self.n_head, C // self.n_head))
        return self.out(y.transpose(1, 2).reshape(B, T, C)), {}
'''


def _separate_step_design() -> Design:
    return with_unit(load_seed("llama"), "DecayedLinearAttention", UnitSpec(role="mixer", source=SEPARATE_STEP))


#: unit -> (design holding it, the decode mode each applicable edit leaves)
EDITED: dict[str, tuple[typing.Callable[[], Design], dict[str, str]]] = {
    "DecayedLinearAttention": (_separate_step_design, {"add_output_gate": "step", "add_token_shift": "step",
                                                       "add_qk_norm": "replay", "change_feature_map": "replay",
                                                       "change_decay": "replay"}),
    "CausalSelfAttention": (lambda: _catalogue_design("CausalSelfAttention"),
                            {"add_output_gate": "step", "add_token_shift": "step", "add_qk_norm": "step"}),
    "RWKVChannelMix": (lambda: _catalogue_design("RWKVChannelMix"),
                       {"add_output_gate": "step", "add_token_shift": "step"}),
    "SwiGLU": (lambda: load_seed("llama"), {"swap_activation": "positionwise", "add_output_gate": "positionwise",
                                            "add_token_shift": "step"}),
    "GatedChannelMixer": (_gated_mlp_design, {"add_output_gate": "positionwise", "add_token_shift": "replay"}),
}
#: generated mixer -> (its genome, the edits that apply to it); every edit leaves its ``_step``
GENERATED_EDITED: dict[str, tuple[gs.MixerGenome, set[str]]] = {
    "linrec": (gs.MixerGenome(token_mixer=gs.LinearRecurrence(feature_map="elu1"), combine=gs.Gate()), set(CODE_EDITS)),
    "attention": (gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.Attention(window=16), combine=gs.Sum()),
                  {"swap_activation", "add_output_gate", "add_qk_norm", "add_token_shift"}),
}


@pytest.mark.parametrize("unit", sorted(EDITED))
def test_code_edits_of_hand_written_units_keep_decoding_exact(unit: str) -> None:
    make, modes = EDITED[unit]
    design = make()
    applied = {}
    for which, edit in CODE_EDITS.items():
        try:
            result = edit(random.Random(5), design.units[unit].source)
        except EditNotApplicable:
            continue
        applied[which] = decode_mode(result.source, unit)
        assert_decodes_exactly(micro_lm(_with_source(design, unit, result.source)), tokens(), PATTERNS)
    assert applied == modes


@pytest.mark.parametrize("kind", sorted(GENERATED_EDITED))
def test_code_edits_of_generated_units_keep_decoding_exact(kind: str) -> None:
    genome, edits = GENERATED_EDITED[kind]
    design, name = invented_design(genome), unit_name(genome)
    applied = set()
    for which, edit in CODE_EDITS.items():
        try:
            result = edit(random.Random(2), design.units[name].source)
        except EditNotApplicable:
            continue
        applied.add(which)
        assert decode_mode(result.source, name) == "step", f"{which} made {name} replay"
        assert_decodes_exactly(micro_lm(_with_source(design, name, result.source)), tokens(), PATTERNS)
    assert applied == edits
