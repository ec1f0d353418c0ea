"""Score a fine-tuned model: POS accuracy and macro-F1 over first-sub-word labels, XNLI accuracy.

Evaluation batches are formed after sorting by length (less padding); predictions are the argmax
of the logits. The model's mode is restored afterwards, so the training loop can call these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from transfer.examples import IGNORE_INDEX, Encoded, collate
from transfer.metrics import accuracy, macro_f1


@torch.inference_mode()
def predict(model: torch.nn.Module, examples: Sequence[Encoded], pad_id: int, batch_size: int = 64) -> list:
    """Argmax predictions per example, in input order: an int (sequence head) or an array (token head)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    predictions: list = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        batch = collate([examples[i] for i in chosen], pad_id)
        batch.pop("labels")
        best = model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).cpu().numpy()
        for row, i in enumerate(chosen):
            predictions[i] = int(best[row]) if best.ndim == 1 else best[row, : len(examples[i].input_ids)]
    model.train(was_training)
    return predictions


def evaluate_pos(model: torch.nn.Module, examples: Sequence[Encoded], pad_id: int, batch_size: int = 64) -> dict:
    """Accuracy and macro-F1 over every labelled token (one per scored word), and the number of words."""
    predictions = predict(model, examples, pad_id, batch_size)
    gold, pred = [], []
    for example, p in zip(examples, predictions, strict=True):
        labels = np.asarray(example.labels)
        scored = labels != IGNORE_INDEX
        gold.append(labels[scored])
        pred.append(p[scored])
    gold_all, pred_all = np.concatenate(gold), np.concatenate(pred)
    return {"accuracy": accuracy(gold_all, pred_all), "macro_f1": macro_f1(gold_all, pred_all), "n": len(gold_all)}


def evaluate_xnli(model: torch.nn.Module, examples: Sequence[Encoded], pad_id: int, batch_size: int = 64) -> dict:
    """Accuracy over the pairs, and the number of pairs."""
    predictions = predict(model, examples, pad_id, batch_size)
    gold = np.asarray([e.labels for e in examples])
    return {"accuracy": accuracy(gold, np.asarray(predictions)), "n": len(gold)}
