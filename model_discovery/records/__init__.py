"""The typed core: plain pydantic records that every other layer passes around.

One concept per module, importing nothing of the project but :mod:`model_discovery.errors` and
:mod:`model_discovery.safe_io` (enforced by ``tests/test_layers.py``):

- :mod:`.design`: ``Design``, ``UnitSpec``, ``DesignError`` (designs as data);
- :mod:`.scale`: ``ScaleConfig`` (one rung of the ladder);
- :mod:`.data`: ``DataConfig`` (where the corpus comes from);
- :mod:`.train`: ``TrainConfig``, ``TrainResult``, ``TrainProgress``;
- :mod:`.check`: ``CheckConfig``, ``CheckResult``, ``CheckReport``;
- :mod:`.result`: ``VerifyResult``, ``Replicate``, ``over_seeds``;
- :mod:`.job`: ``VerifyPick``, ``VerifyOptions``, ``VerifyJob``, ``Placement``;
- :mod:`.proposal`: ``Proposal``, ``Review``, ``Plan``, ``UnitPlan``, ``UnitImplementation``, ``ReviewContext``,
  and the agents' context: ``ProposalContext``, ``CoderContext``, ``DesignDigest``, ``ResultDigest``, ``UnitAttempt``;
- :mod:`.tree`: the evolution tree's records (``DesignRecord``, ``ResultRecord``, ``LeaderboardRow``, ...);
- :mod:`.config_file`: ``ConfigFile`` (base of config models read from YAML), ``ConfigError``.
"""

from model_discovery.records.check import CheckConfig, CheckReport, CheckResult
from model_discovery.records.config_file import ConfigError, ConfigFile
from model_discovery.records.data import DataConfig
from model_discovery.records.design import ROLES, Design, DesignError, UnitOrigin, UnitSpec
from model_discovery.records.job import Placement, VerifyJob, VerifyOptions, VerifyPick
from model_discovery.records.proposal import (CoderContext, DesignDigest, Plan, Proposal, ProposalContext, ResultDigest,
                                              Review, ReviewContext, UnitAttempt, UnitImplementation, UnitPlan)
from model_discovery.records.result import Replicate, VerifyResult, over_seeds
from model_discovery.records.scale import ScaleConfig
from model_discovery.records.train import TrainConfig, TrainProgress, TrainResult
from model_discovery.records.tree import (STATUSES, CheckRecord, DesignRecord, EdgeRecord, Graph, GraphNode,
                                          LeaderboardRow, LeaseRecord, Lineage, ProposalRecord, ResultRecord,
                                          ReviewRecord, TreeStats)

__all__ = ["ROLES", "Design", "DesignError", "UnitOrigin", "UnitSpec", "ScaleConfig", "DataConfig", "TrainConfig", "TrainProgress", "TrainResult",
           "CheckConfig", "CheckResult", "CheckReport", "VerifyResult", "Replicate", "over_seeds", "VerifyPick",
           "VerifyOptions", "VerifyJob", "Placement", "Proposal", "Review", "Plan", "UnitPlan",
           "UnitImplementation", "ReviewContext", "ProposalContext", "CoderContext", "DesignDigest",
           "ResultDigest", "UnitAttempt", "STATUSES", "DesignRecord",
           "EdgeRecord", "ProposalRecord", "ReviewRecord", "CheckRecord", "ResultRecord", "LeaseRecord",
           "LeaderboardRow", "Lineage", "Graph", "GraphNode", "TreeStats", "ConfigFile", "ConfigError"]
