"""A learned prior for unverified designs: ridge regression on unit and operator features.

Features of a design are indicator variables, one per unit implementation it contains
(``unit:<role>:<source hash>``) and one for the operator that made it. Every new result
updates the model; a design whose features were never seen gets the mean fitness.
"""

from __future__ import annotations

import numpy as np

from model_discovery.evolution.tree import source_hash
from model_discovery.gau.design import Design


def design_features(design: Design, operator: str = "") -> list[str]:
    """Indicator features of a design: its units (by role and normalised source) and operator."""
    feats = sorted({f"unit:{u.role}:{source_hash(u.source)}" for u in design.units.values()}
                   | {f"hp:{n}:{k}={v}" for n, u in design.units.items() for k, v in u.hparams.items()})
    return feats + ([f"op:{operator}"] if operator else [])


class FitnessPredictor:
    """Ridge regression (closed form, refit lazily) from design features to fitness."""

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"ridge alpha must be positive, got {alpha}")
        self.alpha = alpha
        self._rows: list[list[str]] = []
        self._y: list[float] = []
        self._index: dict[str, int] = {}
        self._weights: np.ndarray | None = None
        self._mean = 0.0

    def __len__(self) -> int:
        return len(self._y)

    def update(self, design: Design, fitness: float, operator: str = "") -> None:
        """Add one observed (design, fitness)."""
        feats = design_features(design, operator)
        for f in feats:
            self._index.setdefault(f, len(self._index))
        self._rows.append(feats)
        self._y.append(float(fitness))
        self._weights = None

    def _fit(self) -> None:
        y = np.asarray(self._y)
        self._mean = float(y.mean())
        x = np.zeros((len(self._rows), len(self._index)))
        for i, feats in enumerate(self._rows):
            x[i, [self._index[f] for f in feats]] = 1.0
        xm = x.mean(axis=0)
        xc = x - xm
        a = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        w = np.linalg.solve(a, xc.T @ (y - self._mean))
        self._weights, self._xmean = w, xm

    def predict(self, design: Design, operator: str = "") -> float | None:
        """Predicted fitness, or None before any observation."""
        if not self._y:
            return None
        if self._weights is None:
            self._fit()
        assert self._weights is not None
        x = np.zeros(len(self._index))
        for f in design_features(design, operator):
            if f in self._index:
                x[self._index[f]] = 1.0
        return float(self._mean + (x - self._xmean) @ self._weights)
