"""Neuron rankers: planted neurons found, vectorised greedy = per-candidate loop, determinism, input checks."""

import itertools
import math
import shutil
from dataclasses import asdict, fields

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from analysis.overlap import matrix_summary, pairwise_overlap
from probing.datasets import TRIAL_SEED_FIELDS, trial_seed
from probing.rankers import (
    RANKERS,
    GaussianParams,
    GaussianRanker,
    LatentParams,
    LinearParams,
    fit_gaussian_niw,
    greedy_select,
    make_ranker,
    reverse,
)
from probing.rankers.base import class_prior, entropy, weight_penalty
from probing.rankers.latent import (
    mask_log_probability,
    masked_nll,
    sample_masks,
    stopping_split,
    surrogate_loss,
)
from probing.rankers.linear import train_elastic_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PLANTED = (3, 17, 29, 41, 55)
D = 60
#: Small settings so that every fit takes well under a second.
FAST = {
    "latent": {"k": 5, "max_epochs": 60, "patience": 10},
    "gaussian": {"k": 5},
    "linear": {"epochs": 5},
    "probeless": {},
    "random": {},
    "variance": {},
}


def planted_data(
    n: int, seed: int, d: int = D, n_classes: int = 4, neurons: tuple[int, ...] = PLANTED
) -> tuple[np.ndarray, np.ndarray]:
    """Noise neurons, plus class-dependent mean shifts (fixed across splits) on the planted neurons."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d))
    X[:, list(neurons)] += np.random.default_rng(100).normal(0, 1.5, size=(n_classes, len(neurons)))[y]
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def planted():
    return planted_data(1200, seed=1) + planted_data(400, seed=2)


@pytest.mark.parametrize("method", ["latent", "gaussian", "linear", "probeless"])
def test_every_ranker_puts_the_planted_neurons_on_top(method, planted):
    ranker = make_ranker(method, FAST[method])
    ranking = ranker.fit(*planted)
    assert set(ranking.order[:5].tolist()) == set(PLANTED)
    assert ranking.order.dtype == np.int64 and sorted(ranking.order.tolist()) == list(range(D))
    assert ranking.scores.dtype == np.float64 and len(ranking.scores) == D
    assert ranking.method == method and ranking.params == asdict(ranker.params)
    greedy = method in ("latent", "gaussian")
    assert ranking.n_greedy == (5 if greedy else 0)
    tail = ranking.scores[ranking.n_greedy :]
    assert np.all(np.diff(tail) <= 0)  # the non-greedy part is sorted by score, best first
    if greedy:
        assert np.all(np.diff(ranking.scores[:5]) > 0)  # each planted neuron raises the dev objective
        assert ranking.scores[4] > tail[0]  # the five together beat any single neuron


def test_the_latent_probe_predicts_from_its_chosen_neurons(planted):
    _, y_train, X_dev, y_dev = planted
    ranker = make_ranker("latent", FAST["latent"])
    ranking = ranker.fit(*planted)
    majority = np.mean(y_dev == np.argmax(np.bincount(y_train)))
    assert ranker.score(X_dev, y_dev, neurons=ranking.order[:5]) > majority + 0.4
    assert ranker.score(X_dev, y_dev, neurons=ranking.order[-5:]) < majority + 0.1
    log_p = ranker.predict_log_proba(X_dev)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0)


def test_criteria_choose_the_same_neurons_and_nmi_normalises_the_loglik(planted):
    y_train = planted[1]
    by_nmi = make_ranker("gaussian", {"k": 8, "criterion": "nmi"}).fit(*planted)
    by_loglik = make_ranker("gaussian", {"k": 8, "criterion": "loglik"}).fit(*planted)
    assert np.array_equal(by_nmi.order, by_loglik.order)
    h = entropy(class_prior(y_train, 4))
    np.testing.assert_allclose(by_nmi.scores, (h + by_loglik.scores) / h)
    assert by_nmi.scores[0] <= 1.0


def shape_only_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Neuron 0 carries the class only through its shape: mean 0 and variance 1 in both classes.

    Class 0: a spike at 0 with heavy tails (0.9 N(0, 0.1²) + 0.1 N(0, σ²)); class 1: two modes at ±a
    (0.5 N(−a, 0.1²) + 0.5 N(a, 0.1²)). Neurons 1-3 carry mean shifts; the other 36 are noise.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 40))
    spike = np.where(rng.random(n) < 0.9, rng.normal(0, 0.1, n), rng.normal(0, np.sqrt((1 - 0.9 * 0.01) / 0.1), n))
    modes = rng.choice([-1.0, 1.0], n) * np.sqrt(1 - 0.01) + rng.normal(0, 0.1, n)
    X[:, 0] = np.where(y == 0, spike, modes)
    X[:, 1:4] += np.where(y == 1, 0.8, -0.8)[:, None]
    return X.astype(np.float32), y


def test_gaussian_ranks_a_neuron_informative_only_through_its_shape_among_the_noise():
    X_train, y_train = shape_only_data(2000, seed=1)
    X_dev, y_dev = shape_only_data(1000, seed=2)
    for c in (0, 1):  # the classes agree on mean and variance of neuron 0 ...
        assert abs(X_train[y_train == c, 0].mean()) < 0.1 and abs(X_train[y_train == c, 0].var() - 1) < 0.15
    assert np.mean((np.abs(X_dev[:, 0]) > 0.5) == (y_dev == 1)) > 0.9  # ... yet |x| alone gives the class
    ranking = make_ranker("gaussian", {"k": 3}).fit(X_train, y_train, X_dev, y_dev)
    assert set(ranking.order[:3].tolist()) == {1, 2, 3}
    shape_score = ranking.scores[ranking.order.tolist().index(0)]  # its individual first-step NMI
    assert abs(shape_score) < 0.01 < ranking.scores[0]


@pytest.mark.parametrize("method", ["latent", "gaussian"])
def test_vectorised_greedy_chooses_exactly_what_the_per_candidate_loop_chooses(method):
    rng = np.random.default_rng(7)
    X_train, y_train = planted_data(600, seed=3, d=40, n_classes=5, neurons=(3, 17, 29, 35))
    X_dev, y_dev = planted_data(300, seed=4, d=40, n_classes=5, neurons=(3, 17, 29, 35))
    mixing = rng.normal(0, 0.5, size=(40, 40))  # correlated neurons, so conditioning matters
    X_train, X_dev = X_train @ mixing + X_train, X_dev @ mixing + X_dev
    params = {**FAST[method], "k": 12, "chunk_size": 7}  # a chunk size that does not divide d
    ranker = make_ranker(method, params)
    ranking = ranker.fit(X_train, y_train, X_dev, y_dev)
    fast = greedy_select(ranker.greedy_scorer(X_dev, y_dev, vectorized=True), 12)
    slow = greedy_select(ranker.greedy_scorer(X_dev, y_dev, vectorized=False), 12)
    assert np.array_equal(fast.chosen, slow.chosen)
    assert np.array_equal(fast.chosen, ranking.order[:12])
    np.testing.assert_allclose(fast.loglik, slow.loglik, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fast.first, slow.first, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("covariance", "extra"), [("map", 2 * 8 + 4), ("mean", 1)])
def test_gaussian_subset_density_is_the_marginal_of_the_full_fit(covariance, extra):
    X, y = planted_data(300, seed=5, d=8, n_classes=3, neurons=(1, 6))
    X = X.astype(np.float64)
    model = fit_gaussian_niw(X, y, 3, covariance, jitter=0.0)
    neurons = [6, 1, 3]
    joint = model.log_joint(X[:5], neurons)
    for c in range(3):
        n_c = np.sum(y == c)
        sample_cov = np.cov(X[y == c].T, bias=True)
        sigma = (np.diag(np.diag(sample_cov)) + n_c * sample_cov) / (n_c + extra)  # Λn / (νn + D + 2) or (νn − D − 1)
        expected = stats.multivariate_normal(X[y == c].mean(0)[neurons], sigma[np.ix_(neurons, neurons)]).logpdf(
            X[:5, neurons]
        )
        np.testing.assert_allclose(joint[:, c], np.log(n_c / 300) + expected, rtol=1e-10)


def test_map_covariance_at_large_d_makes_greedy_pick_noise_and_the_posterior_mean_does_not():
    X_train, y_train = planted_data(600, seed=1, d=400)  # 150 examples per class, d = 400
    X_dev, y_dev = planted_data(400, seed=2, d=400)
    by_map = make_ranker("gaussian", {"k": 5, "covariance": "map"}).fit(X_train, y_train, X_dev, y_dev)
    by_mean = make_ranker("gaussian", {"k": 5}).fit(X_train, y_train, X_dev, y_dev)  # the default: "mean"
    assert set(by_mean.order[:5].tolist()) == set(PLANTED)
    assert not set(by_map.order[:5].tolist()) & set(PLANTED)
    assert by_map.scores[0] < 0  # Σ shrunk by 150 / 954: even the best single neuron lowers the dev NMI


@pytest.mark.parametrize("method", sorted(RANKERS))
def test_same_seed_same_ranking(method, planted):
    first = make_ranker(method, FAST[method], seed=3).fit(*planted)
    second = make_ranker(method, FAST[method], seed=3).fit(*planted)
    assert np.array_equal(first.order, second.order)
    assert np.array_equal(first.scores, second.scores, equal_nan=True)
    assert first.params == second.params and first.params["seed"] == 3


TRIAL_KEY = {"model": "tiny", "checkpoint": "step-000100", "layer": 2, "language": "en", "attribute": "Number"}
VARIED = {
    "language": ["ar", "de", "en", "es", "fr", "hi", "ru", "tr", "vi", "zh"],
    "checkpoint": [f"step-{s:06d}" for s in range(0, 1000, 100)],
    "layer": list(range(10)),
    "attribute": ["Number", "Gender", "Case", "Tense", "Person", "Mood", "Aspect", "Voice", "Definite", "POS"],
}


@pytest.mark.parametrize("field", VARIED)
@pytest.mark.parametrize("k", [12, 50])
def test_random_control_of_ten_trials_overlaps_at_chance(field, k):
    """The probe stage's ranker seed (trial_seed) gives independent random rankings per trial: no pair of the
    10 is significant after Holm, and the mean pairwise overlap is k²/d within 4 standard errors."""
    d = 256
    X, y = np.zeros((6, d)), np.arange(6) % 2
    keys = [{**TRIAL_KEY, field: value} for value in VARIED[field]]
    orders = [make_ranker("random", seed=trial_seed(0, key)).fit(X, y).order for key in keys]
    summary = matrix_summary(pairwise_overlap(orders, k), k, d)
    assert not summary["significant"].any()
    # X ~ Hypergeometric(d, k, k) per pair; the 45 pairs are pairwise uncorrelated under independence
    variance = k * (k / d) * ((d - k) / d) * ((d - k) / (d - 1))
    assert abs(summary["overlap"].mean() - k * k / d) <= 4 * np.sqrt(variance / len(summary["overlap"]))


def test_trial_seed_depends_on_every_key_field_but_not_the_method():
    other = {field: next(v for v in values if v != TRIAL_KEY[field]) for field, values in VARIED.items()}
    seeds = {trial_seed(0, {**TRIAL_KEY, field: value}) for field, value in other.items()} | {trial_seed(0, TRIAL_KEY)}
    assert len(seeds) == len(VARIED) + 1
    assert trial_seed(0, {**TRIAL_KEY, "model": "other"}) != trial_seed(0, TRIAL_KEY) != trial_seed(1, TRIAL_KEY)
    assert trial_seed(0, {**TRIAL_KEY, "method": "random"}) == trial_seed(0, {**TRIAL_KEY, "method": "latent"})
    assert trial_seed(0, TRIAL_KEY) == trial_seed(0, dict(TRIAL_KEY))  # stable: a hash of values, not identities
    with pytest.raises(ValueError, match="missing layer"):
        trial_seed(0, {f: TRIAL_KEY[f] for f in TRIAL_SEED_FIELDS if f != "layer"})


def test_other_seed_other_random_ranking(planted):
    a = make_ranker("random", seed=0).fit(*planted)
    b = make_ranker("random", seed=1).fit(*planted)
    assert not np.array_equal(a.order, b.order)
    assert np.all(np.isnan(a.scores))


def test_reverse_reads_the_ranking_bottom_up(planted):
    ranking = make_ranker("probeless").fit(*planted)
    backwards = reverse(ranking)
    assert np.array_equal(backwards.order, ranking.order[::-1])
    assert np.array_equal(backwards.scores, ranking.scores[::-1])
    assert backwards.method == "probeless_btt" and backwards.n_greedy == 0
    assert np.array_equal(reverse(backwards).order, ranking.order)


@pytest.mark.parametrize("method", sorted(RANKERS))
def test_each_rankers_traits_say_what_its_ranking_is(method, planted):
    """reversible: the order follows finite scores, so read bottom-up it puts the planted neurons last (random's
    does not); greedy: the first k positions are greedy steps; needs_k: its hyperparameters have k."""
    cls = RANKERS[method]
    ranker = make_ranker(method, FAST[method])
    ranking = ranker.fit(*planted)
    assert cls.needs_k == ("k" in {f.name for f in fields(cls.params_type)})
    assert ranking.n_greedy == (ranker.params.k if cls.greedy else 0)
    scale_control = method == "variance"  # finite scores, but its reverse (the smallest neurons) controls nothing
    assert cls.reversible == (bool(np.all(np.isfinite(ranking.scores))) and not scale_control)
    assert cls.reversible == (set(reverse(ranking).order[-len(PLANTED) :].tolist()) == set(PLANTED))


def test_make_ranker_builds_params_from_a_dict():
    ranker = make_ranker("latent", {"k": 7, "entropy_scale": 0.1}, seed=4)
    assert ranker.params == LatentParams(k=7, entropy_scale=0.1, seed=4)
    assert make_ranker("gaussian").params == GaussianParams()
    assert isinstance(make_ranker("gaussian"), GaussianRanker)
    with pytest.raises(ValueError, match="unknown ranking method 'lasso'"):
        make_ranker("lasso")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['depth'\] for method 'linear'"):
        make_ranker("linear", {"depth": 3})
    with pytest.raises(ValueError, match="seed"):
        make_ranker("random", {"seed": 1}, seed=2)
    with pytest.raises(ValueError, match="criterion"):
        make_ranker("latent", {"criterion": "accuracy"})


@pytest.mark.parametrize("method", sorted(RANKERS))
def test_bad_inputs_are_rejected(method, planted):
    X_train, y_train, X_dev, y_dev = planted
    ranker = make_ranker(method, FAST[method])
    with pytest.raises(ValueError, match="at least 2"):
        ranker.fit(X_train, np.zeros_like(y_train), X_dev, y_dev)
    with_nan = X_train.copy()
    with_nan[3, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ranker.fit(with_nan, y_train, X_dev, y_dev)
    with pytest.raises(ValueError, match="2-D float"):
        ranker.fit(X_train.astype(np.int64), y_train, X_dev, y_dev)
    with pytest.raises(ValueError, match="integer"):
        ranker.fit(X_train, y_train.astype(float), X_dev, y_dev)
    with pytest.raises(ValueError, match="labels for"):
        ranker.fit(X_train, y_train[:-1], X_dev, y_dev)
    with pytest.raises(ValueError, match="X_dev has 59 neurons"):
        ranker.fit(X_train, y_train, X_dev[:, 1:], y_dev)
    with pytest.raises(ValueError, match=r"missing from train: \[1\]"):
        ranker.fit(X_train, np.where(y_train == 1, 0, y_train), X_dev, y_dev)


@pytest.mark.parametrize("method", ["latent", "gaussian"])
def test_greedy_methods_need_dev_data_and_k_at_most_d(method, planted):
    X_train, y_train, X_dev, y_dev = planted
    with pytest.raises(ValueError, match=r"k must be in 1\.\.60"):
        make_ranker(method, {**FAST[method], "k": 61}).fit(X_train, y_train, X_dev, y_dev)
    with pytest.raises(ValueError, match="dev data"):
        make_ranker(method, FAST[method]).fit(X_train, y_train)


@pytest.fixture(scope="module")
def real_probing_data(tmp_path_factory, ud_dir):
    """Layer-1 word vectors of a tiny BLOOM pre-trained 300 steps on English UD: train, dev, test for POS and Number."""
    from probing.datasets import DataParams, build_language, surface_texts
    from probing.extraction import WordActivationExtractor
    from probing.models import load_model
    from probing.pretrain import PretrainParams, pretrain, step_name
    from tests.conftest import ud_texts

    params = PretrainParams(
        n_layer=2,
        hidden_size=64,
        n_head=4,
        vocab_size=1000,
        seq_len=32,
        batch_size=16,
        steps=300,
        warmup_steps=10,
        checkpoints=2,
        lr=3e-3,
    )
    run_dir = pretrain(ud_texts(ud_dir, ["en"], 1500), params, tmp_path_factory.mktemp("bloom") / "run")
    data = build_language(
        ud_dir, "en", ["POS", "Number"], DataParams(max_sentences_per_language=600, min_examples_per_split=5)
    )
    sentences = surface_texts(data.sentences)
    vectors = WordActivationExtractor(load_model(str(run_dir), step_name(params.steps)), [1]).extract(sentences)
    offsets = np.cumsum([0] + [len(s.starts) for s in sentences])[:-1]
    start = dict(zip(data.sentences.column("sentence_index").to_pylist(), offsets, strict=True))
    out = {}
    for attribute, table in data.datasets.items():
        words = table.to_pydict()
        rows = [start[s] + p for s, p in zip(words["sentence_index"], words["position"], strict=True)]
        values = sorted(set(words["value"]))
        y = np.asarray([values.index(v) for v in words["value"]])
        split = np.asarray(words["split"])
        X = vectors.vectors[1][rows]
        out[attribute] = tuple(
            part for name in ("train", "dev", "test") for part in (X[split == name], y[split == name])
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("attribute", "margin"), [("POS", 0.08), ("Number", 0.03)])
def test_latent_probe_beats_random_neurons_and_the_majority_on_real_activations(attribute, margin, real_probing_data):
    X_train, y_train, X_dev, y_dev, X_test, y_test = real_probing_data[attribute]
    ranker = make_ranker("latent", {"k": 10})
    ranking = ranker.fit(X_train, y_train, X_dev, y_dev)
    rng = np.random.default_rng(0)
    random_10 = np.mean([ranker.score(X_dev, y_dev, rng.choice(X_dev.shape[1], 10, replace=False)) for _ in range(20)])
    top_10 = ranker.score(X_dev, y_dev, neurons=ranking.order[:10])  # greedy top 10, the rest zeroed
    assert top_10 > random_10 + margin
    assert top_10 > np.mean(y_dev == np.argmax(np.bincount(y_train))) + margin  # dev majority
    majority = np.mean(y_test == np.argmax(np.bincount(y_train)))
    assert ranker.score(X_test, y_test) > majority + margin  # all neurons, on the held-out split


@pytest.mark.parametrize("standardise", [False, True])
def test_a_masked_neuron_is_zero_on_raw_inputs_and_its_train_mean_on_standardised_ones(standardise, planted):
    X_train, _, X_dev, _ = planted
    ranker = make_ranker("latent", {**FAST["latent"], "standardise": standardise})
    ranker.fit(*planted)
    j = PLANTED[0]
    others = np.setdiff1d(np.arange(D), [j])
    replaced = X_dev.astype(np.float64)
    replaced[:, j] = X_train[:, j].astype(np.float64).mean() if standardise else 0.0
    masked = ranker.predict_log_proba(X_dev, neurons=others)
    np.testing.assert_allclose(masked, ranker.predict_log_proba(replaced), rtol=0, atol=1e-10)
    assert not np.allclose(masked, ranker.predict_log_proba(X_dev), atol=1e-3)  # the planted neuron mattered


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n_samples", "rows", "sharing"), [(5, 256, "per_example"), (3, 37, "per_minibatch")])
def test_masks_are_the_draws_torch_bernoulli_makes_from_the_same_generator(dtype, n_samples, rows, sharing):
    """Stored latent rankings stay reproducible: the faster U < p draws are bernoulli's, bit for bit, on the CPU."""
    logits = torch.linspace(-4, 4, 300, dtype=dtype)  # q from 0.018 to 0.982
    masks = sample_masks(logits, n_samples, rows, sharing, torch.Generator().manual_seed(7))
    expected_rows = rows if sharing == "per_example" else 1
    probs = torch.sigmoid(logits).expand(n_samples, expected_rows, 300)
    assert torch.equal(masks, torch.bernoulli(probs, generator=torch.Generator().manual_seed(7)))
    assert masks.dtype == dtype and abs(masks.mean().item() - probs.mean().item()) < 0.02


