"""Latent-variable probe with Poisson sampling (Stańczak et al. 2022/2023; Wang et al. 2024, eq. 1–4).

A linear softmax probe p(y | x ⊙ m) = softmax(W (x ⊙ m) + b) is trained on inputs masked by neuron
subsets m ~ q_φ, independent Bernoulli(sigmoid(φ_j)) per neuron ("Poisson sampling"), maximising the
ELBO  E_q[log p(y | x ⊙ m)] + H(q_φ)  (the entropy scaled by ``entropy_scale``; the uniform prior
over subsets is a constant). θ = (W, b) gets its gradient by backpropagation through the sampled
masks, φ by the score-function (REINFORCE) estimator with the mean NLL of the step's Monte-Carlo
masks as baseline. Features are standardised by the train mean and std, so masking a neuron to zero
sets it to its train mean. Training stops early on the dev NLL computed with the *expected* mask
E_q[m] = sigmoid(φ): the probe is linear, so those logits are exactly the expected logits under q.

The probe is trained once; then k neurons are chosen greedily on dev (eq. 3), each step adding the
neuron that most raises the dev log-likelihood of the labels with every non-chosen neuron zeroed.
With S chosen, the logits for candidate j are base_S + W[:, j] x_j, so a step scores all candidates
in one (N × candidates × C) computation (chunked over candidates); ``greedy_scorer(...,
vectorized=False)`` is the per-candidate reference, one masked forward pass per candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from probing.rankers.base import GreedyRanker, GreedyScorer, RankerParams, check_criterion


@dataclass(frozen=True)
class LatentParams(RankerParams):
    """Hyperparameters of the latent-variable probe and its greedy selection.

    Defaults follow the reference (Adam lr 1e-2, batch 256, 5 MC masks, entropy scale 1e-2, L1/L2
    1e-5, k = 50); ``max_epochs`` and ``patience`` are cut from the reference's ~50-epoch patience so
    that one fit on ~3000 × 256 data takes seconds on a CPU (dev NLL has flattened well before).
    ``criterion`` only changes the reported scores: "nmi" and "loglik" are both monotone in the dev
    cross-entropy, so they choose the same neurons.
    """

    k: int = 50
    criterion: str = "nmi"
    entropy_scale: float = 1e-2
    n_samples: int = 5
    lr: float = 1e-2
    batch_size: int = 256
    l1: float = 1e-5
    l2: float = 1e-5
    max_epochs: int = 200
    patience: int = 20
    chunk_size: int = 32

    def __post_init__(self) -> None:
        check_criterion(self.criterion)
        for name in ("k", "n_samples", "batch_size", "max_epochs", "patience", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class LatentProbe:
    """A trained probe on standardised inputs: weights (C, d), bias (C,), mask logits φ (d,), kept epoch."""

    weight: np.ndarray
    bias: np.ndarray
    mask_logits: np.ndarray
    best_epoch: int

    def log_proba(self, Z: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """Log p(y | z) (n, C) with every neuron outside ``neurons`` zeroed (none when None)."""
        mask = np.ones(Z.shape[1])
        if neurons is not None:
            mask = np.zeros(Z.shape[1])
            mask[np.asarray(neurons, dtype=np.int64)] = 1.0
        logits = torch.from_numpy((Z * mask) @ self.weight.T + self.bias)
        return torch.log_softmax(logits, dim=1).numpy()


def _negative_elbo(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mask_logits: torch.Tensor,
    params: LatentParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Minibatch loss: MC NLL + score-function term for φ − entropy scale · H(q) + L1/L2 on W."""
    d = x.shape[1]
    probs = torch.sigmoid(mask_logits)
    masks = torch.bernoulli(probs.detach().expand(params.n_samples, d), generator=generator)
    logits = (x.unsqueeze(0) * masks.unsqueeze(1)) @ weight.T + bias
    nll = F.cross_entropy(logits.transpose(1, 2), y.expand(params.n_samples, -1), reduction="none").mean(dim=1)
    log_q = -F.binary_cross_entropy_with_logits(mask_logits.expand_as(masks), masks, reduction="none").sum(dim=1)
    advantage = (nll - nll.mean()).detach()
    entropy = (F.softplus(mask_logits) - mask_logits * probs).sum()
    penalty = params.l1 * weight.abs().sum() + params.l2 * weight.square().sum()
    return nll.mean() + (advantage * log_q).mean() - params.entropy_scale * entropy + penalty


def _dev_nll(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask_logits: torch.Tensor):
    """Dev NLL at the expected mask sigmoid(φ)."""
    return float(F.cross_entropy((x * torch.sigmoid(mask_logits)) @ weight.T + bias, y))


