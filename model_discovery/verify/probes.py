"""Synthetic probe rung: small token tasks that isolate one capability of a design.

After Mechanistic Architecture Design (Poli et al., 2024, arXiv 2403.17844): each probe makes
its own synthetic token data, trains a fresh tiny LM of the design (:data:`PROBE_SCALE`:
d_model 64, 2 blocks, context 64, vocabulary 64) for a few hundred steps on the CPU, and scores
accuracy (0 to 1) on held-out examples it has never seen.

=================  ==========================================================================
probe              capability                                                    chance
=================  ==========================================================================
``recall``         in-context associative recall: key-value pairs, then queried keys   ~1/16
``noisy_recall``   recall with noise tokens between the pairs                           ~1/16
``fuzzy_recall``   recall of two-token values under two-token keys                      ~1/16
``selective_copy`` copy the few content tokens scattered among blanks, in order         ~1/32
``compression``    rebuild a random sequence from the last position's hidden state      ~1/32
``memorization``   a fixed map of 1024 two-token keys to values, held only in weights  ~1/28
=================  ==========================================================================

Scores are the fraction of scored target tokens predicted exactly (greedy argmax), with the model
teacher-forced on the held-out sequence. Everything is seeded: the same design, probe list,
steps and seed give the same scores.

``run_probes`` executes design code: for untrusted designs call it inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from model_discovery.gau.compose import build_lm
from model_discovery.records import Design, ScaleConfig, TrainConfig
from model_discovery.train.loop import Trainer, fit

IGNORE = -100  # targets the loss does not score (cross-entropy's ignore index)
# Probe vocabulary layout (64 ids).
BLANK, SEP, COPY = 0, 1, 2
KEYS = (4, 20)        # 16 keys
VALUES = (20, 36)     # 16 values
NOISE = (36, 52)      # 16 noise tokens
CONTENT = (4, 36)     # 32 content tokens (selective copy, compression)
MEM_KEYS = (4, 36)     # keys of the fixed map are two of these 32 tokens: 1024 keys
MEM_VALUES = (36, 64)  # 28 values of the fixed map
PROBE_VOCAB = 64

PROBE_SCALE = ScaleConfig(name="probe", d_model=64, n_block=2, context_len=64, vocab_size=PROBE_VOCAB,
                          batch_size=32, lr=3e-3, verify_budget=0, device="cpu")
"""The tiny rung every probe trains at unless ``run_probes`` is given another."""


class ProbeError(ValueError):
    """A probe request is invalid (unknown probe, scale too small); the message is one line."""


class ProbeConfig(BaseModel):
    """Training and scoring settings shared by the probes."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(250, gt=0, description="optimizer steps per probe")
    batch_size: int = Field(32, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    eval_examples: int = Field(256, gt=0, description="held-out sequences scored per probe")
    seq_len: int = Field(64, ge=32, description="tokens per probe sequence")
    threads: int | None = Field(1, description="torch CPU threads while probing (tiny models run best "
                                "on one; None: leave as is)")

    def train_config(self) -> TrainConfig:
        """The trainer's settings of one probe: warmup over ``warmup_frac`` of the steps, then cosine
        decay to zero, on the CPU."""
        return TrainConfig(max_steps=self.steps, batch_size=self.batch_size, context_len=self.seq_len, lr=self.lr,
                           min_lr_ratio=0.0, warmup_steps=max(1, int(self.warmup_frac * self.steps)),
                           weight_decay=self.weight_decay, beta2=0.98, device="cpu", dtype="float32",
                           progress=False)


class ProbeBatch(NamedTuple):
    """Inputs ``(n, T)`` and targets ``(n, T)`` (``IGNORE`` where a position is not scored)."""

    inputs: torch.Tensor
    targets: torch.Tensor


Generator = Callable[[np.random.Generator, int, int], ProbeBatch]


def _batch(rows: list[tuple[list[int], list[int]]]) -> ProbeBatch:
    """Pack (tokens, targets) rows where ``targets[t]`` is what ``tokens[t]`` should predict."""
    inputs = torch.tensor([r[0] for r in rows], dtype=torch.long)
    targets = torch.tensor([r[1] for r in rows], dtype=torch.long)
    return ProbeBatch(inputs, targets)


def _fill(tokens: list[int], targets: list[int], seq_len: int) -> tuple[list[int], list[int]]:
    tokens, targets = tokens[:seq_len], targets[:seq_len]
    pad = seq_len - len(tokens)
    return tokens + [BLANK] * pad, targets + [IGNORE] * pad


def _recall_rows(rng: np.random.Generator, n: int, seq_len: int, key_len: int, val_len: int,
                 n_noise: int) -> ProbeBatch:
    """Key-value pairs (with ``n_noise`` noise tokens between them), then queries of those keys;
    each query's value tokens are scored."""
    n_keys, n_vals = KEYS[1] - KEYS[0], VALUES[1] - VALUES[0]
    unit = key_len + val_len
    n_pairs = max(2, min(n_keys ** key_len, (seq_len // 4 - n_noise) // unit))
    rows = []
    for _ in range(n):
        codes = rng.choice(n_keys ** key_len, n_pairs, replace=False)
        keys = [tuple(KEYS[0] + (int(c) // n_keys ** j) % n_keys for j in range(key_len)) for c in codes]
        vals = [tuple(int(x) for x in VALUES[0] + rng.integers(0, n_vals, val_len)) for _ in keys]
        pieces: list[list[int]] = [list(k) + list(v) for k, v in zip(keys, vals)]
        pieces += [[int(NOISE[0] + rng.integers(0, NOISE[1] - NOISE[0]))] for _ in range(n_noise)]
        order = rng.permutation(len(pieces))
        tokens = [t for i in order for t in pieces[i]]
        targets = [IGNORE] * len(tokens)
        while len(tokens) + unit <= seq_len:
            q = int(rng.integers(0, n_pairs))
            tokens += list(keys[q])
            targets += [IGNORE] * (key_len - 1) + [vals[q][0]]
            for j in range(val_len):
                tokens.append(vals[q][j])
                targets.append(vals[q][j + 1] if j + 1 < val_len else IGNORE)
        rows.append(_fill(tokens, targets, seq_len))
    return _batch(rows)


def gen_recall(rng: np.random.Generator, n: int, seq_len: int) -> ProbeBatch:
    """In-context associative recall: ``k1 v1 … kN vN`` then ``kq vq`` queries (values scored)."""
    return _recall_rows(rng, n, seq_len, key_len=1, val_len=1, n_noise=0)


def gen_noisy_recall(rng: np.random.Generator, n: int, seq_len: int) -> ProbeBatch:
    """Associative recall with noise tokens scattered between the key-value pairs."""
    return _recall_rows(rng, n, seq_len, key_len=1, val_len=1, n_noise=seq_len // 16)


def gen_fuzzy_recall(rng: np.random.Generator, n: int, seq_len: int) -> ProbeBatch:
    """Associative recall where keys and values are two tokens each (both value tokens scored)."""
    return _recall_rows(rng, n, seq_len, key_len=2, val_len=2, n_noise=0)


def gen_selective_copy(rng: np.random.Generator, n: int, seq_len: int) -> ProbeBatch:
    """Content tokens scattered among blanks, then ``COPY``: emit the content tokens in order."""
    n_content = max(2, seq_len // 8)
    span = seq_len - n_content - 1
    rows = []
    for _ in range(n):
        content = [int(x) for x in CONTENT[0] + rng.integers(0, CONTENT[1] - CONTENT[0], n_content)]
        where = np.sort(rng.choice(span, n_content, replace=False))
        tokens = [BLANK] * span
        for pos, tok in zip(where, content):
            tokens[int(pos)] = tok
        tokens.append(COPY)
        targets = [IGNORE] * span + [content[0]]
        tokens += content
        targets += content[1:] + [IGNORE]
        rows.append(_fill(tokens, targets, seq_len))
    return _batch(rows)


def compression_length(seq_len: int) -> int:
    """Random tokens per compression example (then one ``SEP``)."""
    return max(4, seq_len // 4)


def gen_compression(rng: np.random.Generator, n: int, seq_len: int) -> ProbeBatch:
    """Random content tokens then ``SEP``; targets are the content tokens themselves (rebuilt by
    :class:`CompressionHead` from the hidden state at ``SEP`` alone)."""
    length = compression_length(seq_len)
    content = CONTENT[0] + rng.integers(0, CONTENT[1] - CONTENT[0], (n, length))
    inputs = np.concatenate([content, np.full((n, 1), SEP)], axis=1)
    return ProbeBatch(torch.as_tensor(inputs, dtype=torch.long), torch.as_tensor(content, dtype=torch.long))


def memorization_map(seed: int) -> np.ndarray:
    """The fixed table of the memorization probe: ``table[a, b]`` is the value of the two-token key
    ``(MEM_KEYS[0] + a, MEM_KEYS[0] + b)`` (the same for training and scoring)."""
    n_tok = MEM_KEYS[1] - MEM_KEYS[0]
    rng = np.random.default_rng([seed, 7919])
    return MEM_VALUES[0] + rng.integers(0, MEM_VALUES[1] - MEM_VALUES[0], (n_tok, n_tok))


def make_gen_memorization(table: np.ndarray) -> Generator:
    def gen_memorization(rng: np.random.Generator, n: int, seq_len: int) -> ProbeBatch:
        """Triples ``a b v`` with ``v = table[a, b]``, each key at most once per sequence: the value
        cannot be copied from context, and no single token's embedding determines it, so the
        table has to be stored in the blocks' weights. The ``v`` after each key is scored."""
        n_tok = table.shape[0]
        n_keys = seq_len // 3
        rows = []
        for _ in range(n):
            codes = rng.choice(n_tok * n_tok, n_keys, replace=False)
            tokens, targets = [], []
            for c in codes:
                a, b = divmod(int(c), n_tok)
                v = int(table[a, b])
                tokens += [MEM_KEYS[0] + a, MEM_KEYS[0] + b, v]
                targets += [IGNORE, v, IGNORE]
            rows.append(_fill(tokens, targets, seq_len))
        return _batch(rows)
    return gen_memorization


class CompressionHead(nn.Module):
    """MAD's compression decoder: rebuild token ``i`` from the final hidden state and position ``i``."""

    def __init__(self, d_model: int, length: int, vocab_size: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(length, d_model) * 0.02)
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, 2 * d_model), nn.GELU(),
                                 nn.Linear(2 * d_model, vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h``: (batch, d_model) -> logits (batch, length, vocab)."""
        b, length = h.size(0), self.pos.size(0)
        z = torch.cat([h[:, None, :].expand(b, length, -1), self.pos[None].expand(b, -1, -1)], dim=-1)
        return self.mlp(z)


PROBES: tuple[str, ...] = ("recall", "noisy_recall", "fuzzy_recall", "selective_copy", "compression",
                           "memorization")


def _generator(name: str, seed: int) -> Generator:
    if name == "memorization":
        return make_gen_memorization(memorization_map(seed))
    return {"recall": gen_recall, "noisy_recall": gen_noisy_recall, "fuzzy_recall": gen_fuzzy_recall,
            "selective_copy": gen_selective_copy, "compression": gen_compression}[name]


class _ProbeModel(nn.Module):
    """The design's LM, plus the compression decoder for the compression probe."""

    def __init__(self, lm: nn.Module, compression: CompressionHead | None) -> None:
        super().__init__()
        self.lm, self.head = lm, compression

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.lm(inputs)
        return self.head(self.lm.hidden_states(inputs)[:, -1])


LMFactory = Callable[[str], nn.Module]


def init_seed(name: str, seed: int) -> int:
    """The torch seed a probe's fresh LM is initialised with."""
    return seed * 1000 + PROBES.index(name)


def design_factory(design: Design, scale: ScaleConfig) -> LMFactory:
    """Fresh LMs of ``design`` at the probe rung, one per probe (runs the design's code here)."""

    def make(name: str) -> nn.Module:
        return build_lm(design, scale, vocab_size=PROBE_VOCAB)

    return make


def train_probe(make_lm: LMFactory, name: str, scale: ScaleConfig, cfg: ProbeConfig, seed: int,
                after_training: Callable[[nn.Module], None] | None = None) -> float:
    """Train a fresh LM (``make_lm(name)``) on probe ``name``; return its held-out accuracy in [0, 1].

    ``after_training`` sees the trained LM before it is scored (the judge tests causality there).
    """
    gen = _generator(name, seed)
    data_rng = np.random.default_rng([seed, PROBES.index(name), 1])
    eval_rng = np.random.default_rng([seed, PROBES.index(name), 2])
    torch.manual_seed(init_seed(name, seed))
    lm = make_lm(name)
    head = CompressionHead(scale.d_model, compression_length(cfg.seq_len), PROBE_VOCAB) \
        if name == "compression" else None
    model = _ProbeModel(lm, head)
    fit(Trainer(model, cfg.train_config()), lambda step: gen(data_rng, cfg.batch_size, cfg.seq_len))
    if after_training is not None:
        after_training(lm)
    model.eval()
    held = gen(eval_rng, cfg.eval_examples, cfg.seq_len)
    correct = total = 0
    with torch.inference_mode():
        for lo in range(0, cfg.eval_examples, 64):
            inputs, targets = held.inputs[lo: lo + 64], held.targets[lo: lo + 64]
            pred = model(inputs).argmax(-1)
            mask = targets != IGNORE
            correct += int((pred[mask] == targets[mask]).sum())
            total += int(mask.sum())
    return correct / max(1, total)


def run_probes(design: Design | LMFactory, scale: ScaleConfig | None = None, probes: Sequence[str] | None = None,
               steps: int | None = None, seed: int = 0, config: ProbeConfig | None = None,
               after_training: Callable[[nn.Module], None] | None = None) -> dict[str, float]:
    """Run the synthetic probes on ``design``; return ``{"probe/<name>": acc, …, "probe/mean": mean}``.

    Args:
        design: the design to probe (its code runs here: trusted designs only), or a factory of
            fresh LMs per probe name (the judge's graph LMs).
        scale: the tiny rung to train at (default :data:`PROBE_SCALE`); its vocabulary is
            replaced by the probe vocabulary (64) and its context must hold ``config.seq_len``.
        probes: names from :data:`PROBES` (default: all).
        steps: optimizer steps per probe (overrides ``config.steps``).
        seed: seeds data, initialisation and the memorization table.
        config: training and scoring settings.
        after_training: called with each trained LM before it is scored.

    The caller's torch RNG state is left untouched.
    """
    cfg = config or ProbeConfig()
    if steps is not None:
        cfg = cfg.model_copy(update={"steps": int(steps)})
    if cfg.steps <= 0:
        raise ProbeError(f"steps must be positive, got {cfg.steps}")
    scale = scale or PROBE_SCALE
    names = list(probes) if probes is not None else list(PROBES)
    unknown = [p for p in names if p not in PROBES]
    if unknown:
        raise ProbeError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    if not names:
        raise ProbeError("no probes requested")
    if scale.context_len < cfg.seq_len:
        raise ProbeError(f"scale {scale.name} context_len {scale.context_len} is shorter than probe "
                         f"sequences ({cfg.seq_len} tokens)")
    make_lm = design_factory(design, scale) if isinstance(design, Design) else design
    threads = torch.get_num_threads()
    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            for name in names:
                out[f"probe/{name}"] = train_probe(make_lm, name, scale, cfg, seed, after_training)
        finally:
            torch.set_num_threads(threads)
    out["probe/mean"] = float(np.mean([out[f"probe/{n}"] for n in names]))
    return out

