"""The attribute contrast: same- against cross-attribute overlap across languages, with a permutation test of
each language's attribute labels. It must match a pair-by-pair count, find a shared grammar planted under
shared high-variance neurons, stay at chance when only the high-variance neurons are shared, even when the
attributes differ in strength (which the raw contrast does not: the reason for `beyond_scale`), and give
uniform p-values under its null."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.attribute_overlap import attribute_contrast, beyond_scale
from analysis.findings_scale import contrast_findings
from analysis.overlap_tables import attribute_contrast_rows
from probing.rankers import make_ranker
from ray_jobs.analyse import with_bh

D, K, N, ROGUE, ROGUE_SD = 128, 8, 400, 8, 8.0
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


STRENGTHS = {"Gender": 0.5, "Number": 0.5, "POS": 0.5}
UNEQUAL = {"Gender": 0.3, "Number": 1.0, "POS": 3.0}


def _rankings(shared_grammar: bool, seed: int, strengths: dict[str, float] = STRENGTHS):
    """Probeless and scale-control rankings per (language, attribute) on activations whose first ROGUE neurons
    have standard deviation ROGUE_SD in every language; each attribute's value shifts K neurons by its strength, the
    same neurons in every language or each language's own. Yields (language, attribute, probeless, variance)."""
    rng = np.random.default_rng(seed)
    pool = np.arange(ROGUE, D)
    common = {a: rng.choice(pool, size=K, replace=False) for a in strengths}
    for language in LANGUAGES:
        for attribute, shift in strengths.items():
            grammar = common[attribute] if shared_grammar else rng.choice(pool, size=K, replace=False)
            y = rng.integers(0, 2, N)
            X = rng.normal(size=(N, D))
            X[:, :ROGUE] *= ROGUE_SD
            X[np.ix_(y == 1, grammar)] += shift
            orders = [make_ranker(method).fit(X, y).order for method in ("probeless", "variance")]
            yield language, attribute, *orders


def _sets(shared_grammar: bool, seed: int, strengths: dict[str, float] = STRENGTHS, beyond: bool = False):
    """Probeless top-k sets (beyond the scale control's top k when ``beyond``), languages and attributes."""
    found = list(_rankings(shared_grammar, seed, strengths))
    tops = [beyond_scale(p, v[:K], K) if beyond else p[:K] for _, _, p, v in found]
    return tops, [f[0] for f in found], [f[1] for f in found]


def test_a_shared_grammar_under_shared_rogue_neurons_is_found():
    for beyond in (False, True):
        tops, languages, attributes = _sets(shared_grammar=True, seed=2, strengths=UNEQUAL, beyond=beyond)
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


def test_attributes_of_unequal_strength_fool_the_raw_contrast_but_not_the_one_beyond_scale():
    """A weak attribute lets more rogue neurons into its top k in every language, so two weak sets overlap
    through them: the raw contrast finds "shared grammar" that is not there; without the scale control's top
    k it does not."""
    for seed in (6, 7):
        raw = attribute_contrast(*_sets(False, seed, UNEQUAL), D, n_permutations=500, seed=seed)
        assert raw["excess"] > 0.05 and raw["pvalue"] < 0.01
        beyond = attribute_contrast(*_sets(False, seed, UNEQUAL, beyond=True), D, n_permutations=500, seed=seed)
        assert abs(beyond["excess"]) < 0.03
        assert beyond["pvalue"] > 0.05


def test_beyond_scale_keeps_the_order_of_what_is_left():
    order = np.array([5, 1, 7, 3, 0, 2, 6, 4])
    assert beyond_scale(order, np.array([1, 3]), 4).tolist() == [5, 7, 0, 2]
    with pytest.raises(ValueError, match="only 2 neurons are left"):
        beyond_scale(order[:4], np.array([1, 3]), 3)


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


def _records(checkpoint: str, shared: bool, seed: int, methods=("probeless", "variance")) -> list[dict]:
    key = {"model": "m", "checkpoint": checkpoint, "layer": 1, "seed": 0, "k": K}
    records = []
    for language, attribute, probeless, variance in _rankings(shared, seed, UNEQUAL):
        rankings = {"probeless": probeless, "variance": variance, "random": np.random.default_rng(seed).permutation(D)}
        for method in methods:
            records.append(
                key | {"language": language, "attribute": attribute, "method": method, "ranking": rankings[method]}
            )
    return records


def test_rows_are_taken_beyond_scale_seeded_by_their_key_and_counted_by_the_findings():
    records = _records("step-0", False, 8, ("probeless", "variance", "random")) + _records("step-9", True, 9)
    order = {("m", "step-0"): 0, ("m", "step-9"): 1}
    rows = with_bh(attribute_contrast_rows(records, order, "variance"))
    again = with_bh(attribute_contrast_rows(list(reversed(records)), order, "variance"))
    assert [r["pvalue"] for r in rows] == [r["pvalue"] for r in again]  # the draw depends on the key, not the order
    by_key = {(r["method"], r["checkpoint"]): r for r in rows}
    assert sorted(by_key) == [("probeless", "step-0"), ("probeless", "step-9"), ("random", "step-0")]  # no variance
    assert by_key[("probeless", "step-9")]["checkpoint_index"] == 1
    assert by_key[("probeless", "step-9")]["scale_removed"] == K
    assert by_key[("probeless", "step-9")]["pvalue_bh"] <= 0.05 < by_key[("probeless", "step-0")]["pvalue_bh"]
    findings = {f.numbers["method"]: f for f in contrast_findings(rows)}
    assert findings["probeless"].numbers["significant"] == 1
    assert findings["probeless"].numbers["last_significant"] == 1
    assert findings["probeless"].numbers["first_significant"] == 0
    assert findings["random"].numbers["significant"] == 0
    assert "the control" in findings["random"].sentence
    without_scale = [r for r in records if r["method"] != "variance"]
    assert attribute_contrast_rows(without_scale, order, "variance") == []  # no scale control, no contrast


def test_the_permutations_of_two_keys_are_drawn_apart():
    """Identical sets under two keys (as the seed audit asks): each key draws its own permutations."""
    records = _records("step-0", False, 12)
    renamed = [r | {"checkpoint": "step-1"} for r in records]
    rows = attribute_contrast_rows(records + renamed, {}, "variance")
    assert rows[0]["excess"] == rows[1]["excess"]
    assert rows[0]["pvalue"] != rows[1]["pvalue"]
