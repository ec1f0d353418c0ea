"""What every ranker shares: the Ranking result, input checks, standardisation, greedy selection.

Greedy selection (used by the latent and Gaussian rankers) is one driver over a *scorer*: an object
that gives, for every neuron, the mean dev log-likelihood of the labels after adding that neuron to
the chosen set, and that can then add the winner. Each greedy method has a vectorised scorer (all
candidates of a step in one batched computation) and a per-candidate loop scorer (a separate forward
pass or log-density per candidate) that serves as its reference; both feed the same driver, so the
same tie rule applies to both.

The vectorised scorers compute in two precisions (`ScreenedGreedy`): the first step (whose scores
order the tail of the ranking and are reported) in float64 for every candidate; every later step
screens all candidates in ``greedy_precision`` (float32 by default: half the memory traffic and twice
the SIMD width of float64) and re-scores in float64 every candidate that could be the best, so that
the choice is the one float64 makes under the same 1e-9 tie rule (`refine_near_best`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch

#: Candidates whose dev log-likelihood is within this of the best count as tied; the lowest index
#: wins. It absorbs the ~1e-15 rounding differences between the vectorised and the loop scorers. It is
#: applied to float64 scores only: float32 rounding (~1e-6 here) is far above it, so float32 screening
#: never decides a tie; the near-best candidates are re-scored in float64 first (`refine_near_best`).
TIE_TOLERANCE = 1e-9

#: Screened (low-precision) scores within SCREEN_MARGIN · (1 + |best|) of the best are re-scored in
#: float64. Float32 rounding of a mean log-likelihood of magnitude ~1 over 10⁴ rows is ~1e-6 (measured
#: ≤ 3e-6 on the bench data); the margin is widened whenever the observed error says so.
SCREEN_MARGIN = 1e-5
#: The margin must exceed the largest observed screening error by this factor (`refine_near_best`).
SCREEN_SAFETY = 8.0
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
#: Log-probability ratios to the true class are clamped at this before exp: torch's CPU exp takes a
#: ~14× slower path for arguments whose result underflows float32 (below ≈ −87; 9 ns against 0.66 ns
#: per element measured), which confident probes produce for most (row, class) pairs. A term of
#: e^−80 ≈ 2e−35 next to the true class's 1 changes a row's log-likelihood by < 1e−34: nothing, in
#: float64 as in float32.
EXP_FLOOR = -80.0

CRITERIA = ("nmi", "loglik")
#: How an L2 penalty on probe weights W is computed: λ2 Σ W² ("squared", weight decay) or λ2 ‖W‖ (the
#: unsquared Frobenius norm, as paper 003's code computes it).
L2_PENALTIES = ("squared", "norm")


@dataclass(frozen=True)
class RankerParams:
    """Fields every ranker's hyperparameters share; ``seed`` is recorded even by deterministic methods."""

    seed: int = 0


@dataclass(frozen=True)
class Ranking:
    """A permutation of all d neurons, best first, with the score attached to each ranked position."""

    order: np.ndarray
    scores: np.ndarray
    method: str
    params: dict
    n_greedy: int = 0

    def __post_init__(self) -> None:
        d = len(self.order)
        if not np.array_equal(np.sort(self.order), np.arange(d)) or len(self.scores) != d:
            raise ValueError(f"a ranking needs a permutation of 0..{d - 1} and {d} scores")


def reverse(ranking: Ranking) -> Ranking:
    """The bottom-to-top control: the same ranking read from its worst neuron up."""
    return Ranking(
        order=ranking.order[::-1].copy(),
        scores=ranking.scores[::-1].copy(),
        method=f"{ranking.method}_btt",
        params=dict(ranking.params),
        n_greedy=0,
    )


def _check_matrix(name: str, X: object) -> None:
    """A non-empty, finite, 2-D float array."""
    if not isinstance(X, np.ndarray) or X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"{name} must be a 2-D float array (n, d), got {_describe(X)}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(X)))} non-finite values (NaN or inf)")


def _check_labels(name: str, y: object, n: int) -> None:
    """A 1-D array of n non-negative integer class ids."""
    if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array of class ids, got {_describe(y)}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} rows")
    if y.min() < 0:
        raise ValueError(f"{name} has negative class ids")


