"""Cross-lingual overlap of top-k neuron sets, with exact significance (numpy in, numpy out).

Null hypothesis: each ranking's top-k is a uniformly random k-subset of the d neurons,
independently. Then the overlap of two sets is hypergeometric (d, k, k) and its exact upper-tail
p-value replaces the Monte-Carlo estimate of the seed code; Holm's step-down controls the
family-wise error over the language pairs of one matrix (α = 0.05 as in Stańczak et al.).
The common overlap of i sets is a chain of hypergeometric draws (``common_overlap_pmf``); its mean is
d·(k/d)^i, e.g. 13.02 for i = 2 and 1.69 for i = 3 at k = 100, d = 768 (Antverg & Belinkov App. A.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def top_k(order: np.ndarray, k: int) -> np.ndarray:
    """The first k neurons of a ranking, as a sorted array."""
    if not 0 < k <= len(order):
        raise ValueError(f"k must be in 1..{len(order)}, got {k}")
    return np.sort(np.asarray(order)[:k])


def pairwise_overlap(orders: Sequence[np.ndarray], k: int, d: int | None = None) -> np.ndarray:
    """Symmetric matrix of |top_k(a) ∩ top_k(b)| over all pairs of rankings (diagonal = k); ``d``, the number
    of neurons, defaults to the rankings' length (give it when ``orders`` are top-k sets or cut rankings)."""
    if len({len(o) for o in orders}) > 1:
        raise ValueError("all rankings must rank the same number of neurons")
    d = len(orders[0]) if d is None else d
    member = np.zeros((len(orders), d), dtype=np.int64)
    for row, order in enumerate(orders):
        member[row, top_k(order, k)] = 1
    return member @ member.T


def overlap_pvalue(overlap: np.ndarray | int, k: int, d: int) -> np.ndarray:
    """Exact P(X ≥ overlap) for X ~ Hypergeometric(population d, k successes, k draws)."""
    return stats.hypergeom.sf(np.asarray(overlap) - 1, d, k, k)


def holm(pvalues: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction: adjusted p-values and which hypotheses are rejected at ``alpha``."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted, adjusted <= alpha


def expected_common_overlap(i: int, k: int, d: int) -> float:
    """Expected size of the intersection of i independent uniformly random k-subsets of d neurons."""
    if i < 1 or not 0 <= k <= d:
        raise ValueError(f"need i >= 1 and 0 <= k <= d, got i={i}, k={k}, d={d}")
    return d * (k / d) ** i


def common_overlap_pmf(i: int, k: int, d: int) -> np.ndarray:
    """Exact distribution of the common overlap of i random k-subsets (index = overlap size 0..k).

    Intersecting with one more random k-subset keeps each of the m common neurons as a
    hypergeometric draw: m → Hypergeometric(d, m, k), so the pmf is a product of transition matrices.
    """
    pmf = np.zeros(k + 1)
    pmf[k] = 1.0  # one set: all k of its neurons are "common"
    sizes = np.arange(k + 1)
    transition = np.array([stats.hypergeom.pmf(sizes, d, m, k) for m in sizes])  # row m → next size
    for _ in range(i - 1):
        pmf = pmf @ transition
    return pmf


def common_overlap_pvalue(overlap: int, i: int, k: int, d: int) -> float:
    """Exact P(common overlap of i random k-subsets ≥ overlap)."""
    return float(common_overlap_pmf(i, k, d)[overlap:].sum())


def matrix_summary(counts: np.ndarray, k: int, d: int, alpha: float = 0.05) -> dict[str, np.ndarray | float]:
    """Rates, p-values, Holm-adjusted p-values and significance for the upper triangle of an overlap matrix.

    Returns arrays over the pairs (row < col) and the average pairwise overlap rate (the alignment
    metric of Wang et al. 2024).
    """
    rows, cols = np.triu_indices(len(counts), k=1)
    overlap = counts[rows, cols]
    pvalues = overlap_pvalue(overlap, k, d)
    adjusted, significant = holm(pvalues, alpha) if len(pvalues) else (pvalues, pvalues.astype(bool))
    return {
        "rows": rows,
        "cols": cols,
        "overlap": overlap,
        "rate": overlap / k,
        "pvalue": pvalues,
        "pvalue_holm": adjusted,
        "significant": significant,
        "average_rate": float(np.mean(overlap / k)) if len(overlap) else float("nan"),
    }
