"""Trainer tests: a tiny GPT-2 seed really trains on CPU, schedules, accumulation, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model_discovery.gau import ScaleConfig, build_lm, load_seed
from model_discovery.records import DataConfig, TrainConfig
from model_discovery.train.corpus import TokenData, load_token_data
from model_discovery.train.loop import CHECKPOINT_NAME, TrainingError, lr_at, make_optimizer, train

TINY = ScaleConfig(name="tiny", d_model=32, n_block=1, context_len=32, vocab_size=512, train_tokens=20_000,
                   batch_size=8, lr=1e-2, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> TokenData:
    return load_token_data(TINY.vocab_size, DataConfig(max_bytes=300_000))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_lm(load_seed("gpt2"), TINY)


def config(model: torch.nn.Module, **overrides: object) -> TrainConfig:
    return TrainConfig.from_scale(TINY, model.num_params(), **{"progress": False, **overrides})


def test_tiny_model_really_trains_and_loss_falls(data: TokenData) -> None:
    model = tiny_model()
    cfg = config(model, eval_interval=20)
    assert cfg.max_steps == math.ceil(20_000 / (8 * 32))
    result = train(model, data, cfg)
    assert result.completed and result.steps == cfg.max_steps and result.tokens == cfg.max_steps * 256
    first = result.train_loss[0][2]
    assert first > math.log(512) - 0.5  # starts near chance
    assert result.final_val_loss < first - 0.8  # and really learns
    assert [p[0] for p in result.val_loss] == [20, 40, 60, cfg.max_steps]
    assert result.tokens_per_s > 0 and result.peak_memory_bytes > 0 and result.wall_s > 0
    assert result.n_params == model.num_params() and result.device == "cpu" and result.dtype == "float32"


def test_recipe_from_scale_uses_chinchilla_without_a_budget() -> None:
    rung = TINY.model_copy(update={"train_tokens": None})
    cfg = TrainConfig.from_scale(rung, n_params=10_000)
    assert cfg.max_steps == math.ceil(20 * 10_000 / (8 * 32)) and cfg.lr == TINY.lr
    assert TrainConfig.from_scale(rung, 10_000, train_tokens=2560).max_steps == 10
    assert TrainConfig.from_scale(rung, 10_000, warmup_steps=3).warmup_steps == 3
    big = ScaleConfig(name="big", d_model=64, n_block=1, context_len=2048, vocab_size=512, batch_size=64)
    cfg = TrainConfig.from_scale(big, 1000)
    assert cfg.micro_size * 2048 <= 32768 and cfg.grad_accum * cfg.micro_size == 64
    with pytest.raises(ValueError, match="not a multiple of micro_batch_size"):
        TrainConfig.from_scale(rung, 10_000, micro_batch_size=3)


def test_warmup_then_cosine_schedule() -> None:
    cfg = TrainConfig(max_steps=110, batch_size=1, context_len=8, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 110))


def test_weight_decay_only_on_matrices() -> None:
    model = tiny_model()
    opt = make_optimizer(model, config(model), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_gradient_accumulation_matches_the_full_batch(data: TokenData) -> None:
    full = train(tiny_model(), data, config(tiny_model(), train_tokens=2560, log_interval=1, final_eval_batches=2))
    accum = train(tiny_model(), data, config(tiny_model(), train_tokens=2560, log_interval=1, final_eval_batches=2,
                                             micro_batch_size=2))
    assert [p[0] for p in full.train_loss] == [p[0] for p in accum.train_loss]
    for (_, _, a), (_, _, b) in zip(full.train_loss, accum.train_loss):
        assert a == pytest.approx(b, abs=1e-4)


def test_resume_continues_at_the_right_step_with_the_same_result(data: TokenData, tmp_path: Path) -> None:
    kwargs = dict(train_tokens=6400, log_interval=1, eval_interval=10, final_eval_batches=4)
    whole = train(tiny_model(), data, config(tiny_model(), **kwargs), run_dir=tmp_path / "whole")

    part_dir = tmp_path / "part"
    first = train(tiny_model(), data, config(tiny_model(), stop_at=13, **kwargs), run_dir=part_dir)
    assert first.steps == 13 and not first.completed and (part_dir / CHECKPOINT_NAME).exists()
    resumed_model = tiny_model(seed=123)  # different init: the checkpoint must overwrite it
    rest = train(resumed_model, data, config(resumed_model, **kwargs), run_dir=part_dir)
    assert rest.resumed_from == 13 and rest.steps == whole.steps == 25 and rest.completed
    assert rest.train_loss == whole.train_loss
    assert rest.val_loss == whole.val_loss
    assert rest.final_val_loss == whole.final_val_loss

    state = torch.load(part_dir / CHECKPOINT_NAME, weights_only=False)
    assert state["step"] == 25
    with pytest.raises(TrainingError, match="checkpoint has max_steps=25"):
        train(tiny_model(), data, config(tiny_model(), train_tokens=12800), run_dir=part_dir)


def test_divergence_is_a_clear_error(data: TokenData) -> None:
    model = tiny_model()
    with torch.no_grad():
        model.wte.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="train loss is nan at step 1"):
        train(model, data, config(model, train_tokens=2560))


class RefusesToCompile(torch.nn.Module):
    """Wraps an LM; compiled, it returns logits of the wrong length (the loss then fails), eager works."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def num_params(self) -> int:
        return self.lm.num_params()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.lm(idx)
        return logits[:, :-1] if torch.compiler.is_compiling() else logits


def test_failed_compilation_falls_back_to_eager_and_says_why(data: TokenData) -> None:
    model = RefusesToCompile(tiny_model())
    result = train(model, data, config(model.lm, train_tokens=2560, compile=True))
    assert result.completed and not result.compiled
    assert result.compile_fallback is not None and "size" in result.compile_fallback
    assert "\n" not in result.compile_fallback
    eager = train(tiny_model(), data, config(model.lm, train_tokens=2560))
    assert not eager.compiled and eager.compile_fallback is None


@pytest.mark.parametrize("seed", ["gpt2", "hyena", "mamba2"])
def test_bf16_autocast_path_trains(seed: str, data: TokenData) -> None:
    """The CUDA default (bf16 autocast) on CPU: the same code path, checked without a GPU."""
    torch.manual_seed(0)
    model = build_lm(load_seed(seed), TINY)
    result = train(model, data, config(model, train_tokens=10_000, dtype="bfloat16"))
    assert result.dtype == "bfloat16" and result.completed
    assert result.final_val_loss < result.train_loss[0][2] - 0.5
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 under autocast
