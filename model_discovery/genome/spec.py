"""The unit genome: typed genes for sequence-mixing and channel-mixing units.

A genome is a small tree of pydantic models. Each union of alternatives (featurizer, token
mixer, decay, output combination, channel structure) is discriminated by its ``kind`` field, so a
genome round-trips through JSON unambiguously. Scalar genes list their allowed values (a
``Literal``, a ``bool``, or ``choices`` in the field's schema extra); sampling and mutation read
these from the models, so a new primitive is one new class added to its union (see
``library/README.md``).

Inspired by the linear input-varying (LIV) operator classes of STAR (arXiv 2411.17800): a
featurizer makes the operator's inputs from ``x``, a token mixer combines positions causally, an
output combination closes the unit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Activation = Literal["gelu", "silu", "relu", "relu2", "sigmoid"]
FeatureMap = Literal["identity", "elu1", "relu", "silu"]


def choices(*values: object) -> dict[str, object]:
    """Schema extra listing the allowed values of a numeric gene."""
    return {"choices": list(values)}


class Gene(BaseModel):
    """Base of every gene: immutable, no extra fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- featurizers: how the operator's inputs (q, k, v or v alone) are made from x ----------------
class Linear(Gene):
    """One dense projection."""

    kind: Literal["linear"] = "linear"


class LowRank(Gene):
    """A projection through a bottleneck of ``rank`` channels."""

    kind: Literal["low_rank"] = "low_rank"
    rank: int = Field(32, json_schema_extra=choices(16, 32))


class ShortConv(Gene):
    """A dense projection followed by a depthwise causal convolution of ``width`` taps and SiLU."""

    kind: Literal["short_conv"] = "short_conv"
    width: int = Field(4, json_schema_extra=choices(2, 3, 4))


class TokenShift(Gene):
    """A learned per-channel mix of each token with the previous one, then a dense projection."""

    kind: Literal["token_shift"] = "token_shift"


Featurizer = Annotated[Union[Linear, LowRank, ShortConv, TokenShift], Field(discriminator="kind")]


# -- decays of linear recurrences ---------------------------------------------------------------
class NoDecay(Gene):
    """State accumulates without forgetting (plain linear attention)."""

    kind: Literal["none"] = "none"


class StaticDecay(Gene):
    """Learned input-independent decay, one per head (scalar) or per key channel (vector)."""

    kind: Literal["static"] = "static"
    per_channel: bool = False


class DataDecay(Gene):
    """Input-dependent decay, per head or per key channel, as ``logsigmoid(z)/16`` or ``-softplus(z)*rate``."""

    kind: Literal["data"] = "data"
    per_channel: bool = True
    parameterisation: Literal["logsigmoid", "softplus"] = "logsigmoid"


Decay = Annotated[Union[NoDecay, StaticDecay, DataDecay], Field(discriminator="kind")]


# -- token mixers -------------------------------------------------------------------------------
class Attention(Gene):
    """Causal softmax attention, global (``window`` 0) or over the last ``window`` tokens."""

    kind: Literal["attention"] = "attention"
    heads: int = Field(4, json_schema_extra=choices(1, 2, 4, 8))
    window: int = Field(0, json_schema_extra=choices(0, 16, 64))
    qk_norm: bool = False


class LinearRecurrence(Gene):
    """Linear attention ``S_t = a_t * S_{t-1} + k_t v_t^T``, ``o_t = q_t S_t`` with a feature map and a decay."""

    kind: Literal["linear_recurrence"] = "linear_recurrence"
    heads: int = Field(4, json_schema_extra=choices(1, 2, 4, 8))
    key_ratio: float = Field(0.5, json_schema_extra=choices(0.5, 1.0))
    feature_map: FeatureMap = "identity"
    decay: Decay = Field(default_factory=DataDecay)


class DeltaRule(Gene):
    """Delta-rule fast weights ``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T`` with L2-normed keys."""

    kind: Literal["delta_rule"] = "delta_rule"
    heads: int = Field(4, json_schema_extra=choices(1, 2, 4, 8))
    feature_map: Literal["identity", "silu"] = "silu"