def test_per_minibatch_masks_are_shared_by_the_rows_and_per_example_masks_are_not():
    generator = torch.Generator().manual_seed(0)
    logits = torch.zeros(30)
    shared = sample_masks(logits, 4, 100, "per_minibatch", generator)
    own = sample_masks(logits, 4, 100, "per_example", generator)
    assert shared.shape == (4, 1, 30) and own.shape == (4, 100, 30)
    assert len({tuple(row.tolist()) for row in own[0]}) > 90  # 2^30 masks: rows almost surely differ
    x = torch.ones(100, 30)  # identical rows: with shared masks every row of a sample has the same NLL
    weight = torch.randn(3, 30, generator=generator)
    nll = masked_nll(x, torch.zeros(100, dtype=torch.int64), weight, torch.zeros(3), shared)
    # equal up to float32 rounding (batched kernels may sum identical rows in a different order)
    assert nll.shape == (4, 100) and torch.allclose(nll, nll[:, :1].expand(-1, 100), rtol=1e-5, atol=1e-7)
    assert len(torch.unique(nll[:, 0])) > 1  # different samples, different masks


@pytest.mark.parametrize("rows", [1, 40])
def test_the_mask_log_probability_is_the_bernoulli_log_likelihood_and_its_gradient(rows):
    logits = torch.linspace(-6, 6, 50, dtype=torch.float64).requires_grad_(True)
    masks = sample_masks(logits, 3, rows, "per_example", torch.Generator().manual_seed(2))
    ours = mask_log_probability(masks, logits)
    bernoulli = torch.distributions.Bernoulli(logits=logits).log_prob(masks).sum(dim=2)
    assert ours.shape == (3, rows)
    torch.testing.assert_close(ours, bernoulli, rtol=0, atol=1e-12)
    (ours_gradient,) = torch.autograd.grad(ours.sum(), logits)
    (bernoulli_gradient,) = torch.autograd.grad(bernoulli.sum(), logits)
    torch.testing.assert_close(ours_gradient, bernoulli_gradient, rtol=0, atol=1e-12)  # Σ (m − σ(φ))


