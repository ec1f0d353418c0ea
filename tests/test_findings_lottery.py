"""Lottery headlines: planted masks whose sharing is known, a null of independent masks, exact means."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.findings_lottery import ceiling_share, mask_findings, transfer_findings
from lottery.overlap import jaccard, overlap_p_value

N = 4000
KEY = {"model": "m", "checkpoint": "c", "task": "pos", "sparsity": 0.8}


def _row(kind_a: str, lang_a: str, seed_a: int, a: np.ndarray, kind_b: str, lang_b: str, seed_b: int, b: np.ndarray):
    n_a, n_b, n_both = int(a.sum()), int(b.sum()), int((a & b).sum())
    expected = n_a * n_b / N
    return KEY | {
        "kind_a": kind_a,
        "language_a": lang_a,
        "seed_a": seed_a,
        "kind_b": kind_b,
        "language_b": lang_b,
        "seed_b": seed_b,
        "jaccard": float(jaccard(np.array(n_a), np.array(n_b), np.array(n_both))),
        "expected_jaccard": expected / (n_a + n_b - expected),
        "pvalue": float(overlap_p_value(np.array(N), np.array(n_a), np.array(n_b), np.array(n_both))),
    }


def _masks(shared: float, rng: np.random.Generator) -> dict[tuple[str, int], np.ndarray]:
    """Each language keeps a fixed 20% of weights: a share ``shared`` of them common to all languages, the rest its
    own; seeds swap 5% of a language's kept weights for others."""
    keep = N // 5
    order = rng.permutation(N)
    core = order[: int(shared * keep)]
    masks = {}
    for lang in ["en", "fr", "hi", "vi"]:
        own = rng.permutation(np.setdiff1d(np.arange(N), core))[: keep - len(core)]
        base = np.concatenate([core, own])
        for seed in (0, 1):
            swap = rng.choice(keep, size=keep // 20, replace=False)
            kept = base.copy()
            outside = np.setdiff1d(np.arange(N), base)
            kept[swap] = rng.choice(outside, size=len(swap), replace=False)
            mask = np.zeros(N, dtype=bool)
            mask[kept] = True
            masks[(lang, seed)] = mask
    return masks


def _rows(masks: dict[tuple[str, int], np.ndarray], rng: np.random.Generator) -> list[dict]:
    rows = [
        _row("imp", la, sa, masks[(la, sa)], "imp", lb, sb, masks[(lb, sb)])
        for (la, sa), (lb, sb) in itertools.combinations(sorted(masks), 2)
    ]
    for lang, seed in masks:
        random = np.zeros(N, dtype=bool)
        random[rng.choice(N, size=N // 5, replace=False)] = True
        rows.append(_row("imp", lang, seed, masks[(lang, seed)], "random", lang, seed, random))
    return rows


def test_planted_shared_core_is_found_above_chance_and_below_the_same_language_ceiling():
    rng = np.random.default_rng(0)
    masks = _masks(shared=0.5, rng=rng)
    (finding,) = mask_findings(_rows(masks, rng))
    numbers = finding.numbers
    across = [
        float((masks[(a, s)] & masks[(b, s)]).sum() / (masks[(a, s)] | masks[(b, s)]).sum())
        for a, b in itertools.combinations(["en", "fr", "hi", "vi"], 2)
        for s in (0, 1)
    ]
    assert numbers["jaccard"] == pytest.approx(np.mean(across))
    assert numbers["pairs"] == 12 and numbers["significant"] == 12
    assert numbers["chance"] == pytest.approx(0.2 / 1.8, abs=1e-9)  # ρ/(2−ρ) at density 0.2
    assert numbers["jaccard"] < numbers["ceiling"]  # a language is more like itself than like another
    assert 0.2 < numbers["ceiling_share"] < 0.8
    assert numbers["control"] == pytest.approx(numbers["chance"], abs=0.02)
    assert "12 of 12 language pairs above chance" in finding.sentence


def test_independent_languages_sit_at_chance():
    rng = np.random.default_rng(1)
    (finding,) = mask_findings(_rows(_masks(shared=0.0, rng=rng), rng))
    assert finding.numbers["significant"] <= 1
    assert finding.numbers["ceiling_share"] == pytest.approx(0.0, abs=0.05)


def test_ceiling_share_is_zero_at_chance_and_one_at_the_ceiling():
    assert ceiling_share(0.1, 0.9, 0.1) == 0.0 and ceiling_share(0.9, 0.9, 0.1) == 1.0
    assert np.isnan(ceiling_share(0.5, 0.1, 0.1))


def test_ticket_transfer_compares_other_own_random_and_dense():
    base = {"model": "m", "checkpoint": "c", "task": "pos"}
    rows = [
        base | {"kind": "dense", "sparsity": 0.0, "source_language": t, "target_language": t, "score": 0.7}
        for t in ("en", "fr")
    ]
    rows += [
        base | {"kind": "subnetwork", "sparsity": 0.8, "source_language": s, "target_language": t, "score": score}
        for s, t, score in [("en", "en", 0.70), ("fr", "fr", 0.66), ("en", "fr", 0.60), ("fr", "en", 0.64)]
    ]
    rows += [
        base | {"kind": "random", "sparsity": 0.8, "source_language": t, "target_language": t, "score": 0.5}
        for t in ("en", "fr")
    ]
    (finding,) = transfer_findings(rows)
    assert finding.numbers["other"] == pytest.approx(0.62) and finding.numbers["own"] == pytest.approx(0.68)
    assert finding.numbers["random"] == pytest.approx(0.5) and finding.numbers["dense"] == pytest.approx(0.7)
    assert "(+0.060 for its own)" in finding.sentence
