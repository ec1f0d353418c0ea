"""Ranking evaluation: top-k classifiers, NMI, control task and selectivity, baselines."""

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.stats import entropy as scipy_entropy

from probing.evaluation import (
    EvaluationParams,
    ProbeData,
    accuracy,
    control_labels,
    evaluate_ranking,
    fit_inverse_temperature,
    fit_lbfgs,
    fit_linear,
    gaussian_log_proba,
    linear_log_proba,
    majority_baseline,
    normalised_mutual_information,
    numpy_linear_loss,
    numpy_objective,
    smooth_linear_loss,
    temper,
    token_level_split,
    torch_objective,
)
from probing.rankers.base import class_prior

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


def type_data(n_types: int = 60, reps: int = 60, width: int = 60, seed: int = 0) -> ProbeData:
    """Word types repeated ``reps`` times, split by type (train 60%, dev 13%, test 27% of the types).

    Neurons 0..width-1 encode the attribute (0..2 shifted by the type's label, the rest noise) and no
    identity; neurons width..2·width-1 encode only word identity (a random vector per type plus a
    little noise), so on a type-disjoint split they say nothing about the attribute of a new type.
    """
    rng = np.random.default_rng(seed)
    label = rng.permutation(np.arange(n_types) % 2)
    types = np.repeat(np.arange(n_types), reps)
    identity = rng.normal(size=(n_types, width))[types] + 0.3 * rng.normal(size=(len(types), width))
    X = np.concatenate([rng.normal(size=(len(types), width)), identity], axis=1)
    y = label[types]
    X[:, :3] += 2.0 * y[:, None]
    names = np.asarray([f"w{t}" for t in types], dtype=object)
    part = np.digitize(types, [0.6 * n_types, 0.73 * n_types])
    parts = [(X[part == p], y[part == p]) for p in range(3)]
    return ProbeData(*(a for xy in parts for a in xy), *(names[part == p] for p in range(3)))


def test_the_control_is_learnt_by_memorising_types_and_selectivity_tells_attribute_from_identity():
    data = type_data()
    width = data.X_train.shape[1] // 2
    attribute_first = np.arange(2 * width)
    identity_first = np.r_[np.arange(width, 2 * width), np.arange(width)]
    chance = max(np.bincount(control_labels(data.types_test, data.y_train, 7))) / len(data.y_test)
    for classifier in ("linear", "gaussian"):
        (attribute,) = evaluate_ranking(attribute_first, data, [width], [classifier], seed=7)
        (identity,) = evaluate_ranking(identity_first, data, [width], [classifier], seed=7)
        assert identity["control_accuracy"] > 0.9  # memorised: almost every test type is seen in training
        assert identity["accuracy_control_split"] > 0.9  # the attribute too, by memorising types
        assert identity["accuracy"] < 0.7  # but it does not generalise to new lemmas
        assert abs(identity["selectivity"]) < 0.1
        assert attribute["control_accuracy"] < 0.65  # no identity in these neurons: control near chance
        assert attribute["selectivity"] > 0.35
        assert attribute["selectivity"] > identity["selectivity"] + 0.3
        # on the type-disjoint split itself no control can be learnt (the defect the token split fixes)
        (on_task,) = evaluate_ranking(
            identity_first, data, [width], [classifier], 7, EvaluationParams(control_split="task")
        )
        assert on_task["control_accuracy"] < chance + 0.15 < identity["control_accuracy"]


