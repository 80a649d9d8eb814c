"""Every symbolic operator by name: the GP operators on GAU trees and the unit-inventing ones."""

from __future__ import annotations

from model_discovery.agents.symbolic.invention import INVENT_OPERATORS, INVENT_REGISTRY
from model_discovery.agents.symbolic.operators import OPERATORS as GP_OPERATORS
from model_discovery.agents.symbolic.operators import REGISTRY as GP_REGISTRY
from model_discovery.agents.symbolic.operators import OperatorFn

OPERATORS: tuple[str, ...] = GP_OPERATORS + INVENT_OPERATORS
REGISTRY: dict[str, OperatorFn] = {**GP_REGISTRY, **INVENT_REGISTRY}
