"""Iterative magnitude pruning with rewinding to θ₀ (Frankle & Carbin 2019; Foroutan et al. 2022).

θ₀ is the checkpoint's weights with the task head initialised from the run's seed (`prepare`). Round
r trains θ₀ ⊙ m_r, the mask at the schedule's sparsity after r rounds, for T steps of full
fine-tuning (`lottery.training`), scores it on the language's dev data, then prunes the smallest
kept |w| of the TRAINED weights globally to the next round's sparsity (m_{r+1}). Every round starts
by rewinding every weight, head included, to θ₀ bit-exactly, with a new optimizer. Round 0 is the
dense model; the sub-network at a target sparsity is the mask of the round the schedule reaches it
at (`LotteryParams.target_rounds`), with that round's dev score.

A round is a pure function of (θ₀, its mask, its index): `run_round` returns the round's record and
the next mask, so a stage stores each finished round and resumes a killed run from the last stored
mask with `run_imp(..., start_round=r + 1, mask=stored_next_mask)`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lottery.learner import Learner, TaskData
from lottery.masks import Mask, full_mask, kept_count, magnitude_mask, prune_to, total_count
from lottery.params import LotteryParams
from lottery.prunable import PrunableWeight, prunable_parameters, prunable_weights
from lottery.schedules import pruned_count, sparsity_after
from lottery.tasks import TASKS, load_learner
from lottery.training import train_steps


@dataclass(frozen=True)
class LotteryRun:
    """A checkpoint loaded for one (task, language, seed): its learner, θ₀, its prunable weights and its data.

    ``theta0`` is a CPU copy of the model's whole state (every weight and buffer, head included) as loaded.
    """

    task: str
    language: str
    learner: Learner
    theta0: dict[str, torch.Tensor]
    weights: tuple[PrunableWeight, ...]
    data: TaskData


@dataclass(frozen=True)
class RoundResult:
    """One finished IMP round: the mask it trained and its sparsity, the dev score, its optimizer steps and wall
    seconds (rewinding, training, scoring and pruning), and the next mask."""

    round: int
    sparsity: float
    dev_metric: float
    steps: int
    seconds: float
    mask: Mask
    next_mask: Mask


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's whole state."""
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def rewind(model: torch.nn.Module, theta0: dict[str, torch.Tensor]) -> None:
    """Set every weight and buffer of the model back to ``theta0``, bit-exactly."""
    model.load_state_dict(theta0, strict=True)


def prepare(
    task: str,
    model_source: str,
    revision: str | None,
    data_dir: Path | str,
    language: str,
    params: LotteryParams,
    device: str = "cpu",
) -> LotteryRun:
    """Load the checkpoint for the task (head seeded by ``params.seed``), record θ₀ and read the language's data."""
    learner = load_learner(TASKS[task], model_source, revision, params, device)
    data = TASKS[task].read(data_dir, language, learner, params)
    weights = tuple(prunable_weights(learner.model))
    return LotteryRun(task, language, learner, snapshot(learner.model), weights, data)


def initial_mask(run: LotteryRun) -> Mask:
    """The mask of round 0: every prunable weight kept."""
    return full_mask(prunable_parameters(run.learner.model))


def one_shot_mask(run: LotteryRun, target: float) -> Mask:
    """The control without training: global magnitude pruning of θ₀'s prunable weights to sparsity ``target``
    (give it an IMP round's ``sparsity`` to compare at the same count)."""
    return magnitude_mask({w.name: run.theta0[w.name] for w in run.weights}, target)


def run_round(run: LotteryRun, mask: Mask, round_index: int, params: LotteryParams) -> RoundResult:
    """Round ``round_index``: rewind to θ₀, train θ₀ ⊙ ``mask`` for T steps, score on dev, prune to the next sparsity.

    ValueError unless ``mask`` prunes exactly the schedule's count for this round.
    """
    n_total = total_count(mask)
    expected = pruned_count(params.schedule, round_index, n_total)
    if n_total - kept_count(mask) != expected:
        raise ValueError(
            f"round {round_index} of schedule {params.schedule!r} trains a mask with {expected} of {n_total} "
            f"weights pruned; this mask prunes {n_total - kept_count(mask)}"
        )
    began = time.perf_counter()
    model = run.learner.model
    rewind(model, run.theta0)
    stats = train_steps(run.learner, run.data.train, mask, params)
    dev_metric = run.learner.score(run.data.dev)
    next_mask = prune_to(prunable_parameters(model), mask, pruned_count(params.schedule, round_index + 1, n_total))
    return RoundResult(
        round_index,
        sparsity_after(params.schedule, round_index),
        dev_metric,
        stats.steps,
        time.perf_counter() - began,
        mask,
        next_mask,
    )


def run_imp(
    run: LotteryRun, params: LotteryParams, start_round: int = 0, mask: Mask | None = None
) -> Iterator[RoundResult]:
    """The rounds from ``start_round`` (with its ``mask``; round 0's is `initial_mask`) to ``params.rounds - 1``,
    each yielded as soon as it is finished."""
    mask = initial_mask(run) if mask is None else mask
    for round_index in range(start_round, params.rounds):
        result = run_round(run, mask, round_index, params)
        yield result
        mask = result.next_mask
