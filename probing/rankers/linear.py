"""Linear probe weights (Dalvi et al. 2019) as modified by Antverg & Belinkov (2022, App. A.1).

An elastic-net multinomial logistic regression (loss = mean cross-entropy + λ1 ‖W‖₁ + λ2 ‖W‖²₂, or
+ λ2 ‖W‖₂ unsquared as paper 003's code) is trained with minibatch Adam on raw or standardised
features; each neuron's score is the mean of |W| over the
labels, and neurons are ranked by it, highest first (Antverg & Belinkov's replacement for Dalvi et
al.'s per-label quota, which gives every label the same number of neurons at every depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from probing.rankers.base import (
    L2_PENALTIES,
    RankerParams,
    ScoreRanker,
    Standardiser,
    check_bool,
    check_choice,
    weight_penalty,
)


@dataclass(frozen=True)
class LinearParams(RankerParams):
    """Elastic-net probe training (Antverg & Belinkov's λ1 1e-3, λ2 1e-2, Adam 0.01, 10 epochs, batch 32).

    ``standardise``: per-neuron standardised inputs (True) or raw activations (False, 003's code).
    ``l2_penalty``: "squared" (λ2 ‖W‖²₂) or "norm" (λ2 ‖W‖₂, 003's ``l2_penalty``, which is the
    square root of the sum of squares). 003 trains 10 epochs of Adam on unshuffled batches of 32 and
    keeps the epoch with the lowest train loss; here the batches are shuffled by the seed and the last
    epoch is kept (after 10 epochs the train loss has flattened). ``probing.protocols`` sets 003's.

    Defaults chosen with ``bench/ranking_quality.py`` (logistic regression on the top k = 5, 10, 20,
    50 neurons, mean over k and five data sets: planted d = 1024, tiny BLOOM en/fr Number/POS): raw
    inputs with the squared penalty 0.688; standardised + norm 0.687; raw + norm (003) 0.675;
    standardised + squared (the pre-issue-8 default) 0.671. Raw inputs win on the real activations
    and the planted pairs (0.813 against 0.733 standardised), so ``standardise`` defaults to False.
    """

    l1: float = 1e-3
    l2: float = 1e-2
    lr: float = 1e-2
    epochs: int = 10
    batch_size: int = 32
    standardise: bool = False
    l2_penalty: str = "squared"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        check_bool("standardise", self.standardise)
        check_choice("l2_penalty", self.l2_penalty, L2_PENALTIES)
        if self.l1 < 0 or self.l2 < 0:
            raise ValueError(f"l1 and l2 must be >= 0, got {self.l1} and {self.l2}")


def train_elastic_net(
    Z: np.ndarray, y: np.ndarray, n_classes: int, params: LinearParams, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Weights (C, d) of an elastic-net softmax regression on Z, minibatch Adam from zero, on ``device``
    (batch order from a seeded generator on that device)."""
    generator = torch.Generator(device=device).manual_seed(params.seed)
    x, y_t = torch.from_numpy(Z).float().to(device), torch.from_numpy(y).to(device)
    weight = torch.zeros(n_classes, x.shape[1], device=device, requires_grad=True)
    bias = torch.zeros(n_classes, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=params.lr)
    for _ in range(params.epochs):
        permutation = torch.randperm(len(x), generator=generator, device=device)
        for start in range(0, len(x), params.batch_size):
            batch = permutation[start : start + params.batch_size]
            loss = F.cross_entropy(x[batch] @ weight.T + bias, y_t[batch])
            loss = loss + weight_penalty(weight, params.l1, params.l2, params.l2_penalty)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return weight.detach().double().cpu().numpy()


class LinearRanker(ScoreRanker):
    """Rank neurons by the mean absolute weight of an elastic-net linear probe (dev data unused)."""

    method = "linear"
    params_type = LinearParams

    def neuron_scores(self, X_train: np.ndarray, y_train: np.ndarray, n_classes: int) -> np.ndarray:
        """Train the probe on (raw or standardised) train data; a neuron's score is its mean |W| over labels."""
        Z = Standardiser.fit(X_train)(X_train) if self.params.standardise else np.asarray(X_train, dtype=np.float64)
        self.weight_ = train_elastic_net(Z, y_train.astype(np.int64), n_classes, self.params, self.device)
        return np.abs(self.weight_).mean(axis=0)
