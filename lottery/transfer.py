"""Sub-network transfer: does language s's sub-network serve language t?

For a source s, a target t and a sparsity: rewind to θ₀, fine-tune θ₀ ⊙ m_s on t's training data
(full fine-tuning, the mask enforced, T steps as in an IMP round) and score on t's test data; the
diagonal (s = t) uses m_t, and the baselines are the dense model (no mask) and a random mask of
m_s's per-tensor density (`lottery.masks.random_mask_like`). θ₀ does not depend on the language
(the head is seeded by the run's seed), so a mask found on s applies to t's θ₀ as is.

The relative drop of Foroutan et al.'s poster (004), per source s over the languages L:
(1/(|L|−1)) Σ_{t≠s} (acc(s,t) − acc(t,t)) / acc(t,t).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lottery.imp import LotteryRun, rewind
from lottery.masks import Mask
from lottery.params import LotteryParams
from lottery.training import train_steps


@dataclass(frozen=True)
class TransferScore:
    """The target's test score of a (sub-)network fine-tuned on the target, its optimizer steps, the wall seconds
    of the whole unit (rewinding, fine-tuning and scoring, as an IMP round's) and the examples scored."""

    score: float
    steps: int
    seconds: float
    n_examples: int


def subnetwork_transfer(target: LotteryRun, mask: Mask | None, params: LotteryParams) -> TransferScore:
    """Fine-tune θ₀ ⊙ ``mask`` (None: the dense model) on the target's training data; score its test data."""
    began = time.perf_counter()
    rewind(target.learner.model, target.theta0)
    stats = train_steps(target.learner, target.data.train, mask, params)
    score = target.learner.score(target.data.test)
    return TransferScore(score, stats.steps, time.perf_counter() - began, len(target.data.test))


def relative_drop(accuracy: np.ndarray) -> np.ndarray:
    """Per source s (row), the mean over targets t ≠ s of (acc[s, t] − acc[t, t]) / acc[t, t].

    ``accuracy[s, t]`` is the score on t of the sub-network found on s; the diagonal holds each
    target's own sub-network. NaN anywhere in a row's terms makes that row NaN (a missing transfer is
    not silently averaged away).
    """
    acc = np.asarray(accuracy, dtype=float)
    if acc.ndim != 2 or acc.shape[0] != acc.shape[1] or acc.shape[0] < 2:
        raise ValueError(f"expected a square matrix over at least 2 languages, got shape {acc.shape}")
    own = np.diag(acc)
    change = (acc - own[None, :]) / own[None, :]
    off_diagonal = ~np.eye(len(acc), dtype=bool)
    return np.where(off_diagonal, change, 0.0).sum(axis=1) / (len(acc) - 1)
