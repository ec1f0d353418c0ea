"""Overlap–transfer correlations against a hand-worked example and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis.correlation import correlate, correlation_rows


def test_pearson_and_spearman_on_a_worked_example():
    x = np.array([0.10, 0.20, 0.30, 0.40, 0.50])
    y = np.array([0.30, 0.35, 0.50, 0.45, 0.60])
    # by hand: dx = [-.2,-.1,0,.1,.2], dy = [-.14,-.09,.06,.01,.16]
    # Sxy = .028+.009+0+.001+.032 = .070, Sxx = .1, Syy = .057
    r = 0.070 / math.sqrt(0.1 * 0.057)
    t = r * math.sqrt(3 / (1 - r * r))
    p = 2 * stats.t.sf(t, 3)
    result = correlate(x, y)
    assert result["n"] == 5
    assert result["pearson_r"] == pytest.approx(r, rel=1e-9)
    assert result["pearson_p"] == pytest.approx(p, rel=1e-9)
    # ranks of y: [1, 2, 4, 3, 5] against [1..5]: rho = 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*2/120 = 0.9
    assert result["spearman_rho"] == pytest.approx(0.9)
    assert result["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue)


def test_degenerate_inputs_give_nan_not_errors():
    assert math.isnan(correlate([0.1, 0.2], [0.3, 0.4])["pearson_r"])
    assert math.isnan(correlate([0.1, 0.1, 0.1], [0.3, 0.4, 0.5])["pearson_r"])


def test_rows_group_points_by_model_task_metric_method_and_kind():
    points = [
        {
            "model": "m",
            "task": "pos",
            "metric": "accuracy",
            "method": "latent",
            "kind": kind,
            "overlap_rate": x,
            "value": 2 * x + (0.01 if kind == "pairwise" else 0),
        }
        for kind in ("average", "pairwise")
        for x in (0.1, 0.2, 0.4, 0.3)
    ]
    rows = correlation_rows(points)
    assert [r["kind"] for r in rows] == ["average", "pairwise"]
    assert all(r["pearson_r"] == pytest.approx(1.0) and r["n"] == 4 for r in rows)
