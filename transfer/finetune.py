"""Fine-tuning with model selection on a dev metric: AdamW, fixed seeds, periodic evaluation, early stopping.

The loop is task-agnostic: it takes encoded examples and a callable that scores the model on the
source-language dev set (higher is better). Every ``eval_every`` optimizer steps, and once more at
the end, the dev metric is computed; the trainable weights of the best evaluation are kept (on CPU)
and restored at the end, and training stops after ``patience`` evaluations without a strict
improvement. ``train_seconds`` is the wall time of this loop, dev evaluations included (they are
part of training with model selection), model loading excluded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from probing.validation import at_least, fraction, one_of, positive, reject
from transfer.examples import Encoded, collate

QUANTIZATION_MODES = ("auto", "nf4", "none")


@dataclass(frozen=True)
class FinetuneParams:
    """How one checkpoint is fine-tuned; defaults are Wang et al. (2024) §3.2 / QLoRA where they say.

    lr 2e-5 (AdamW), LoRA r 8 / alpha 32 / dropout 0.05, NF4 + double quantisation, max length 128,
    10 epochs with evaluation every 100 steps (their POS setting; XNLI's is in `zero_shot`). The
    paper gives no batch size, schedule or early stopping: batch 32, a constant learning rate,
    patience 5 evaluations, and the transformers Trainer's weight decay 0 and clipping at 1.0.
    ``quantization``: "auto" = "nf4" when training on a CUDA device, else "none" (4-bit on CPU is slow).
    ``full_finetune`` trains every weight without LoRA (a baseline for the benchmark).
    ``max_train_examples`` / ``max_eval_examples`` cap the training data and every evaluation set
    (sentences for POS, pairs for XNLI) with a seeded random subset; None = all.
    """

    lr: float = 2e-5
    epochs: int = 10
    eval_every: int = 100
    patience: int = 5
    batch_size: int = 32
    max_length: int = 128
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    quantization: str = "auto"
    full_finetune: bool = False
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    max_train_examples: int | None = None
    max_eval_examples: int | None = None

    def __post_init__(self) -> None:
        problems = [
            *at_least("lr", self.lr, 0),  # 0: a frozen run, as a baseline
            *(problem for name in _AT_LEAST_ONE for problem in at_least(name, getattr(self, name), 1)),
            *positive("lora_alpha", self.lora_alpha),
            *fraction("lora_dropout", self.lora_dropout),
            *one_of("quantization", self.quantization, QUANTIZATION_MODES),
            *at_least("weight_decay", self.weight_decay, 0),
            *positive("max_grad_norm", self.max_grad_norm),
            *at_least("seed", self.seed, 0),
        ]
        if self.full_finetune and self.quantization == "nf4":
            problems.append("quantization: full fine-tuning cannot update 4-bit weights: use 'none' or 'auto'")
        reject(problems)


#: The sizes of `FinetuneParams` that must be at least 1 when given.
_AT_LEAST_ONE = (
    "epochs",
    "eval_every",
    "patience",
    "batch_size",
    "max_length",
    "lora_r",
    "max_train_examples",
    "max_eval_examples",
)


@dataclass
class FinetuneResult:
    """The fine-tuned model with its best weights restored, and how it got there.

    ``history`` has one entry per dev evaluation: step, mean train loss since the previous one, dev metric.
    """

    model: torch.nn.Module
    best_step: int
    best_metric: float
    history: list[dict]
    train_seconds: float


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so that head init, dropout and batch order repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, params: FinetuneParams) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters only (LoRA weights and head, or everything when full)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)


def training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], max_grad_norm: float
) -> float:
    """One optimizer step on a collated batch; returns the loss."""
    device = next(model.parameters()).device
    loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Example indices of one epoch's batches, shuffled by (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def finetune(
    model: torch.nn.Module,
    train: Sequence[Encoded],
    dev_metric: Callable[[torch.nn.Module], float],
    params: FinetuneParams,
    pad_id: int,
) -> FinetuneResult:
    """Train on ``train``, select on ``dev_metric`` every ``eval_every`` steps; return the best model."""
    if not train:
        raise ValueError("no training examples")
    seed_everything(params.seed)
    optimizer = make_optimizer(model, params)
    model.train()
    history: list[dict] = []
    best_metric, best_step, best_state = -np.inf, 0, {}
    step, losses, stale = 0, [], 0
    began = time.perf_counter()

    def evaluate() -> bool:
        """Record a dev evaluation; return True when training should stop early."""
        nonlocal best_metric, best_step, best_state, losses, stale
        metric = dev_metric(model)
        model.train()
        history.append({"step": step, "train_loss": float(np.mean(losses)), "dev_metric": metric})
        losses = []
        if metric > best_metric:
            best_metric, best_step, best_state, stale = metric, step, _trainable_state(model), 0
        else:
            stale += 1
        return stale >= params.patience

    stopped = False
    for epoch in range(params.epochs):
        for indices in epoch_batches(len(train), params.batch_size, params.seed, epoch):
            batch = collate([train[i] for i in indices], pad_id)
            losses.append(training_step(model, optimizer, batch, params.max_grad_norm))
            step += 1
            if step % params.eval_every == 0 and evaluate():
                stopped = True
                break
        if stopped:
            break
    if losses:
        evaluate()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in best_state:
                p.copy_(best_state[name].to(p.device))
    model.eval()
    return FinetuneResult(model, best_step, float(best_metric), history, time.perf_counter() - began)
