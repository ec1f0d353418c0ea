"""Is cross-lingual overlap specific to the attribute? Same-attribute against cross-attribute overlap, with a
permutation test that keeps every ranking as it is (numpy in, numpy out).

The hypergeometric null of ``overlap_pairs`` (each language's top k a uniformly random k-subset) is beaten
by anything that a ranking method picks in every language whatever the attribute: high-variance "rogue"
dimensions (the scale control of `analysis.findings_scale`), frequency, position. Shared *grammar* neurons
(Stańczak et al. 2022; Wang et al. 2024) show as more overlap between the same attribute in two languages
than between different attributes in them.

For one (model, checkpoint, layer, method, seed), over every pair of top-k sets from two different
languages, the contrast is

    excess = mean |T_a^X ∩ T_b^X| / k  −  mean |T_a^X ∩ T_b^Y| / k      (a ≠ b languages, X ≠ Y attributes),

the same-attribute overlap rate minus the cross-attribute one: same method, same languages; only the
attribute identity differs. Null hypothesis: within each language, which attribute a top-k set belongs to
is exchangeable. The test permutes the attribute labels of each language's sets independently; that keeps
every set, every overlap between two sets and the number of same-attribute pairs, so the permuted
statistic is the sum of the overlaps that fall on same-attribute pairs. One-sided
p = (1 + #{permutations with a sum ≥ the observed}) / (1 + n_permutations).

Attribute-blind sharing alone breaks that exchangeability when attributes differ in strength: a weakly
encoded attribute lets more of the shared high-variance neurons into its top k, in every language, so two
weak attributes' sets overlap through them more than a weak and a strong one do, and the raw contrast is
"significant" with no shared grammar (tested). The contrast is therefore taken on each ranking with the
scale control's top k for the same (language, attribute) removed first (`beyond_scale`): the shared core
goes, whatever share of it each attribute would have let in. Attribute-blind structure other than scale
with an attribute-dependent weight would still bias it upward; attributes carried by the same words
(Number and Gender) raise the cross-attribute overlap, which biases it downward. A random ranking (seeded
per attribute) has an excess of 0 in expectation and a p-value uniform on (0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.overlap import pairwise_overlap

#: Permutations drawn per test; with 10,000 the smallest p-value is 1/10,001 ≈ 1e-4 (the demo's 60 tests take ~1 s).
N_PERMUTATIONS = 10_000
#: Permutations evaluated at once (bounds memory: block × sets² booleans).
PERMUTATION_BLOCK = 500


def beyond_scale(order: np.ndarray, scale_top: np.ndarray, k: int) -> np.ndarray:
    """The first k neurons of a ranking once the scale control's top neurons are left out (order kept)."""
    kept = np.asarray(order)[~np.isin(order, scale_top)]
    if len(kept) < k:
        raise ValueError(f"only {len(kept)} neurons are left once the scale control's top is removed; need k = {k}")
    return kept[:k]


def _check_sets(tops: Sequence[np.ndarray], d: int) -> None:
    for row, top in enumerate(tops):
        top = np.asarray(top)
        if top.ndim != 1 or len(np.unique(top)) != len(top) or (len(top) and not 0 <= top.min() <= top.max() < d):
            raise ValueError(f"top-k set {row} must hold distinct neuron indices in 0..{d - 1}, got {top.tolist()}")


def attribute_contrast(
    tops: Sequence[np.ndarray],
    languages: Sequence[str],
    attributes: Sequence[str],
    d: int,
    n_permutations: int = N_PERMUTATIONS,
    seed: int = 0,
) -> dict[str, float | int]:
    """Same- vs cross-attribute overlap of top-k sets across languages, with its permutation p-value.

    ``tops[i]`` is the top-k neuron set of language ``languages[i]`` for attribute ``attributes[i]`` (one set
    per (language, attribute); all of one k). Returns the two mean rates, their difference ``excess``, the
    pair counts, and the one-sided p-value (NaN when there is no same-attribute pair across languages, or
    no cross-attribute one, e.g. a single attribute).
    """
    n = len(tops)
    if not (len(languages) == len(attributes) == n):
        raise ValueError(f"need one language and one attribute per set: {n} sets, {len(languages)}, {len(attributes)}")
    if len(set(zip(languages, attributes, strict=True))) != n:
        raise ValueError("each (language, attribute) may have only one top-k set")
    ks = {len(t) for t in tops}
    if len(ks) != 1 or 0 in ks:
        raise ValueError(f"every top-k set must have the same k >= 1, got sizes {sorted(ks)}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    k = ks.pop()
    _check_sets(tops, d)
    counts = pairwise_overlap(tops, k, d)
    lang = np.unique(np.asarray(languages), return_inverse=True)[1]
    attr = np.unique(np.asarray(attributes), return_inverse=True)[1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1) & (lang[:, None] != lang[None, :])
    same = upper & (attr[:, None] == attr[None, :])
    cross = upper & ~same
    result: dict[str, float | int] = {
        "k": k,
        "n_sets": n,
        "n_same_pairs": int(same.sum()),
        "n_cross_pairs": int(cross.sum()),
        "same_rate": float(counts[same].mean() / k) if same.any() else float("nan"),
        "cross_rate": float(counts[cross].mean() / k) if cross.any() else float("nan"),
        "n_permutations": n_permutations,
    }
    result["excess"] = result["same_rate"] - result["cross_rate"]
    if not (same.any() and cross.any()):
        result["pvalue"] = float("nan")
        return result
    weights = np.where(upper, counts, 0)
    observed = int(weights[same].sum())
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(lang == g) for g in range(lang.max() + 1)]
    at_least = 0
    for start in range(0, n_permutations, PERMUTATION_BLOCK):
        block = min(PERMUTATION_BLOCK, n_permutations - start)
        labels = np.tile(attr, (block, 1))
        for members in groups:
            labels[:, members] = rng.permuted(labels[:, members], axis=1)
        matched = labels[:, :, None] == labels[:, None, :]
        at_least += int((np.einsum("pij,ij->p", matched, weights) >= observed).sum())
    result["pvalue"] = (1 + at_least) / (1 + n_permutations)
    return result
