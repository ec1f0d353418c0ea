"""Ranking quality apart from probe quality (Antverg & Belinkov 2022, Pitfall I), numpy in, numpy out.

A ranking is judged by classifiers trained on its top-k neurons only (the sub-vector X[:, order[:k]]),
with two classifiers of different kinds so that neither the ranking's own probe nor one model family
decides: "linear" (multinomial logistic regression) and "gaussian" (the Gaussian ranker's
class-conditional Gaussians with the normal-inverse-Wishart posterior-mean covariance, fitted on the
k neurons, D = k). Options are in `EvaluationParams`; the papers' presets set them
(``probing.protocols``).

Linear classifier. Loss = mean cross-entropy + λ1 ‖W‖₁ + λ2 ‖W‖²₂ ("squared", the default) or
+ λ2 ‖W‖₂ ("norm", the Frobenius norm unsquared, as paper 003's code), bias unpenalised, on
standardised features by default (raw with ``linear_standardise=False``, as 003). A smooth loss
(λ1 = 0, squared L2) is minimised by full-batch L-BFGS (scipy's L-BFGS-B) to convergence. A non-smooth
one is minimised by FISTA with adaptive restart (Beck & Teboulle 2009; O'Donoghue & Candès 2015): a
gradient step on the cross-entropy (and a squared L2), then the exact proximal step of the non-smooth terms,
soft-thresholding by tλ1 followed, for "norm", by shrinking the whole matrix by max(0, 1 − tλ2/‖·‖)
(the proximal map of ℓ1 + group-ℓ2 is the composition of the two; Friedman, Hastie & Tibshirani
2010). 003's code minimises the same loss with minibatch Adam for a fixed number of epochs, whose
subgradient steps never reach its exact zeros; L-BFGS on the non-smooth loss is not valid either.

NMI = (H(Y) − cross-entropy) / H(Y) in nats, H(Y) from the train label frequencies
(``nmi_entropy="train"``) or from the labels of the evaluated set (``"evaluated"``, paper 002). The
cross-entropy of *any* predictor q bounds the mutual information, I(Y; X_S) ≥ H(Y) − CE(q), so NMI
is a lower bound on I/H. Raw classifier probabilities can make that bound useless: with
lemma-disjoint splits the test word types are new, tokens of one type are near-duplicates, so the
class-conditional Gaussians are fitted on a few hundred effective points and give new types
Mahalanobis distances of hundreds (the demo's Gaussian NMI averaged −48; reproduced in
tests/test_evaluation.py with Zipf-distributed word types). With ``nmi_calibration="dev"`` (the
default) q is the classifier's posterior tempered toward the train prior π,
    q_β(c | x) ∝ π_c (p(c | x) / π_c)^β,
with β ≥ 0 chosen on dev (minimum dev cross-entropy; dev holds other lemmas than train, as test
does). β = 1 is the classifier itself, β = 0 the prior, so the bound is never much worse than the
trivial NMI ≈ 0 and is still close to 1 for a good probe. Accuracy is always the classifier's own
argmax (β changes how sure it is, and is used for NMI only). ``"none"`` reports the raw
probabilities, as the papers do.

Control task and selectivity (Hewitt & Liang 2019). Every word type gets a random label drawn
from the train label distribution, a deterministic function of (type, seed). Hewitt & Liang define
selectivity as the task accuracy minus the control accuracy of the same probe architecture on the
same data split, the only difference being the labels. On the lemma-disjoint split almost no test
type occurs in train (2–4% for Number/Gender in en/fr), so a control probe cannot beat chance there
and selectivity would be accuracy minus a constant. With ``control_split="token"`` (the default) the
train, dev and test rows are pooled and re-split at random, at token level, into a train and a test
part of the real split's sizes (`stable_seed` of the seed; the same split for every method, layer and
checkpoint of a dataset, whose rows are the same words): almost every
test type is then seen in training, so the control can be learnt by memorising types, and both the
task (``accuracy_control_split``) and the control (``control_accuracy``) are measured on that split;
selectivity = their difference. A high selectivity then means the top-k neurons give the attribute
beyond what memorising word identity gives. ``accuracy`` and ``nmi`` stay on the real split (the
generalisation to new lemmas that the study reports). ``control_split="task"`` measures everything
on the real split (the earlier behaviour, kept for comparison).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize, minimize_scalar
from threadpoolctl import ThreadpoolController

from probing.datasets import stable_seed
from probing.rankers.base import Standardiser, class_prior, entropy
from probing.rankers.gaussian import fit_gaussian_niw

L2_PENALTIES = ("squared", "norm")
NMI_ENTROPIES = ("train", "evaluated")
NMI_CALIBRATIONS = ("dev", "none")
CONTROL_SPLITS = ("token", "task")

#: Bumped whenever what `evaluate_ranking` computes changes, so that stored probe metrics are recomputed.
EVALUATION_VERSION = 3

#: Largest inverse temperature β tried for the NMI calibration (β > 1 sharpens an underconfident probe).
MAX_INVERSE_TEMPERATURE = 10.0


@dataclass(frozen=True)
class EvaluationParams:
    """How rankings are evaluated (module docstring): linear classifier, NMI, control task."""

    linear_standardise: bool = True
    linear_l1: float = 0.0
    linear_l2: float = 1e-3
    linear_l2_penalty: str = "squared"
    nmi_entropy: str = "train"
    nmi_calibration: str = "dev"
    control_split: str = "token"
    max_iter: int = 5000
    tolerance: float = 1e-6

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("linear_l2_penalty", self.linear_l2_penalty, L2_PENALTIES),
            ("nmi_entropy", self.nmi_entropy, NMI_ENTROPIES),
            ("nmi_calibration", self.nmi_calibration, NMI_CALIBRATIONS),
            ("control_split", self.control_split, CONTROL_SPLITS),
        ):
            if value not in allowed:
                raise ValueError(f"evaluation.{name} must be one of {allowed}, got {value!r}")
        if not isinstance(self.linear_standardise, bool):
            raise ValueError(f"evaluation.linear_standardise must be true or false, got {self.linear_standardise!r}")
        if self.linear_l1 < 0 or self.linear_l2 < 0:
            raise ValueError(f"evaluation.linear_l1 and linear_l2 must be >= 0, got {self.linear_l1}, {self.linear_l2}")
        if self.max_iter < 1 or self.tolerance <= 0:
            raise ValueError(
                f"evaluation.max_iter must be >= 1, tolerance > 0; got {self.max_iter} and {self.tolerance}"
            )

    @property
    def linear_smooth(self) -> bool:
        """True when the linear loss is differentiable everywhere (no L1, squared L2)."""
        return self.linear_l1 == 0 and (self.linear_l2_penalty == "squared" or self.linear_l2 == 0)


@dataclass(frozen=True)
class ProbeData:
    """One (language, attribute, layer) dataset: activations, class ids and lowercased word types per split."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_dev: np.ndarray
    y_dev: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    types_train: np.ndarray
    types_dev: np.ndarray
    types_test: np.ndarray


