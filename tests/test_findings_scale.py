"""The scale control: a ranker that puts high-variance neurons first overlaps across languages above
hypergeometric chance without any shared grammar; the scale finding must say so, and must still find a
planted shared grammar neuron set."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.findings import overlap_findings
from analysis.findings_scale import scale_findings, scale_rows
from analysis.overlap_tables import cross_lingual_rows
from probing.rankers import make_ranker
from ray_jobs.analyse import with_study_wide_bh

D, K, N, ROGUE = 128, 8, 400, 4


def _activations(rng: np.random.Generator, grammar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N words of D neurons: the first ROGUE neurons have standard deviation 40 (in every language), the
    ``grammar`` neurons are shifted by 1.5 for value 1."""
    y = rng.integers(0, 2, N)
    X = rng.normal(size=(N, D))
    X[:, :ROGUE] *= 40
    X[np.ix_(y == 1, grammar)] += 1.5
    return X, y


def _pairs(shared_grammar: bool, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    common = rng.choice(np.arange(ROGUE, D), size=K, replace=False)
    records = []
    for language in [f"l{i}" for i in range(8)]:
        grammar = common if shared_grammar else rng.choice(np.arange(ROGUE, D), size=K, replace=False)
        X, y = _activations(rng, grammar)
        for method in ("probeless", "variance"):
            order = make_ranker(method).fit(X, y).order
            key = {"model": "m", "checkpoint": "c", "layer": 1, "attribute": "Number", "seed": 0}
            records.append(key | {"language": language, "method": method, "ranking": order, "k": K})
    pairs, _ = cross_lingual_rows(records, {("m", "c"): 0})
    return with_study_wide_bh(pairs)


def test_the_variance_ranker_puts_high_variance_neurons_first_and_not_the_attributes_own():
    rng = np.random.default_rng(0)
    X, y = _activations(rng, np.arange(10, 18))
    X[:, 20] += 30 * y  # encodes the attribute with a huge between-class spread: not scale
    ranking = make_ranker("variance").fit(X, y)
    assert set(ranking.order[:ROGUE]) == set(range(ROGUE))
    assert X[:, 20].std() > 10 and ranking.scores[list(ranking.order).index(20)] < 1.5  # its own spread left out
    within = np.concatenate([X[y == c] - X[y == c].mean(axis=0) for c in (0, 1)])
    np.testing.assert_allclose(ranking.scores, np.sort(np.sqrt((within**2).sum(axis=0) / (N - 2)))[::-1])


def test_overlap_from_scale_alone_beats_chance_but_not_the_scale_control():
    pairs = _pairs(shared_grammar=False, seed=1)
    probeless = next(f for f in overlap_findings(pairs, []) if f.numbers["method"] == "probeless")
    assert probeless.numbers["rate"] > 1.5 * probeless.numbers["chance"]  # the hypergeometric null is fooled
    assert probeless.numbers["significant"] >= 3
    (finding,) = scale_findings(scale_rows(pairs))
    assert not finding.numbers["above_scale"], finding.sentence
    assert "no more than scale alone explains" in finding.sentence


def test_a_shared_grammar_neuron_set_is_found_above_the_scale_control():
    pairs = _pairs(shared_grammar=True, seed=2)
    (row,) = scale_rows(pairs)
    mine = [p for p in pairs if p["method"] == "probeless"]
    scale = [p for p in pairs if p["method"] == "variance"]
    assert row["pairs"] == 28 and row["rate"] == pytest.approx(np.mean([p["rate"] for p in mine]))
    assert row["scale_rate"] == pytest.approx(np.mean([p["rate"] for p in scale]))
    (finding,) = scale_findings([row])
    assert finding.numbers["above_scale"] and row["rate"] > row["scale_rate"]