def exact_mask_gradient(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """∇_φ E_q[NLL(x ⊙ m)] summed over all 2^d masks (d small), for one row."""
    d = len(phi)
    phi = phi.clone().requires_grad_(True)
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))
    probs = torch.sigmoid(phi)
    q = torch.prod(masks * probs + (1 - masks) * (1 - probs), dim=1)
    nll = F.cross_entropy((x * masks) @ weight.T, y.expand(len(masks)), reduction="none")
    (q * nll).sum().backward()
    return phi.grad


@pytest.mark.parametrize(("baseline", "factor"), [("leave_one_out", 1.0), ("none", 1.0), ("mean", 0.5)])
def test_score_function_gradient_is_unbiased_with_leave_one_out_and_shrunk_by_the_mean_baseline(baseline, factor):
    """Mean of many REINFORCE estimates vs the exact gradient of E_q[NLL] on a 3-neuron case (S = 2 samples).

    The "mean" baseline includes the sample itself, so its expectation is (S − 1)/S = 1/2 of the gradient.
    """
    torch.manual_seed(0)
    x, y = torch.tensor([1.5, -2.0, 0.7]), torch.tensor([1])
    weight, phi = torch.randn(3, 3), torch.tensor([0.3, -0.5, 1.0])
    exact = exact_mask_gradient(x, y, weight, phi)
    params = LatentParams(n_samples=2, baseline=baseline, entropy_weight=0.0, l1=0.0, l2=0.0)
    logits = phi.clone().requires_grad_(True)
    n = 400_000  # the same row n times: per-example masks make the row mean a mean over n draws
    loss = surrogate_loss(
        x.expand(n, -1), y.expand(n), weight, torch.zeros(3), logits, params, torch.Generator().manual_seed(1)
    )
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), factor * exact.numpy(), atol=0.01)
    assert exact.abs().max() > 0.2  # so that the factor 1/2 of "mean" is far outside the tolerance


