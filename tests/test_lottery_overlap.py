"""Mask overlap counts on packed bits match direct counting; the statistics hit their known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lottery.masks import random_mask_like
from lottery.overlap import (
    OverlapCounts,
    agreement,
    all_pair_overlap_counts,
    expected_overlap,
    jaccard,
    mask_overlap_counts,
    overlap_p_value,
    popcount,
    summed,
)
from lottery.packing import pack_mask

SHAPES = {"a.weight": (7, 13), "b.weight": (64, 9), "c.weight": (1, 3)}


def random_mask(seed: int, density: float = 0.5, shapes=SHAPES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=g) < density for n, s in shapes.items()}


def stats_of(counts: OverlapCounts) -> tuple[float, float]:
    c = counts
    return float(jaccard(c.n_a, c.n_b, c.n_both)), float(agreement(c.n_total, c.n_a, c.n_b, c.n_both))


def test_counts_on_packed_bits_equal_direct_counts_on_unaligned_tensors():
    a, b = random_mask(0), random_mask(1)
    counts = mask_overlap_counts(pack_mask(a), pack_mask(b))
    assert list(counts) == list(SHAPES)
    for name in SHAPES:
        assert counts[name] == OverlapCounts(
            a[name].numel(), int(a[name].sum()), int(b[name].sum()), int((a[name] & b[name]).sum())
        )


def test_identical_masks_overlap_one_disjoint_zero_and_the_counts_are_symmetric():
    a = random_mask(0)
    same = summed(mask_overlap_counts(pack_mask(a), pack_mask(a)))
    assert stats_of(same) == (1.0, 1.0)
    complement = {n: ~m for n, m in a.items()}
    disjoint = summed(mask_overlap_counts(pack_mask(a), pack_mask(complement)))
    assert stats_of(disjoint) == (0.0, 0.0)
    b = random_mask(1)
    ab, ba = mask_overlap_counts(pack_mask(a), pack_mask(b)), mask_overlap_counts(pack_mask(b), pack_mask(a))
    for name in SHAPES:
        assert (ab[name].n_a, ab[name].n_b, ab[name].n_both) == (ba[name].n_b, ba[name].n_a, ba[name].n_both)
        assert stats_of(ab[name]) == stats_of(ba[name])


def test_empty_masks_are_identical():
    assert jaccard(0, 0, 0) == 1.0


@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_two_random_masks_of_density_rho_have_jaccard_rho_over_two_minus_rho(density):
    shapes = {"x.weight": (300, 400), "y.weight": (400, 300)}
    base = random_mask(0, density, shapes)
    a, b = random_mask_like(base, seed=1), random_mask_like(base, seed=2)
    counts = summed(mask_overlap_counts(pack_mask(a), pack_mask(b)))
    assert float(jaccard(counts.n_a, counts.n_b, counts.n_both)) == pytest.approx(density / (2 - density), abs=0.005)
    expected = float(expected_overlap(counts.n_total, counts.n_a, counts.n_b))
    assert counts.n_both == pytest.approx(expected, rel=0.02)
    assert float(overlap_p_value(counts.n_total, counts.n_a, counts.n_b, counts.n_both)) > 0.001


def test_p_value_is_the_exact_hypergeometric_tail():
    # 4 weights, each mask keeps 2: both keep the same 2 with probability 1 / C(4, 2).
    assert float(overlap_p_value(4, 2, 2, 2)) == pytest.approx(1 / 6)
    assert float(overlap_p_value(4, 2, 2, 0)) == pytest.approx(1.0)
    p = overlap_p_value(np.array([4, 4]), np.array([2, 2]), np.array([2, 2]), np.array([1, 2]))
    assert p == pytest.approx([5 / 6, 1 / 6])
    a = random_mask(0, 0.5, {"x.weight": (100, 100)})
    same = summed(mask_overlap_counts(pack_mask(a), pack_mask(a)))
    assert float(overlap_p_value(same.n_total, same.n_a, same.n_b, same.n_both)) < 1e-100


def test_all_pairs_are_counted_once_each_in_order():
    masks = {lang: pack_mask(random_mask(seed)) for seed, lang in enumerate(["en", "fr", "hi"])}
    pairs = all_pair_overlap_counts(masks)
    assert list(pairs) == [("en", "fr"), ("en", "hi"), ("fr", "hi")]
    assert pairs[("fr", "hi")] == mask_overlap_counts(masks["fr"], masks["hi"])


def test_masks_of_different_tensors_are_an_error():
    a = random_mask(0)
    b = {n: m for n, m in a.items() if n != "c.weight"}
    with pytest.raises(ValueError, match="cover different tensors"):
        mask_overlap_counts(pack_mask(a), pack_mask(b))


def test_popcount_counts_the_bits_of_64_bit_words_with_or_without_numpy_2(monkeypatch):
    words = np.array([0, 1, 2**63, 2**64 - 1, 0x0F0F], dtype=np.uint64)
    assert popcount(words).tolist() == [0, 1, 1, 64, 8]
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert popcount(words).tolist() == [0, 1, 1, 64, 8]
