"""Global magnitude pruning prunes exactly the smallest kept weights across tensors; the controls keep densities."""

from __future__ import annotations

import pytest
import torch

from lottery.masks import (
    full_mask,
    kept_count,
    magnitude_mask,
    prune_globally,
    prune_to,
    random_mask_like,
    smallest_first,
    sparsity,
    total_count,
)


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three tensors on different scales, so a global ranking prunes them unevenly."""
    g = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(20, 30, generator=g) * 0.1,
        "b.weight": torch.randn(30, 10, generator=g),
        "c.weight": torch.randn(10, 40, generator=g) * 3.0,
    }


def magnitudes(w: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([w[n].abs()[mask[n]] for n in w])


@pytest.mark.parametrize("n_prune", [0, 1, 137, 600, 1200])
def test_exactly_the_requested_count_of_the_smallest_kept_weights_is_pruned_globally(n_prune):
    w = weights()
    before = prune_globally(w, full_mask(w), 100)
    after = prune_globally(w, before, n_prune)
    assert kept_count(after) == kept_count(before) - n_prune
    newly = {n: before[n] & ~after[n] for n in w}
    assert sum(int(m.sum()) for m in newly.values()) == n_prune
    if 0 < n_prune < 1200:
        assert magnitudes(w, after).min() >= magnitudes(w, newly).max()
    shares = [1 - float(after[n].float().mean()) for n in w]
    if 0 < n_prune < 1000:
        assert shares[0] > shares[1] > shares[2]  # global, not the same share per tensor


def test_masks_only_shrink_across_rounds_even_when_pruned_weights_grow_back():
    w = weights()
    mask = full_mask(w)
    for r in range(1, 6):
        trained = weights(seed=r)  # other values: a pruned weight may now be large
        nxt = prune_to(trained, mask, 250 * r)
        assert all(not (nxt[n] & ~mask[n]).any() for n in w)
        assert total_count(nxt) - kept_count(nxt) == 250 * r
        mask = nxt
    with pytest.raises(ValueError, match="masks only shrink"):
        prune_to(w, mask, 10)


def test_ties_are_broken_by_position_in_mask_order():
    w = {"x.weight": torch.ones(2, 3), "y.weight": torch.ones(3, 2)}
    mask = prune_globally(w, full_mask(w), 4)
    assert mask["x.weight"].flatten().tolist() == [False, False, False, False, True, True]
    assert mask["y.weight"].all()
    mask = prune_globally(w, mask, 3)
    assert not mask["x.weight"].any()
    assert mask["y.weight"].flatten().tolist() == [False, True, True, True, True, True]


@pytest.mark.parametrize("n", [0, 1, 2, 499, 500, 501, 1733, 4000])
def test_selection_marks_the_first_n_of_a_stable_sort_among_many_ties(n):
    g = torch.Generator().manual_seed(3)
    values = torch.randint(0, 8, (4000,), generator=g).float() / 8  # 8 distinct values: ties everywhere
    expected = torch.zeros(4000, dtype=torch.bool)
    expected[torch.sort(values, stable=True).indices[:n]] = True
    assert torch.equal(smallest_first(values, n), expected)


def test_a_weight_holding_nan_is_an_error_naming_its_tensor():
    w = weights()
    w["b.weight"][3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"b\.weight hold NaN \(training diverged\)"):
        prune_globally(w, full_mask(w), 10)


def test_pruning_more_than_is_kept_or_a_mask_of_other_tensors_is_an_error():
    w = weights()
    with pytest.raises(ValueError, match="cannot prune 1301 weights: 1300 are kept"):
        prune_globally(w, full_mask(w), 1301)
    with pytest.raises(ValueError, match=r"tensor 2 of the mask is None, of the prunable weights 'c\.weight'"):
        prune_globally(w, {n: full_mask(w)[n] for n in ("a.weight", "b.weight")}, 1)


def test_one_shot_magnitude_mask_reaches_the_sparsity_by_magnitude_alone():
    w = weights()
    mask = magnitude_mask(w, 0.5)
    assert total_count(mask) - kept_count(mask) == 650
    assert sparsity(mask) == 0.5
    pruned = {n: ~mask[n] for n in w}
    assert magnitudes(w, mask).min() >= magnitudes(w, pruned).max()


def test_random_mask_keeps_the_same_count_in_every_tensor_and_repeats_per_seed():
    w = weights()
    imp = magnitude_mask(w, 0.7)
    drawn = random_mask_like(imp, seed=3)
    assert [int(drawn[n].sum()) for n in w] == [int(imp[n].sum()) for n in w]
    assert all(drawn[n].dtype == torch.bool and drawn[n].shape == imp[n].shape for n in w)
    again = random_mask_like(imp, seed=3)
    assert all(torch.equal(drawn[n], again[n]) for n in w)
    other = random_mask_like(imp, seed=4)
    assert any(not torch.equal(drawn[n], other[n]) for n in w)
    assert any(not torch.equal(drawn[n], imp[n]) for n in w)
