"""Rankers without a probe: Probeless (Antverg & Belinkov 2022, eq. 1) and the random control."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from probing.rankers.base import Ranking, ScoreRanker, check_inputs


def probeless_scores(X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """r = Σ over ordered value pairs (z, z′) of |q(z) − q(z′)|, q(z) the class mean vector (d,)."""
    means = np.stack([np.asarray(X[y == c], dtype=np.float64).mean(axis=0) for c in range(n_classes)])
    return np.abs(means[:, None, :] - means[None, :, :]).sum(axis=(0, 1))


class ProbelessRanker(ScoreRanker):
    """Rank neurons by how far apart the class means are, on the raw (unstandardised) activations, as in the paper."""

    method = "probeless"

    def neuron_scores(self, X_train: np.ndarray, y_train: np.ndarray, n_classes: int) -> np.ndarray:
        """Scores from the train class means."""
        return probeless_scores(X_train, y_train, n_classes)


class RandomRanker(ScoreRanker):
    """The random control: a permutation drawn from the seed; its scores are NaN (it has none)."""

    method = "random"
    reversible = False  # its reverse is another random permutation, not a bottom-to-top control

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_dev: np.ndarray | None = None,
        y_dev: np.ndarray | None = None,
    ) -> Ranking:
        """A seeded uniform permutation of the neurons (inputs checked, otherwise unused)."""
        check_inputs(X_train, y_train, X_dev, y_dev)
        d = X_train.shape[1]
        order = np.random.default_rng(self.params.seed).permutation(d).astype(np.int64)
        return Ranking(order, np.full(d, np.nan), self.method, asdict(self.params))
