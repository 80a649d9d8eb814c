"""Verification: train a design at a rung (:mod:`model_discovery.train`), evaluate, record, track.

Public API::

    load_token_data(vocab_size, config=None, cache_dir=None) -> TokenData
    corpus_documents(split, config=None) -> list[str]
    TrainConfig.from_scale(scale, n_params), train(model, data, config, run_dir) -> TrainResult
    verify_design(design, scale, out_dir, ..., replicates=1) -> VerifyResult
    verify_command(ref, scale, out_dir) -> int        (``modis verify``)
    kill_sandboxes() -> int                            (a stopping process ends its sandboxed children)
"""

from model_discovery.check.sandbox import kill_sandboxes

from model_discovery.records import DataConfig, Replicate, TrainConfig, TrainResult, VerifyResult
from model_discovery.train.corpus import TokenData, corpus_documents, load_token_data
from model_discovery.train.loop import train
from model_discovery.verify.engine import sandbox_entry, verify_command, verify_design

__all__ = ["DataConfig", "TokenData", "corpus_documents", "load_token_data", "TrainConfig", "TrainResult", "train",
           "Replicate", "VerifyResult", "verify_design", "verify_command", "sandbox_entry", "kill_sandboxes"]
