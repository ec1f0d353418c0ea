"""Benchmark: vectorised greedy neuron selection against the per-candidate loop and against its floor.

In one process, on the same synthetic data (d neurons, a planted informative subset among noise,
C classes, N dev examples): the latent-variable probe is trained once and the Gaussian probe fitted
once; then each runs k greedy steps on the same fitted model three ways: vectorised with float32
screening (the default), vectorised all in float64, and the per-candidate reference loop (float64,
one forward pass or one Cholesky log-density per candidate). All three must choose the same neurons
in the same order (asserted). The floor is k timed passes of N·d·C float32 exponentials on this
machine (every step must at least exponentiate every (row, candidate, class) logit); printed per
ranker: vectorised / floor (target <= 3). Last line ``ratio: X`` = the smaller of loop / vectorised
over the two rankers (target >= 100).
Speed-ups are ratios of this process's CPU time, which other work on a shared machine does not
inflate (with one torch thread, CPU time is the work done); wall times are printed too.

    python bench/greedy.py [--quick] [--threads 1]

The defaults (d = 1024, k = 50, N = 10,000 dev, C = 6) take about half an hour on one core: the
loops are slow by design (~11 min latent, ~15 min Gaussian). ``--quick`` (d = 256, k = 10,
N = 2,000) is a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic(n: int, d: int, n_classes: int, informative: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated Gaussian noise plus class-dependent shifts on a planted subset of neurons."""
    rng = np.random.default_rng(seed)
    structure = np.random.default_rng(0)
    shifts = structure.normal(0, 0.6, size=(n_classes, informative))
    mixing = structure.normal(0, 0.3, size=(8, d))
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d)) + rng.normal(size=(n, 8)) @ mixing
    X[:, :informative] += shifts[y]
    return X.astype(np.float32), y


def time_greedy(
    ranker, X_dev: np.ndarray, y_dev: np.ndarray, k: int, vectorized: bool
) -> tuple[float, float, np.ndarray]:
    """CPU seconds, wall seconds and chosen neurons of k greedy steps of a fitted ranker."""
    from probing.rankers import greedy_select

    cpu, wall = time.process_time(), time.perf_counter()
    chosen = greedy_select(ranker.greedy_scorer(X_dev, y_dev, vectorized=vectorized), k).chosen
    return time.process_time() - cpu, time.perf_counter() - wall, chosen


def floor_seconds(n: int, d: int, n_classes: int, k: int, chunk: int = 64) -> float:
    """CPU seconds of k passes of N·d·C float32 exponentials, chunk by chunk of (N, chunk) as the rankers
    work; the best of three timed passes, times k."""
    import torch

    buffer, out = torch.randn(n, chunk), torch.empty(n, chunk)
    repeats = -(-d * n_classes // chunk)
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        for _ in range(repeats):
            torch.exp(buffer, out=out)
        best = min(best, time.process_time() - began)
    return best * k * (d * n_classes) / (repeats * chunk)


def compare(name: str, ranker, X_dev: np.ndarray, y_dev: np.ndarray, k: int, floor: float) -> float:
    """Time the three variants on one fitted ranker, check they agree, print and return loop / vectorised."""
    from dataclasses import replace

    fast_cpu, fast_wall, fast = time_greedy(ranker, X_dev, y_dev, k, vectorized=True)
    default_params = ranker.params
    ranker.params = replace(default_params, greedy_precision="float64")
    f64_cpu, _, f64 = time_greedy(ranker, X_dev, y_dev, k, vectorized=True)
    ranker.params = default_params
    slow_cpu, slow_wall, slow = time_greedy(ranker, X_dev, y_dev, k, vectorized=False)
    assert np.array_equal(fast, slow), f"{name}: vectorised chose {fast.tolist()}, loop chose {slow.tolist()}"
    assert np.array_equal(fast, f64), f"{name}: float32 screening chose {fast.tolist()}, float64 {f64.tolist()}"
    print(
        f"{name}: vectorised {fast_cpu:.2f} s CPU ({fast_wall:.2f} s wall; all-float64 {f64_cpu:.2f} s), "
        f"per-candidate loop {slow_cpu:.2f} s CPU ({slow_wall:.2f} s wall), speed-up {slow_cpu / fast_cpu:.1f}x"
    )
    print(f"{name}: vectorised / floor {fast_cpu / floor:.2f} (floor {floor:.2f} s: {k} x N·d·C float32 exps)")
    print(f"{name}: same {k} neurons chosen by all three, first ten {fast[:10].tolist()}")
    return slow_cpu / fast_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared CPU)")
    args = parser.parse_args()
    import torch

    from probing.rankers import GaussianParams, GaussianRanker, LatentParams, LatentRanker

    torch.set_num_threads(args.threads)
    d, k, n_dev, n_classes = (256, 10, 2000, 6) if args.quick else (1024, 50, 10_000, 6)
    X_train, y_train = synthetic(3000, d, n_classes, informative=40, seed=1)
    X_dev, y_dev = synthetic(n_dev, d, n_classes, informative=40, seed=2)
    print(f"data: d={d}, k={k}, {n_classes} classes, {len(y_train)} train, {n_dev} dev; torch threads {args.threads}")

    latent = LatentRanker(LatentParams(k=k))
    began = time.perf_counter()
    latent.fit(X_train, y_train, X_dev, y_dev)
    seconds = time.perf_counter() - began
    print(f"latent probe trained once (best epoch {latent.probe_.best_epoch}) + greedy: {seconds:.1f} s")
    floor = floor_seconds(n_dev, d, n_classes, k)
    latent_speedup = compare("latent", latent, X_dev, y_dev, k, floor)

    gaussian = GaussianRanker(GaussianParams(k=k))
    began = time.perf_counter()
    gaussian.fit(X_train, y_train, X_dev, y_dev)
    print(f"gaussian probe fitted once + greedy: {time.perf_counter() - began:.1f} s")
    gaussian_speedup = compare("gaussian", gaussian, X_dev, y_dev, k, floor)
    print(f"ratio: {min(latent_speedup, gaussian_speedup):.1f}")


if __name__ == "__main__":
    main()