def test_the_entropy_weight_pulls_q_towards_one_half_in_the_gradient():
    params = LatentParams(entropy_weight=1.0, l1=0.0, l2=0.0)
    logits = torch.tensor([2.0, -3.0, 0.0], requires_grad=True)
    x = torch.zeros(8, 3)  # no information: only the entropy term moves φ
    surrogate_loss(
        x,
        torch.zeros(8, dtype=torch.int64),
        torch.zeros(2, 3),
        torch.zeros(2),
        logits,
        params,
        torch.Generator().manual_seed(0),
    ).backward()
    p = torch.sigmoid(logits.detach())
    np.testing.assert_allclose(logits.grad.numpy(), (logits.detach() * p * (1 - p)).numpy(), atol=1e-6)  # −∂H/∂φ


def test_early_stopping_holds_out_a_seeded_tenth_of_train():
    Z, y = np.arange(200, dtype=np.float64).reshape(100, 2), np.arange(100) % 2
    fit_x, fit_y, stop_x, stop_y = stopping_split(Z, y, Z[:5], y[:5], LatentParams(early_stopping="train_holdout"))
    assert len(stop_y) == 10 and len(fit_y) == 90
    assert not set(fit_x[:, 0]) & set(stop_x[:, 0]) and set(fit_x[:, 0]) | set(stop_x[:, 0]) == set(Z[:, 0])
    again = stopping_split(Z, y, Z[:5], y[:5], LatentParams(early_stopping="train_holdout"))[2]
    assert np.array_equal(stop_x, again)
    assert stopping_split(Z, y, Z[:5], y[:5], LatentParams(early_stopping="dev"))[2] is not None
    assert len(stopping_split(Z, y, Z[:5], y[:5], LatentParams(early_stopping="dev"))[3]) == 5


