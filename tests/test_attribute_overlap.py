"""The attribute contrast: same- against cross-attribute overlap across languages, with a permutation test of
each language's attribute labels. It must match a pair-by-pair count, find a shared grammar planted under
shared high-variance neurons, stay at chance when only the high-variance neurons are shared, and give
uniform p-values under its null."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.attribute_overlap import attribute_contrast
from analysis.findings_scale import contrast_findings
from analysis.overlap_tables import attribute_contrast_rows
from probing.rankers import make_ranker
from ray_jobs.analyse import with_bh

D, K, N, ROGUE = 128, 8, 400, 4
LANGUAGES = [f"l{i}" for i in range(6)]
ATTRIBUTES = ["Gender", "Number", "POS"]


def _brute_force(tops, languages, attributes, k):
    same, cross = [], []
    for i, j in itertools.combinations(range(len(tops)), 2):
        if languages[i] == languages[j]:
            continue
        overlap = len(set(tops[i].tolist()) & set(tops[j].tolist())) / k
        (same if attributes[i] == attributes[j] else cross).append(overlap)
    return np.mean(same), np.mean(cross), len(same), len(cross)


def test_rates_and_pair_counts_match_a_pair_by_pair_count():
    rng = np.random.default_rng(0)
    languages = ["a", "a", "b", "b", "b", "c", "c"]
    attributes = ["X", "Y", "X", "Y", "Z", "X", "Z"]
    tops = [rng.choice(40, size=6, replace=False) for _ in languages]
    result = attribute_contrast(tops, languages, attributes, d=40, n_permutations=50)
    same, cross, n_same, n_cross = _brute_force(tops, languages, attributes, 6)
    assert result["same_rate"] == pytest.approx(same)
    assert result["cross_rate"] == pytest.approx(cross)
    assert result["excess"] == pytest.approx(same - cross)
    assert (result["n_same_pairs"], result["n_cross_pairs"]) == (n_same, n_cross) == (5, 11)
    assert result["k"] == 6 and 0 < result["pvalue"] <= 1


def test_renaming_attributes_or_languages_changes_no_rate():
    rng = np.random.default_rng(1)
    languages = [lang for lang in LANGUAGES for _ in ATTRIBUTES]
    attributes = ATTRIBUTES * len(LANGUAGES)
    tops = [rng.choice(D, size=K, replace=False) for _ in languages]
    plain = attribute_contrast(tops, languages, attributes, D, n_permutations=10)
    renamed = attribute_contrast(
        tops,
        [f"z{lang}" for lang in languages],
        [{"Gender": "b", "Number": "c", "POS": "a"}[a] for a in attributes],
        D,
        n_permutations=10,
    )
    for column in ("same_rate", "cross_rate", "n_same_pairs", "n_cross_pairs"):
        assert plain[column] == renamed[column]


def _sets(shared_grammar: bool, seed: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Probeless top-k per (language, attribute) on activations whose first ROGUE neurons have standard deviation
    40 in every language; each attribute's value shifts K neurons, the same in every language or each
    language's own."""
    rng = np.random.default_rng(seed)
    pool = np.arange(ROGUE, D)
    common = {a: rng.choice(pool, size=K, replace=False) for a in ATTRIBUTES}
    tops, languages, attributes = [], [], []
    for language in LANGUAGES:
        for attribute in ATTRIBUTES:
            grammar = common[attribute] if shared_grammar else rng.choice(pool, size=K, replace=False)
            y = rng.integers(0, 2, N)
            X = rng.normal(size=(N, D))
            X[:, :ROGUE] *= 40
            X[np.ix_(y == 1, grammar)] += 1.5
            tops.append(make_ranker("probeless").fit(X, y).order[:K])
            languages.append(language)
            attributes.append(attribute)
    return tops, languages, attributes


def test_a_shared_grammar_under_shared_rogue_neurons_is_found():
    tops, languages, attributes = _sets(shared_grammar=True, seed=2)
    result = attribute_contrast(tops, languages, attributes, D, n_permutations=500, seed=3)
    assert result["excess"] > 0.3
    assert result["pvalue"] < 0.01


def test_rogue_neurons_alone_give_no_excess():
    """Every set holds the ROGUE shared neurons, so cross-lingual overlap is far above k/d, but no more between
    the same attribute than between different ones."""
    tops, languages, attributes = _sets(shared_grammar=False, seed=4)
    result = attribute_contrast(tops, languages, attributes, D, n_permutations=500, seed=5)
    assert result["cross_rate"] > 3 * K / D  # far above hypergeometric chance
    assert abs(result["excess"]) < 0.05
    assert result["pvalue"] > 0.05


