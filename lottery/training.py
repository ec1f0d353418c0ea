"""Full fine-tuning of θ ⊙ m for a fixed number of steps: the training inside an IMP round and a transfer.

The mask is enforced twice (`enforced`): the gradients of pruned weights are zeroed as they
accumulate (so gradient clipping sees only the sub-network), and the mask is re-applied to the
weights after every optimizer step (so AdamW's decoupled weight decay and any numerical drift can
never move a pruned weight off exactly 0). Both are in-place multiplications by float masks made
once per training, on the weights' device: no Python work per element, a few fused kernels per step.

Training is seeded (`transfer.finetune.seed_everything`): two calls with the same learner state,
data, mask and params take the same batches in the same order with the same dropout. Batches cycle
through seeded epochs (`transfer.finetune.epoch_batches`) until ``steps_per_round`` optimizer steps.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from lottery.learner import Learner
from lottery.masks import Mask, check_covers
from lottery.params import LotteryParams
from lottery.prunable import prunable_parameters
from transfer.examples import Encoded
from transfer.finetune import epoch_batches, seed_everything, training_step


@dataclass(frozen=True)
class TrainStats:
    """What one training took: optimizer steps, wall seconds (scoring excluded), mean training loss."""

    steps: int
    seconds: float
    mean_loss: float


@contextmanager
def enforced(model: torch.nn.Module, optimizer: torch.optim.Optimizer, mask: Mask | None) -> Iterator[None]:
    """Within the block the model trains as θ ⊙ m: pruned weights are 0 from the start, their gradients are
    zeroed as they accumulate, and the mask is re-applied after every step of ``optimizer``. None: dense."""
    if mask is None:
        yield
        return
    weights = prunable_parameters(model)
    check_covers(mask, weights)
    params = list(weights.values())
    keep = [mask[name].to(device=p.device, dtype=p.dtype) for name, p in weights.items()]

    @torch.no_grad()
    def apply(*_: object) -> None:
        torch._foreach_mul_(params, keep)

    def zero_pruned_grad(k: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def hook(p: torch.Tensor) -> None:
            p.grad.mul_(k)

        return hook

    apply()
    handles = [p.register_post_accumulate_grad_hook(zero_pruned_grad(k)) for p, k in zip(params, keep, strict=True)]
    handles.append(optimizer.register_step_post_hook(apply))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def adamw(trainable: list[torch.nn.Parameter], params: LotteryParams) -> torch.optim.AdamW:
    """A new AdamW, fused (one kernel per step) where this torch has the kernel for the weights' device.

    Fused matters for masks on a CPU: a pruned weight's Adam state is exactly 0, and the unfused
    update's ``sqrt`` of 0 is several times slower than of other numbers, which made masked steps
    ~10% slower than dense ones; fused, the two run alike (and both faster).
    """
    try:
        return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay, fused=True)
    except RuntimeError:  # no fused kernel for this device in this torch (CPU before torch 2.4)
        return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)


def batch_indices(n: int, params: LotteryParams) -> Iterator[np.ndarray]:
    """The example indices of each of the ``steps_per_round`` batches, epoch after seeded epoch."""
    epochs = (epoch_batches(n, params.batch_size, params.seed, epoch) for epoch in itertools.count())
    return itertools.islice(itertools.chain.from_iterable(epochs), params.steps_per_round)


def train_steps(learner: Learner, train: Sequence[Encoded], mask: Mask | None, params: LotteryParams) -> TrainStats:
    """``steps_per_round`` AdamW steps of full fine-tuning of the learner's model under ``mask`` (None: dense).

    The optimizer is new (its state reset); the model is left in eval mode with its trained weights.
    """
    if not train:
        raise ValueError("no training examples")
    seed_everything(params.seed)
    model = learner.model
    model.train()
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], params)
    losses = []
    began = time.perf_counter()
    with enforced(model, optimizer, mask):
        for step, indices in enumerate(batch_indices(len(train), params)):
            batch = learner.batch([train[i] for i in indices], step)
            losses.append(training_step(model, optimizer, batch, params.max_grad_norm))
    seconds = time.perf_counter() - began
    model.eval()
    return TrainStats(len(losses), seconds, float(np.mean(losses)))