def _describe(value: object) -> str:
    """Dtype and shape of an array, else the type name (for error messages)."""
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype} and shape {value.shape}"
    return type(value).__name__


def check_inputs(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_dev: np.ndarray | None,
    y_dev: np.ndarray | None,
    need_dev: bool = False,
) -> int:
    """Validate a ranker's inputs and return the number of classes C (labels are 0..C-1, all in train)."""
    _check_matrix("X_train", X_train)
    _check_labels("y_train", y_train, X_train.shape[0])
    if (X_dev is None) != (y_dev is None):
        raise ValueError("give both X_dev and y_dev, or neither")
    if need_dev and X_dev is None:
        raise ValueError("this method selects neurons on dev data: X_dev and y_dev are required")
    n_classes = int(y_train.max()) + 1
    present = np.unique(y_train)
    if len(present) < 2:
        raise ValueError(f"y_train has {len(present)} class(es); at least 2 are needed")
    if len(present) != n_classes:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))
        raise ValueError(f"class ids must be 0..C-1 and all occur in y_train; missing from train: {missing}")
    if X_dev is not None:
        _check_matrix("X_dev", X_dev)
        _check_labels("y_dev", y_dev, X_dev.shape[0])
        if X_dev.shape[1] != X_train.shape[1]:
            raise ValueError(f"X_dev has {X_dev.shape[1]} neurons, X_train {X_train.shape[1]}")
        if y_dev.max() >= n_classes:
            raise ValueError(
                f"y_dev has class ids absent from y_train: {sorted(set(y_dev[y_dev >= n_classes].tolist()))}"
            )
    return n_classes


def check_k(k: int, d: int) -> None:
    """A greedy method can choose at most all d neurons."""
    if not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d} (the number of neurons), got k={k}")


@dataclass(frozen=True)
class Standardiser:
    """Per-neuron train mean and standard deviation (a constant neuron keeps std 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardiser:
        """Estimate from training data, in float64."""
        X = np.asarray(X, dtype=np.float64)
        std = X.std(axis=0)
        return cls(mean=X.mean(axis=0), std=np.where(std > 0, std, 1.0))

    @classmethod
    def identity(cls, d: int) -> Standardiser:
        """The transform that leaves raw activations as they are (mean 0, std 1 for every neuron)."""
        return cls(mean=np.zeros(d), std=np.ones(d))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Standardised float64 copy of X."""
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


