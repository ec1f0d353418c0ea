"""Classification metrics in numpy (no sklearn): accuracy, and macro-F1 over the gold labels present.

Macro-F1 averages the per-class F1 over the classes that occur in the gold labels, so a tag that a
language's test set never uses neither scores 0 nor 1; wrong predictions of such a tag still count
as misses of the gold class. For single-label tagging, micro-F1 equals accuracy.
"""

from __future__ import annotations

import numpy as np


def _check(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gold, pred = np.asarray(gold), np.asarray(pred)
    if gold.shape != pred.shape or gold.ndim != 1 or len(gold) == 0:
        raise ValueError(f"expected two equal-length non-empty 1-d label arrays, got {gold.shape} and {pred.shape}")
    return gold, pred


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    """Share of predictions equal to the gold label."""
    gold, pred = _check(gold, pred)
    return float(np.mean(gold == pred))


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """Mean over the gold classes of F1 = 2TP / (2TP + FP + FN)."""
    gold, pred = _check(gold, pred)
    scores = []
    for c in np.unique(gold):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))
