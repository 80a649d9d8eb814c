"""Unit genome: every primitive generates code that passes the static checks and parses back to its
genome; chunked forms equal their recurrent references; random genomes give causal units;
genome operators and code-level edits make new, different units.

Generated code comes from the project's own generator from fixed or seeded genomes, so these
tests build it in-process; the sandboxed checker runs on it in ``test_checker.py``.
"""

from __future__ import annotations

import random
import typing

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_discovery.check import static_checks
from model_discovery.gau import catalogue, load_seed
from model_discovery.genome import spec as gs
from model_discovery.genome.code_edits import CODE_EDITS, EditNotApplicable
from model_discovery.genome.codegen import generate, unit_name
from model_discovery.genome.invent import edited_name, genome_unit, with_unit
from model_discovery.genome.operators import (GenomeEdit, GenomeOperatorError, crossover, point_mutation, random_genome,
                                              subtree_replacement)
from model_discovery.genome.parse import GenomeParseError, parse_genome


def _members(union: object) -> list[type]:
    return list(typing.get_args(typing.get_args(union)[0]))


def primitive_genomes() -> dict[str, gs.MixerGenome | gs.ChannelGenome]:
    """One genome per primitive class (token mixer, featurizer, decay, combination, channel structure)."""
    out: dict[str, gs.MixerGenome | gs.ChannelGenome] = {}
    for cls in _members(gs.TokenMixer):
        out[f"mixer:{cls.__name__}"] = gs.MixerGenome(token_mixer=cls())
    for cls in _members(gs.Featurizer):
        out[f"featurizer:{cls.__name__}"] = gs.MixerGenome(featurizer=cls())
    for cls in _members(gs.Decay):
        for per_channel in (False, True):
            if cls is gs.NoDecay and per_channel:
                continue
            extra = {} if cls is gs.NoDecay else {"per_channel": per_channel}
            out[f"decay:{cls.__name__}:{per_channel}"] = gs.MixerGenome(
                token_mixer=gs.LinearRecurrence(decay=cls(**extra)))
    out["decay:DataDecay:softplus:scalar"] = gs.MixerGenome(token_mixer=gs.LinearRecurrence(
        decay=gs.DataDecay(per_channel=False, parameterisation="softplus")))
    out["decay:DataDecay:softplus:vector"] = gs.MixerGenome(token_mixer=gs.LinearRecurrence(
        decay=gs.DataDecay(per_channel=True, parameterisation="softplus")))
    for cls in _members(gs.Combine):
        out[f"combine:{cls.__name__}"] = gs.MixerGenome(combine=cls())
        out[f"combine:{cls.__name__}:conv"] = gs.MixerGenome(token_mixer=gs.LongConv(), combine=cls())
    for cls in _members(gs.ChannelStructure):
        out[f"channel:{cls.__name__}"] = gs.ChannelGenome(structure=cls())
    return out


PRIMITIVES = primitive_genomes()


def build(genome: gs.MixerGenome | gs.ChannelGenome, d_model: int = 64) -> torch.nn.Module:
    name = unit_name(genome)
    namespace: dict[str, object] = {}
    exec(compile(generate(genome), f"<{name}>", "exec"), namespace)  # noqa: S102 - the project's own generator
    torch.manual_seed(0)
    return namespace[name](d_model, (0, 2))  # type: ignore[operator]


@pytest.mark.parametrize("key", sorted(PRIMITIVES))
def test_primitive_generates_round_trips_and_passes_static_checks(key: str) -> None:
    genome = PRIMITIVES[key]
    source = generate(genome)
    assert parse_genome(source) == genome
    assert gs.genome_from_json(genome.model_dump(mode="json")) == genome
    name, spec = genome_unit(GenomeEdit(genome, "sample", "test"))
    assert spec.role == gs.role_of(genome) and spec.origin and spec.origin.genome == genome.model_dump(mode="json")
    results, compiled = static_checks(with_unit(load_seed("llama"), name, spec))
    assert compiled is not None, [r.message for r in results if not r.passed]