def test_pvalues_are_uniform_under_the_null():
    """Random sets (each a fresh uniform k-subset): about 5% of p-values at or below 0.05, a mean near 0.5."""
    rng = np.random.default_rng(6)
    pvalues = []
    languages = [lang for lang in LANGUAGES for _ in ATTRIBUTES]
    attributes = ATTRIBUTES * len(LANGUAGES)
    for trial in range(300):
        tops = [rng.choice(40, size=6, replace=False) for _ in languages]
        pvalues.append(attribute_contrast(tops, languages, attributes, 40, n_permutations=199, seed=trial)["pvalue"])
    pvalues = np.asarray(pvalues)
    assert 0.02 <= np.mean(pvalues <= 0.05) <= 0.09
    assert 0.44 <= pvalues.mean() <= 0.56


def test_one_attribute_or_one_language_has_no_test():
    rng = np.random.default_rng(7)
    tops = [rng.choice(D, size=K, replace=False) for _ in range(4)]
    single_attribute = attribute_contrast(tops, ["a", "b", "c", "d"], ["X"] * 4, D, n_permutations=10)
    assert single_attribute["n_cross_pairs"] == 0 and math.isnan(single_attribute["pvalue"])
    single_language = attribute_contrast(tops, ["a"] * 4, ["W", "X", "Y", "Z"], D, n_permutations=10)
    assert single_language["n_same_pairs"] == 0 and math.isnan(single_language["pvalue"])


@pytest.mark.parametrize(
    ("tops", "languages", "attributes", "message"),
    [
        ([np.arange(3), np.arange(3)], ["a", "a"], ["X", "X"], "only one top-k set"),
        ([np.arange(3), np.arange(4)], ["a", "b"], ["X", "X"], "same k"),
        ([np.arange(3)], ["a", "b"], ["X"], "one language and one attribute per set"),
        ([np.array([0, 0, 1]), np.arange(3)], ["a", "b"], ["X", "X"], "distinct neuron indices"),
        ([np.array([0, 1, 99]), np.arange(3)], ["a", "b"], ["X", "X"], "distinct neuron indices in 0..9"),
    ],
)
def test_bad_input_is_refused(tops, languages, attributes, message):
    with pytest.raises(ValueError, match=message):
        attribute_contrast(tops, languages, attributes, d=10, n_permutations=10)


def _records(method: str, checkpoint: str, shared: bool, seed: int) -> list[dict]:
    tops, languages, attributes = _sets(shared, seed)
    key = {"model": "m", "checkpoint": checkpoint, "layer": 1, "method": method, "seed": 0, "k": K}
    rest = np.arange(D)
    return [
        key | {"language": lang, "attribute": attr, "ranking": np.concatenate([top, np.setdiff1d(rest, top)]).tolist()}
        for top, lang, attr in zip(tops, languages, attributes, strict=True)
    ]


def test_rows_are_seeded_by_their_key_and_the_findings_count_what_is_significant():
    records = _records("probeless", "step-0", False, 8) + _records("probeless", "step-9", True, 9)
    records += _records("random", "step-0", False, 10) + _records("random", "step-9", False, 11)
    order = {("m", "step-0"): 0, ("m", "step-9"): 1}
    rows = with_bh(attribute_contrast_rows(records, order))
    again = with_bh(attribute_contrast_rows(list(reversed(records)), order))
    assert [r["pvalue"] for r in rows] == [r["pvalue"] for r in again]  # the draw depends on the key, not the order
    by_key = {(r["method"], r["checkpoint"]): r for r in rows}
    assert len(rows) == 4 and by_key[("probeless", "step-9")]["checkpoint_index"] == 1
    assert by_key[("probeless", "step-9")]["pvalue_bh"] <= 0.05 < by_key[("probeless", "step-0")]["pvalue_bh"]
    assert by_key[("probeless", "step-9")]["expected_rate"] == K / D
    findings = {f.numbers["method"]: f for f in contrast_findings(rows)}
    assert findings["probeless"].numbers["significant"] == 1
    assert findings["probeless"].numbers["last_significant"] == 1
    assert findings["probeless"].numbers["first_significant"] == 0
    assert findings["random"].numbers["significant"] == 0
    assert "the control" in findings["random"].sentence


def test_the_permutations_of_two_keys_are_drawn_apart():
    """Identical sets under two keys (as the seed audit asks): each key draws its own permutations."""
    records = _records("probeless", "step-0", False, 12)
    renamed = [r | {"checkpoint": "step-1"} for r in records]
    rows = attribute_contrast_rows(records + renamed, {})
    assert rows[0]["excess"] == rows[1]["excess"]
    assert rows[0]["pvalue"] != rows[1]["pvalue"]
