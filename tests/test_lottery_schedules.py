"""Pruning schedules follow their formulas: linear 10% of the original per round, geometric 20% of the rest."""

from __future__ import annotations

import pytest

from lottery.schedules import SCHEDULES, pruned_count, rounds_to, sparsity_after


@pytest.mark.parametrize("rounds", range(11))
def test_linear_prunes_a_tenth_of_the_original_weights_per_round(rounds):
    assert sparsity_after("linear", rounds) == pytest.approx(0.1 * rounds, abs=1e-12)


@pytest.mark.parametrize("rounds", range(12))
def test_geometric_prunes_a_fifth_of_what_remains_per_round(rounds):
    assert sparsity_after("geometric", rounds) == pytest.approx(1 - 0.8**rounds, abs=1e-12)
    if rounds:
        remaining_before = 1 - sparsity_after("geometric", rounds - 1)
        pruned_now = sparsity_after("geometric", rounds) - sparsity_after("geometric", rounds - 1)
        assert pruned_now == pytest.approx(0.2 * remaining_before)


def test_the_reference_targets_are_reached_after_five_and_eight_linear_rounds():
    assert rounds_to("linear", 0.5) == 5
    assert rounds_to("linear", 0.8) == 8
    assert sparsity_after("linear", 5) == 0.5
    assert sparsity_after("linear", 8) == 0.8


def test_geometric_reaches_a_target_at_the_first_round_at_or_above_it():
    assert rounds_to("geometric", 0.5) == 4  # 1 - 0.8^3 = 0.488 < 0.5 <= 1 - 0.8^4 = 0.5904
    assert rounds_to("geometric", 0.8) == 8  # 0.7903 < 0.8 <= 0.8322
    assert rounds_to("geometric", 0.0) == 0


def test_counts_come_from_the_formula_without_drift():
    n = 1001
    for name in SCHEDULES:
        for rounds in range(9):
            assert pruned_count(name, rounds, n) == round(sparsity_after(name, rounds) * n + 1e-9)
    assert pruned_count("linear", 5, 1001) == 501  # 500.5 rounds half up


def test_unknown_schedules_bad_rounds_and_unreachable_targets_are_errors():
    with pytest.raises(ValueError, match="unknown pruning schedule 'cubic'; known: linear, geometric"):
        sparsity_after("cubic", 1)
    with pytest.raises(ValueError, match="rounds must be >= 0"):
        sparsity_after("linear", -1)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        rounds_to("linear", 1.0)
