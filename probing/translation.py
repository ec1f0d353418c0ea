"""What translation (paper 003 eq. 2) moves a word's hidden state by, as plain numpy.

h[S_k] += α[:k] ⊙ (q(z′) − q(z))[S_k]: q(z) is the mean train vector of value z at the layer, z′ the value
the word is moved to: for a binary attribute the other value, else the next value in sorted order,
cyclically (`next_values`; the reference code takes the next one in a dict's order, which depends on
insertion). α is log-spaced over the d ranks of the ranking, from β at rank 1 down to `ALPHA_FLOOR` at rank d
(`translation_coefficients`, as the reference's ``lnscale``), so a neuron's coefficient depends on its rank,
not on k. β = 0 moves nothing. The k grid's default step is 003's (10 neurons of 768).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The coefficient of the last-ranked neuron (003's code: 1/1000).
ALPHA_FLOOR = 1e-3
#: The default k grid's step as a share of the width: 003's step of 10 for d = 768.
K_STEP_FRACTION = 0.013


def translation_coefficients(d: int, beta: float) -> np.ndarray:
    """α by rank: log-spaced from β (rank 1) to `ALPHA_FLOOR` (rank d); all zero for β = 0."""
    if beta < 0:
        raise ValueError(f"beta must be at least 0, got {beta}")
    if beta == 0:
        return np.zeros(d)
    return np.exp(np.linspace(np.log(beta), np.log(ALPHA_FLOOR), d))


def default_k_grid(d: int) -> list[int]:
    """Every `K_STEP_FRACTION` of the width (at least 1) up to d: 10, 20, ... 760 for d = 768."""
    step = max(1, round(K_STEP_FRACTION * d))
    return list(range(step, d + 1, step))


def next_values(values: Sequence[str]) -> dict[str, str]:
    """z → z′: the next value in sorted order, cyclically (the other value of a binary attribute)."""
    ordered = sorted(set(values))
    if len(ordered) < 2:
        raise ValueError(f"translation needs two values at least, got {ordered}")
    return {v: ordered[(i + 1) % len(ordered)] for i, v in enumerate(ordered)}


def translation_shifts(means: np.ndarray, values: Sequence[str]) -> np.ndarray:
    """Per value z (rows in the order of ``values``, sorted): q(z′) − q(z), from the mean vectors ``means``."""
    if list(values) != sorted(values):
        raise ValueError("values must be sorted: rows of the mean vectors follow them")
    target = next_values(values)
    row = {v: i for i, v in enumerate(values)}
    return np.stack([means[row[target[v]]] - means[row[v]] for v in values])


def value_means(X: np.ndarray, y: np.ndarray, n_values: int) -> np.ndarray:
    """q(z): the mean of the rows of X with label z, for z = 0..n_values−1 (float64)."""
    means = np.zeros((n_values, X.shape[1]))
    for z in range(n_values):
        if not np.any(y == z):
            raise ValueError(f"value {z} has no training vector: no mean to translate to or from")
        means[z] = X[y == z].mean(axis=0, dtype=np.float64)
    return means
