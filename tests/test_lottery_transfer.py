"""Sub-network transfer trains θ₀ ⊙ m_s on the target; the relative drop averages over the other targets only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lottery.imp import prepare
from lottery.masks import magnitude_mask
from lottery.params import LotteryParams
from lottery.prunable import prunable_parameters
from lottery.transfer import relative_drop, subnetwork_transfer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_relative_drop_by_hand_excludes_the_source_itself():
    acc = np.array(
        [
            [0.9, 0.4, 0.6],  # source 0: on target 1 (own 0.5) −20%, on target 2 (own 0.8) −25%
            [0.45, 0.5, 0.8],  # source 1: on target 0 (own 0.9) −50%, on target 2 ±0
            [0.9, 0.6, 0.8],  # source 2: ±0 on target 0, +20% on target 1
        ]
    )
    assert relative_drop(acc) == pytest.approx([(-0.2 - 0.25) / 2, (-0.5 + 0.0) / 2, (0.0 + 0.2) / 2])
    changed = acc.copy()
    changed[0, 0] = 0.3  # a source's own score enters only as the other sources' reference on that target
    drop = relative_drop(changed)
    assert drop[0] == pytest.approx(relative_drop(acc)[0])
    assert drop[1] != pytest.approx(relative_drop(acc)[1])


def test_relative_drop_needs_a_square_matrix_and_propagates_missing_transfers():
    with pytest.raises(ValueError, match="square matrix over at least 2 languages"):
        relative_drop(np.ones((2, 3)))
    acc = np.full((3, 3), 0.5)
    acc[0, 1] = np.nan
    assert np.isnan(relative_drop(acc)[0]) and not np.isnan(relative_drop(acc)[1:]).any()


def test_a_source_mask_is_fine_tuned_on_the_target_and_scored_on_its_test_data(tiny_bloom_dir, ud_dir):
    params = LotteryParams(steps_per_round=10, lr=2e-3, batch_size=16, max_train_examples=100, max_eval_examples=50)
    target = prepare("pos", str(tiny_bloom_dir), "step-a", ud_dir, "fr", params)
    source_mask = magnitude_mask(prunable_parameters(target.learner.model), 0.5)
    result = subnetwork_transfer(target, source_mask, params)
    assert result.steps == 10 and result.n_examples == 50
    assert 0 < result.score <= 1
    assert result.score == target.learner.score(target.data.test)
    weights = prunable_parameters(target.learner.model)
    assert all(torch.all(w.detach()[~source_mask[n]] == 0) for n, w in weights.items())
    dense = subnetwork_transfer(target, None, params)
    assert all(torch.any(w.detach()[~source_mask[n]] != 0) for n, w in weights.items())
    assert dense.score != result.score
