"""The report's findings: BH and exact trend p-values against independent computations, and each
question answered right on planted rows (a control at chance, a ranking that beats random, a rising overlap)."""

import numpy as np
import pytest
from scipy import stats

from analysis.findings import (
    beats_random_findings,
    beats_random_rows,
    benjamini_hochberg,
    control_findings,
    overlap_findings,
    spearman_trend,
    trend_rows,
)
from analysis.overlap_tables import cross_lingual_rows
from ray_jobs.analyse import with_study_wide_bh


def test_benjamini_hochberg_matches_a_hand_worked_example_and_keeps_nan():
    # sorted p: 0.01, 0.03, 0.04, 0.2 -> p·m/rank: 0.04, 0.06, 0.0533, 0.2 -> running minimum from the top
    adjusted = benjamini_hochberg([0.01, 0.04, np.nan, 0.03, 0.2])
    np.testing.assert_allclose(adjusted[[0, 1, 3, 4]], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert np.isnan(adjusted[2])


@pytest.mark.parametrize("values", [[0.1, 0.2, 0.3, 0.4, 0.5], [0.3, 0.1, 0.5, 0.2, 0.4], [5, 1, 4, 2, 3, 7, 6]])
def test_exact_trend_p_value_equals_a_permutation_test(values):
    position = np.arange(len(values))
    rho, p = spearman_trend(position, values)
    reference = stats.permutation_test(
        (np.asarray(values, dtype=float),),
        lambda y: stats.spearmanr(position, y).statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
    )
    assert rho == pytest.approx(reference.statistic)
    assert p == pytest.approx(reference.pvalue)


def test_a_monotone_rise_over_five_checkpoints_has_the_smallest_possible_p():
    assert spearman_trend(range(5), [0.1, 0.2, 0.25, 0.3, 0.4]) == pytest.approx((1.0, 1 / 60))


def _pairs(orders_by_language: dict[str, np.ndarray], method: str, k: int) -> list[dict]:
    records = [
        {
            "model": "m",
            "checkpoint": "c",
            "layer": 1,
            "language": lang,
            "attribute": "Number",
            "method": method,
            "seed": 0,
            "ranking": order,
            "k": k,
        }
        for lang, order in orders_by_language.items()
    ]
    pairs, _ = cross_lingual_rows(records, {("m", "c"): 0})
    return with_study_wide_bh(pairs)


def test_the_control_finding_says_chance_for_independent_random_rankings_and_not_for_a_shared_one():
    d, k, languages = 256, 13, [f"l{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    independent = _pairs({lang: rng.permutation(d) for lang in languages}, "random", k)
    (finding,) = control_findings(independent)
    assert finding.numbers["at_chance"], finding.sentence
    assert finding.numbers["rate"] == pytest.approx(k / d, abs=0.03)
    shared = rng.permutation(d)  # the defect of issue 8: one permutation for every language
    (finding,) = control_findings(_pairs({lang: shared for lang in languages}, "random", k))
    assert not finding.numbers["at_chance"] and "NOT at chance" in finding.sentence


def test_overlap_finding_counts_pairs_above_chance_after_bh():
    d, k = 256, 13
    rng = np.random.default_rng(1)
    core = rng.permutation(d)[:10]  # ten neurons every language ranks first
    orders = {}
    for i in range(6):
        rest = np.setdiff1d(rng.permutation(d), core)
        orders[f"l{i}"] = np.concatenate([core, rng.permutation(rest)])
    (finding,) = overlap_findings(_pairs(orders, "latent", k), [])
    assert finding.numbers["significant"] == finding.numbers["pairs"] == 15
    assert finding.numbers["rate"] / finding.numbers["chance"] > 10


def _metric(method: str, language: str, accuracy: float, k: int = 10) -> dict:
    return {
        "model": "m",
        "checkpoint": "c",
        "layer": 1,
        "language": language,
        "attribute": "Number",
        "classifier": "linear",
        "seed": 0,
        "k": k,
        "method": method,
        "direction": "ttb",
        "accuracy": accuracy,
    }


def test_a_ranking_that_beats_random_is_found_and_one_that_ties_is_not():
    rng = np.random.default_rng(2)
    metrics = []
    for i in range(30):
        base = float(rng.uniform(0.5, 0.7))
        metrics += [
            _metric("random", f"l{i}", base),
            _metric("good", f"l{i}", base + 0.1),
            _metric("same", f"l{i}", base + float(rng.normal(0, 0.02))),
        ]
    rows = beats_random_rows(metrics, [10])
    by_method = {r["method"]: r for r in rows}
    assert by_method["good"]["pvalue_bh"] < 1e-6 and by_method["good"]["wins"] == 30
    assert by_method["same"]["pvalue_bh"] > 0.05
    (finding,) = beats_random_findings(rows, 10)
    assert finding.numbers["winners"] == ["good"]


def test_trend_rows_find_a_rising_overlap_and_not_a_flat_one():
    summaries = []
    for method, rates in (("latent", [0.05, 0.08, 0.12, 0.15, 0.2]), ("random", [0.05, 0.04, 0.05, 0.06, 0.05])):
        for index, rate in enumerate(rates):
            summaries.append(
                {
                    "model": "m",
                    "layer": 1,
                    "attribute": "Number",
                    "method": method,
                    "seed": 0,
                    "checkpoint_index": index,
                    "average_rate": rate,
                    "expected_rate": 0.05,
                    "n_languages": 5,
                }
            )
    trends = {t["method"]: t for t in trend_rows(summaries)}
    assert trends["latent"]["spearman_rho"] == pytest.approx(1.0)
    assert trends["latent"]["pvalue"] == pytest.approx(1 / 60)
    assert trends["random"]["pvalue"] > 0.5


def test_many_small_random_matrices_are_at_chance_though_a_few_pass_holm_alone():
    """Holm is per matrix: across 60 two-language matrices about 3 pairs pass it by chance; BH does not."""
    d, k = 256, 13
    rng = np.random.default_rng(2)
    records = [
        {
            "model": "m",
            "checkpoint": "c",
            "layer": layer,
            "language": lang,
            "attribute": "Number",
            "method": "random",
            "seed": 0,
            "ranking": rng.permutation(d),
            "k": k,
        }
        for layer in range(60)
        for lang in ("a", "b")
    ]
    pairs, _ = cross_lingual_rows(records, {("m", "c"): 0})
    (finding,) = control_findings(with_study_wide_bh(pairs))
    assert finding.numbers["holm"] >= 1  # this seed has chance Holm hits, which must not count as a defect
    assert finding.numbers["at_chance"], finding.sentence