def test_the_token_level_split_keeps_the_sizes_mixes_the_parts_and_follows_the_seed():
    data = type_data()
    sizes = (len(data.y_train), len(data.y_dev), len(data.y_test))
    train, test = token_level_split(sizes, seed=3)
    assert (len(train), len(test)) == (sizes[0], sizes[2]) and not set(train) & set(test)
    assert set(train) | set(test) <= set(range(sum(sizes)))
    types = np.concatenate([data.types_train, data.types_dev, data.types_test])
    assert np.mean(np.isin(types[test], types[train])) > 0.99  # test types seen in train
    assert np.mean(np.isin(data.types_test, data.types_train)) == 0  # unlike the real, type-disjoint split
    again, _ = token_level_split(sizes, seed=3)
    other, _ = token_level_split(sizes, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def zipf_split(n: int, n_types: int, width: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of Zipf-distributed word types, each type a random vector (4 neurons shifted by its label)
    plus a little noise; each call draws new types, as a lemma-disjoint split does."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_types, width))
    label = rng.choice(2, size=n_types, p=[0.6, 0.4])
    vectors[:, :4] += 1.5 * label[:, None]
    frequency = 1 / np.arange(1, n_types + 1)
    types = rng.choice(n_types, size=n, p=frequency / frequency.sum())
    return vectors[types] + noise * rng.normal(size=(n, width)), label[types]


def test_dev_tempered_nmi_repairs_the_overconfident_gaussian_and_keeps_a_clean_probe_high():
    parts = [zipf_split(n, 300, 64, 0.1, seed) for seed, n in ((1, 3000), (2, 600), (3, 1000))]
    zipf = ProbeData(*(a for xy in parts for a in xy), *(np.asarray(["w"] * len(y), dtype=object) for _, y in parts))
    order = np.arange(64)
    (raw,) = evaluate_ranking(order, zipf, [64], ["gaussian"], params=EvaluationParams(nmi_calibration="none"))
    (tempered,) = evaluate_ranking(order, zipf, [64], ["gaussian"])
    assert raw["nmi"] < -10  # the failure: new word types at Mahalanobis distances of hundreds
    assert tempered["nmi"] >= -1 and tempered["nmi_beta"] < 0.1
    assert tempered["accuracy"] == raw["accuracy"]  # calibration changes how sure it is, not what it predicts
    clean = evaluate_ranking(true_order(), planted_data(), [3], ["gaussian", "linear"])
    assert all(row["nmi"] > 0.5 for row in clean)


def planted_data() -> ProbeData:
    words = [f"w{i}" for i in range(300)]
    parts = [split(n, seed, words) for seed, n in ((1, 900), (2, 300), (3, 400))]
    return ProbeData(*(a for X, y, _ in parts for a in (X, y)), *(t for _, _, t in parts))


def test_tempering_is_the_identity_at_one_the_prior_at_zero_and_leaves_a_calibrated_model_alone():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(20_000, 3))
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    prior = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(temper(log_p, prior, 1.0), log_p, atol=1e-12)
    np.testing.assert_allclose(temper(log_p, prior, 0.0), np.log(np.tile(prior, (len(log_p), 1))), atol=1e-12)
    y = (rng.random(len(log_p))[:, None] > np.cumsum(np.exp(log_p), axis=1)).sum(axis=1)  # y ~ p(· | x)
    assert fit_inverse_temperature(log_p, y, class_prior(y, 3)) == pytest.approx(1.0, abs=0.06)
    assert fit_inverse_temperature(log_p, rng.permutation(y), class_prior(y, 3)) < 0.05  # labels unrelated to x


def test_nmi_entropy_evaluated_uses_the_label_entropy_of_the_evaluated_set(data):
    two = data.y_test < 2  # a test set without class 2: its label entropy is far from train's
    data = dataclasses.replace(data, X_test=data.X_test[two], y_test=data.y_test[two], types_test=data.types_test[two])
    (train,) = evaluate_ranking(true_order(), data, [3], ["linear"], params=EvaluationParams(nmi_entropy="train"))
    (evaluated,) = evaluate_ranking(
        true_order(), data, [3], ["linear"], params=EvaluationParams(nmi_entropy="evaluated")
    )
    h_train = scipy_entropy(np.bincount(data.y_train))
    h_test = scipy_entropy(np.bincount(data.y_test))
    cross_entropy = h_train * (1 - train["nmi"])  # the same probe's cross-entropy on test
    assert evaluated["nmi"] == pytest.approx((h_test - cross_entropy) / h_test, abs=1e-12)
    assert abs(h_train - h_test) > 0.2 and evaluated["nmi"] != pytest.approx(train["nmi"], abs=1e-4)


def hand_loss(theta: np.ndarray, X: np.ndarray, y: np.ndarray, l1: float, l2: float, penalty: str) -> float:
    """Mean cross-entropy + λ1 Σ|W| + λ2 (Σ W² or sqrt(Σ W²)); theta holds [W b] (C, d + 1), flattened or not."""
    theta = theta.reshape(-1, X.shape[1] + 1)
    W, b = theta[:, :-1], theta[:, -1]
    logits = X @ W.T + b
    cross_entropy = np.mean(np.logaddexp.reduce(logits, axis=1) - logits[np.arange(len(y)), y])
    l2_term = np.sqrt(np.sum(W**2)) if penalty == "norm" else np.sum(W**2)
    return float(cross_entropy + l1 * np.abs(W).sum() + l2 * l2_term)


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_the_closed_form_gradient_is_autograds_gradient_of_the_loss(l2):
    rng = np.random.default_rng(4)
    x, y = torch.from_numpy(rng.normal(size=(50, 7))), torch.from_numpy(rng.choice(4, size=50))
    weight = torch.from_numpy(rng.normal(size=(4, 7))).requires_grad_(True)
    bias = torch.from_numpy(rng.normal(size=4)).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * (weight**2).sum()
    expected = torch.autograd.grad(loss, [weight, bias])
    value, grad_weight, grad_bias = smooth_linear_loss(weight.detach(), bias.detach(), x.T.contiguous(), y, l2)
    assert float(value) == pytest.approx(float(loss.detach()), abs=1e-12)
    torch.testing.assert_close(grad_weight, expected[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_bias, expected[1], rtol=0, atol=1e-12)
    W, b, x_t = weight.detach().numpy(), bias.detach().numpy(), x.T.contiguous().numpy()
    value, grad_weight, grad_bias = numpy_linear_loss(W, b, x_t, y.numpy(), l2, np.arange(50))
    assert value == pytest.approx(float(loss.detach()), abs=1e-12)  # the CPU's numpy loss: the same closed form
    np.testing.assert_allclose(grad_weight, expected[0].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad_bias, expected[1].numpy(), rtol=0, atol=1e-12)


def test_the_device_objective_is_the_cpu_objective_and_reaches_the_same_minimum():
    rng = np.random.default_rng(8)
    y = rng.choice(5, size=400)
    X = rng.normal(size=(400, 9))
    X[:, :3] += rng.normal(size=(5, 3))[y]
    x_t = np.ascontiguousarray(X.T)
    on_cpu = numpy_objective(x_t, y, 5, 0.01)
    on_device = torch_objective(torch.from_numpy(x_t), torch.from_numpy(y), 5, 0.01)  # as on a GPU, here on the CPU
    for theta in rng.normal(size=(3, 5 * 10)):
        (loss, gradient), (device_loss, device_gradient) = on_cpu(theta), on_device(theta)
        assert loss == pytest.approx(device_loss, abs=1e-12)
        np.testing.assert_allclose(gradient, device_gradient, rtol=0, atol=1e-12)
    fitted, device_fitted = fit_lbfgs(on_cpu, 5, 9), fit_lbfgs(on_device, 5, 9)
    for ours, device in zip(fitted, device_fitted, strict=True):
        np.testing.assert_allclose(ours, device, rtol=0, atol=1e-7)  # rounding apart: the same iterates
    assert np.abs(on_cpu(np.c_[fitted[0], fitted[1]].ravel())[1]).max() < 1e-8  # stationary: the unique minimum


def test_the_smooth_fit_reaches_scipys_minimum_of_the_hand_computed_loss():
    rng = np.random.default_rng(6)
    y = rng.choice(4, size=300)
    X = rng.normal(size=(300, 6)) + 5.0  # far from zero mean: the fit centres, then shifts the bias back
    X[:, :2] += np.array([[1.5, 0.0], [0.0, 1.5], [-1.5, 0.0], [0.0, -1.5]])[y]
    W, b = fit_linear(X, y, 4, EvaluationParams(linear_l2=0.01))
    reference = minimize(
        hand_loss, np.zeros(4 * 7), args=(X, y, 0.0, 0.01, "squared"), method="L-BFGS-B", options={"gtol": 1e-10}
    )
    ours = np.c_[W, b].ravel()
    assert hand_loss(ours, X, y, 0.0, 0.01, "squared") <= reference.fun + 1e-12
    steps = 1e-5 * np.eye(len(ours))
    gradient = [
        hand_loss(ours + h, X, y, 0.0, 0.01, "squared") - hand_loss(ours - h, X, y, 0.0, 0.01, "squared") for h in steps
    ]
    assert np.abs(gradient).max() / 2e-5 < 1e-5  # stationary (central differences): the strongly convex loss's minimum


@pytest.mark.parametrize("l1", [0.0, 0.02])
def test_the_norm_penalty_fit_minimises_the_hand_computed_loss(l1):
    rng = np.random.default_rng(1)
    y = rng.choice(2, size=200)
    X = rng.normal(size=(200, 2)) + np.array([[1.0, 0.3]]) * (2 * y[:, None] - 1)
    params = EvaluationParams(linear_l1=l1, linear_l2=0.2, linear_l2_penalty="norm", tolerance=1e-9, max_iter=50_000)
    W, b = fit_linear(X, y, 2, params)
    ours = hand_loss(np.c_[W, b], X, y, l1, 0.2, "norm")
    reference = minimize(
        hand_loss,
        np.c_[W, b].ravel() + 0.3,
        args=(X, y, l1, 0.2, "norm"),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 40_000},
    )
    assert ours <= reference.fun + 1e-8
    squared = fit_linear(X, y, 2, EvaluationParams(linear_l1=l1, linear_l2=0.2))
    assert hand_loss(np.c_[squared[0], squared[1]], X, y, l1, 0.2, "norm") > ours + 1e-4  # a different optimum


def test_l1_gives_exact_zeros_on_noise_neurons_and_satisfies_the_optimality_conditions():
    rng = np.random.default_rng(2)
    y = rng.choice(3, size=600)
    X = rng.normal(size=(600, 12))
    X[:, :2] += np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]])[y]
    params = EvaluationParams(linear_l1=0.05, linear_l2=0.0, tolerance=1e-9, max_iter=50_000)
    W, b = fit_linear(X, y, 3, params)
    assert np.all(W[:, 2:] == 0) and np.all(np.abs(W[:, :2]).sum(axis=0) > 0.1)
    weight = torch.from_numpy(W).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(X) @ weight.T + torch.from_numpy(b), torch.from_numpy(y))
    (gradient,) = torch.autograd.grad(loss, weight)
    gradient = gradient.numpy()
    zero = W == 0
    assert np.all(np.abs(gradient[zero]) <= 0.05 + 1e-6)  # subgradient condition at 0
    np.testing.assert_allclose(gradient[~zero], -0.05 * np.sign(W[~zero]), atol=1e-5)  # stationarity elsewhere


