"""Decomposable Gaussian probe (Torroba Hennigen et al. 2020) and its greedy neuron selection.

Per class c, (μ_c, Σ_c) are estimated under a normal-inverse-Wishart prior NIW(μ0, κ0, Λ0, ν0)
with the reference defaults μ0 = the class mean, Λ0 = diag of the class sample covariance,
ν0 = D + 2, κ0 = 0.01 (D = d, the dimension of the fit). With n_c examples, class mean x̄_c and
scatter matrix S_c, the posterior has μ_n = (κ0 μ0 + n_c x̄_c) / (κ0 + n_c) = x̄_c (κ0 drops out
because μ0 = x̄_c), ν_n = ν0 + n_c and Λ_n = Λ0 + S_c, and

    covariance="map" (reference, the joint posterior mode):  Σ_c = Λ_n / (ν_n + D + 2)
                                                                 = (diag(S_c / n_c) + S_c) / (n_c + 2D + 4)
    covariance="mean" (the posterior mean):                  Σ_c = Λ_n / (ν_n − D − 1)
                                                                 = (diag(S_c / n_c) + S_c) / (n_c + 1)

The mode shrinks Σ_c below the sample covariance by n_c / (n_c + 2D + 4): with d = 1024 and 500
examples per class every covariance is a fifth of the data's, the posteriors are overconfident, an
informative neuron can *lower* the dev log-likelihood more than a noise neuron does, and greedy
selection then picks noise first (tested at d = 400 with 150 examples per class; the synthetic
data of `bench/greedy.py` shows it at d = 1024). The posterior mean has no such shrinkage, so it is
the default here; "map" stays available for exact comparisons with the reference.
A small ``jitter`` is added to the diagonal so constant neurons keep Σ_c positive definite. Class
priors are the train label frequencies. The Gaussian of a subset S of neurons is its sub-vector
and sub-matrix (marginalisation), so it is fitted once.

Greedy selection maximises the dev log-likelihood of the labels log p(y | x_S). For all candidates
j at once, per class, the chain rule of the Gaussian gives
    log N(x_{S∪j}) = log N(x_S) + log N(x_j | μ_j + Σ_jS Σ_SS⁻¹ (x_S − μ_S), Σ_jj − Σ_jS Σ_SS⁻¹ Σ_Sj),
computed from the incrementally grown Cholesky factor L_S of Σ_SS: with G = L_S⁻¹ Σ_S,: and whitened
residuals z = L_S⁻¹ (x_S − μ_S), the conditional mean is μ_j + zᵀ G[:, j] and the conditional
variance Σ_jj − ‖G[:, j]‖²; adding a neuron appends one row to G and one column to z.
``greedy_scorer(..., vectorized=False)`` is the reference: a separate Cholesky log-density of
x_{S∪j} for every candidate.

What it misses (tested): a neuron whose classes differ only in the *shape* of their distribution,
e.g. bimodal in one class and unimodal in another with equal means and variances, gets the same
Gaussian in every class, adds nothing to log p(y | x_S), and is ranked among the noise although it
is informative (Antverg & Belinkov 2022, §3.2.3).

Why its cross-lingual overlap sits near chance on real activations (issue 8): the method, not a
defect. Measured with ``bench/ranking_quality.py``'s tiny BLOOM (d = 256, last layer, en/fr UD,
6,000 train words per fit, k = 50 greedy):
- not ties: no two first-step scores are equal, and at every greedy step exactly one candidate lies
  within ``TIE_TOLERANCE`` of the best, so the lowest-index rule never decides (the chosen neurons'
  mean index is 135 against 127.5 for a uniform draw);
- not the tail: positions after k are ordered by each neuron's own first-step score, not by index
  (``greedy_ranking``; tested);
- it is unstable *within* a language: two rankings of en Number from disjoint halves of train share
  25% (k = 20) and 34% (k = 50) of their neurons (en POS: 35%, 32%), against 80%/74% for the latent
  probe and 90%/92% for Probeless (chance 8%/20%). An overlap across languages cannot exceed the
  overlap of a language with itself;
- why: the dev log-likelihood gain per greedy step falls to 1e-3 nats by step ~10 and turns
  negative after ~17 neurons (every further neuron makes the fitted Gaussians *worse* on dev), and
  the best and second-best candidates then differ by 1e-4 to 1e-3 nats. Once the class-informative
  directions are in, the greedy choice among many redundant, correlated neurons is decided by
  sampling noise of the covariance estimates. The top 10, chosen while the gains are large, is
  more stable (split-half 50–70%) and above chance across languages (Number en–fr: 10% vs 4%).
  Read Gaussian rankings at small k, or through the top-k accuracy they buy (the bench), not
  through the identity of neurons far down the greedy order.

Speed (issue 10): the steps after the first are screened in float32 and the near-best candidates
confirmed in float64 (`probing.rankers.base.ScreenedGreedy`: the same choices as all-float64); the
float32 residuals of all candidates are kept and updated by one rank-one step per added neuron
when C·N·d ≤ STORED_RESIDUAL_LIMIT, so that a step costs O(C N d) and not O(C N d s). On the CPU a
large search screens each chunk with one loop compiled by torch.compile (`row_loglik_sums`,
`CompiledKernel`) instead of eager ops (seven passes over it besides the exp): at d = 1,024,
N = 10,000, C = 6, k = 50 on one core, 1.96–2.05× the exp floor against 2.92–2.96× eager
(`bench/greedy.py`), after a one-off compile of ~3–18 s per process (`compiles_pay` decides).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from probing.rankers.base import (
    EXP_FLOOR,
    PRECISIONS,
    GreedyRanker,
    GreedyScorer,
    RankerParams,
    ScreenedGreedy,
    check_criterion,
    check_precision,
    column_chunks,
    label_blocks,
    take,
)

LOG_2PI = math.log(2 * math.pi)
#: Largest C·N·d for which the Gaussian greedy keeps every candidate's residual (2²⁷ float32 = 512 MiB).
STORED_RESIDUAL_LIMIT = 2**27
COVARIANCES = ("map", "mean")
#: Smallest k·C·N·d for which a greedy search compiles its screening kernel (`compiles_pay`). Measured on
#: one core (`bench/greedy.py`): the kernel saves 0.6–0.7 ns per term over the eager screening; the compile
#: costs 3–6 s of wall time when this machine's inductor cache is warm (~18 s cold, the first compile on a
#: machine), which the saving repays from ~9e9 terms (e.g. k = 50, C = 6, N = 10,000, d = 3,000).
COMPILE_MIN_WORK = 2**33


@dataclass(frozen=True)
class GaussianParams(RankerParams):
    """Covariance estimate and greedy selection of the Gaussian probe (``criterion`` only changes the scores).

    ``covariance`` "mean" (the default) is the NIW posterior mean, which does not shrink Σ_c when d is
    large next to the class sizes; "map" is the reference's joint posterior mode, which at d = 1024
    and a few hundred examples per class makes greedy selection pick noise first (module docstring).
    Measured by ``bench/ranking_quality.py`` (logistic regression on the top 5–50, mean over k): "mean"
    0.704 against "map" 0.649 over five data sets; planted d = 1024: 0.892 against 0.548 (map's top 10
    at chance, 0.15 for 6 classes). On the tiny BLOOM's d = 256 activations with thousands of words
    per class the shrinkage is mild and "map" is slightly ahead (0.674 against 0.657).
    ``chunk_size`` (candidates per (C, chunk, N) block; 16 measured fastest on one CPU core at
    d = 1024, N = 10,000) and ``greedy_precision`` ("float32" screening confirmed in float64, or all
    "float64") change speed, not choices.
    """

    k: int = 50
    criterion: str = "nmi"
    covariance: str = "mean"
    jitter: float = 1e-6
    chunk_size: int = 16
    greedy_precision: str = "float32"

    def __post_init__(self) -> None:
        check_criterion(self.criterion)
        check_precision(self.greedy_precision)
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        if self.k < 1 or self.chunk_size < 1:
            raise ValueError(f"k and chunk_size must be >= 1, got {self.k} and {self.chunk_size}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")


@dataclass(frozen=True)
class GaussianModel:
    """Class-conditional Gaussians: means (C, D), covariances (C, D, D), log class priors (C,)."""

    means: np.ndarray
    covs: np.ndarray
    log_prior: np.ndarray

    def log_joint(self, Z: np.ndarray, neurons: np.ndarray | list[int]) -> np.ndarray:
        """log p(y = c) + log N(z_S; μ_c,S, Σ_c,SS) for every row and class (n, C), by Cholesky."""
        idx = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
        z = torch.from_numpy(np.asarray(Z, dtype=np.float64))[:, idx]
        means, covs = torch.from_numpy(self.means)[:, idx], torch.from_numpy(self.covs)[:, idx][:, :, idx]
        chol = torch.linalg.cholesky(covs)
        diff = (z[None] - means[:, None]).transpose(1, 2)  # (C, s, n)
        whitened = torch.linalg.solve_triangular(chol, diff, upper=False)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(dim=1)
        log_density = -0.5 * (whitened.square().sum(dim=1) + log_det[:, None] + len(idx) * LOG_2PI)
        return (torch.from_numpy(self.log_prior)[:, None] + log_density).T.numpy()

    def log_proba(self, Z: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """log p(y | z_S) (n, C) from the given neurons (all when None)."""
        joint = self.log_joint(Z, np.arange(Z.shape[1]) if neurons is None else neurons)
        return joint - np.logaddexp.reduce(joint, axis=1, keepdims=True)


def fit_gaussian_niw(
    Z: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    covariance: str = "mean",
    jitter: float = 1e-6,
    device: str | torch.device = "cpu",
) -> GaussianModel:
    """Per-class (μ_c, Σ_c) under the NIW prior of the module docstring: posterior mode or mean of Σ_c.

    The scatter matrices (O(n D²), the cost of the fit) are float64 products on ``device``.
    """
    n, D = Z.shape
    means, covs = np.zeros((n_classes, D)), np.zeros((n_classes, D, D))
    counts = np.bincount(y, minlength=n_classes)
    for c in range(n_classes):
        Zc = np.asarray(Z[y == c], dtype=np.float64)
        means[c] = Zc.mean(axis=0)
        centred = torch.from_numpy(Zc - means[c]).to(device)
        scatter = (centred.T @ centred).cpu().numpy()
        posterior_scale = np.diag(np.diag(scatter) / counts[c]) + scatter  # Λn = Λ0 + S_c
        denominator = counts[c] + 2 * D + 4 if covariance == "map" else counts[c] + 1
        covs[c] = posterior_scale / denominator + jitter * np.eye(D)
    return GaussianModel(means=means, covs=covs, log_prior=np.log(counts / n))


def _label_loglik(joint: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over rows of log p(y | ·) from class log-joints (C, N, m) → (m,)."""
    true = joint.gather(0, y[None, :, None].expand(1, -1, joint.shape[2]))[0]
    return (true - torch.logsumexp(joint, dim=0)).mean(dim=0)


