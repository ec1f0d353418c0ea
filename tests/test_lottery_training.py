"""Masked training keeps pruned weights at exactly 0 through AdamW with weight decay, and trains the rest."""

from __future__ import annotations

import pytest
import torch
from transformers import BloomConfig, BloomForTokenClassification

from lottery.learner import Learner
from lottery.masks import magnitude_mask
from lottery.params import LotteryParams
from lottery.prunable import prunable_parameters
from lottery.training import enforced, train_steps
from transfer.examples import Encoded, collate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARAMS = LotteryParams(steps_per_round=12, lr=5e-2, weight_decay=0.5, batch_size=4)


def learner() -> Learner:
    torch.manual_seed(0)
    model = BloomForTokenClassification(BloomConfig(vocab_size=40, hidden_size=16, n_layer=2, n_head=2, num_labels=3))
    return Learner(model, None, 32, lambda examples, step: collate(examples, 0), lambda examples: 0.0)


def examples(n: int = 10) -> list[Encoded]:
    g = torch.Generator().manual_seed(1)
    return [
        Encoded(
            tuple(torch.randint(1, 40, (7,), generator=g).tolist()),
            tuple(torch.randint(0, 3, (7,), generator=g).tolist()),
        )
        for _ in range(n)
    ]


def test_pruned_weights_stay_exactly_zero_through_adamw_with_weight_decay():
    lrn = learner()
    weights = prunable_parameters(lrn.model)
    before = {n: w.detach().clone() for n, w in weights.items()}
    mask = magnitude_mask(weights, 0.6)
    stats = train_steps(lrn, examples(), mask, PARAMS)
    assert stats.steps == 12
    for name, w in weights.items():
        assert torch.all(w.detach()[~mask[name]] == 0)
        assert not torch.equal(w.detach()[mask[name]], before[name][mask[name]])  # the kept weights did train


def test_dense_training_moves_the_same_weights_so_the_zeros_are_the_masks_doing():
    lrn = learner()
    weights = prunable_parameters(lrn.model)
    mask = magnitude_mask(weights, 0.6)
    train_steps(lrn, examples(), None, PARAMS)
    assert all((w.detach()[~mask[n]] != 0).all() for n, w in weights.items())


def test_gradients_of_pruned_weights_are_zeroed_before_the_step_and_hooks_go_away():
    lrn = learner()
    weights = prunable_parameters(lrn.model)
    mask = magnitude_mask(weights, 0.5)
    optimizer = torch.optim.AdamW(lrn.model.parameters())
    batch = collate(examples(4), 0)
    with enforced(lrn.model, optimizer, mask):
        lrn.model(**batch).loss.backward()
        for name, w in weights.items():
            assert torch.all(w.grad[~mask[name]] == 0)
            assert torch.any(w.grad[mask[name]] != 0)
    lrn.model.zero_grad()
    lrn.model(**batch).loss.backward()
    assert all(torch.any(w.grad[~mask[n]] != 0) for n, w in weights.items())


def test_training_is_seeded():
    first, second = learner(), learner()
    mask = magnitude_mask(prunable_parameters(first.model), 0.3)
    a = train_steps(first, examples(), mask, PARAMS)
    b = train_steps(second, examples(), mask, PARAMS)
    assert a.mean_loss == b.mean_loss
    assert all(torch.equal(p, q) for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True))


def test_the_mask_is_reapplied_after_every_optimizer_step_whatever_the_gradient():
    lrn = learner()
    weights = prunable_parameters(lrn.model)
    mask = magnitude_mask(weights, 0.5)
    optimizer = torch.optim.AdamW(lrn.model.parameters(), lr=0.1, weight_decay=0.1)
    with enforced(lrn.model, optimizer, mask):
        for w in weights.values():
            w.grad = torch.ones_like(w)  # set directly: not through the gradient hooks
        optimizer.step()
        assert all(torch.all(w.detach()[~mask[n]] == 0) for n, w in weights.items())
    optimizer.step()
    assert all(torch.all(w.detach()[~mask[n]] != 0) for n, w in weights.items())