@pytest.mark.parametrize("l2_penalty", ["squared", "norm"])
def test_the_l2_penalty_is_the_squared_or_the_plain_norm(l2_penalty):
    W = np.random.default_rng(0).normal(size=(3, 7))
    expected = 1e-3 * np.abs(W).sum() + 0.5 * (np.sum(W**2) if l2_penalty == "squared" else np.sqrt(np.sum(W**2)))
    np.testing.assert_allclose(float(weight_penalty(torch.from_numpy(W), 1e-3, 0.5, l2_penalty)), expected, rtol=1e-12)
    zero = torch.zeros(3, 7, requires_grad=True)  # the probes start here: the gradient must be finite
    weight_penalty(zero, 1e-3, 0.5, l2_penalty).backward()
    assert torch.all(torch.isfinite(zero.grad))


def test_the_norm_penalised_linear_ranker_still_finds_the_planted_neurons(planted):
    X_train, y_train, _, _ = planted
    ranker = make_ranker("linear", {**FAST["linear"], "standardise": False, "l2_penalty": "norm"})
    ranking = ranker.fit(X_train, y_train)
    assert np.all(np.isfinite(ranker.weight_))
    assert set(ranking.order[:5].tolist()) == set(PLANTED)


def test_the_linear_ranker_trains_on_raw_or_standardised_inputs(planted):
    X_train, y_train, _, _ = planted
    scaled = X_train.copy()
    scaled[:, PLANTED[0]] *= 1000.0  # one planted neuron on a much larger scale
    weights = {}
    for standardise, X in itertools.product([True, False], [X_train, scaled]):
        ranker = make_ranker("linear", {**FAST["linear"], "standardise": standardise, "l2_penalty": "norm"})
        ranker.fit(X, y_train)
        weights[standardise, X is scaled] = ranker.weight_
    np.testing.assert_allclose(weights[True, True], weights[True, False], atol=1e-4)  # scale-free when standardised
    assert not np.allclose(weights[False, True], weights[False, False], atol=1e-2)  # raw: the scale matters
    params = LinearParams(**FAST["linear"], standardise=False, l2_penalty="norm")
    direct = train_elastic_net(X_train.astype(np.float64), y_train, 4, params)
    np.testing.assert_array_equal(weights[False, False], direct)  # the probe saw the raw activations


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("latent", {"mask_sharing": "per_batch"}, r"mask_sharing must be one of \('per_example', 'per_minibatch'\)"),
        ("latent", {"baseline": "median"}, r"baseline must be one of \('none', 'mean', 'leave_one_out'\)"),
        ("latent", {"early_stopping": "test"}, r"early_stopping must be one of \('train_holdout', 'dev'\)"),
        ("latent", {"standardise": "false"}, "standardise must be true or false"),
        ("latent", {"entropy_weight": -1.0}, "entropy_weight must be >= 0"),
        ("latent", {"baseline": "leave_one_out", "n_samples": 1}, "leave_one_out' needs n_samples >= 2"),
        ("linear", {"l2_penalty": "cubed"}, r"l2_penalty must be one of \('squared', 'norm'\)"),
        ("linear", {"standardise": 1}, "standardise must be true or false"),
        ("gaussian", {"covariance": "mle"}, r"covariance must be one of \('map', 'mean'\)"),
    ],
)
def test_bad_hyperparameters_name_the_field_and_the_allowed_values(method, params, message):
    with pytest.raises(ValueError, match=message):
        make_ranker(method, params)


