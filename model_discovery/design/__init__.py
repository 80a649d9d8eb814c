"""The design flow: a checkpointed LangGraph graph from parent selection to a committed design."""

from model_discovery.design.flow import DesignFlow
from model_discovery.design.state import DesignOutcome, FlowConfig, FlowState

__all__ = ["DesignFlow", "DesignOutcome", "FlowConfig", "FlowState"]