class GaussianGreedy(ScreenedGreedy):
    """Vectorised greedy scorer: conditional Gaussians of all candidates from a growing Cholesky factor.

    The class means ride along as an extra row of G against a constant-one column of z, so that one
    batched matrix product gives every residual x_j − E[x_j | x_S]. The state is float64 (and on
    ``device``). The screening precision keeps the residuals of every candidate, (C, d, N), when they
    fit in STORED_RESIDUAL_LIMIT elements, and updates them by the rank-one step of each added neuron
    (r_j −= z_new G_new,j): a step then costs O(C N d) instead of the O(C N d s) matrix product, which
    at s = 25 alone takes ~2× the floor's exponentials. Their float32 rounding grows like √s·ε, which the
    float64 refinement's observed-error check covers. Larger problems recompute them chunk by chunk.
    """

    def __init__(
        self,
        model: GaussianModel,
        Z: np.ndarray,
        y: np.ndarray,
        chunk_size: int,
        device: torch.device,
        precision: str,
        kernel: CompiledKernel | None = None,
    ):
        order, self.blocks = label_blocks(y)
        self.device, self.precision, self.chunk_size, self.kernel = device, PRECISIONS[precision], chunk_size, kernel
        self.labels = torch.from_numpy(np.ascontiguousarray(y[order]))[None, None, :].to(device)  # (1, 1, N)
        self.counts = torch.zeros(len(model.means), dtype=torch.float64, device=device)  # rows per class
        for label, start, stop in self.blocks:
            self.counts[label] = stop - start
        C, (N, d) = len(model.means), Z.shape
        x = torch.from_numpy(np.ascontiguousarray(Z[order].T, dtype=np.float64)).to(device)  # (d, N)
        self.x = {torch.float64: x, self.precision: x.to(self.precision)}
        self.covs = torch.from_numpy(model.covs).to(device)
        self.log_joint = torch.from_numpy(model.log_prior).to(device)[:, None].expand(-1, N).clone()  # (C, N)
        self.factor = torch.from_numpy(model.means).to(device)[:, None, :].clone()  # [μ; L_S⁻¹ Σ_S,:]  (C, 1 + s, d)
        self.whitened = torch.ones(C, 1, N, dtype=torch.float64, device=device)  # [1; L_S⁻¹ (x_S − μ_S)]  (C, 1 + s, N)
        self.variance = torch.diagonal(self.covs, dim1=1, dim2=2).clone()  # Σ_jj − ‖G[:, j]‖²  (C, d)
        self.chosen = torch.zeros(d, dtype=torch.bool)
        self.cast = {torch.float64: (self.whitened, self.factor)}
        self.stored, self.pending = None, None  # the screening precision's residuals (C, d, N), when they fit
        if self.precision != torch.float64 and C * N * d <= STORED_RESIDUAL_LIMIT:
            self.stored = self._computed_residual(torch.arange(d, device=device), self.precision)

    def _state(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, G) in ``dtype``: the float64 state, or its cast (made once per step)."""
        if dtype not in self.cast:
            self.cast[dtype] = (self.whitened.to(dtype), self.factor.to(dtype))
        return self.cast[dtype]

    def _residual(self, columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """x_j − E[x_j | x_S] per class, candidate j in ``columns`` and row (C, m, N); a view of the stored ones.

        Stored residuals get the pending rank-one updates of the neurons added since they were last
        read here, chunk by chunk, so that the update touches each chunk while it is in cache (an eager
        update: inside the compiled kernel the in-place write made it ~3× slower, measured).
        """
        if self.stored is None or dtype != self.stored.dtype:
            return self._computed_residual(columns, dtype)
        chunk = take(self.stored, 1, columns)  # a view: screening reads contiguous chunks of all columns
        if self.pending is not None:  # (a partial read has applied it to every column first)
            rows, whitened = self.pending
            chunk.addcmul_(rows.index_select(1, columns), whitened, value=-1)
        return chunk

    def _computed_residual(self, columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The residuals of ``columns`` from the factor: x_j − [μ; G][:, j]ᵀ [1; z] (C, m, N), a new tensor."""
        whitened, factor = self._state(dtype)
        x = self.x[dtype].index_select(0, columns)
        return torch.baddbmm(
            x[None].expand(len(factor), -1, -1), factor.index_select(2, columns).transpose(1, 2), whitened, alpha=-1
        )

    def candidate_scores(self, columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Mean dev log-likelihood after adding each of ``columns``, one (C, chunk, N) log joint per chunk.

        Per class: l_c = log p(c) + log N(x_S | c) − r_c²/(2v_c) + n_c with n_c = −½ log(2π v_c); the
        first three in one fused pass, n_c as the weight e^{n_c} of class c in the sum over classes.
        Full float32 chunks go through the compiled kernel when this search has one (`row_loglik_sums`).
        """
        log_joint = self.log_joint.to(dtype)[:, None, :]  # log p(c) + log N(x_S | c)  (C, 1, N)
        stored = self.stored is not None and dtype == self.stored.dtype
        if stored and self.pending is not None and len(columns) != len(self.chosen):
            self._apply_pending()  # a partial read: bring every stored residual up to date first
        columns = columns.to(self.device)
        variance = self.variance.index_select(1, columns)[:, :, None]  # (C, M, 1)
        weights = torch.rsqrt(2 * math.pi * variance).to(dtype)
        scales = torch.rsqrt(2 * variance).to(dtype).split(self.chunk_size, dim=1)
        kernel = self.kernel if dtype == torch.float32 else None
        sums = []
        for chunk, scale, weight in zip(
            column_chunks(columns, self.chunk_size), scales, weights.split(self.chunk_size, dim=1), strict=True
        ):
            residual = self._residual(chunk, dtype)
            if kernel is not None and len(chunk) == self.chunk_size:
                sums.append(kernel(residual, scale, log_joint, weight, self.labels))
                continue
            scaled = residual * scale
            joint = torch.addcmul(log_joint, scaled, scaled, value=-1, out=scaled)
            sums.append(row_loglik_sums_eager(joint, weight, self.blocks))
        if stored:
            self.pending = None  # every stored residual has had the pending update
        return mean_loglik_from_sums(torch.cat(sums), weights[:, :, 0], self.counts)

    def add(self, neuron: int) -> None:
        """Extend the Cholesky factor by the neuron: one more row of G, one more whitened row of z (float64)."""
        column = torch.tensor([neuron], device=self.device)
        scale = torch.sqrt(self.variance[:, neuron])  # (C,)
        g = self.factor[:, 1:, neuron]  # L_S⁻¹ Σ_Sj  (C, s)
        row = (self.covs[:, neuron, :] - torch.einsum("cs,csd->cd", g, self.factor[:, 1:, :])) / scale[:, None]
        residual = self._computed_residual(column, torch.float64)[:, 0, :]  # (C, N)
        variance = self.variance[:, neuron, None]
        self.log_joint = self.log_joint - residual.square() / (2 * variance) - 0.5 * torch.log(2 * math.pi * variance)
        new_whitened = (residual / scale[:, None])[:, None, :]  # (C, 1, N)
        if self.stored is not None:  # r_j −= G_new,j z_new for every candidate j, applied when next read
            update = (row[:, :, None], new_whitened)
            if self.pending is not None:
                self._apply_pending()
            self.pending = tuple(t.to(self.stored.dtype) for t in update)
        self.whitened = torch.cat([self.whitened, new_whitened], dim=1)
        self.factor = torch.cat([self.factor, row[:, None, :]], dim=1)
        self.variance = self.variance - row.square()
        self.cast = {torch.float64: (self.whitened, self.factor)}
        self.chosen[neuron] = True

    def _apply_pending(self) -> None:
        """Apply the pending rank-one update to every stored residual (when a step did not read them all)."""
        rows, whitened = self.pending
        self.stored.addcmul_(rows, whitened, value=-1)
        self.pending = None


def row_loglik_sums_eager(
    joint: torch.Tensor, weights: torch.Tensor, blocks: list[tuple[int, int, int]]
) -> torch.Tensor:
    """Σ_n log Σ_c w_c exp(a_c − a_y) per candidate, float64 (m,), from class scores a_c (C, m, N) (overwritten)
    and class weights w_c (C, m, 1): the class log joints are l_c = a_c + log w_c, and

        log p(y | ·) = log w_y − log Σ_c w_c exp(a_c − a_y)     (`mean_loglik_from_sums` adds the first term).

    Shifting by the true class (rows grouped by label, ``blocks``) instead of the maximum: its own term
    is 1, so the sum is ≥ w_y (no underflow to log 0, no pass for the maximum); an overflow (a difference
    > 88 in float32) gives +inf, a mean of −inf, which `refine_near_best` re-scores in float64; differences
    below EXP_FLOOR are clamped (see its comment). Passes over C·m·N: the subtraction, the clamp, the exp
    (the floor) and the weighted sum over classes.
    """
    true = torch.empty_like(joint[0])
    for label, start, stop in blocks:
        true[:, start:stop] = joint[label, :, start:stop]
    terms = joint.sub_(true).clamp_min_(EXP_FLOOR).exp_()
    total = terms[0] * weights[0]
    for c in range(1, len(terms)):
        total.addcmul_(terms[c], weights[c])
    return torch.log(total).sum(dim=1, dtype=torch.float64)


def mean_loglik_from_sums(log_totals: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The mean over rows of log p(y | ·) = (Σ_c n_c log w_c − Σ_n log Σ_c w_c exp(a_c − a_y)) / N per candidate,
    float64 on the CPU (m,), from the second sum (m,), the class weights w_c (C, m) and the rows per class n_c."""
    loglik = counts @ torch.log(weights).double() - log_totals
    return (loglik / counts.sum()).cpu()


def row_loglik_sums(
    residual: torch.Tensor, scale: torch.Tensor, log_joint: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """`row_loglik_sums_eager` from the residuals, as one expression that torch.compile fuses into one loop over
    the (C, m, N) block (the eager ops make seven passes over it besides the exp).

    With a_c = L_c − (r_c s_c)², returns Σ_n log Σ_c w_c exp(max(a_c − a_y, EXP_FLOOR)) (m,), float64.
    Shapes: residual r (C, m, N), scale s = (2v)^−½ and weights w = (2πv)^−½ (C, m, 1), log joint
    L = log p(c) + log N(x_S | c) (C, 1, N), labels y (1, 1, N).
    """
    scaled = residual * scale
    joint = log_joint - scaled * scaled
    true = joint.gather(0, labels.expand(1, joint.shape[1], -1))
    terms = torch.exp((joint - true).clamp_min(EXP_FLOOR)) * weights
    return torch.log(terms.sum(dim=0)).sum(dim=1, dtype=torch.float64)


class CompiledKernel:
    """`row_loglik_sums` compiled by torch.compile (inductor's C++ backend on the CPU) with the row count N left
    dynamic: one compile per chunk size and class count, not one per data set. Falls back to the eager
    function, with a warning, when compilation fails (e.g. no C++ compiler), so that no search fails for
    want of it. ``ready``: the (C, chunk size) blocks it has been compiled for in this process, which later
    searches use at no compile cost."""

    def __init__(self) -> None:
        self.compiled = torch.compile(row_loglik_sums, dynamic=False)
        self.failed, self.ready = False, set()

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return row_loglik_sums(*args)
        residual, _, log_joint, _, labels = args
        for tensor in (residual, log_joint, labels):
            torch._dynamo.mark_dynamic(tensor, 2)
        try:
            sums = self.compiled(*args)
        except Exception as error:  # any compiler failure: the eager function computes the same
            warnings.warn(f"compiling the Gaussian screening kernel failed, computing eagerly: {error}", stacklevel=2)
            self.failed = True
            return row_loglik_sums(*args)
        self.ready.add(residual.shape[:2])
        return sums


@functools.cache
def compiled_kernel() -> CompiledKernel:
    """The process's one screening kernel (compiled lazily, at its first call)."""
    return CompiledKernel()


def compiles_pay(work: int, block: tuple[int, int], device: torch.device) -> bool:
    """Whether a greedy search of ``work`` = k·C·N·d screened (class, candidate, row) terms in (C, chunk size)
    ``block``s should use the compiled kernel: only on the CPU (the only device it is tested on), and when
    the process has compiled it for that block already or the search alone saves more than a compile
    costs (COMPILE_MIN_WORK)."""
    return device.type == "cpu" and (work >= COMPILE_MIN_WORK or block in compiled_kernel().ready)


class GaussianGreedyLoop:
    """Per-candidate reference: the Gaussian log-density of x_{S∪j} by its own Cholesky, for every j."""

    def __init__(self, model: GaussianModel, Z: np.ndarray, y: np.ndarray):
        self.model, self.Z, self.y = model, np.asarray(Z, dtype=np.float64), torch.from_numpy(y)
        self.chosen: list[int] = []

    def scores(self) -> np.ndarray:
        """Mean dev log-likelihood after adding each neuron, one separate log-density each."""
        out = np.full(self.Z.shape[1], -math.inf)
        for j in sorted(set(range(self.Z.shape[1])) - set(self.chosen)):
            joint = torch.from_numpy(self.model.log_joint(self.Z, [*self.chosen, j])).T
            out[j] = float(_label_loglik(joint[:, :, None], self.y)[0])
        return out

    def add(self, neuron: int) -> None:
        """Add the neuron to the chosen set."""
        self.chosen.append(neuron)


class GaussianRanker(GreedyRanker):
    """Class-conditional MAP Gaussians fitted once on train, then greedy selection on dev.

    After ``fit``: ``model_`` (the `GaussianModel` on standardised features) and ``standardiser_``.
    Blind to class information that is not in means and covariances; see the module docstring.
    """

    method = "gaussian"
    params_type = GaussianParams

    def _fit_model(
        self, Z_train: np.ndarray, y_train: np.ndarray, Z_dev: np.ndarray, y_dev: np.ndarray, n_classes: int
    ) -> None:
        self.model_ = fit_gaussian_niw(
            Z_train, y_train, n_classes, self.params.covariance, self.params.jitter, self.device
        )

    def greedy_scorer(
        self, X: np.ndarray, y: np.ndarray, vectorized: bool = True, compiled: bool | None = None
    ) -> GreedyScorer:
        """A fresh greedy search on (X, y) with the fitted Gaussians: vectorised, or the per-candidate reference.

        ``compiled``: screen with the compiled kernel (`CompiledKernel`); None decides by `compiles_pay`.
        """
        Z, y = self.standardiser_(X), np.asarray(y, dtype=np.int64)
        if not vectorized:
            return GaussianGreedyLoop(self.model_, Z, y)
        if compiled is None:
            compiled = self.compiles_by_default(*Z.shape)
        kernel = compiled_kernel() if compiled else None
        return GaussianGreedy(
            self.model_, Z, y, self.params.chunk_size, self.device, self.params.greedy_precision, kernel
        )

    def compiles_by_default(self, n_rows: int, n_neurons: int) -> bool:
        """Whether a search of k steps over ``n_rows`` × ``n_neurons`` dev data screens with the compiled kernel."""
        n_classes = len(self.model_.means)
        work = self.params.k * n_classes * n_rows * n_neurons
        return compiles_pay(work, (n_classes, self.params.chunk_size), self.device)

    def predict_log_proba(self, X: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """log p(y | x_S) (n, C) of the fitted Gaussians from the given neurons (all when None)."""
        return self.model_.log_proba(self.standardiser_(X), neurons)