def train_latent_probe(
    Z_train: np.ndarray, y_train: np.ndarray, Z_dev: np.ndarray, y_dev: np.ndarray, n_classes: int, params: LatentParams
) -> LatentProbe:
    """Maximise the ELBO on standardised train data with Adam; keep the parameters of the best dev NLL."""
    generator = torch.Generator().manual_seed(params.seed)
    x, y = torch.from_numpy(Z_train).float(), torch.from_numpy(y_train)
    x_dev, y_dev_t = torch.from_numpy(Z_dev).float(), torch.from_numpy(y_dev)
    d = x.shape[1]
    weight = torch.zeros(n_classes, d, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    mask_logits = torch.zeros(d, requires_grad=True)  # q = Bernoulli(0.5): the maximum-entropy start
    optimizer = torch.optim.Adam([weight, bias, mask_logits], lr=params.lr)
    best, best_state, best_epoch, stale = math.inf, None, 0, 0
    for epoch in range(1, params.max_epochs + 1):
        permutation = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), params.batch_size):
            batch = permutation[start : start + params.batch_size]
            loss = _negative_elbo(x[batch], y[batch], weight, bias, mask_logits, params, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            nll = _dev_nll(x_dev, y_dev_t, weight, bias, mask_logits)
        if nll < best:
            best, best_epoch, stale = nll, epoch, 0
            best_state = [t.detach().double().clone() for t in (weight, bias, mask_logits)]
        else:
            stale += 1
            if stale >= params.patience:
                break
    w, b, phi = (t.numpy() for t in best_state)
    return LatentProbe(weight=w, bias=b, mask_logits=phi, best_epoch=best_epoch)


class LatentGreedy:
    """Vectorised greedy scorer: every candidate of a step from the chosen set's logits plus one column."""

    def __init__(self, probe: LatentProbe, Z: np.ndarray, y: np.ndarray, chunk_size: int):
        self.x = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float64))
        self.y = torch.from_numpy(y)
        self.weight = torch.from_numpy(probe.weight)
        self.weight_y = self.weight[self.y]  # (N, d): the true class's weight for every neuron
        self.base = torch.from_numpy(probe.bias)[:, None].expand(-1, len(y)).clone()  # (C, N) chosen-set logits
        self.chosen = torch.zeros(Z.shape[1], dtype=torch.bool)
        self.chunk_size = chunk_size

    def scores(self) -> np.ndarray:
        """Mean dev log-likelihood after adding each neuron, one (C, N, chunk) logit tensor per chunk."""
        d = self.x.shape[1]
        out = torch.empty(d, dtype=torch.float64)
        base_y = self.base.gather(0, self.y[None])[0, :, None]  # (N, 1)
        for start in range(0, d, self.chunk_size):
            cols = slice(start, start + self.chunk_size)
            x = self.x[:, cols]
            logits = torch.addcmul(self.base[:, :, None], x[None], self.weight[:, None, cols])
            out[cols] = (base_y + x * self.weight_y[:, cols] - torch.logsumexp(logits, dim=0)).mean(dim=0)
        out[self.chosen] = -math.inf
        return out.numpy()

    def add(self, neuron: int) -> None:
        """Fold the neuron's contribution into the chosen set's logits."""
        self.base += self.weight[:, neuron, None] * self.x[None, :, neuron]
        self.chosen[neuron] = True


class LatentGreedyLoop:
    """Per-candidate reference: one forward pass of the probe with the non-chosen neurons zeroed, per candidate.

    Zeroing a neuron's input and zeroing its weight column give the same logits; the loop zeroes the
    (C × d) weights rather than copy the (N × d) inputs, so that it is not slower than it needs to be.
    """

    def __init__(self, probe: LatentProbe, Z: np.ndarray, y: np.ndarray):
        self.x = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float64))
        self.y = torch.from_numpy(y)
        self.weight, self.bias = torch.from_numpy(probe.weight), torch.from_numpy(probe.bias)
        self.mask = torch.zeros(Z.shape[1], dtype=torch.float64)

    def scores(self) -> np.ndarray:
        """Mean dev log-likelihood after adding each neuron, one masked forward pass each."""
        out = np.full(self.x.shape[1], -math.inf)
        for j in np.flatnonzero(self.mask.numpy() == 0):
            mask = self.mask.clone()
            mask[j] = 1.0
            log_p = torch.log_softmax(self.x @ (self.weight * mask).T + self.bias, dim=1)
            out[j] = float(log_p.gather(1, self.y[:, None]).mean())
        return out

    def add(self, neuron: int) -> None:
        """Unmask the neuron."""
        self.mask[neuron] = 1.0


class LatentRanker(GreedyRanker):
    """Latent-variable probe trained once with Poisson-sampled masks, then greedy selection on dev.

    After ``fit``: ``probe_`` (the trained `LatentProbe`) and ``standardiser_``; ``score(X, y,
    neurons)`` is the probe's accuracy with every other neuron zeroed (the ranking's own probe).
    """

    method = "latent"
    params_type = LatentParams

    def _fit_model(
        self, Z_train: np.ndarray, y_train: np.ndarray, Z_dev: np.ndarray, y_dev: np.ndarray, n_classes: int
    ) -> None:
        self.probe_ = train_latent_probe(Z_train, y_train, Z_dev, y_dev, n_classes, self.params)

    def greedy_scorer(self, X: np.ndarray, y: np.ndarray, vectorized: bool = True) -> GreedyScorer:
        """A fresh greedy search on (X, y) with the trained probe: vectorised, or the per-candidate reference."""
        Z, y = self.standardiser_(X), np.asarray(y, dtype=np.int64)
        if vectorized:
            return LatentGreedy(self.probe_, Z, y, self.params.chunk_size)
        return LatentGreedyLoop(self.probe_, Z, y)

    def predict_log_proba(self, X: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """Log p(y | x) (n, C) with every neuron outside ``neurons`` at its train mean (none when None)."""
        return self.probe_.log_proba(self.standardiser_(X), neurons)
