"""Ranking quality apart from probe quality (Antverg & Belinkov 2022, Pitfall I), numpy in, numpy out.

A ranking is judged by classifiers trained on its top-k neurons only (the sub-vector X[:, order[:k]]),
with two classifiers of different kinds so that neither the ranking's own probe nor one model family
decides: "linear" (multinomial logistic regression with a little L2, trained to convergence with
full-batch L-BFGS on standardised features) and "gaussian" (the Gaussian ranker's class-conditional
Gaussians with the normal-inverse-Wishart posterior-mean covariance, fitted on the k neurons, D = k). Each is also
trained on a control task (Hewitt & Liang 2019): every word type gets a random label drawn from the
train label distribution, a deterministic function of (type, seed), so a type shared by train and
test, or seen only in test, always gets the same control label. Selectivity = accuracy − control
accuracy. NMI = (H(Y) − cross-entropy) / H(Y) in nats, H(Y) from the train label frequencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from probing.datasets import stable_seed
from probing.rankers.base import Standardiser, class_prior, entropy
from probing.rankers.gaussian import fit_gaussian_niw

CLASSIFIERS = ("linear", "gaussian")


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
    types_test: np.ndarray


def accuracy(log_probs: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose most probable class is the label."""
    return float(np.mean(np.argmax(log_probs, axis=1) == y))


def normalised_mutual_information(log_probs: np.ndarray, y: np.ndarray, prior: np.ndarray) -> float:
    """(H(Y) − cross-entropy) / H(Y), in nats; 1 for a perfect probe, 0 for one that knows only the prior."""
    cross_entropy = -float(np.mean(log_probs[np.arange(len(y)), y]))
    h = entropy(prior)
    return (h - cross_entropy) / h


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of always predicting the most frequent train label (the lowest id on a tie)."""
    return float(np.mean(y_test == np.argmax(np.bincount(y_train))))


def control_labels(types: np.ndarray, y_train: np.ndarray, seed: int) -> np.ndarray:
    """Control-task label of each word type: drawn from the train label distribution by a hash of (seed, type)."""
    cumulative = np.cumsum(np.bincount(y_train)) / len(y_train)
    uniform = np.asarray([stable_seed(seed, "control", t) for t in types], dtype=np.float64) / 2**32
    return np.minimum(np.searchsorted(cumulative, uniform, side="right"), len(cumulative) - 1).astype(np.int64)


def linear_log_proba(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, n_classes: int, l2: float = 1e-3
) -> np.ndarray:
    """Test log-probabilities (n, C) of an L2 softmax regression fitted by full-batch L-BFGS to convergence."""
    standardise = Standardiser.fit(X_train)
    x, y = torch.from_numpy(standardise(X_train)), torch.from_numpy(y_train.astype(np.int64))
    weight = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        logits = torch.from_numpy(standardise(X_test)) @ weight.T + bias
        return torch.log_softmax(logits, dim=1).numpy()


def gaussian_log_proba(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, n_classes: int) -> np.ndarray:
    """Test log-probabilities (n, C) of NIW class-conditional Gaussians; classes absent from train get −inf."""
    standardise = Standardiser.fit(X_train)
    present = np.unique(y_train)
    model = fit_gaussian_niw(standardise(X_train), np.searchsorted(present, y_train), len(present))
    out = np.full((len(X_test), n_classes), -np.inf)
    out[:, present] = model.log_proba(standardise(X_test))
    return out


def _classify(classifier: str, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, C: int) -> np.ndarray:
    """Test log-probabilities of the named classifier trained on (X_train, y_train)."""
    if classifier == "linear":
        return linear_log_proba(X_train, y_train, X_test, C)
    return gaussian_log_proba(X_train, y_train, X_test, C)


def evaluate_ranking(
    order: np.ndarray,
    data: ProbeData,
    k_grid: Sequence[int],
    classifiers: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
) -> list[dict]:
    """Per classifier and k (k > d skipped): test accuracy, NMI, control accuracy, selectivity, majority."""
    d = data.X_train.shape[1]
    order = np.asarray(order, dtype=np.int64)
    if not np.array_equal(np.sort(order), np.arange(d)):
        raise ValueError(f"order must be a permutation of the {d} neurons")
    unknown = sorted(set(classifiers) - set(CLASSIFIERS))
    if unknown:
        raise ValueError(f"unknown classifier(s) {unknown}; known: {list(CLASSIFIERS)}")
    if any(k < 1 for k in k_grid):
        raise ValueError(f"every k must be >= 1, got {list(k_grid)}")
    n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    prior = class_prior(data.y_train, n_classes)
    control_train = control_labels(data.types_train, data.y_train, seed)
    control_test = control_labels(data.types_test, data.y_train, seed)
    majority = majority_baseline(data.y_train, data.y_test)
    rows = []
    for classifier in classifiers:
        for k in (k for k in k_grid if k <= d):
            top = order[:k]
            X_train, X_test = data.X_train[:, top], data.X_test[:, top]
            log_probs = _classify(classifier, X_train, data.y_train, X_test, n_classes)
            control = accuracy(_classify(classifier, X_train, control_train, X_test, n_classes), control_test)
            acc = accuracy(log_probs, data.y_test)
            rows.append(
                {
                    "classifier": classifier,
                    "k": int(k),
                    "accuracy": acc,
                    "nmi": normalised_mutual_information(log_probs, data.y_test, prior),
                    "control_accuracy": control,
                    "selectivity": acc - control,
                    "majority": majority,
                }
            )
    return rows