def correlated_noise_data(n: int, seed: int, d: int = 400, n_classes: int = 6, n_pairs: int = 8):
    """Neurons 0..7 = class signal + loud noise shared with partners 8..15 (= that noise); the rest is noise.

    Alone a signal neuron is weak (mean sd 0.8 under noise sd 3) and a partner is useless; together a
    pair is the cleanest evidence in the data (x_i − x_p has noise sd 0.4).
    """
    paired = np.random.default_rng(0).normal(0, 0.8, size=(n_classes, n_pairs))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d))
    shared = 3.0 * rng.normal(size=(n, n_pairs))
    X[:, :n_pairs] = paired[y] + shared + 0.3 * rng.normal(size=(n, n_pairs))
    X[:, n_pairs : 2 * n_pairs] = shared + 0.3 * rng.normal(size=(n, n_pairs))
    return X.astype(np.float32), y


#: The latent probe's defaults before issue 8 (gradient entropy weight 1e-2, standardised inputs,
#: one mask per minibatch, the biased mean baseline).
OLD_LATENT = {"entropy_weight": 1e-2, "standardise": True, "mask_sharing": "per_minibatch", "baseline": "mean"}


def test_the_default_latent_probe_recovers_the_correlated_noise_pairs_that_the_old_default_misses():
    from probing.evaluation import accuracy, linear_log_proba

    X_train, y_train = correlated_noise_data(2000, seed=1)
    X_dev, y_dev = correlated_noise_data(700, seed=2)
    X_test, y_test = correlated_noise_data(1000, seed=3)
    top, scores = {}, {}
    for name, params in (("default", {}), ("old", OLD_LATENT)):
        top[name] = make_ranker("latent", {"k": 16, **params}).fit(X_train, y_train, X_dev, y_dev).order[:16]
        scores[name] = accuracy(linear_log_proba(X_train[:, top[name]], y_train, X_test[:, top[name]], 6), y_test)
    assert set(range(8)) <= set(top["default"].tolist())  # every signal neuron ...
    assert np.sum(top["default"] < 16) > np.sum(top["old"] < 16)  # ... and more of their partners
    assert scores["default"] > scores["old"] + 0.1  # measured: 0.56 against 0.31


