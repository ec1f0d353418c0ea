"""Benchmark: how good each ranker's top-k neurons are, under each paper's preset and under the default.

For every ranker (latent, gaussian, linear, probeless, random) and every preset of
``probing.protocols.PROTOCOLS`` (default, wang2024, antverg2022; the ranker's overrides only), the
test accuracy of ONE fixed classifier, the L2 multinomial logistic regression of
``probing.evaluation.linear_log_proba``, trained on the ranking's top-k neurons, k = 5, 10, 20, 50, on

(a) planted synthetic data at d = 1024: strong, weak and correlated-noise informative neurons. A
    correlated-noise neuron is x_i = signal_i + σ n_i and its partner x_p = σ n_i + ε: alone each is
    nearly useless, together (x_i − x_p) they are the cleanest signal in the data — the case where a
    probe trained on full inputs learns a cancellation that greedy selection with masked inputs
    cannot use, and where raw-input/masked training matters;
(b) real activations of a tiny BLOOM pre-trained on the UD text of en and fr (cached after the first
    run), at its last layer, for Number and POS in en and fr (``probing.datasets``).

Prints one row per (data, ranker, preset) with the accuracy at each k, the per-ranker ratio of the
default's mean accuracy to the best preset's, and last ``ratio: X`` = the smallest of those ratios
over the rankers that some preset changes (means over k and all data sets; target >= 1.0: the default
is never worse than the papers' own choices).

    python bench/ranking_quality.py [--quick] [--cache DIR]

The full run takes ~15 min on one core; ``--quick`` (d = 256 synthetic, smaller real model and data,
k up to 20) is a smoke run of under 2 minutes once the model is cached.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import UD_DIR  # noqa: E402  (needs REPO on the path)
from probing.evaluation import ProbeData  # noqa: E402
from probing.rankers import RANKERS  # noqa: E402

PRESETS = ("default", "wang2024", "antverg2022")
LANGUAGES = ("en", "fr")
ATTRIBUTES = ("Number", "POS")
#: Standard deviations of the planted class means (strong, weak, correlated-noise) and of the shared noise.
STRONG, WEAK, PAIRED, SHARED = 0.35, 0.15, 0.8, 3.0
#: Seed of the planted neurons' places: not 0, or the random control (seed 0) would draw exactly them.
PLACES_SEED = 20240


@dataclass(frozen=True)
class Task(ProbeData):
    """One data set (train, dev and test activations with class ids) and its name; word types are not used."""

    name: str = ""


def make_task(name: str, *arrays: np.ndarray) -> Task:
    """A Task from (X_train, y_train, X_dev, y_dev, X_test, y_test), without word types."""
    no_types = np.empty(0, dtype=object)
    return Task(*arrays, types_train=no_types, types_dev=no_types, types_test=no_types, name=name)


@dataclass(frozen=True)
class Planted:
    """Which neurons carry the class in the synthetic data, and how."""

    strong: np.ndarray
    weak: np.ndarray
    paired: np.ndarray
    partners: np.ndarray


def planted_structure(d: int) -> Planted:
    """10 strong, 20 weak and 15 correlated-noise neurons (each with a partner), at fixed random places."""
    neurons = np.random.default_rng(PLACES_SEED).permutation(d)
    return Planted(strong=neurons[:10], weak=neurons[10:30], paired=neurons[30:45], partners=neurons[45:60])


def planted_data(n: int, d: int, seed: int, n_classes: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a low-rank correlation and heterogeneous scales, plus the planted signals (module docstring).

    Class means are fixed by a structure seed (the same in every split); the examples by ``seed``.
    """
    p = planted_structure(d)
    structure = np.random.default_rng(1)
    strong = structure.normal(0, STRONG, size=(n_classes, len(p.strong)))
    weak = structure.normal(0, WEAK, size=(n_classes, len(p.weak)))
    paired = structure.normal(0, PAIRED, size=(n_classes, len(p.paired)))
    mixing = structure.normal(0, 0.4, size=(8, d))
    scales = np.exp(structure.normal(0, 0.7, size=d))  # real activations: neurons on very different scales
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d)) + rng.normal(size=(n, 8)) @ mixing
    X[:, p.strong] += strong[y]
    X[:, p.weak] += weak[y]
    shared = SHARED * rng.normal(size=(n, len(p.paired)))
    X[:, p.paired] = paired[y] + shared + 0.3 * rng.normal(size=(n, len(p.paired)))
    X[:, p.partners] = shared + 0.3 * rng.normal(size=(n, len(p.paired)))
    return (X * scales).astype(np.float32), y


