"""Overlap statistics against independent computations: combinatorics, scipy, simulation, a worked Holm."""

from math import comb

import numpy as np
import pytest
from scipy import stats

from analysis.overlap import (
    common_overlap_pmf,
    common_overlap_pvalue,
    expected_common_overlap,
    holm,
    matrix_summary,
    overlap_pvalue,
    pairwise_overlap,
)


@pytest.mark.parametrize(("x", "k", "d"), [(0, 50, 1024), (3, 50, 1024), (8, 50, 1024), (13, 100, 768), (20, 20, 40)])
def test_pvalue_is_the_exact_hypergeometric_tail(x, k, d):
    by_counting = sum(comb(k, j) * comb(d - k, k - j) for j in range(x, k + 1)) / comb(d, k)
    assert overlap_pvalue(x, k, d) == pytest.approx(by_counting, rel=1e-9, abs=1e-300)
    assert overlap_pvalue(x, k, d) == pytest.approx(1 - stats.hypergeom(d, k, k).cdf(x - 1), rel=1e-6, abs=1e-12)


def test_pvalue_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    d, k, trials = 256, 30, 40000
    a = np.zeros(d, bool)
    a[:k] = True
    overlaps = np.array([a[rng.choice(d, k, replace=False)].sum() for _ in range(trials)])
    for x in (3, 5, 7):
        assert overlap_pvalue(x, k, d) == pytest.approx(np.mean(overlaps >= x), abs=4 * np.sqrt(0.25 / trials))


@pytest.mark.parametrize("i", [2, 3])
def test_expected_common_overlap_matches_simulation_and_the_papers(i):
    assert expected_common_overlap(2, 100, 768) == pytest.approx(13.02, abs=0.01)
    assert expected_common_overlap(3, 100, 768) == pytest.approx(1.69, abs=0.01)
    assert expected_common_overlap(2, 50, 1024) == pytest.approx(2.44, abs=0.01)
    rng = np.random.default_rng(i)
    d, k = 200, 40
    sizes = []
    for _ in range(20000):
        common = np.ones(d, bool)
        for _ in range(i):
            member = np.zeros(d, bool)
            member[rng.choice(d, k, replace=False)] = True
            common &= member
        sizes.append(common.sum())
    sizes = np.asarray(sizes)
    assert expected_common_overlap(i, k, d) == pytest.approx(sizes.mean(), abs=0.05)
    pmf = common_overlap_pmf(i, k, d)
    assert pmf.sum() == pytest.approx(1.0)
    assert np.dot(np.arange(k + 1), pmf) == pytest.approx(expected_common_overlap(i, k, d), rel=1e-9)
    empirical = np.bincount(sizes, minlength=k + 1) / len(sizes)
    assert np.abs(empirical - pmf).max() < 0.015
    assert common_overlap_pvalue(2, i, k, d) == pytest.approx(np.mean(sizes >= 2), abs=0.015)


def test_two_set_pmf_is_the_hypergeometric():
    np.testing.assert_allclose(common_overlap_pmf(2, 10, 50), stats.hypergeom.pmf(np.arange(11), 50, 10, 10))


def test_holm_on_a_hand_worked_example():
    adjusted, reject = holm(np.array([0.01, 0.04, 0.03, 0.005]), alpha=0.05)
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, max(0.04*1, 0.06)=0.06
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [True, False, False, True]


def test_overlap_matrix_on_a_known_example():
    d = 10
    a = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    b = np.array([3, 2, 9, 8, 0, 1, 4, 5, 6, 7])
    c = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    counts = pairwise_overlap([a, b, c], k=4)
    assert counts.tolist() == [[4, 2, 0], [2, 4, 2], [0, 2, 4]]
    assert (counts == counts.T).all()
    summary = matrix_summary(counts, k=4, d=d)
    assert summary["overlap"].tolist() == [2, 0, 2]
    assert summary["average_rate"] == pytest.approx((0.5 + 0 + 0.5) / 3)
    np.testing.assert_allclose(summary["pvalue"], overlap_pvalue(np.array([2, 0, 2]), 4, d))
    assert len(summary["significant"]) == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"k must be in 1\.\.3"):
        pairwise_overlap([np.arange(3)], k=4)
    with pytest.raises(ValueError, match="same number of neurons"):
        pairwise_overlap([np.arange(3), np.arange(4)], k=2)
    with pytest.raises(ValueError):
        expected_common_overlap(0, 5, 10)