def correlated_planted(n: int, seed: int, d: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Planted data mixed through a fixed random matrix: correlated neurons with many near-equal greedy gains."""
    X, y = planted_data(n, seed, d=d, n_classes=5, neurons=(3, 17, 29, 41, 55, 80))
    mixing = np.random.default_rng(11).normal(0, 0.3, size=(d, d))
    return (X + X @ mixing).astype(np.float32), y


def precision_pair(method: str, data: tuple, k: int) -> tuple:
    """The rankings of one method with float32 screening (the default) and all in float64."""
    params = {**FAST[method], "k": k}
    single = make_ranker(method, params).fit(*data[:4])
    double = make_ranker(method, {**params, "greedy_precision": "float64"}).fit(*data[:4])
    return single, double


@pytest.mark.parametrize("method", ["latent", "gaussian"])
def test_float32_screening_chooses_the_neurons_float64_chooses_on_planted_data(method):
    data = correlated_planted(900, seed=1) + correlated_planted(600, seed=2)
    single, double = precision_pair(method, data, k=40)
    assert np.array_equal(single.order, double.order)  # the greedy 40 and the tail (first step is float64)
    np.testing.assert_allclose(single.scores, double.scores, rtol=0, atol=1e-10)  # chosen ones re-scored in float64


@pytest.mark.slow
@pytest.mark.parametrize("method", ["latent", "gaussian"])
@pytest.mark.parametrize("attribute", ["POS", "Number"])
def test_float32_screening_chooses_the_neurons_float64_chooses_on_real_activations(
    method, attribute, real_probing_data
):
    single, double = precision_pair(method, real_probing_data[attribute], k=30)
    assert np.array_equal(single.order, double.order)
    np.testing.assert_allclose(single.scores, double.scores, rtol=0, atol=1e-10)


def test_refinement_rescores_only_the_near_best_and_widens_its_margin_to_the_observed_error():
    from probing.rankers.base import SCREEN_MARGIN, pick_best, refine_near_best

    rng = np.random.default_rng(3)
    exact = torch.from_numpy(-1 - rng.exponential(1e-3, size=500))
    exact[[40, 41, 300]] = exact.max() + torch.tensor([0.0, 5e-10, -2e-7], dtype=torch.float64)  # tie, close third
    candidates = torch.ones(500, dtype=torch.bool)
    candidates[7] = False
    for noise in (1e-7, 3e-5):  # float32-like rounding, and one above the initial margin
        screened = (exact + torch.from_numpy(rng.uniform(-noise, noise, 500))).float()
        screened[200], screened[250] = -math.inf, math.nan  # float32 overflows: re-scored, not dropped
        calls: list[torch.Tensor] = []
        refined = refine_near_best(screened, candidates, lambda index, calls=calls: calls.append(index) or exact[index])
        expected = torch.where(candidates, exact, torch.tensor(-math.inf, dtype=torch.float64)).numpy()
        assert pick_best(refined.numpy()) == pick_best(expected) == 40  # float64's choice: the tie's lower index
        rescored = torch.cat(calls)
        assert 200 in rescored and 250 in rescored and 7 not in rescored
        assert len(torch.unique(rescored)) == len(rescored)  # nobody twice
        assert len(rescored) < 100  # only the near-best
        if noise > SCREEN_MARGIN:
            assert len(calls) > 1  # the observed error widened the margin


def test_a_float32_overflow_is_rescored_in_float64_and_the_choice_is_unchanged():
    from probing.rankers.latent import LatentGreedy, LatentGreedyLoop, LatentProbe

    rng = np.random.default_rng(5)
    Z, y = rng.normal(0, 3, size=(300, 30)), rng.integers(0, 4, 300)
    weight = rng.normal(0, 1, size=(4, 30))
    weight[:, :6] *= 60  # logit differences far beyond float32's exp range (> 88) on these neurons
    probe = LatentProbe(weight, rng.normal(size=4), np.zeros(30), 1)
    fast = greedy_select(LatentGreedy(probe, Z, y, 7, torch.device("cpu"), "float32"), 8)
    slow = greedy_select(LatentGreedyLoop(probe, Z, y), 8)
    assert np.array_equal(fast.chosen, slow.chosen)
    np.testing.assert_allclose(fast.loglik, slow.loglik, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", sorted(RANKERS))
def test_an_explicit_cpu_device_is_the_default_path(method, planted):
    default = make_ranker(method, FAST[method], seed=3)
    on_cpu = make_ranker(method, FAST[method], seed=3, device="cpu")
    assert on_cpu.device == default.device == torch.device("cpu")
    first, second = default.fit(*planted), on_cpu.fit(*planted)
    assert np.array_equal(first.order, second.order)
    assert np.array_equal(first.scores, second.scores, equal_nan=True)
    assert first.params == second.params and "device" not in first.params  # not a hyperparameter


@pytest.mark.parametrize("method", ["latent", "gaussian"])
def test_the_greedy_scorer_computes_on_the_rankers_device(method, planted):
    ranker = make_ranker(method, FAST[method], device=torch.device("cpu"))
    ranker.fit(*planted)
    scorer = ranker.greedy_scorer(planted[2], planted[3])
    assert {tensor.device for tensor in scorer.x.values()} == {ranker.device}


def label_sorted_block(n_classes: int, m: int, n: int, seed: int) -> tuple:
    """Screening inputs of one (C, m, N) block with rows sorted by label, logits spanning the clamp and an overflow."""
    from probing.rankers.base import label_blocks

    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, n_classes, n))
    residual = torch.from_numpy(rng.normal(0, 3, size=(n_classes, m, n)).astype(np.float32))
    residual[:, 0, :5] = 40.0  # a candidate whose (r s)² drives some classes below EXP_FLOOR
    variance = torch.from_numpy(rng.uniform(0.05, 2.0, size=(n_classes, m, 1)).astype(np.float32))
    log_joint = torch.from_numpy(rng.normal(-30, 15, size=(n_classes, 1, n)).astype(np.float32))
    log_joint[:, :, 7] = torch.tensor([400.0] + [0.0] * (n_classes - 1))[:, None]  # e^(l_c − l_y) > float32's range
    return residual, torch.rsqrt(2 * variance), log_joint, torch.rsqrt(2 * math.pi * variance), y, label_blocks(y)[1]


needs_a_compiler = pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile's CPU backend needs g++")


@needs_a_compiler
def test_the_compiled_screening_kernel_sums_what_the_eager_passes_sum():
    from probing.rankers.gaussian import compiled_kernel, row_loglik_sums, row_loglik_sums_eager

    residual, scale, log_joint, weights, y, blocks = label_sorted_block(5, 16, 700, seed=4)
    labels = torch.from_numpy(y)[None, None, :]
    compiled = compiled_kernel()(residual, scale, log_joint, weights, labels)
    assert (5, 16) in compiled_kernel().ready and not compiled_kernel().failed
    scaled = residual * scale
    eager = row_loglik_sums_eager(torch.addcmul(log_joint, scaled, scaled, value=-1), weights, blocks)
    assert compiled.dtype == eager.dtype == torch.float64
    overflowed = ~torch.isfinite(eager)
    assert overflowed.any() and torch.equal(overflowed, ~torch.isfinite(compiled))  # re-scored in float64 later
    np.testing.assert_allclose(compiled[~overflowed], eager[~overflowed], rtol=1e-5)
    expected = row_loglik_sums(residual.double(), scale.double(), log_joint.double(), weights.double(), labels)
    np.testing.assert_allclose(compiled[~overflowed], expected[~overflowed], rtol=1e-5)  # the function it compiles
    other = label_sorted_block(5, 16, 333, seed=5)  # another N: the same compiled graph (N is dynamic)
    assert torch.isfinite(compiled_kernel()(*other[:4], torch.from_numpy(other[4])[None, None, :])).any()


@needs_a_compiler
def test_compiled_screening_chooses_the_neurons_and_scores_of_eager_screening():
    from probing.rankers.gaussian import compiled_kernel

    data = correlated_planted(900, seed=1) + correlated_planted(600, seed=2)
    ranker = GaussianRanker(GaussianParams(k=30, chunk_size=16))  # 120 = 7 full chunks (compiled) + 8 (eager)
    ranker.fit(*data[:4])
    compiled = greedy_select(ranker.greedy_scorer(*data[2:4], compiled=True), 30)
    eager = greedy_select(ranker.greedy_scorer(*data[2:4], compiled=False), 30)
    assert np.array_equal(compiled.chosen, eager.chosen)
    np.testing.assert_allclose(compiled.loglik, eager.loglik, rtol=0, atol=1e-10)  # the choices re-scored in float64
    assert np.array_equal(compiled.first, eager.first)  # the first step is float64, never compiled
    assert (5, 16) in compiled_kernel().ready and not compiled_kernel().failed


def test_a_failed_compile_warns_and_screens_eagerly_with_the_same_sums():
    import torch._inductor.config as inductor_config

    from probing.rankers.gaussian import CompiledKernel, row_loglik_sums

    residual, scale, log_joint, weights, y, _ = label_sorted_block(3, 5, 200, seed=6)
    args = (residual, scale, log_joint, weights, torch.from_numpy(y)[None, None, :])
    kernel = CompiledKernel()
    no_compiler = {"cpp.cxx": (None, "/nonexistent/g++"), "force_disable_caches": True}
    with inductor_config.patch(no_compiler), pytest.warns(UserWarning, match="computing eagerly.*C\\+\\+ compiler"):
        sums = kernel(*args)
    assert kernel.failed and not kernel.ready
    assert torch.equal(sums, row_loglik_sums(*args)) and torch.equal(kernel(*args), sums)  # eager from then on


def test_the_kernel_is_compiled_for_large_cpu_searches_or_blocks_already_compiled():
    from probing.rankers.gaussian import COMPILE_MIN_WORK, compiled_kernel, compiles_pay

    cpu, block = torch.device("cpu"), (7, 13)
    assert compiles_pay(COMPILE_MIN_WORK, block, cpu)
    assert not compiles_pay(COMPILE_MIN_WORK, block, torch.device("cuda"))  # untested there: eager
    assert not compiles_pay(COMPILE_MIN_WORK - 1, block, cpu)  # small: a compile would cost more than it saves
    compiled_kernel().ready.add(block)  # as a compiled call records it
    try:
        assert compiles_pay(COMPILE_MIN_WORK - 1, block, cpu)  # already paid for in this process
        assert not compiles_pay(COMPILE_MIN_WORK - 1, (7, 14), cpu)  # another block shape compiles anew
    finally:
        compiled_kernel().ready.discard(block)