def test_standardising_makes_the_fit_invariant_to_neuron_scales_and_raw_inputs_do_not(data):
    X_train, X_test = data.X_train[:, list(PLANTED)], data.X_test[:, list(PLANTED)]
    scale = np.array([1000.0, 1.0, 0.001], dtype=np.float32)
    for standardise in (True, False):
        params = EvaluationParams(linear_standardise=standardise, linear_l2=0.05)
        plain = linear_log_proba(X_train, data.y_train, X_test, 3, params)
        scaled = linear_log_proba(X_train * scale, data.y_train, X_test * scale, 3, params)
        if standardise:
            np.testing.assert_allclose(plain, scaled, atol=1e-6)
        else:
            assert np.max(np.abs(plain - scaled)) > 0.1  # the penalty sees the scales: the 0.001 neuron is lost


def test_evaluation_params_reject_bad_values():
    for bad in (
        {"linear_l2_penalty": "cubed"},
        {"nmi_entropy": "test"},
        {"nmi_calibration": "platt"},
        {"control_split": "lemma"},
        {"linear_l1": -1.0},
        {"linear_standardise": "yes"},
        {"max_iter": 0},
    ):
        with pytest.raises(ValueError, match=f"evaluation.{next(iter(bad))}"):
            EvaluationParams(**bad)


@pytest.mark.parametrize("params", [EvaluationParams(), EvaluationParams(linear_l1=1e-3, linear_l2_penalty="norm")])
def test_an_explicit_cpu_device_is_the_default_path_for_both_fits(data, params):
    order = true_order()
    default = evaluate_ranking(order, data, [1, 5], params=params)
    on_cpu = evaluate_ranking(order, data, [1, 5], params=params, device=torch.device("cpu"))
    assert default == on_cpu  # L-BFGS and FISTA: the same float64 computation, bit for bit