def test_generated_code_holds_only_what_the_genome_uses() -> None:
    def code(genome: gs.MixerGenome | gs.ChannelGenome) -> str:  # the source without its GENOME literal
        source = generate(genome)
        return source.split("GENOME = ")[0] + source.split("def __init__")[1]

    plain = code(gs.MixerGenome(token_mixer=gs.Attention(), combine=gs.Plain()))
    assert "window" not in plain and "import math" not in plain and "rsqrt" not in plain and "chunked" not in plain
    assert "after_tail" not in plain and "in_last" not in plain and "def features(self, X):" in plain
    local = code(gs.MixerGenome(token_mixer=gs.Attention(window=16, qk_norm=True)))
    assert "self.window = window" in local and "torch.rsqrt" in local and "k[:, :, keep:]" in local
    shifted = code(gs.MixerGenome(featurizer=gs.TokenShift(), token_mixer=gs.CausalConv(width=3)))
    assert 'state["in_last"]' in shifted and '"conv_tail", 2)' in shifted and "in_tail" not in shifted
    free = code(gs.MixerGenome(token_mixer=gs.LinearRecurrence(decay=gs.NoDecay())))
    assert "log_a" not in free and "def recurrent" in free and "def chunked" in free
    mlp = generate(gs.ChannelGenome(structure=gs.Dense(activation="relu2")))
    assert "F.relu(self.w_in(X)).square()" in mlp and "GENOME" in mlp


def test_parse_rejects_edited_or_invalid_genomes() -> None:
    source = generate(gs.ChannelGenome())
    with pytest.raises(GenomeParseError, match="differs from what its GENOME generates"):
        parse_genome(source.replace("F.silu(gate)", "F.gelu(gate)"))
    assert parse_genome(source.replace("F.silu(gate)", "F.gelu(gate)"), strict=False) == gs.ChannelGenome()
    with pytest.raises(GenomeParseError, match="field GENOME"):
        parse_genome(source.replace("'gated'", "'nonesuch'"))
    with pytest.raises(GenomeParseError, match="not a generated unit"):
        parse_genome(catalogue()["SwiGLU"].source)


RECURRENT = {k: g for k, g in PRIMITIVES.items()
             if isinstance(g, gs.MixerGenome) and isinstance(g.token_mixer, (gs.LinearRecurrence, gs.DeltaRule))}


@pytest.mark.parametrize("T", [1, 16, 37])
@pytest.mark.parametrize("key", sorted(RECURRENT))
def test_chunked_matches_recurrent(key: str, T: int) -> None:
    """Outputs and final state agree, from a zero state and from a given one (as in decoding)."""
    genome = RECURRENT[key]
    unit = build(genome)
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(2, 2, T, 8, generator=g) for _ in range(3))
    mixer = genome.token_mixer
    if isinstance(mixer, gs.DeltaRule):
        q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
        extra: tuple[torch.Tensor, ...] = (torch.rand(2, 2, T, generator=g),)
    elif isinstance(mixer.decay, gs.NoDecay):
        extra = ()
    elif mixer.decay.per_channel:
        extra = (-torch.rand(2, 2, T, 8, generator=g),)
    else:
        extra = (-torch.rand(2, 2, T, generator=g),)
    for start in (None, torch.randn(2, 2, 8, 8, generator=g)):
        torch.testing.assert_close(unit.chunked(q, k, v, *extra, start), unit.recurrent(q, k, v, *extra, start),
                                   atol=1e-4, rtol=1e-4)


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_random_genomes_give_causal_units(seed: int) -> None:
    genome = random_genome(random.Random(seed))
    unit = build(genome)
    X = torch.randn(2, 24, 64, requires_grad=True)
    Y, Z = unit(X)
    assert Y.shape == X.shape and Z == {} and torch.isfinite(Y).all()
    Y[:, 11].sum().backward()
    assert X.grad is not None and X.grad[:, 12:].abs().max() < 1e-5, "output at t depends on inputs after t"
    assert X.grad[:, :12].abs().sum() > 0


