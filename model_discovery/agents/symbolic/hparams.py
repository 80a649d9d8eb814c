"""Hyperparameter mutation within sane bounds.

Every rung of the ladder has ``d_model`` a multiple of 64, so a head count (or head size) that
divides 64 divides ``d_model`` at every rung. Other kinds are recognised by name: expansion
ratios, kernel sizes, state sizes; booleans flip and string options move to another value the
unit's source compares against.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from model_discovery.records.design import HParam

#: The greatest common divisor of every rung's ``d_model``.
D_MODEL_QUANTUM = 64
HEAD_COUNTS = (1, 2, 4, 8, 16)
HEAD_SIZES = (8, 16, 32, 64)

Kind = Literal["heads", "head_size", "ratio", "kernel", "state", "rank", "skip", "int", "float", "bool", "str"]

_KIND_PATTERNS: list[tuple[str, Kind]] = [
    (r"eps|dropout|drop|seed|init|std|theta|base|max_len|max_seq|vocab|context|multiple|chunk|dt_|gate_norm|filter_emb|order", "skip"),
    (r"head_dim|head_size|d_head|headdim", "head_size"),
    (r"head|group", "heads"),
    (r"kernel|conv|filter_order|window", "kernel"),
    (r"state|d_state|n_state|memory|slots", "state"),
    (r"rank|low_rank|lora", "rank"),
    (r"mult|expand|ratio|factor|hidden|ffn|multiplier|expansion", "ratio"),
]


def hparam_kind(name: str, value: HParam) -> Kind:
    """How a hyperparameter may be mutated, from its name and type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    low = name.lower()
    for pattern, kind in _KIND_PATTERNS:
        if re.search(pattern, low):
            return kind
    return "int" if isinstance(value, int) else "float"


def _neighbour(options: tuple[int, ...], value: int, rng: random.Random) -> int:
    others = [o for o in options if o != value]
    if value in options:
        i = options.index(value)
        near = [options[j] for j in (i - 1, i + 1) if 0 <= j < len(options)]
        return rng.choice(near)
    return min(others, key=lambda o: (abs(o - value), o))


def mutate_value(name: str, value: HParam, rng: random.Random, choices: list[str] | None = None) -> HParam | None:
    """A different, valid value for one hyperparameter, or ``None`` when it should not change."""
    kind = hparam_kind(name, value)
    if kind == "skip":
        return None
    if kind == "bool":
        return not value
    if kind == "str":
        others = [c for c in (choices or []) if c != value]
        return rng.choice(others) if others else None
    if kind == "heads":
        return _neighbour(HEAD_COUNTS, int(value), rng)
    if kind == "head_size":
        return _neighbour(HEAD_SIZES, int(value), rng)
    if kind == "kernel":
        v = int(value)
        if v <= 8:
            return _neighbour((2, 3, 4, 5, 6, 7, 8), v, rng)
        return max(2, v * 2 if rng.random() < 0.5 else v // 2)
    if kind == "state":
        return _neighbour((4, 8, 16, 32, 64, 128), int(value), rng)
    if kind == "rank":
        return _neighbour((4, 8, 16, 32, 64), int(value), rng)
    if kind == "ratio":
        if isinstance(value, int) and value <= 8:
            return _neighbour((1, 2, 3, 4, 6, 8), value, rng)
        if isinstance(value, int):
            return value * 2 if rng.random() < 0.5 else max(1, value // 2)
        new = round(float(value) * rng.choice((0.75, 4 / 3)), 3)
        return min(8.0, max(0.5, new)) if new != value else None
    if isinstance(value, int):
        if value <= 0:
            return None
        new = value * 2 if (value == 1 or rng.random() < 0.5) else value // 2
        return new if new != value else None
    if isinstance(value, float):
        if value == 0.0:
            return None
        return round(value * rng.choice((0.5, 0.8, 1.25, 2.0)), 6)
    return None


def snap_value(name: str, value: HParam) -> HParam:
    """The nearest value that is valid at every rung (head counts/sizes dividing 64, kernels >= 1)."""
    kind = hparam_kind(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if kind == "heads":
        return max([h for h in HEAD_COUNTS if h <= max(1, int(value))] or [1])
    if kind == "head_size":
        return min(HEAD_SIZES, key=lambda h: (abs(h - int(value)), h))
    if kind in ("kernel", "state", "rank", "int") and isinstance(value, int) and value < 1:
        return 1
    if kind == "ratio" and value <= 0:
        return 1 if isinstance(value, int) else 1.0
    return value


def hparams_valid(hparams: dict[str, HParam]) -> list[str]:
    """Problems with a unit's hyperparameters at some rung of the ladder."""
    out: list[str] = []
    for name, value in hparams.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        kind = hparam_kind(name, value)
        if kind == "heads" and (int(value) < 1 or D_MODEL_QUANTUM % int(value)):
            out.append(f"{name}={value} does not divide d_model at every rung")
        if kind == "head_size" and (int(value) < 1 or D_MODEL_QUANTUM % int(value)):
            out.append(f"{name}={value} does not divide d_model at every rung")
    heads = {k: v for k, v in hparams.items() if hparam_kind(k, v) == "heads" and isinstance(v, int)}
    kv = [k for k in heads if "kv" in k.lower()]
    q = [k for k in heads if "kv" not in k.lower()]
    for kk in kv:
        for qk in q:
            if heads[kk] and heads[qk] % heads[kk]:
                out.append(f"{qk}={heads[qk]} is not a multiple of {kk}={heads[kk]}")
    return out
