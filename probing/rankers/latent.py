"""Latent-variable probe with Poisson sampling (Stańczak et al. 2022/2023; Wang et al. 2024, eq. 1–4).

A linear softmax probe p(y | x ⊙ m) = softmax(W (x ⊙ m) + b) is trained on inputs masked by neuron
subsets m ~ q_φ, independent Bernoulli(sigmoid(φ_j)) per neuron ("Poisson sampling"), maximising the
ELBO  E_q[log p(y | x ⊙ m)] + H(q_φ)  (the uniform prior over subsets is a constant; H(q) weighted
by ``entropy_weight`` in the gradient). θ = (W, b) gets its gradient by backpropagation through the
sampled masks, φ by the score-function (REINFORCE) estimator with the baseline ``baseline``; masks
are drawn per example or shared by a minibatch (``mask_sharing``). Inputs are raw (a masked neuron
contributes 0, as 002's code) or standardised (a masked neuron sits at its train mean). Training
stops early on the MC NLL under q_φ − ``entropy_scale`` · H(q_φ) (002's stopping loss), computed on
dev or on 10% of train held out (``early_stopping``).

The probe is trained once; then k neurons are chosen greedily on dev (eq. 3), each step adding the
neuron that most raises the dev log-likelihood of the labels with every non-chosen neuron zeroed.
With S chosen, the logits for candidate j are base_S + W[:, j] x_j, so a step scores all candidates
in a few fused passes over (candidates × N) per class, chunked over candidates, screened in float32
and confirmed in float64 (`probing.rankers.base.ScreenedGreedy`); ``greedy_scorer(...,
vectorized=False)`` is the per-candidate reference, one masked forward pass per candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from probing.rankers.base import (
    PRECISIONS,
    GreedyRanker,
    GreedyScorer,
    RankerParams,
    ScreenedGreedy,
    check_bool,
    check_choice,
    check_criterion,
    check_precision,
    column_chunks,
    label_blocks,
    mean_loglik_from_differences,
    take,
    weight_penalty,
)

MASK_SHARING = ("per_example", "per_minibatch")
BASELINES = ("none", "mean", "leave_one_out")
EARLY_STOPPING = ("train_holdout", "dev")
#: Share of train held out for early stopping when ``early_stopping="train_holdout"`` (002's code: 10%).
HOLDOUT_FRACTION = 0.1


@dataclass(frozen=True)
class LatentParams(RankerParams):
    """Hyperparameters of the latent-variable probe and its greedy selection.

    Each choice in which paper 002's reference code (``trainers/poisson_trainer.py``) and this
    project can differ is a field; ``probing.protocols.PROTOCOLS["wang2024"]["latent"]`` sets 002's.

    - ``entropy_weight``: weight of H(q_φ) in the loss that is back-propagated (002: 1). At 1e-2 (the
      old default) the NLL term drives q to "keep everything", the probe never sees heavily masked
      inputs, and greedy selection then evaluates it far outside what it was trained on.
    - ``entropy_scale``: weight of H(q_φ) in the early-stopping loss only (002's ``loss_real``; its
      default 1e-2). It no longer enters the gradient (before issue 8 it did: that role is now
      ``entropy_weight``).
    - ``standardise``: False = raw activations, a masked neuron contributes 0 (002); True = per-neuron
      standardised, a masked neuron sits at its train mean.
    - ``mask_sharing``: "per_example" draws one mask per example and MC sample (002);
      "per_minibatch" shares each MC sample's mask across the minibatch.
    - ``baseline``: control variate of the score-function gradient of φ: "none" (002), "mean" (the
      mean loss of the same samples, which includes the sample itself: the gradient is shrunk by
      (S−1)/S) or "leave_one_out" (the mean of the other S−1 samples: unbiased, needs S ≥ 2).
    - ``early_stopping``: the stopping loss is computed on "train_holdout" (10% of train held out,
      seeded; 002) or on "dev" (the data greedy selection later uses).
    - Also as 002: Adam lr 1e-2, batch 256, 5 MC samples, greedy criterion = dev log-likelihood (002's
      "mi" criterion is the same up to a constant). Left as they were: φ starts at 0 (q = 1/2; 002:
      uniform(0, 1) logits), the penalty is on W only (002: also on b), ``max_epochs`` 200 (002: 5000).

    The defaults were chosen with ``bench/ranking_quality.py`` (test accuracy of one fixed logistic
    regression on the top k = 5, 10, 20, 50 neurons, mean over k and five data sets: planted d = 1024
    data with correlated-noise pairs, and a tiny BLOOM's en/fr Number/POS activations, full train):
    - entropy_weight 1, raw inputs, per-example masks: 0.708 against 0.681 for the pre-issue-8
      choices (entropy 1e-2 in the gradient, standardised, per-minibatch masks, mean baseline); on
      the planted data 0.916 against 0.746: the old probe misses the correlated-noise pairs (tested).
      Flipping one choice back: standardised 0.695, per-minibatch masks 0.683. An entropy weight of
      0.1 measured 0.708 as well (train capped at 8,000 rows): 1 is 002's value and no worse.
    - baseline "leave_one_out": the unbiased estimator (tested); "mean" and "none" measured the same
      (0.709, 0.707 with train capped at 8,000), so the choice is by correctness.
    - early_stopping "dev", entropy_scale 1e-2, l1 = l2 = 1e-5: the full bench gives the default a mean
      of 0.718 against 0.694 for 002's code (``wang2024``: 10% held out, patience 50, no L1/L2, no
      baseline; ratio 1.03). "train_holdout" alone measured 0.709 against 0.705 (capped train):
      within noise, so dev (larger than a tenth of train) stays.
    - On the tiny model no collapse of q was seen with either setting (mean q 0.50–0.52; en POS
      single-neuron dev log-likelihoods −1.82 for both, above the prior's −1.93), so the issue's
      −4.3 is not reproduced there; the planted pairs are where the old choices fail.
    ``chunk_size`` (candidates scored together: memory O(chunk_size · N)) and ``greedy_precision``
    ("float32": screen in float32, confirm the near-best in float64, the same choices as "float64",
    which computes every step in float64 and is 1.5-2× slower) change speed, not choices.
    ``criterion`` only changes the reported scores: "nmi" and "loglik" are both monotone in the dev
    cross-entropy, so they choose the same neurons.
    """

    k: int = 50
    criterion: str = "nmi"
    entropy_weight: float = 1.0
    entropy_scale: float = 1e-2
    standardise: bool = False
    mask_sharing: str = "per_example"
    baseline: str = "leave_one_out"
    early_stopping: str = "dev"
    n_samples: int = 5
    lr: float = 1e-2
    batch_size: int = 256
    l1: float = 1e-5
    l2: float = 1e-5
    max_epochs: int = 200
    patience: int = 20
    chunk_size: int = 64
    greedy_precision: str = "float32"

    def __post_init__(self) -> None:
        check_criterion(self.criterion)
        check_precision(self.greedy_precision)
        check_bool("standardise", self.standardise)
        check_choice("mask_sharing", self.mask_sharing, MASK_SHARING)
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("early_stopping", self.early_stopping, EARLY_STOPPING)
        for name in ("k", "n_samples", "batch_size", "max_epochs", "patience", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("entropy_weight", "entropy_scale", "l1", "l2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.baseline == "leave_one_out" and self.n_samples < 2:
            raise ValueError(f"baseline 'leave_one_out' needs n_samples >= 2, got {self.n_samples}")


@dataclass(frozen=True)
class LatentProbe:
    """A trained probe on the (raw or standardised) inputs: weights (C, d), bias (C,), mask logits φ (d,), epoch."""

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


def sample_masks(
    mask_logits: torch.Tensor, n_samples: int, n_rows: int, mask_sharing: str, generator: torch.Generator
) -> torch.Tensor:
    """Masks m ~ q_φ: (S, n_rows, d) one per example and sample, or (S, 1, d) shared by the rows.

    Drawn as U < p with U ~ Uniform[0, 1) from ``generator``: on the CPU exactly the draws of
    ``torch.bernoulli`` (which compares one uniform of the probabilities' dtype per element), at a third of
    its time (it took half of a latent fit: 2.4 vs 0.8 ms for 8 × 64 × 256 float32 masks, one thread).
    """
    rows = n_rows if mask_sharing == "per_example" else 1
    probs = torch.sigmoid(mask_logits.detach())
    uniform = torch.rand((n_samples, rows, len(probs)), generator=generator, dtype=probs.dtype, device=probs.device)
    return (uniform < probs).to(probs.dtype)


def masked_nll(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, masks: torch.Tensor):
    """NLL of every (sample, row) with input x ⊙ m: (S, n)."""
    logits = (x.unsqueeze(0) * masks) @ weight.T + bias  # (S, n, C)
    return F.cross_entropy(logits.transpose(1, 2), y.expand(len(masks), -1), reduction="none")


def mask_entropy(mask_logits: torch.Tensor) -> torch.Tensor:
    """H(q_φ) of independent Bernoulli(sigmoid(φ_j)) in nats."""
    return (F.softplus(mask_logits) - mask_logits * torch.sigmoid(mask_logits)).sum()


def mask_log_probability(masks: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """log q_φ(m) of each mask (S, n) or (S, 1), masks (S, n or 1, d) of independent Bernoulli(σ(φ_j)):

        log q(m) = Σ_j m_j log σ(φ_j) + (1 − m_j) log σ(−φ_j) = m·φ − Σ_j softplus(φ_j),

    a matrix-vector product instead of d elementwise log-sigmoids per mask (they were ~20% of a fit).
    """
    return masks @ mask_logits - F.softplus(mask_logits).sum()


def score_function_baseline(losses: torch.Tensor, baseline: str) -> torch.Tensor:
    """Control variate b for the REINFORCE term (f − b) ∇ log q(m), from the S samples' losses (S, ·)."""
    if baseline == "none":
        return torch.zeros_like(losses)
    if baseline == "mean":
        return losses.mean(dim=0, keepdim=True).expand_as(losses)
    return (losses.sum(dim=0, keepdim=True) - losses) / (len(losses) - 1)


def surrogate_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mask_logits: torch.Tensor,
    params: LatentParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Minibatch loss whose gradient estimates −∇ELBO (eq. 2 of 002), plus the L1/L2 penalty on W.

    MC NLL over S masks (θ by backpropagation) + the score-function term (f − b) log q(m), whose
    gradient is the REINFORCE estimate for φ (f = per-example NLL with per-example masks, the
    minibatch-mean NLL with shared masks) − entropy_weight · H(q_φ).
    """
    masks = sample_masks(mask_logits, params.n_samples, len(x), params.mask_sharing, generator)
    nll = masked_nll(x, y, weight, bias, masks)
    losses = nll if params.mask_sharing == "per_example" else nll.mean(dim=1, keepdim=True)
    log_q = mask_log_probability(masks, mask_logits)
    advantage = (losses - score_function_baseline(losses, params.baseline)).detach()
    penalty = weight_penalty(weight, params.l1, params.l2)
    return nll.mean() + (advantage * log_q).mean() - params.entropy_weight * mask_entropy(mask_logits) + penalty


def stopping_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mask_logits: torch.Tensor,
    params: LatentParams,
) -> float:
    """Early-stopping loss as 002's ``loss_real``: MC NLL under q_φ − entropy_scale · H(q_φ).

    The masks come from a generator re-seeded every epoch (common random numbers), so that the
    comparison between epochs is not drowned in Monte-Carlo noise.
    """
    generator = torch.Generator(device=x.device).manual_seed(params.seed + 1)
    masks = sample_masks(mask_logits, params.n_samples, len(x), params.mask_sharing, generator)
    nll = masked_nll(x, y, weight, bias, masks).mean()
    return float(nll - params.entropy_scale * mask_entropy(mask_logits))


def stopping_split(
    Z_train: np.ndarray, y_train: np.ndarray, Z_dev: np.ndarray, y_dev: np.ndarray, params: LatentParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fit X, fit y, stop X, stop y): train and dev, or train minus a seeded 10% held out and that 10%."""
    if params.early_stopping == "dev":
        return Z_train, y_train, Z_dev, y_dev
    permutation = np.random.default_rng(params.seed).permutation(len(y_train))
    n_held = max(1, round(HOLDOUT_FRACTION * len(y_train)))
    held, kept = permutation[:n_held], permutation[n_held:]
    return Z_train[kept], y_train[kept], Z_train[held], y_train[held]


def train_latent_probe(
    Z_train: np.ndarray,
    y_train: np.ndarray,
    Z_dev: np.ndarray,
    y_dev: np.ndarray,
    n_classes: int,
    params: LatentParams,
    device: str | torch.device = "cpu",
) -> LatentProbe:
    """Maximise the ELBO with Adam on ``device``; keep the parameters of the best stopping loss (``stopping_split``).

    The masks and minibatch orders are drawn by a generator on ``device``: seeded and reproducible on
    each device, but a GPU's stream is not the CPU's, so a GPU-trained probe is another draw of the
    same estimator (its choices agree with the CPU's where the data decide them, not bit for bit).
    """
    generator = torch.Generator(device=device).manual_seed(params.seed)
    fit_x, fit_y, stop_x, stop_y = stopping_split(Z_train, y_train, Z_dev, y_dev, params)
    x, y = torch.from_numpy(fit_x).float().to(device), torch.from_numpy(fit_y).to(device)
    x_stop, y_stop = torch.from_numpy(stop_x).float().to(device), torch.from_numpy(stop_y).to(device)
    d = x.shape[1]
    weight = torch.zeros(n_classes, d, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, device=device, requires_grad=True)
    mask_logits = torch.zeros(d, device=device, requires_grad=True)  # q = Bernoulli(0.5): the maximum-entropy start
    optimizer = torch.optim.Adam([weight, bias, mask_logits], lr=params.lr)
    best, best_state, best_epoch, stale = math.inf, None, 0, 0
    for epoch in range(1, params.max_epochs + 1):
        permutation = torch.randperm(len(x), generator=generator, device=device)
        for start in range(0, len(x), params.batch_size):
            batch = permutation[start : start + params.batch_size]
            loss = surrogate_loss(x[batch], y[batch], weight, bias, mask_logits, params, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            loss = stopping_loss(x_stop, y_stop, weight, bias, mask_logits, params)
        if loss < best:
            best, best_epoch, stale = loss, epoch, 0
            best_state = [t.detach().double().cpu() for t in (weight, bias, mask_logits)]
        else:
            stale += 1
            if stale >= params.patience:
                break
    w, b, phi = (t.numpy() for t in best_state)
    return LatentProbe(weight=w, bias=b, mask_logits=phi, best_epoch=best_epoch)


class LatentGreedy(ScreenedGreedy):
    """Vectorised greedy scorer: every candidate of a step from the chosen set's logits plus one column.

    With rows grouped by label (`label_blocks`), the logit of class c minus that of the true class y' of
    candidate j is (base_c − base_y')[n] + (W_cj − W_y'j) x_jn: one fused multiply-add per (label block,
    class), then one exp and one add per element (`mean_loglik_from_differences`); the N·d·C
    exponentials are the floor of a step (``bench/greedy.py``).
    Inputs are stored candidate-major (d, N), so that a chunk of candidates is a contiguous view.
    """

    def __init__(
        self, probe: LatentProbe, Z: np.ndarray, y: np.ndarray, chunk_size: int, device: torch.device, precision: str
    ):
        order, self.blocks = label_blocks(y)
        self.device, self.precision, self.chunk_size = device, PRECISIONS[precision], chunk_size
        x = torch.from_numpy(np.ascontiguousarray(Z[order].T, dtype=np.float64)).to(device)  # (d, N)
        weight = torch.from_numpy(probe.weight).to(device)
        self.x = {torch.float64: x, self.precision: x.to(self.precision)}
        self.weight = weight
        difference = weight[:, None, :] - weight[None, :, :]  # W_c − W_y' for every (class c, label y'): (C, C, d)
        self.weight_difference = {dtype: difference.to(dtype) for dtype in self.x}
        self.base = torch.from_numpy(probe.bias).to(device)[:, None].expand(-1, len(y)).clone()  # (C, N) chosen set
        self.chosen = torch.zeros(Z.shape[1], dtype=torch.bool)

    def candidate_scores(self, columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Mean dev log-likelihood after adding each of ``columns``, one (chunk × rows) tensor per (block, class)."""
        base_difference = {  # (base_c − base_y')[rows of y'] per label block, cast once per step
            label: (self.base[:, start:stop] - self.base[label, start:stop]).to(dtype)
            for label, start, stop in self.blocks
        }
        out = []
        for chunk in column_chunks(columns.to(self.device), self.chunk_size):
            x = take(self.x[dtype], 0, chunk)  # (m, N)
            weights = self.weight_difference[dtype].index_select(2, chunk)[..., None]  # (C, C, m, 1)
            differences = partial(_logit_differences, base_difference, x, weights)
            out.append(mean_loglik_from_differences(differences, self.blocks, len(self.weight)))
        return torch.cat(out)

    def add(self, neuron: int) -> None:
        """Fold the neuron's contribution into the chosen set's logits (float64)."""
        self.base += self.weight[:, neuron, None] * self.x[torch.float64][None, neuron, :]
        self.chosen[neuron] = True


def _logit_differences(
    base_difference: dict[int, torch.Tensor],
    x: torch.Tensor,
    weights: torch.Tensor,
    c: int,
    label: int,
    start: int,
    stop: int,
) -> torch.Tensor:
    """Logit of class c minus the true class's, (base_c − base_y')[n] + (W_cj − W_y'j) x_jn, for the rows of
    label y' (m, rows)."""
    return torch.addcmul(base_difference[label][c], x[:, start:stop], weights[c, label])


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

    def standardises(self) -> bool:
        """``params.standardise``: raw activations (a masked neuron = 0) unless it is True."""
        return self.params.standardise

    def _fit_model(
        self, Z_train: np.ndarray, y_train: np.ndarray, Z_dev: np.ndarray, y_dev: np.ndarray, n_classes: int
    ) -> None:
        self.probe_ = train_latent_probe(Z_train, y_train, Z_dev, y_dev, n_classes, self.params, self.device)

    def greedy_scorer(self, X: np.ndarray, y: np.ndarray, vectorized: bool = True) -> GreedyScorer:
        """A fresh greedy search on (X, y) with the trained probe: vectorised, or the per-candidate reference."""
        Z, y = self.standardiser_(X), np.asarray(y, dtype=np.int64)
        if vectorized:
            return LatentGreedy(self.probe_, Z, y, self.params.chunk_size, self.device, self.params.greedy_precision)
        return LatentGreedyLoop(self.probe_, Z, y)

    def predict_log_proba(self, X: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """Log p(y | x) (n, C) with every neuron outside ``neurons`` masked (0 raw, or its train mean)."""
        return self.probe_.log_proba(self.standardiser_(X), neurons)
