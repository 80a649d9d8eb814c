"""CUDA paths of training and verification (run on a GPU machine; skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_discovery.gau import build_lm, get_scale, load_seed
from model_discovery.verify import TrainConfig, load_token_data, train, verify_design

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("seed", ["gpt2", "mamba2", "deltanet"])
def test_bf16_training_on_cuda_lowers_the_loss(seed: str, tmp_path: Path) -> None:
    scale = get_scale("14M")
    data = load_token_data(get_scale("micro").vocab_size)
    model = build_lm(load_seed(seed), scale, vocab_size=data.vocab_size).cuda()
    cfg = TrainConfig.from_scale(scale, model.num_params(), train_tokens=60 * scale.batch_size * 256,
                                 context_len=256, device="cuda", progress=False, final_eval_batches=4)
    result = train(model, data, cfg, run_dir=tmp_path)
    assert result.device.startswith("cuda") and result.dtype == "bfloat16"
    assert result.train_loss[-1][2] < result.train_loss[0][2] - 1.0
    assert result.peak_memory_bytes > 0 and result.tokens_per_s > 0


def test_compiled_training_matches_eager_closely(tmp_path: Path) -> None:
    scale = get_scale("micro")
    data = load_token_data(scale.vocab_size)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_lm(load_seed("llama"), scale, vocab_size=data.vocab_size).cuda()
        cfg = TrainConfig.from_scale(scale, model.num_params(), train_tokens=40 * scale.batch_size * 128,
                                     device="cuda", compile=compiled, progress=False, final_eval_batches=4)
        result = train(model, data, cfg, run_dir=tmp_path / str(compiled))
        losses[compiled] = result.final_val_loss
    assert abs(losses[True] - losses[False]) < 0.05
    assert result.compiled, result.compile_fallback


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_sandboxed_verification_on_cuda(compiled: bool, tmp_path: Path) -> None:
    """CUDA initialises under the sandbox's audit hook; with compile, Triton's toolchain may run."""
    record = verify_design(load_seed("gpt2"), "14M", tmp_path, eval=False, probes=False, wandb=False,
                           train_overrides={"train_tokens": 200_000, "device": "cuda", "final_eval_batches": 4,
                                            "compile": compiled})
    assert record.status == "ok", record.error
    assert record.train is not None and record.train.device.startswith("cuda")
    assert record.train.dtype == "bfloat16"
    assert record.train.compiled == compiled, record.train.compile_fallback