def synthetic_task(d: int, n_train: int) -> Task:
    """Train, dev and test splits of the planted data."""
    parts = [planted_data(n, d, seed) for n, seed in ((n_train, 11), (n_train // 3, 12), (n_train // 2, 13))]
    return make_task(f"planted d={d}", *(a for part in parts for a in part))


def tiny_model(cache: Path, quick: bool) -> tuple[Path, str, int]:
    """A tiny BLOOM pre-trained on en and fr UD text (cached in ``cache``): run directory, revision, last layer."""
    from itertools import islice

    from probing.datasets import read_language
    from probing.pretrain import PretrainParams, pretrain, step_name

    params = PretrainParams(
        n_layer=2,
        hidden_size=128 if quick else 256,
        n_head=4,
        vocab_size=2000,
        seq_len=48,
        batch_size=16,
        steps=150 if quick else 400,
        warmup_steps=20,
        checkpoints=2,
        lr=3e-3,
    )
    texts = [s.text for lang in LANGUAGES for s in islice(read_language(UD_DIR, lang), 3000)]
    run_dir = pretrain(texts, params, cache / f"bloom-{params.hidden_size}-{params.steps}")
    return run_dir, step_name(params.steps), params.n_layer


def real_tasks(cache: Path, quick: bool) -> list[Task]:
    """Last-layer word vectors of the tiny model for Number and POS in en and fr (train/dev/test by lemma)."""
    from probing.datasets import DataParams, build_language
    from probing.extraction import WordActivationExtractor
    from probing.models import load_model

    run_dir, revision, layer = tiny_model(cache, quick)
    extractor = WordActivationExtractor(load_model(str(run_dir), revision), [layer])
    tasks = []
    for language in LANGUAGES:
        data = build_language(
            UD_DIR, language, ATTRIBUTES, DataParams(max_sentences_per_language=800 if quick else 2500)
        )
        sentences = data.sentences.column("words").to_pylist()
        vectors = extractor.extract(sentences).vectors[layer]
        offsets = np.cumsum([0] + [len(s) for s in sentences])[:-1]
        start = dict(zip(data.sentences.column("sentence_index").to_pylist(), offsets, strict=True))
        for attribute, table in data.datasets.items():
            words = table.to_pydict()
            rows = [start[s] + p for s, p in zip(words["sentence_index"], words["position"], strict=True)]
            values = sorted(set(words["value"]))
            y = np.asarray([values.index(v) for v in words["value"]], dtype=np.int64)
            split = np.asarray(words["split"])
            X = np.asarray(vectors[rows], dtype=np.float32)
            parts = [a for name in ("train", "dev", "test") for a in (X[split == name], y[split == name])]
            tasks.append(make_task(f"{language} {attribute}", *parts))
    return tasks


def preset_params(method: str, preset: str, k: int) -> dict:
    """The ranker's overrides under a preset (``probing.protocols``), plus k for the rankers that take it."""
    from probing.protocols import PROTOCOLS

    params = dict(PROTOCOLS[preset].get(method, {}))
    if RANKERS[method].needs_k:
        params["k"] = k
    return params


def top_k_accuracy(task: Task, order: np.ndarray, k_grid: list[int]) -> list[float]:
    """Test accuracy of the fixed logistic regression on the top-k neurons, for each k."""
    from probing.evaluation import accuracy, linear_log_proba

    n_classes = int(max(task.y_train.max(), task.y_test.max())) + 1
    out = []
    for k in k_grid:
        top = order[:k]
        log_p = linear_log_proba(task.X_train[:, top], task.y_train, task.X_test[:, top], n_classes)
        out.append(accuracy(log_p, task.y_test))
    return out


def measure(tasks: list[Task], k_grid: list[int]) -> dict[tuple[str, str, str], list[float]]:
    """Accuracy at each k per (task, ranker, preset); presets that do not change a ranker are not rerun."""
    from probing.rankers import make_ranker

    results = {}
    for task in tasks:
        for method in RANKERS:
            for preset in PRESETS:
                params = preset_params(method, preset, max(k_grid))
                if preset != "default" and params == preset_params(method, "default", max(k_grid)):
                    continue
                start = time.process_time()
                ranking = make_ranker(method, params).fit(task.X_train, task.y_train, task.X_dev, task.y_dev)
                accuracies = top_k_accuracy(task, ranking.order, k_grid)
                results[task.name, method, preset] = accuracies
                cells = " ".join(f"{a:6.3f}" for a in accuracies)
                print(f"{task.name:16s} {method:10s} {preset:12s} {cells}   ({time.process_time() - start:5.1f} s)")
                sys.stdout.flush()
    return results


def ratios(results: dict[tuple[str, str, str], list[float]]) -> dict[str, float]:
    """Per ranker that some preset changes: default's mean accuracy / the best preset's (over k and tasks)."""
    out = {}
    for method in RANKERS:
        presets = sorted({p for (_, m, p) in results if m == method})
        if len(presets) < 2:
            continue
        mean = {
            p: np.mean([a for (_, m, q), accs in results.items() if m == method and q == p for a in accs])
            for p in presets
        }
        out[method] = mean["default"] / max(mean.values())
        print(f"{method}: " + ", ".join(f"{p} {mean[p]:.3f}" for p in presets) + f"  -> {out[method]:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: d = 256, a smaller model and data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/xling-bench-ranking-quality"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-real", action="store_true", help="synthetic data only")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    k_grid = [5, 10, 20] if args.quick else [5, 10, 20, 50]
    tasks = [synthetic_task(256 if args.quick else 1024, 1500 if args.quick else 3000)]
    if not args.no_real:
        tasks += real_tasks(args.cache, args.quick)
    for task in tasks:
        print(
            f"# {task.name}: train {len(task.y_train)}, dev {len(task.y_dev)}, test {len(task.y_test)}, "
            f"d {task.X_train.shape[1]}, classes {int(task.y_train.max()) + 1}"
        )
    print(f"{'data':16s} {'ranker':10s} {'preset':12s} " + " ".join(f"k={k:<4d}" for k in k_grid))
    per_ranker = ratios(measure(tasks, k_grid))
    print(f"ratio: {min(per_ranker.values()):.3f}")


if __name__ == "__main__":
    main()
