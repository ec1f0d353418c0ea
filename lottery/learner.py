"""A checkpoint loaded for one lottery task, and a language's data for it: what IMP and transfer train and score.

A `Learner` is the model with its task head (or its own LM head), its tokenizer, the input length
used, how a list of encoded examples becomes a batch for step s (the task's labels, and for a masked
LM the tokens masked at that step), and how the current model is scored on examples (higher is
better). `TaskData` holds one language's encoded train, dev and test examples, read by the task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from transfer.examples import Encoded

#: (examples, optimizer step) → the model's inputs with labels, on the CPU.
BatchFn = Callable[[Sequence[Encoded], int], dict[str, torch.Tensor]]
#: examples → the model's score on them as it is now (higher is better).
ScoreFn = Callable[[Sequence[Encoded]], float]


@dataclass(frozen=True)
class Learner:
    """A model ready to train on one task: model (on its device), tokenizer, max input length, batching, scoring."""

    model: torch.nn.Module
    tokenizer: object
    max_length: int
    batch: BatchFn
    score: ScoreFn


@dataclass(frozen=True)
class TaskData:
    """One language's encoded examples for a task: train (for training), dev (for IMP's dev score), test."""

    train: list[Encoded]
    dev: list[Encoded]
    test: list[Encoded]
