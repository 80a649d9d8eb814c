"""The fitness model's parts: indicator features of a design and a ridge regression over them.

Features of a design are indicator variables, one per unit implementation it contains
(``unit:<role>:<source hash>``), one per unit hyperparameter value and one for the operator
that made it. :class:`~model_discovery.select.policy.Surrogate` uses the regression to rank
candidates and to give unverified designs a prior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from model_discovery.evolution.tree import source_hash
from model_discovery.records import Design


def design_features(design: Design, operator: str = "") -> list[str]:
    """Indicator features of a design: its units (by role and normalised source), hparams, operator."""
    feats = sorted({f"unit:{u.role}:{source_hash(u.source)}" for u in design.units.values()}
                   | {f"hp:{n}:{k}={v}" for n, u in design.units.items() for k, v in u.hparams.items()})
    return feats + ([f"op:{operator}"] if operator else [])


class Ridge:
    """Ridge regression from sparse indicator features (lists of strings) to fitness."""

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"ridge alpha must be positive, got {alpha}")
        self.alpha = alpha
        self.rows: list[Sequence[str]] = []
        self.y: list[float] = []
        self._index: dict[str, int] = {}
        self._fit: tuple[np.ndarray, np.ndarray, float, float] | None = None

    def __len__(self) -> int:
        return len(self.y)

    def add(self, features: Sequence[str], value: float) -> None:
        for f in features:
            self._index.setdefault(f, len(self._index))
        self.rows.append(list(features))
        self.y.append(float(value))
        self._fit = None

    def _solve(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        y = np.asarray(self.y)
        x = np.zeros((len(self.rows), len(self._index)))
        for i, feats in enumerate(self.rows):
            x[i, [self._index[f] for f in feats]] = 1.0
        xm, ym = x.mean(axis=0), float(y.mean())
        xc = x - xm
        # dual form: cheap while rows are fewer than features
        k = xc @ xc.T + self.alpha * np.eye(len(y))
        w = xc.T @ np.linalg.solve(k, y - ym)
        resid = (y - ym) - xc @ w
        dof = max(1, len(y) - 1)
        return w, xm, ym, float(math.sqrt(float(resid @ resid) / dof))

    def predict(self, features: Sequence[str]) -> float | None:
        """Predicted value (None before any observation)."""
        return float(self.predict_many([features])[0]) if self.y else None

    def predict_many(self, rows: Sequence[Sequence[str]]) -> np.ndarray:
        """Predicted values of many feature lists at once (the mean of nothing: -inf)."""
        if not self.y:
            return np.full(len(rows), -math.inf)
        if self._fit is None:
            self._fit = self._solve()
        w, xm, ym, _ = self._fit
        x = np.zeros((len(rows), len(self._index)))
        for i, feats in enumerate(rows):
            x[i, [self._index[f] for f in feats if f in self._index]] = 1.0
        return ym + (x - xm) @ w

    def residual_sd(self) -> float:
        if len(self.y) < 2:
            return 0.0
        if self._fit is None:
            self._fit = self._solve()
        return self._fit[3]