def class_prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Empirical label distribution."""
    return np.bincount(y, minlength=n_classes) / len(y)


def entropy(prior: np.ndarray) -> float:
    """Entropy in nats."""
    p = prior[prior > 0]
    return float(-(p * np.log(p)).sum())


def criterion_scores(loglik: np.ndarray, criterion: str, prior_entropy: float) -> np.ndarray:
    """Mean dev log-likelihood → the reported criterion; "nmi" is (H(Y) − cross-entropy) / H(Y)."""
    if criterion == "loglik":
        return loglik
    return (prior_entropy + loglik) / prior_entropy


def check_choice(name: str, value: object, allowed: tuple) -> None:
    """Reject a hyperparameter value outside its allowed set, naming the field and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_bool(name: str, value: object) -> None:
    """Reject a non-boolean flag (e.g. the string "false" from a hand-written config)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_precision(precision: str) -> None:
    """Reject an unknown greedy screening precision."""
    check_choice("greedy_precision", precision, tuple(PRECISIONS))


def check_criterion(criterion: str) -> None:
    """Reject unknown greedy criteria."""
    check_choice("criterion", criterion, CRITERIA)


def weight_penalty(weight: torch.Tensor, l1: float, l2: float, l2_penalty: str = "squared") -> torch.Tensor:
    """Elastic-net penalty λ1 ‖W‖₁ + λ2 ‖W‖²₂ ("squared") or λ1 ‖W‖₁ + λ2 ‖W‖₂ ("norm", paper 003's code).

    The norm is ``vector_norm``, whose gradient at W = 0 is the subgradient 0; ``sqrt(sum W²)`` would
    give NaN there, and the probes start from W = 0.
    """
    l2_term = weight.square().sum() if l2_penalty == "squared" else torch.linalg.vector_norm(weight)
    return l1 * weight.abs().sum() + l2 * l2_term


class Ranker(Protocol):
    """What every ranker offers: its hyperparameters and a fit that returns a Ranking."""

    params: RankerParams

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_dev: np.ndarray | None = None,
        y_dev: np.ndarray | None = None,
    ) -> Ranking:
        """Rank all neurons of X (n, d) for the labels y (class ids 0..C-1)."""
        ...


class GreedyScorer(Protocol):
    """State of a greedy search: scores every candidate against the chosen set, then grows the set."""

    def scores(self) -> np.ndarray:
        """Mean dev log-likelihood after adding each neuron (d,), −inf for neurons already chosen."""
        ...

    def add(self, neuron: int) -> None:
        """Add a neuron to the chosen set."""
        ...


def pick_best(scores: np.ndarray, tolerance: float = TIE_TOLERANCE) -> int:
    """Index of the best score; among scores within ``tolerance`` of it, the lowest index (NaN never wins)."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    best = np.max(scores)
    return int(np.flatnonzero(scores >= best - tolerance)[0])


def refine_near_best(
    screened: torch.Tensor, candidates: torch.Tensor, exact: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Float64 scores (d,) from screened low-precision ones: every candidate that may be the best re-scored exactly.

    A candidate is re-scored by ``exact`` (its float64 score, given candidate indices) when its screened
    score is within the margin m of the best finite screened one, or not finite (a float32 overflow).
    m starts at SCREEN_MARGIN · (1 + |best|) and grows to SCREEN_SAFETY × the largest screening error e
    seen among the re-scored candidates until it covers it. Assuming the candidates left out are
    screened no less accurately (the same computation on data of the same scale), each has a float64
    score below the best by more than m − 2e ≥ (1 − 2/SCREEN_SAFETY) m ≫ TIE_TOLERANCE, so ``pick_best``
    makes the float64 choice (checked against all-float64 runs in the tests and ``bench/greedy.py``).
    Non-candidates (already chosen) are −inf.
    """
    scores = torch.where(candidates, screened.double(), torch.tensor(-math.inf, dtype=torch.float64))
    suspect = candidates & ~torch.isfinite(scores)
    refined = torch.zeros_like(candidates)
    best = _finite_max(scores)
    margin = SCREEN_MARGIN * (1 + abs(best)) if math.isfinite(best) else math.inf
    while True:
        todo = (candidates & ~refined & (scores >= best - margin)) | (suspect & ~refined)
        if not bool(todo.any()):
            return scores
        index = torch.nonzero(todo).flatten()
        values = exact(index)
        finite = torch.isfinite(scores[index])
        error = float((values[finite] - scores[index][finite]).abs().max()) if bool(finite.any()) else 0.0
        scores[index], refined[index] = values, True
        best = max(best, _finite_max(values))
        margin = max(margin, SCREEN_SAFETY * error)


def _finite_max(values: torch.Tensor) -> float:
    """The largest finite value, −inf when there is none (NaN and ±inf are left to the re-scoring)."""
    finite = values[torch.isfinite(values)]
    return float(finite.max()) if len(finite) else -math.inf


class ScreenedGreedy:
    """Shared ``scores`` of the vectorised scorers: float64 at the first step, screened + refined after.

    Subclasses set ``chosen`` (bool, d), ``precision`` (the screening dtype) and implement
    ``candidate_scores(columns, dtype)``: the mean dev log-likelihood after adding each listed neuron,
    computed in ``dtype``, returned as float64 on the CPU.
    """

    chosen: torch.Tensor
    precision: torch.dtype

    def candidate_scores(self, columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Scores (m,) of the neurons ``columns`` computed in ``dtype``."""
        raise NotImplementedError

    def scores(self) -> np.ndarray:
        """Mean dev log-likelihood after adding each neuron (d,), −inf for neurons already chosen."""
        everything = torch.arange(len(self.chosen))
        candidates = ~self.chosen
        if not bool(self.chosen.any()) or self.precision == torch.float64:
            exact = self.candidate_scores(everything, torch.float64)
            return torch.where(candidates, exact, torch.tensor(-math.inf, dtype=torch.float64)).numpy()
        screened = self.candidate_scores(everything, self.precision)
        return refine_near_best(screened, candidates, lambda index: self.candidate_scores(index, torch.float64)).numpy()


def column_chunks(columns: torch.Tensor, chunk_size: int) -> list[torch.Tensor]:
    """The candidate indices in consecutive chunks of at most ``chunk_size`` (bounds each chunk's memory)."""
    return list(torch.split(columns, chunk_size))


def take(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``tensor.index_select(dim, index)``, as a view (no copy) when the index is a contiguous range."""
    first = int(index[0])
    if int(index[-1]) - first + 1 == len(index) and bool((index.diff() == 1).all()):
        return tensor.narrow(dim, first, len(index))
    return tensor.index_select(dim, index)


def label_blocks(y: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A stable sort of the rows by label and the (label, start, stop) of each label's block of sorted rows.

    Within a block the true class is one constant, so "logit of class c − logit of the true class" is
    one fused broadcast operation per (block, class) instead of a gather per element.
    """
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y)
    stops = np.cumsum(counts)
    return order, [(int(c), int(stops[c] - counts[c]), int(stops[c])) for c in range(len(counts)) if counts[c]]


def mean_loglik_from_differences(
    differences: Callable[[int, int, int, int], torch.Tensor], blocks: list[tuple[int, int, int]], n_classes: int
) -> torch.Tensor:
    """Mean over rows of log p(y | ·) = −log(1 + Σ_{c≠y} exp(l_c − l_y)) per candidate, float64 on the CPU (m,).

    ``differences(c, label, start, stop)`` gives l_c − l_y (m, rows of the block) for the rows of one
    label block (candidates × rows: the rows of a candidate are contiguous, so every pass streams);
    the true class's own term is exp(0) = 1 and is not computed. Shifting by the true class's score
    instead of the maximum makes the sum ≥ 1 (no underflow to log 0, no pass for the maximum); an
    overflow (a difference > 88 in float32) gives −inf, which `refine_near_best` re-scores in float64;
    differences below EXP_FLOOR are clamped (its comment).
    """
    total, rows = None, 0
    for label, start, stop in blocks:
        acc = None  # n_classes >= 2, so every block adds at least one term
        for c in range(n_classes):
            if c != label:
                term = differences(c, label, start, stop).clamp_min_(EXP_FLOOR).exp_()
                acc = term if acc is None else acc.add_(term)
        block = -torch.log1p(acc).sum(dim=1, dtype=torch.float64)
        total = block if total is None else total + block
        rows += stop - start
    return (total / rows).cpu()


@dataclass(frozen=True)
class GreedyResult:
    """The chosen neurons in order, the dev log-likelihood after each, and every neuron's first-step score."""

    chosen: np.ndarray
    loglik: np.ndarray
    first: np.ndarray


def greedy_select(scorer: GreedyScorer, k: int) -> GreedyResult:
    """Run k greedy steps, each adding the neuron that most raises the dev log-likelihood."""
    chosen, loglik, first = [], [], None
    for _ in range(k):
        scores = scorer.scores()
        if first is None:
            first = scores.copy()
        best = pick_best(scores)
        chosen.append(best)
        loglik.append(float(scores[best]))
        scorer.add(best)
    return GreedyResult(np.asarray(chosen, dtype=np.int64), np.asarray(loglik), first)


def greedy_ranking(result: GreedyResult, criterion: str, prior_entropy: float) -> tuple[np.ndarray, np.ndarray]:
    """Full order and scores: the greedy prefix, then the rest by their individual first-step score."""
    d = len(result.first)
    rest = np.ones(d, dtype=bool)
    rest[result.chosen] = False
    tail = np.flatnonzero(rest)
    tail = tail[np.argsort(-result.first[tail], kind="stable")]
    order = np.concatenate([result.chosen, tail])
    loglik = np.concatenate([result.loglik, result.first[tail]])
    return order, criterion_scores(loglik, criterion, prior_entropy).astype(np.float64)


class RankerBase:
    """A ranker's name, hyperparameters (its ``params_type`` defaults when none are given) and traits.

    The traits say what a study does with the ranker's results, so the orchestration asks the class
    instead of keeping lists of method names.
    """

    method: str
    params_type: type = RankerParams
    #: Whether the ranking read from its worst neuron up (`reverse`) is a meaningful bottom-to-top control:
    #: the order follows the ranker's scores. False for a ranking whose reverse is as random as itself.
    reversible: bool = True
    #: Whether the first ``params.k`` positions are chosen greedily on dev (``Ranking.n_greedy == k``).
    greedy: bool = False
    #: Whether the hyperparameters have ``k``, the number of positions to fill greedily, which a study sets
    #: from its own k and k grid (``ray_jobs.config.greedy_steps``) unless the config gives it.
    needs_k: bool = False

    def __init__(self, params: RankerParams | None = None, device: str | torch.device = "cpu"):
        """``device``: where torch computes (not a hyperparameter: results agree across devices within
        float tolerance, so it is not in ``params`` nor in any fingerprint)."""
        self.params = params if params is not None else self.params_type()
        self.device = torch.device(device)


class ScoreRanker(RankerBase):
    """Shared fit of the rankers that score every neuron once on train and sort (dev data unused).

    Subclasses set ``method`` and ``params_type`` and implement ``neuron_scores``.
    """

    def neuron_scores(self, X_train: np.ndarray, y_train: np.ndarray, n_classes: int) -> np.ndarray:
        """One score per neuron (d,), higher = more relevant to the labels."""
        raise NotImplementedError

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_dev: np.ndarray | None = None,
        y_dev: np.ndarray | None = None,
    ) -> Ranking:
        """Score the neurons on train; rank them highest first (ties by neuron index)."""
        n_classes = check_inputs(X_train, y_train, X_dev, y_dev)
        scores = self.neuron_scores(X_train, y_train, n_classes)
        order = np.argsort(-scores, kind="stable")
        return Ranking(order, scores[order], self.method, asdict(self.params))


class GreedyRanker(RankerBase):
    """Shared fit of the greedy rankers: standardise (unless ``standardises`` says not), fit once, choose k on dev.

    Subclasses set ``method`` and ``params_type`` and implement ``_fit_model``, ``greedy_scorer`` and
    ``predict_log_proba``; after ``fit``, ``standardiser_`` holds the train mean and std.
    """

    greedy = True
    needs_k = True

    def _fit_model(
        self, Z_train: np.ndarray, y_train: np.ndarray, Z_dev: np.ndarray, y_dev: np.ndarray, n_classes: int
    ) -> None:
        """Fit the method's model on standardised data (sets the subclass's fitted attributes)."""
        raise NotImplementedError

    def greedy_scorer(self, X: np.ndarray, y: np.ndarray, vectorized: bool = True) -> GreedyScorer:
        """A fresh greedy search on (X, y) with the fitted model: vectorised, or the per-candidate reference."""
        raise NotImplementedError

    def predict_log_proba(self, X: np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """Log p(y | x) (n, C) from the given neurons only (all when None)."""
        raise NotImplementedError

    def standardises(self) -> bool:
        """Whether the model sees standardised activations (a masked neuron = its train mean) or raw ones (= 0)."""
        return True

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_dev: np.ndarray | None = None,
        y_dev: np.ndarray | None = None,
    ) -> Ranking:
        """Fit the model on train once, then rank: k neurons greedily on dev, the rest by first-step score."""
        n_classes = check_inputs(X_train, y_train, X_dev, y_dev, need_dev=True)
        check_k(self.params.k, X_train.shape[1])
        self.standardiser_ = (
            Standardiser.fit(X_train) if self.standardises() else Standardiser.identity(X_train.shape[1])
        )
        y_train, y_dev = y_train.astype(np.int64), y_dev.astype(np.int64)
        self._fit_model(self.standardiser_(X_train), y_train, self.standardiser_(X_dev), y_dev, n_classes)
        result = greedy_select(self.greedy_scorer(X_dev, y_dev), self.params.k)
        prior_entropy = entropy(class_prior(y_train, n_classes))
        order, scores = greedy_ranking(result, self.params.criterion, prior_entropy)
        return Ranking(order, scores, self.method, asdict(self.params), n_greedy=self.params.k)

    def score(self, X: np.ndarray, y: np.ndarray, neurons: np.ndarray | None = None) -> float:
        """Accuracy of the fitted model on (X, y) from the given neurons only (all when None)."""
        return float(np.mean(self.predict_log_proba(X, neurons).argmax(axis=1) == y))