def test_point_mutation_changes_one_scalar_gene() -> None:
    rng = random.Random(0)
    for _ in range(20):
        genome = random_genome(rng)
        edit = point_mutation(rng, genome)
        assert edit.genome != genome and edit.operator == "point"
        before, after = genome.model_dump(), edit.genome.model_dump()
        path = edit.edit.split(":")[0].split(".")
        for part in path[:-1]:
            before, after = before[part], after[part]
        assert before[path[-1]] != after[path[-1]]
        assert {k: v for k, v in before.items() if k != path[-1]} == {k: v for k, v in after.items() if k != path[-1]}


def test_subtree_replacement_changes_a_gene_kind() -> None:
    rng = random.Random(1)
    for _ in range(20):
        genome = random_genome(rng)
        edit = subtree_replacement(rng, genome)
        old_kind, new_kind = edit.edit.split(": ")[1].split(" -> ")
        assert old_kind != new_kind and edit.genome != genome


def test_crossover_takes_genes_from_both_parents() -> None:
    a = gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.Attention(), combine=gs.Sum())
    b = gs.MixerGenome(featurizer=gs.TokenShift(), token_mixer=gs.DeltaRule(), combine=gs.Mix())
    rng = random.Random(2)
    for _ in range(10):
        child = crossover(rng, a, b).genome
        assert child not in (a, b)
        for field in ("featurizer", "token_mixer", "combine"):
            assert getattr(child, field) in (getattr(a, field), getattr(b, field))
    with pytest.raises(GenomeOperatorError):
        crossover(rng, a, gs.ChannelGenome())
    with pytest.raises(GenomeOperatorError):
        crossover(rng, a, a)


def test_new_units_get_new_names() -> None:
    rng = random.Random(3)
    genome = random_genome(rng, "mixer")
    name, _ = genome_unit(GenomeEdit(genome, "sample", "x"))
    mutated, spec = genome_unit(point_mutation(rng, genome), [name])
    assert mutated != name and spec.origin is not None and spec.origin.parents == [name]
    assert edited_name("GatedLinearAttention", "add_qk_norm", "x = 1").startswith("GatedLinearAttentionQkn")
    assert edited_name("GatedLinearAttentionQkn1a2b_2", "add_token_shift", "x").startswith("GatedLinearAttentionTs")


EDITABLE = {"CausalSelfAttention": {"add_output_gate", "add_token_shift", "add_qk_norm"},
            "GatedLinearAttention": set(CODE_EDITS),
            "SwiGLU": {"swap_activation", "add_output_gate", "add_token_shift"}}


@pytest.mark.parametrize("unit", sorted(EDITABLE))
def test_code_edits_of_catalogue_units_run_and_stay_causal(unit: str) -> None:
    source = catalogue()[unit].source
    rng = random.Random(4)
    applied = set()
    for name, edit in CODE_EDITS.items():
        try:
            result = edit(rng, source)
        except EditNotApplicable:
            continue
        applied.add(name)
        assert result.source != source and result.edit
        namespace: dict[str, object] = {}
        exec(compile(result.source, f"<{unit}:{name}>", "exec"), namespace)  # noqa: S102 - catalogue code, edited
        torch.manual_seed(0)
        module = namespace[unit](64, (0, 2))  # type: ignore[operator]
        X = torch.randn(1, 20, 64, requires_grad=True)
        Y, _ = module(X)
        Y[:, 9].sum().backward()
        assert X.grad is not None and X.grad[:, 10:].abs().max() == 0, f"{name} made {unit} acausal"
    assert applied == EDITABLE[unit]
