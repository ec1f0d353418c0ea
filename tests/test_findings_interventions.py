"""Intervention headlines: planted effects recovered, a ranking no better than random not called better, exact
Fisher p-values on the pooled counts, the masked readout read through CLWV."""

from __future__ import annotations

import pytest
from scipy import stats

from analysis.findings_interventions import comparison_rows, effect_counts, intervention_findings

BASE = {"model": "m", "checkpoint": "c", "layer": 2, "attribute": "Number", "intervention": "translation"}


def _row(method: str, direction: str, k: int, language: str, flips: int, n_words: int = 50, **extra) -> dict:
    return (
        BASE
        | {
            "readout": "causal",
            "split": "test",
            "source_language": language,
            "language": language,
            "method": method,
            "direction": direction,
            "k": k,
            "flips": flips,
            "n_words": n_words,
            "n_clwv": 0,
            "relevant": n_words,
        }
        | extra
    )


def _study() -> list[dict]:
    """Two languages, k in (3, 13): probeless flips far more than random at 13 and a little at 3, linear as random."""
    flips = {
        ("probeless", "ttb", 3): 14,
        ("probeless", "ttb", 13): 30,
        ("probeless", "btt", 3): 2,
        ("probeless", "btt", 13): 4,
        ("linear", "ttb", 3): 10,
        ("linear", "ttb", 13): 15,
        ("linear", "btt", 3): 8,
        ("linear", "btt", 13): 12,
        ("random", "ttb", 3): 10,
        ("random", "ttb", 13): 15,
    }
    rows = [_row(m, d, k, lang, f) for (m, d, k), f in flips.items() for lang in ("en", "fr")]
    rows.append(_row("random", "ttb", 13, "fr", 40, split="dev"))  # another split: never pooled in
    rows.append(_row("probeless", "ttb", 13, "en", 0) | {"source_language": "fr"})  # cross-lingual: not own
    rows.append(_row("probeless", "ttb", 0, "en", 0))  # k = 0: the unedited model
    return rows


def test_fisher_p_on_pooled_own_language_test_counts_matches_scipy():
    rows = comparison_rows(_study())
    assert {(r["method"], r["k"]) for r in rows} == {("probeless", 3), ("probeless", 13), ("linear", 3), ("linear", 13)}
    at = next(r for r in rows if (r["method"], r["k"]) == ("probeless", 13))
    assert at["rate"] == pytest.approx(60 / 100) and at["random_rate"] == pytest.approx(30 / 100)
    assert at["reverse_rate"] == pytest.approx(8 / 100) and at["n"] == 100
    assert at["pvalue"] == pytest.approx(stats.fisher_exact([[60, 40], [30, 70]], alternative="greater").pvalue)
    assert all(r["pvalue_bh"] >= r["pvalue"] for r in rows)


def test_a_planted_effect_is_found_and_a_ranking_equal_to_random_is_not():
    findings = {f.numbers["method"]: f for f in intervention_findings(comparison_rows(_study()), k=13)}
    assert findings["probeless"].numbers["significant"] and findings["probeless"].numbers["first_k"] == 13
    assert not findings["linear"].numbers["significant"] and findings["linear"].numbers["first_k"] is None
    assert "next-word flip rate to 0.600" in findings["probeless"].sentence
    assert "not significantly more than random" in findings["linear"].sentence


def test_the_evaluated_k_nearest_the_study_k_is_reported():
    (finding, _) = sorted(intervention_findings(comparison_rows(_study()), k=4), key=lambda f: f.numbers["method"])
    assert finding.numbers["k"] == 3


def test_masked_readout_counts_clwv_among_relevant_words():
    row = _row("probeless", "ttb", 3, "en", flips=40, n_words=50, readout="masked", n_clwv=7, relevant=45)
    assert effect_counts(row) == (7, 45)
    assert effect_counts(row | {"readout": "causal"}) == (40, 50)
