"""Unit invention: a typed genome of sequence- and channel-mixing primitives, a code generator,
and operators (genome mutation and crossover, code-level edits of existing units).

Every unit made here is hostile code like any other: it goes through :mod:`model_discovery.check`.
"""

from model_discovery.genome.codegen import describe, generate, unit_name
from model_discovery.genome.spec import (ChannelGenome, MixerGenome, genome_fingerprint, genome_from_json,
                                         role_of)

__all__ = ["ChannelGenome", "MixerGenome", "describe", "generate", "genome_fingerprint", "genome_from_json",
           "role_of", "unit_name"]
