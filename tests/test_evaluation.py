"""Ranking evaluation: top-k classifiers, NMI, control task and selectivity, baselines."""

from collections import Counter

import numpy as np
import pytest

from probing.evaluation import (
    ProbeData,
    accuracy,
    control_labels,
    evaluate_ranking,
    gaussian_log_proba,
    linear_log_proba,
    majority_baseline,
    normalised_mutual_information,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PLANTED = (4, 9, 13)
D = 20


def split(n: int, seed: int, vocabulary: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X, y, word types: 3 unbalanced classes shifting the PLANTED neurons; the rest is noise."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    X = rng.normal(size=(n, D))
    X[:, list(PLANTED)] += np.array([[2.0, 0.0, -1.0], [-1.5, 1.5, 0.5], [0.0, -2.0, 2.0]])[y]
    return X.astype(np.float32), y, rng.choice(np.asarray(vocabulary, dtype=object), size=n)


@pytest.fixture(scope="module")
def data() -> ProbeData:
    words = [f"w{i}" for i in range(300)]
    X_train, y_train, types_train = split(900, 1, words[:200])
    X_dev, y_dev, types_dev = split(200, 2, words)
    X_test, y_test, types_test = split(400, 3, words[150:])  # 50 types shared with train, 100 unseen
    return ProbeData(X_train, y_train, X_dev, y_dev, X_test, y_test, types_train, types_dev, types_test)


def true_order() -> np.ndarray:
    return np.asarray([*PLANTED, *(j for j in range(D) if j not in PLANTED)])


@pytest.fixture(scope="module")
def results(data):
    rows = evaluate_ranking(true_order(), data, [1, 3, 10, D, D + 1, 500])
    reversed_rows = evaluate_ranking(true_order()[::-1], data, [3])
    return rows, reversed_rows


def test_top_k_of_the_true_ranking_beats_the_majority_and_the_reversed_ranking(results):
    rows, reversed_rows = results
    for classifier in ("linear", "gaussian"):
        top3 = next(r for r in rows if r["classifier"] == classifier and r["k"] == 3)
        bottom3 = next(r for r in reversed_rows if r["classifier"] == classifier)
        assert top3["accuracy"] > top3["majority"] + 0.3
        assert top3["accuracy"] > bottom3["accuracy"] + 0.3
        assert top3["nmi"] > bottom3["nmi"] + 0.3
        assert top3["selectivity"] > 0.3  # random labels of word types are not in these features
        assert abs(bottom3["accuracy"] - bottom3["majority"]) < 0.1  # noise neurons: about the majority


def test_rows_are_complete_and_consistent(results, data):
    rows, _ = results
    assert [(r["classifier"], r["k"]) for r in rows] == [
        (c, k) for c in ("linear", "gaussian") for k in (1, 3, 10, D)
    ]  # k > d skipped
    expected_majority = np.mean(data.y_test == Counter(data.y_train.tolist()).most_common(1)[0][0])
    for row in rows:
        assert set(row) == {
            "classifier",
            "k",
            "accuracy",
            "nmi",
            "nmi_beta",
            "accuracy_control_split",
            "control_accuracy",
            "selectivity",
            "majority",
        }
        assert row["selectivity"] == row["accuracy_control_split"] - row["control_accuracy"]
        assert row["majority"] == expected_majority
        assert row["nmi"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0


def test_control_task_labels_are_one_random_label_per_word_type(data):
    train = control_labels(data.types_train, data.y_train, seed=0)
    test = control_labels(data.types_test, data.y_train, seed=0)
    label_of = {}
    for word, label in zip([*data.types_train, *data.types_test], [*train, *test], strict=True):
        assert label_of.setdefault(word, label) == label  # constant within a type, across train and test
    assert np.array_equal(control_labels(data.types_test[::-1], data.y_train, 0), test[::-1])
    assert not np.array_equal(control_labels(data.types_train, data.y_train, 1), train)
    many = control_labels(np.asarray([f"t{i}" for i in range(20_000)], dtype=object), data.y_train, 0)
    expected = np.bincount(data.y_train) / len(data.y_train)
    np.testing.assert_allclose(np.bincount(many, minlength=3) / len(many), expected, atol=0.015)


def test_nmi_is_one_for_a_perfect_probe_and_zero_for_the_prior():
    y = np.array([0, 1, 2, 2, 1, 0, 0, 0])
    prior = np.bincount(y) / len(y)
    perfect = np.log(np.eye(3)[y] * (1 - 3e-12) + 1e-12)
    assert normalised_mutual_information(perfect, y, prior) == pytest.approx(1.0, abs=1e-9)
    assert normalised_mutual_information(np.log(np.tile(prior, (len(y), 1))), y, prior) == pytest.approx(0.0)
    uniform = np.log(np.full((len(y), 3), 1 / 3))
    assert normalised_mutual_information(uniform, y, prior) < 0  # worse than knowing the prior


def test_baselines_and_accuracy():
    assert majority_baseline(np.array([2, 2, 1, 0]), np.array([2, 1, 2, 2])) == 0.75
    assert majority_baseline(np.array([1, 0]), np.array([0, 1, 1])) == pytest.approx(1 / 3)  # tie: lowest id
    assert accuracy(np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])), np.array([0, 1, 1])) == pytest.approx(2 / 3)


def test_classifiers_fit_a_separable_problem_and_the_gaussian_handles_absent_classes(data):
    X_train, X_test = data.X_train[:, list(PLANTED)], data.X_test[:, list(PLANTED)]
    for log_p in (
        linear_log_proba(X_train, data.y_train, X_test, 3),
        gaussian_log_proba(X_train, data.y_train, X_test, 3),
    ):
        assert accuracy(log_p, data.y_test) > 0.85
        np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0)
    two_classes = np.where(data.y_train == 2, 0, data.y_train)
    log_p = gaussian_log_proba(X_train, two_classes, X_test, 3)
    assert np.all(log_p[:, 2] == -np.inf) and np.all(np.isfinite(log_p[:, :2]))


def test_bad_rankings_and_classifiers_are_rejected(data):
    with pytest.raises(ValueError, match="permutation"):
        evaluate_ranking(np.arange(D - 1), data, [3])
    with pytest.raises(ValueError, match="unknown classifier"):
        evaluate_ranking(true_order(), data, [3], classifiers=("svm",))
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate_ranking(true_order(), data, [0, 3])
