"""Encoded examples, padded batches and seeded subsets shared by both tasks (POS tagging and XNLI).

A POS example carries one label per token (``IGNORE_INDEX`` where no label is scored); an XNLI
example carries one label for the whole sequence. Batches are right-padded: BLOOM's sequence
classifier reads the rightmost non-pad token, and its token classifier sees ALiBi-masked padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

#: Label of tokens that are not scored (the loss and the metrics skip them), as in transformers.
IGNORE_INDEX = -100

T = TypeVar("T")


@dataclass(frozen=True)
class Encoded:
    """One model input: token ids, optional segment ids, and labels (per token, or one per sequence)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...] | int
    token_type_ids: tuple[int, ...] | None = None


def collate(examples: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ids with ``pad_id``, token labels with ``IGNORE_INDEX``, mask 1 on real tokens."""
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, e in enumerate(examples):
        input_ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[row, : len(e.input_ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if all(e.token_type_ids is not None for e in examples):
        types = torch.zeros((len(examples), length), dtype=torch.long)
        for row, e in enumerate(examples):
            types[row, : len(e.token_type_ids)] = torch.tensor(e.token_type_ids)
        batch["token_type_ids"] = types
    if isinstance(examples[0].labels, int):
        batch["labels"] = torch.tensor([e.labels for e in examples], dtype=torch.long)
    else:
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        for row, e in enumerate(examples):
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
        batch["labels"] = labels
    return batch


def subsample(items: Sequence[T], limit: int | None, seed: int) -> list[T]:
    """A seeded random subset of ``limit`` items in their original order; all items when ``limit`` is None."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]
