"""Correlation of neuron overlap with zero-shot transfer across checkpoints (Wang et al. 2024, Table 1).

"Average": one point per checkpoint — the overlap rate averaged over language pairs against the
transfer score averaged over target languages. "Pairwise": one point per (checkpoint, target
language) — the overlap rate between the target and the source language (English) against the
score on that target. Overlap rates are averaged over the study's layers and attributes first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import stats


def correlate(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson r and its two-sided p, Spearman ρ and its p, and n; NaN where fewer than 3 points or no variance."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        nan = float("nan")
        return {"n": n, "pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan}
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    return {
        "n": n,
        "pearson_r": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
    }


def correlation_rows(
    points: Iterable[Mapping], group_by: tuple[str, ...] = ("model", "task", "metric", "method", "kind")
) -> list[dict]:
    """One correlation row per group of points (dicts with ``overlap_rate`` and ``value``)."""
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for point in points:
        groups[tuple(point[c] for c in group_by)].append(point)
    rows = []
    for key, members in sorted(groups.items(), key=lambda g: str(g[0])):
        x = np.asarray([m["overlap_rate"] for m in members], dtype=float)
        y = np.asarray([m["value"] for m in members], dtype=float)
        rows.append({**dict(zip(group_by, key, strict=True)), **correlate(x, y)})
    return rows