class CausalConv(Gene):
    """Depthwise causal convolution of ``width`` taps."""

    kind: Literal["conv"] = "conv"
    width: int = Field(4, json_schema_extra=choices(3, 4, 8))


class LongConv(Gene):
    """Depthwise causal convolution over the whole sequence with an implicit decaying filter (FFT)."""

    kind: Literal["long_conv"] = "long_conv"


TokenMixer = Annotated[Union[Attention, LinearRecurrence, DeltaRule, CausalConv, LongConv], Field(discriminator="kind")]


# -- output combinations ------------------------------------------------------------------------
class Plain(Gene):
    """Project the mixer output back to the model width."""

    kind: Literal["plain"] = "plain"


class Gate(Gene):
    """Multiply the mixer output by ``activation(W_g x)`` before projecting."""

    kind: Literal["gate"] = "gate"
    activation: Activation = "silu"


class Sum(Gene):
    """Add the operator's value input to its output (a skip through the mixer)."""

    kind: Literal["sum"] = "sum"


class Mix(Gene):
    """Interpolate between the mixer output and its value input with a learned per-channel weight."""

    kind: Literal["mix"] = "mix"


Combine = Annotated[Union[Plain, Gate, Sum, Mix], Field(discriminator="kind")]


# -- channel structures -------------------------------------------------------------------------
class Dense(Gene):
    """``W_out act(W_in x)``."""

    kind: Literal["dense"] = "dense"
    activation: Activation = "gelu"
    mult: float = Field(4.0, json_schema_extra=choices(2.0, 3.0, 4.0))


class Gated(Gene):
    """``W_out (act(W_gate x) * W_up x)`` (GLU family)."""

    kind: Literal["gated"] = "gated"
    activation: Activation = "silu"
    mult: float = Field(2.6667, json_schema_extra=choices(2.0, 2.6667, 3.0))


class Grouped(Gene):
    """Block-diagonal input projection in ``groups`` groups, activation, dense output projection."""

    kind: Literal["grouped"] = "grouped"
    activation: Activation = "gelu"
    mult: float = Field(4.0, json_schema_extra=choices(4.0, 6.0))
    groups: int = Field(4, json_schema_extra=choices(2, 4))


ChannelStructure = Annotated[Union[Dense, Gated, Grouped], Field(discriminator="kind")]


# -- unit genomes -------------------------------------------------------------------------------
class MixerGenome(Gene):
    """A sequence-mixing unit: featurizer -> token mixer -> output combination."""

    kind: Literal["mixer"] = "mixer"
    featurizer: Featurizer = Field(default_factory=Linear)
    token_mixer: TokenMixer = Field(default_factory=LinearRecurrence)
    combine: Combine = Field(default_factory=Gate)


class ChannelGenome(Gene):
    """A channel-mixing unit (position-wise)."""

    kind: Literal["channel"] = "channel"
    structure: ChannelStructure = Field(default_factory=Gated)


UnitGenome = Annotated[Union[MixerGenome, ChannelGenome], Field(discriminator="kind")]
GENOME_ADAPTER: TypeAdapter[MixerGenome | ChannelGenome] = TypeAdapter(UnitGenome)
ROLE_OF_KIND: dict[str, str] = {"mixer": "mixer", "channel": "channel_mixer"}


def genome_from_json(data: object) -> MixerGenome | ChannelGenome:
    """A genome from its JSON form (dict); raises ``pydantic.ValidationError`` naming the field."""
    return GENOME_ADAPTER.validate_python(data)


def genome_fingerprint(genome: MixerGenome | ChannelGenome) -> str:
    """Content hash of a genome (12 hex digits)."""
    payload = json.dumps(genome.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def gene_classes(gene: Gene) -> set[type[Gene]]:
    """The classes of ``gene`` and of every gene below it (e.g. to check that a set of genomes covers a union)."""
    out: set[type[Gene]] = {type(gene)}
    for field in type(gene).model_fields:
        value = getattr(gene, field)
        if isinstance(value, Gene):
            out |= gene_classes(value)
    return out


def role_of(genome: MixerGenome | ChannelGenome) -> str:
    """The GAU role of units generated from ``genome``."""
    return ROLE_OF_KIND[genome.kind]
