"""Generated units through the full sandboxed checker at micro: every primitive class appears in
at least one of these designs (a mixer and a channel mixer each), and every design must pass."""

from __future__ import annotations

import typing

import pytest

from model_discovery.check import run_checks
from model_discovery.gau import Design, load_seed
from model_discovery.genome import spec as gs
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit

COVER: dict[str, tuple[gs.MixerGenome, gs.ChannelGenome]] = {
    "local-attention": (gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.Attention(window=16, qk_norm=True),
                                       combine=gs.Gate()), gs.ChannelGenome(structure=gs.Dense())),
    "static-vector-decay": (gs.MixerGenome(featurizer=gs.TokenShift(), combine=gs.Mix(), token_mixer=gs.LinearRecurrence(
        decay=gs.StaticDecay(per_channel=True))), gs.ChannelGenome(structure=gs.Grouped())),
    "data-scalar-softplus": (gs.MixerGenome(featurizer=gs.LowRank(), combine=gs.Sum(), token_mixer=gs.LinearRecurrence(
        feature_map="elu1", decay=gs.DataDecay(per_channel=False, parameterisation="softplus"))),
        gs.ChannelGenome(structure=gs.Gated())),
    "no-decay": (gs.MixerGenome(combine=gs.Plain(), token_mixer=gs.LinearRecurrence(feature_map="relu",
                                                                                  decay=gs.NoDecay())),
                 gs.ChannelGenome(structure=gs.Dense(activation="relu2"))),
    "delta-rule": (gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.DeltaRule(), combine=gs.Gate(activation="sigmoid")),
                   gs.ChannelGenome(structure=gs.Gated(activation="gelu"))),
    "short-conv": (gs.MixerGenome(featurizer=gs.TokenShift(), token_mixer=gs.CausalConv(), combine=gs.Sum()),
                   gs.ChannelGenome(structure=gs.Grouped(groups=2))),
    "long-conv": (gs.MixerGenome(token_mixer=gs.LongConv(), combine=gs.Mix()), gs.ChannelGenome()),
}


def invented_design(mixer: gs.MixerGenome, channel: gs.ChannelGenome) -> Design:
    design = load_seed("llama")
    for genome in (mixer, channel):
        design = with_unit(design, *genome_unit(GenomeEdit(genome, "sample", "test genome")))
    return design


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(COVER))
def test_generated_units_pass_the_sandboxed_checker(case: str) -> None:
    design = invented_design(*COVER[case])
    assert sum(u.origin is not None for u in design.units.values()) == 2
    report = run_checks(design, "micro")
    assert report.passed, report.first_error


def test_cover_uses_every_primitive_class() -> None:
    used = set().union(*(gs.gene_classes(g) for pair in COVER.values() for g in pair))
    for union in (gs.Featurizer, gs.TokenMixer, gs.Decay, gs.Combine, gs.ChannelStructure):
        members = set(typing.get_args(typing.get_args(union)[0]))
        assert members <= used, f"no checked design uses {sorted(c.__name__ for c in members - used)}"
