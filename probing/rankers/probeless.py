"""Rankers without a probe: Probeless (Antverg & Belinkov 2022, eq. 1), the random control and the scale control."""

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


class VarianceRanker(ScoreRanker):
    """The scale control: neurons ranked by their pooled within-class standard deviation on the attribute's train
    words, sqrt(Σ_c Σ_{i∈c} (x_i − q(c))² / (n − C)), so that how large a neuron is, and not what it encodes,
    orders them.

    A few neurons of a transformer's hidden state have far larger variance than the rest in every language
    ("rogue dimensions", Timkey & van Schijndel 2021), and rankers on raw activations (Probeless, eq. 1, sums
    differences of raw class means) put them first whatever the attribute. Two languages' rankings then overlap
    above the hypergeometric chance k²/d for a reason that has nothing to do with grammar. This ranking overlaps
    across languages as much as scale alone makes them: the overlap a method must beat to say more
    (`analysis.findings_scale`). The variance *between* the attribute's classes is left out, or a neuron that
    encodes the attribute would be ranked up by it. It is no bottom-to-top control.
    """

    method = "variance"
    reversible = False

    def neuron_scores(self, X_train: np.ndarray, y_train: np.ndarray, n_classes: int) -> np.ndarray:
        """The pooled within-class standard deviation of each neuron on train."""
        X = np.asarray(X_train, dtype=np.float64)
        means = np.stack([X[y_train == c].mean(axis=0) for c in range(n_classes)])
        residual = X - means[y_train]
        return np.sqrt((residual**2).sum(axis=0) / max(len(X) - n_classes, 1))