def accuracy(log_probs: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose most probable class is the label."""
    return float(np.mean(np.argmax(log_probs, axis=1) == y))


def normalised_mutual_information(log_probs: np.ndarray, y: np.ndarray, prior: np.ndarray) -> float:
    """(H(Y) − cross-entropy) / H(Y), in nats, H(Y) of ``prior``; 1 for a perfect probe, 0 for the prior."""
    h = entropy(prior)
    if h == 0:
        raise ValueError("NMI needs a label distribution with entropy > 0 (at least two classes)")
    cross_entropy = -float(np.mean(log_probs[np.arange(len(y)), y]))
    return (h - cross_entropy) / h


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of always predicting the most frequent train label (the lowest id on a tie)."""
    return float(np.mean(y_test == np.argmax(np.bincount(y_train))))


def control_labels(types: np.ndarray, y_train: np.ndarray, seed: int) -> np.ndarray:
    """Control-task label of each word type: drawn from the train label distribution by a hash of (seed, type)."""
    cumulative = np.cumsum(np.bincount(y_train)) / len(y_train)
    uniform = np.asarray([stable_seed(seed, "control", t) for t in types], dtype=np.float64) / 2**32
    return np.minimum(np.searchsorted(cumulative, uniform, side="right"), len(cumulative) - 1).astype(np.int64)


def token_level_split(sizes: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows of the control split: the pooled (train, dev, test) rows shuffled by ``seed``,
    the first n_train for train and the next n_test for test (the real split's sizes; n_dev rows left out)."""
    n_train, n_dev, n_test = sizes
    permutation = np.random.default_rng(stable_seed(seed, "control_split")).permutation(n_train + n_dev + n_test)
    return np.sort(permutation[:n_train]), np.sort(permutation[n_train : n_train + n_test])


def _prox_l1_norm(weight: torch.Tensor, step: float, l1: float, l2_norm: float) -> torch.Tensor:
    """Proximal map of step·(λ1 ‖W‖₁ + λ2 ‖W‖₂): soft-threshold, then shrink the whole matrix."""
    shrunk = torch.sign(weight) * torch.clamp(weight.abs() - step * l1, min=0)
    norm = torch.linalg.vector_norm(shrunk)
    return shrunk * torch.clamp(1 - step * l2_norm / norm, min=0) if norm > 0 else shrunk


def smooth_linear_loss(
    weight: torch.Tensor, bias: torch.Tensor, x_t: torch.Tensor, y: torch.Tensor, l2: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy + λ2 ‖W‖²₂ (bias unpenalised) and its gradient, in closed form, on the inputs
    stored one neuron per row (``x_t`` = Xᵀ, d × n):

        ∂/∂W = (P − Y)ᵀ X / n + 2 λ2 W,   ∂/∂b = Σ_rows (P − Y) / n,

    P the softmax of the logits XWᵀ + b, Y the one-hot labels. Returns (loss, ∂W, ∂b). At the sizes a
    ranking is evaluated on (k ≤ a few hundred neurons) an L-BFGS fit is dominated by per-operation
    overhead, which autograd's graph building and backward pass multiply (~1.6× the time of this). The
    logits are computed as a C × n matrix, W Xᵀ: with few classes and many rows, the matrix products and
    the log-sum-exp over classes run 1.3–1.7× faster on the CPU in this layout than in the n × C one
    (``bench/linear_fit.py``), with the same values up to rounding.
    """
    logits = torch.addmm(bias[:, None], weight, x_t)
    log_norm = torch.logsumexp(logits, dim=0, keepdim=True)
    n = len(y)
    loss = (log_norm.sum() - logits.gather(0, y[None, :]).sum()) / n + l2 * weight.square().sum()
    residual = torch.exp_(logits.sub_(log_norm))
    residual[y, torch.arange(n, device=y.device)] -= 1
    residual /= n
    return loss, residual @ x_t.T + (2 * l2) * weight, residual.sum(dim=1)


def numpy_linear_loss(
    weight: np.ndarray, bias: np.ndarray, x_t: np.ndarray, y: np.ndarray, l2: float, rows: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """`smooth_linear_loss` in numpy (``rows`` = arange(n)), the loss the CPU's L-BFGS fit evaluates.

    The same closed form, with the log-sum-exp written out so that its exponentials are reused as the
    softmax: at a ranking's sizes (k ≤ a few hundred, C ≤ ~20, n ≤ a few thousand) each torch operation
    costs ~10 µs of dispatch, numpy's ~1 µs, and this is 2.5–3× faster than the torch version (one call
    on 600 rows, one thread: 71 vs 216 µs at k = 51, C = 6; 128 vs 300 µs at C = 17), with the same
    values up to rounding. ``bench/linear_fit.py`` times the whole fit, loss and optimiser.
    """
    logits = weight @ x_t + bias[:, None]
    shift = logits.max(axis=0)
    softmax = np.exp(logits - shift)
    partition = softmax.sum(axis=0)
    n = len(y)
    loss = (np.log(partition).sum() + shift.sum() - logits[y, rows].sum()) / n + l2 * np.square(weight).sum()
    softmax /= partition
    softmax[y, rows] -= 1
    softmax /= n
    return float(loss), softmax @ x_t.T + (2 * l2) * weight, softmax.sum(axis=1)


#: (loss, gradient) of the flattened parameters θ = [W b] (C × (k + 1), row-major), for scipy's L-BFGS-B.
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def numpy_objective(x_t: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> Objective:
    """The smooth loss of θ computed by `numpy_linear_loss` (``x_t`` = Xᵀ, float64)."""
    rows, k = np.arange(len(y)), x_t.shape[0]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        parameters = theta.reshape(n_classes, k + 1)
        loss, grad_weight, grad_bias = numpy_linear_loss(parameters[:, :-1], parameters[:, -1], x_t, y, l2, rows)
        return loss, np.concatenate([grad_weight, grad_bias[:, None]], axis=1).ravel()

    return objective


def torch_objective(x_t: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float) -> Objective:
    """The smooth loss of θ computed by `smooth_linear_loss` on the tensors' device (an accelerator's
    path: the rows stay there, only θ and its gradient cross, C × (k + 1) numbers per call)."""
    k = x_t.shape[0]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        parameters = torch.from_numpy(theta).to(x_t.device).view(n_classes, k + 1)
        loss, grad_weight, grad_bias = smooth_linear_loss(parameters[:, :-1], parameters[:, -1], x_t, y, l2)
        return float(loss), torch.cat([grad_weight, grad_bias[:, None]], dim=1).cpu().numpy().ravel()

    return objective


@functools.cache
def blas_controller() -> ThreadpoolController:
    """threadpoolctl's handle on the BLAS libraries loaded (numpy's and scipy's OpenBLAS), found once."""
    return ThreadpoolController()


def fit_lbfgs(objective: Objective, n_classes: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of the smooth loss (λ1 = 0, squared L2) by scipy's L-BFGS-B from zero, to a
    projected gradient ≤ 1e-9 or a relative decrease ≤ ~1e-15 (at most 500 iterations).

    scipy's compiled L-BFGS-B replaced ``torch.optim.LBFGS`` (EVALUATION_VERSION 3): torch's runs its
    two-loop recursion and strong-Wolfe search in Python, per-operation overhead that was ~70% of a
    fit at a ranking's sizes. Both reach the strongly convex loss's unique minimum; the fitted weights
    differ by ~1e-5 at most. BLAS runs on one thread: on vectors of C × (k + 1) numbers OpenBLAS's
    threads cost more than they give (k = 150, C = 17 on 2 cores: 897 ms with 2 threads, 63 with 1),
    and even the loss gains little from a second thread at n = 50,000 (36 vs 30 ms a call): that
    scale is a GPU's.
    """
    with blas_controller().limit(limits=1, user_api="blas"):
        result = minimize(
            objective,
            np.zeros(n_classes * (d + 1)),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500, "gtol": 1e-9, "ftol": 1e-15},
        )
    parameters = result.x.reshape(n_classes, d + 1)
    return parameters[:, :-1], parameters[:, -1]


def _fit_fista(x_t: torch.Tensor, y: torch.Tensor, n_classes: int, params: EvaluationParams) -> tuple:
    """Weights and bias of the non-smooth loss by FISTA with adaptive restart (module docstring; ``x_t`` = Xᵀ).

    Step 1/L with L = λmax([X 1]ᵀ[X 1]) / (2n) (+ 2λ2 for a squared L2), a Lipschitz constant of the
    smooth part's gradient; stops when the gradient mapping ‖(θ − θ⁺)/t‖∞ falls below the tolerance.
    """
    squared = params.linear_l2 if params.linear_l2_penalty == "squared" else 0.0
    norm_l2 = params.linear_l2 if params.linear_l2_penalty == "norm" else 0.0
    n = x_t.shape[1]
    augmented = torch.cat([x_t, torch.ones(1, n, dtype=x_t.dtype, device=x_t.device)], dim=0)
    lipschitz = float(torch.linalg.matrix_norm(augmented, ord=2)) ** 2 / (2 * n) + 2 * squared
    step = 1.0 / lipschitz
    theta = torch.zeros(n_classes, x_t.shape[0] + 1, dtype=torch.float64, device=x_t.device)  # [W b]
    momentum, velocity = theta.clone(), 1.0

    for _ in range(params.max_iter):
        _, grad_weight, grad_bias = smooth_linear_loss(momentum[:, :-1], momentum[:, -1], x_t, y, squared)
        moved = momentum - step * torch.cat([grad_weight, grad_bias[:, None]], dim=1)
        new = torch.cat([_prox_l1_norm(moved[:, :-1], step, params.linear_l1, norm_l2), moved[:, -1:]], dim=1)
        if float((momentum - new).abs().max()) / step < params.tolerance:
            theta = new
            break
        restart = float(((momentum - new) * (new - theta)).sum()) > 0  # the step went against the momentum
        next_velocity = 1.0 if restart else (1 + (1 + 4 * velocity**2) ** 0.5) / 2
        momentum = new if restart else new + (velocity - 1) / next_velocity * (new - theta)
        theta, velocity = new, next_velocity
    return theta[:, :-1], theta[:, -1]


def fit_linear(
    X_train: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    params: EvaluationParams = EvaluationParams(),
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (C, d) and bias (C,) of the linear classifier on the (standardised or raw) inputs it is given,
    fitted in float64: the smooth loss by L-BFGS on a loss computed in numpy on the CPU or in torch on
    another ``device``; the non-smooth one by FISTA in torch on ``device``.

    The inputs are centred for the fit and the bias shifted back (b − W·mean): the same minimum, since
    the bias is not penalised, reached in fewer iterations on raw activations far from zero mean.
    """
    X = np.asarray(X_train, dtype=np.float64)
    mean = X.mean(axis=0)
    x_t, y = np.ascontiguousarray((X - mean).T), y_train.astype(np.int64)
    on_device = torch.from_numpy(x_t).to(device), torch.from_numpy(y).to(device)
    if not params.linear_smooth:
        weight, bias = (tensor.cpu().numpy() for tensor in _fit_fista(*on_device, n_classes, params))
    elif torch.device(device).type == "cpu":
        weight, bias = fit_lbfgs(numpy_objective(x_t, y, n_classes, params.linear_l2), n_classes, X.shape[1])
    else:
        weight, bias = fit_lbfgs(torch_objective(*on_device, n_classes, params.linear_l2), n_classes, X.shape[1])
    return weight, bias - weight @ mean


def linear_log_proba(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    n_classes: int,
    params: EvaluationParams = EvaluationParams(),
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Test log-probabilities (n, C) of the linear classifier (module docstring) fitted on train on ``device``."""
    transform = Standardiser.fit(X_train) if params.linear_standardise else np.asarray
    weight, bias = fit_linear(np.asarray(transform(X_train), dtype=np.float64), y_train, n_classes, params, device)
    logits = torch.from_numpy(np.asarray(transform(X_test), dtype=np.float64) @ weight.T + bias)
    return torch.log_softmax(logits, dim=1).numpy()


def gaussian_log_proba(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, n_classes: int) -> np.ndarray:
    """Test log-probabilities (n, C) of NIW class-conditional Gaussians; classes absent from train get −inf."""
    standardise = Standardiser.fit(X_train)
    present = np.unique(y_train)
    model = fit_gaussian_niw(standardise(X_train), np.searchsorted(present, y_train), len(present))
    out = np.full((len(X_test), n_classes), -np.inf)
    out[:, present] = model.log_proba(standardise(X_test))
    return out


def _gaussian_classifier(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_eval: np.ndarray,
    n_classes: int,
    params: EvaluationParams,
    device: str | torch.device,
) -> np.ndarray:
    """`gaussian_log_proba` as a `Classifier`: on k neurons it is a few k × k matrices, cheap on the CPU
    whatever the device, and it has no parameters."""
    return gaussian_log_proba(X_train, y_train, X_eval, n_classes)


#: A classifier that scores a ranking: test log-probabilities (n, C) of a model fitted on
#: (X_train, y_train), given (X_train, y_train, X_test, n_classes, params, device).
Classifier = Callable[[np.ndarray, np.ndarray, np.ndarray, int, EvaluationParams, str | torch.device], np.ndarray]

#: The classifiers by name, as a study config's ``probing.classifiers`` names them.
CLASSIFIERS: dict[str, Classifier] = {"linear": linear_log_proba, "gaussian": _gaussian_classifier}


def temper(log_probs: np.ndarray, prior: np.ndarray, beta: float) -> np.ndarray:
    """log q_β(c | x) with q_β ∝ π_c (p(c | x) / π_c)^β over the classes of nonzero prior (others −inf)."""
    present = prior > 0
    log_prior = np.log(prior[present])
    tempered = np.full_like(log_probs, -np.inf)
    scaled = log_prior + beta * (log_probs[:, present] - log_prior)
    tempered[:, present] = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
    return tempered


def fit_inverse_temperature(log_probs: np.ndarray, y: np.ndarray, prior: np.ndarray) -> float:
    """β in [0, MAX_INVERSE_TEMPERATURE] minimising the cross-entropy of `temper` on (log_probs, y).

    The cross-entropy is convex in β (a log-sum-exp of functions affine in β, minus an affine one),
    so a bounded scalar search finds the minimum. Rows whose label has probability 0 under the prior
    cannot be scored by any β and are left out.
    """
    scored = prior[y] > 0
    rows, labels = log_probs[scored], y[scored]

    def cross_entropy(beta: float) -> float:
        return -float(np.mean(temper(rows, prior, beta)[np.arange(len(labels)), labels]))

    result = minimize_scalar(cross_entropy, bounds=(0.0, MAX_INVERSE_TEMPERATURE), method="bounded")
    return float(result.x) if result.fun <= cross_entropy(0.0) else 0.0


def _classify(
    classifier: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_eval: np.ndarray,
    C: int,
    params: EvaluationParams,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Log-probabilities on ``X_eval`` of the named classifier trained on (X_train, y_train).

    The linear classifier's iterative fit runs on ``device``; the Gaussian one on the CPU.
    """
    return CLASSIFIERS[classifier](X_train, y_train, X_eval, C, params, device)


def _check_evaluation_inputs(order: np.ndarray, data: ProbeData, k_grid: Sequence[int], classifiers: Sequence[str]):
    """A permutation of the d neurons, known classifiers, every k >= 1."""
    d = data.X_train.shape[1]
    if not np.array_equal(np.sort(order), np.arange(d)):
        raise ValueError(f"order must be a permutation of the {d} neurons")
    unknown = sorted(set(classifiers) - set(CLASSIFIERS))
    if unknown:
        raise ValueError(f"unknown classifier(s) {unknown}; known: {list(CLASSIFIERS)}")
    if any(k < 1 for k in k_grid):
        raise ValueError(f"every k must be >= 1, got {list(k_grid)}")


def _control_data(data: ProbeData, seed: int, params: EvaluationParams) -> tuple:
    """(X_train, task y_train, control y_train, X_test, task y_test, control y_test) of the control's split."""
    if params.control_split == "task":
        X_train, y_train, types_train = data.X_train, data.y_train, data.types_train
        X_test, y_test, types_test = data.X_test, data.y_test, data.types_test
    else:
        X = np.concatenate([data.X_train, data.X_dev, data.X_test])
        y = np.concatenate([data.y_train, data.y_dev, data.y_test])
        types = np.concatenate([data.types_train, data.types_dev, data.types_test])
        train, test = token_level_split((len(data.y_train), len(data.y_dev), len(data.y_test)), seed)
        X_train, y_train, types_train = X[train], y[train], types[train]
        X_test, y_test, types_test = X[test], y[test], types[test]
    control_train = control_labels(types_train, data.y_train, seed)
    control_test = control_labels(types_test, data.y_train, seed)
    return X_train, y_train, control_train, X_test, y_test, control_test


def _real_split_metrics(
    classifier: str,
    data: ProbeData,
    top: np.ndarray,
    n_classes: int,
    prior: np.ndarray,
    nmi_prior: np.ndarray,
    params: EvaluationParams,
    device: str | torch.device = "cpu",
) -> dict:
    """Test accuracy, NMI and the NMI's inverse temperature β of the classifier on the top neurons, real split."""
    evaluated = np.concatenate([data.X_dev[:, top], data.X_test[:, top]])
    log_probs = _classify(classifier, data.X_train[:, top], data.y_train, evaluated, n_classes, params, device)
    dev_log_probs, test_log_probs = log_probs[: len(data.y_dev)], log_probs[len(data.y_dev) :]
    beta, nmi_log_probs = 1.0, test_log_probs
    if params.nmi_calibration == "dev":
        beta = fit_inverse_temperature(dev_log_probs, data.y_dev, prior)
        nmi_log_probs = temper(test_log_probs, prior, beta)
    return {
        "accuracy": accuracy(test_log_probs, data.y_test),
        "nmi": normalised_mutual_information(nmi_log_probs, data.y_test, nmi_prior),
        "nmi_beta": beta,
    }


def evaluate_ranking(
    order: np.ndarray,
    data: ProbeData,
    k_grid: Sequence[int],
    classifiers: Sequence[str] = tuple(CLASSIFIERS),
    seed: int = 0,
    params: EvaluationParams = EvaluationParams(),
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Per classifier and k (k > d skipped): accuracy and NMI on the real split; the task and control
    accuracies on the control's split and their difference, the selectivity; the majority baseline.

    ``seed`` fixes the control labels (a hash of seed and word type) and the control's split (a
    permutation of the dataset's rows): with the study's seed, every method, layer and checkpoint of
    one (language, attribute) is scored on the same control task and split, so their selectivities
    compare; no statistic pairs two datasets' control tasks, so sharing the seed across them is harmless.
    ``device``: where the linear classifiers are fitted (the same float64 computation on any device).
    """
    order = np.asarray(order, dtype=np.int64)
    _check_evaluation_inputs(order, data, k_grid, classifiers)
    d = data.X_train.shape[1]
    n_classes = int(max(data.y_train.max(), data.y_dev.max(), data.y_test.max())) + 1
    prior = class_prior(data.y_train, n_classes)
    nmi_prior = prior if params.nmi_entropy == "train" else class_prior(data.y_test, n_classes)
    Xc_train, yc_train, control_train, Xc_test, yc_test, control_test = _control_data(data, seed, params)
    majority = majority_baseline(data.y_train, data.y_test)
    rows = []
    for classifier in classifiers:
        for k in (k for k in k_grid if k <= d):
            top = order[:k]
            real = _real_split_metrics(classifier, data, top, n_classes, prior, nmi_prior, params, device)
            if params.control_split == "task":
                task_on_control_split = real["accuracy"]
            else:
                task = _classify(classifier, Xc_train[:, top], yc_train, Xc_test[:, top], n_classes, params, device)
                task_on_control_split = accuracy(task, yc_test)
            control = _classify(classifier, Xc_train[:, top], control_train, Xc_test[:, top], n_classes, params, device)
            control_accuracy = accuracy(control, control_test)
            rows.append(
                {
                    "classifier": classifier,
                    "k": int(k),
                    **real,
                    "accuracy_control_split": task_on_control_split,
                    "control_accuracy": control_accuracy,
                    "selectivity": task_on_control_split - control_accuracy,
                    "majority": majority,
                }
            )
    return rows
