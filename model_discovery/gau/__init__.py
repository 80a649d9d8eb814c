"""GAU code construct: units, designs, scales, compilation and the LM wrapper."""

from model_discovery.gau.compose import build_lm, compile_design, load_module
from model_discovery.gau.library import catalogue, list_seeds, load_design, load_seed
from model_discovery.gau.scales import LADDER, get_scale
from model_discovery.records import ROLES, Design, DesignError, ScaleConfig, UnitSpec

__all__ = ["ROLES", "Design", "DesignError", "UnitSpec", "ScaleConfig", "LADDER", "get_scale",
           "compile_design", "load_module", "build_lm", "catalogue", "list_seeds", "load_seed",
           "load_design"]
