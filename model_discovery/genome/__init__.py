"""Unit invention: a typed genome of sequence- and channel-mixing primitives, a code generator,
and operators (genome mutation and crossover, code-level edits of existing units).

Every unit made here is hostile code like any other: it goes through :mod:`model_discovery.check`.
"""

from model_discovery.genome.codegen import generate, unit_name
from model_discovery.genome.spec import ChannelGenome, MixerGenome

__all__ = ["ChannelGenome", "MixerGenome", "generate", "unit_name"]
