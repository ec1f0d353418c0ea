"""Benchmark: vectorised greedy neuron selection against the per-candidate loop and against its floor.

In one process, on the same synthetic data (d neurons, a planted informative subset among noise,
C classes, N dev examples): the latent-variable probe is trained once and the Gaussian probe fitted
once; then each runs k greedy steps on the same fitted model three ways: vectorised with float32
screening (the default), vectorised all in float64, and the per-candidate reference loop (float64,
one forward pass or one Cholesky log-density per candidate); the Gaussian probe also screens with
its compiled kernel on the CPU (`probing.rankers.gaussian.CompiledKernel`; its one-off compile is
timed apart, in wall seconds). All must choose the same neurons in the same order (asserted). The
floor is k timed passes of N·d·C float32 exponentials on this machine (every step must at least
exponentiate every (row, candidate, class) logit); printed per ranker: vectorised / floor (target
<= 3). Last line ``ratio: X`` = the smaller over the two rankers of loop / the fastest vectorised
variant (target >= 100).
Speed-ups are ratios of this process's CPU time, which other work on a shared machine does not
inflate (with one torch thread, CPU time is the work done); wall times are printed too.

    python bench/greedy.py [--quick] [--threads 1] [--device cuda] [--gpu-scale]

The defaults (d = 1024, k = 50, N = 10,000 dev, C = 6) take about half an hour on one core: the
loops are slow by design (~11 min latent, ~15 min Gaussian). ``--quick`` (d = 256, k = 10,
N = 2,000) is a smoke run of a few seconds. ``--device cuda`` runs the rankers and the floor on a GPU
(wall seconds after synchronising); ``--gpu-scale`` (d = 2048, N = 50,000 dev) is issue 10's GPU
figure: without the loop, which would take hours there, so it prints no ``ratio:`` line. ``--only``
runs one ranker (its ``ratio:`` is then that ranker's).
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


def seconds_now(device: str) -> float:
    """This process's CPU seconds on the CPU (other work on a shared machine does not inflate them, with one
    torch thread); wall seconds after the queued kernels finished on a GPU."""
    import torch

    if device == "cpu":
        return time.process_time()
    torch.cuda.synchronize()
    return time.perf_counter()


def time_greedy(
    ranker, X_dev: np.ndarray, y_dev: np.ndarray, k: int, vectorized: bool, **options: bool
) -> tuple[float, float, np.ndarray]:
    """Seconds (`seconds_now`), wall seconds and chosen neurons of k greedy steps of a fitted ranker
    (``options``: extra arguments of its ``greedy_scorer``)."""
    from probing.rankers import greedy_select

    device = ranker.device.type
    began, wall = seconds_now(device), time.perf_counter()
    chosen = greedy_select(ranker.greedy_scorer(X_dev, y_dev, vectorized=vectorized, **options), k).chosen
    return seconds_now(device) - began, time.perf_counter() - wall, chosen


def floor_seconds(n: int, d: int, n_classes: int, k: int, device: str = "cpu", chunk: int = 64) -> float:
    """Seconds of k passes of N·d·C float32 exponentials on ``device``, chunk by chunk of (N, chunk) as the
    rankers work (one pass on a GPU); the best of three timed passes, times k."""
    import torch

    chunk = chunk if device == "cpu" else d * n_classes
    buffer = torch.randn(n, chunk, device=device)
    out = torch.empty_like(buffer)
    repeats = -(-d * n_classes // chunk)
    best = float("inf")
    for _ in range(3):
        began = seconds_now(device)
        for _ in range(repeats):
            torch.exp(buffer, out=out)
        best = min(best, seconds_now(device) - began)
    return best * k * (d * n_classes) / (repeats * chunk)


def compare(name: str, ranker, X_dev: np.ndarray, y_dev: np.ndarray, k: int, floor: float, loop: bool) -> float:
    """Time the variants on one fitted ranker (the loop when ``loop``), check they agree, print them and return
    loop / the fastest vectorised variant (NaN without the loop)."""
    from dataclasses import replace

    fast_seconds, fast_wall, fast = time_greedy(ranker, X_dev, y_dev, k, vectorized=True)
    default_params = ranker.params
    ranker.params = replace(default_params, greedy_precision="float64")
    f64_seconds, _, f64 = time_greedy(ranker, X_dev, y_dev, k, vectorized=True)
    ranker.params = default_params
    assert np.array_equal(fast, f64), f"{name}: float32 screening chose {fast.tolist()}, float64 {f64.tolist()}"
    print(f"{name}: vectorised {fast_seconds:.2f} s ({fast_wall:.2f} s wall; all-float64 {f64_seconds:.2f} s)")
    print(f"{name}: vectorised / floor {fast_seconds / floor:.2f} (floor {floor:.2f} s: {k} x N·d·C float32 exps)")
    if name == "gaussian" and ranker.device.type == "cpu":  # the compiled kernel is tested on the CPU only
        fast_seconds = min(fast_seconds, compare_compiled(ranker, X_dev, y_dev, k, floor, fast))
    if not loop:
        print(f"{name}: same {k} neurons chosen by float32 screening and float64, first ten {fast[:10].tolist()}")
        return float("nan")
    slow_seconds, slow_wall, slow = time_greedy(ranker, X_dev, y_dev, k, vectorized=False)
    assert np.array_equal(fast, slow), f"{name}: vectorised chose {fast.tolist()}, loop chose {slow.tolist()}"
    print(
        f"{name}: per-candidate loop {slow_seconds:.2f} s ({slow_wall:.2f} s wall), "
        f"speed-up {slow_seconds / fast_seconds:.1f}x over the fastest vectorised"
    )
    print(f"{name}: same {k} neurons chosen by all, first ten {fast[:10].tolist()}")
    return slow_seconds / fast_seconds


def compare_compiled(ranker, X_dev: np.ndarray, y_dev: np.ndarray, k: int, floor: float, expected: np.ndarray) -> float:
    """The Gaussian greedy screened by the compiled kernel: its one-off compile (a 2-step search, wall seconds,
    which depend on whether this machine's inductor cache is warm), then the timed search; returns its seconds."""
    from probing.rankers.gaussian import COMPILE_MIN_WORK

    work = k * len(ranker.model_.means) * X_dev.shape[0] * X_dev.shape[1]
    auto = "compiled" if ranker.compiles_by_default(*X_dev.shape) else "eager"
    _, compile_wall, _ = time_greedy(ranker, X_dev, y_dev, 2, vectorized=True, compiled=True)
    seconds, wall, chosen = time_greedy(ranker, X_dev, y_dev, k, vectorized=True, compiled=True)
    assert np.array_equal(chosen, expected), f"gaussian: compiled chose {chosen.tolist()}, eager {expected.tolist()}"
    print(
        f"gaussian: compiled screening {seconds:.2f} s ({wall:.2f} s wall), / floor {seconds / floor:.2f}, "
        f"after a one-off compile + 2 steps of {compile_wall:.2f} s wall (the default at k·C·N·d = {work:.2e} "
        f"is {auto}: it compiles from {COMPILE_MIN_WORK:.2e}, or once compiled in the process for this C)"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared CPU)")
    parser.add_argument("--device", default="cpu", help="torch device of the rankers and the floor (cpu, cuda)")
    parser.add_argument(
        "--gpu-scale", action="store_true", help="d = 2048, N = 50,000 dev, k = 50, without the loop (hours there)"
    )
    parser.add_argument(
        "--only", choices=("latent", "gaussian"), help="one ranker (e.g. the two in parallel processes)"
    )
    args = parser.parse_args()
    import torch

    from probing.rankers import GaussianParams, GaussianRanker, LatentParams, LatentRanker

    torch.set_num_threads(args.threads)
    d, k, n_dev, n_classes = (1024, 50, 10_000, 6)
    if args.quick:
        d, k, n_dev = 256, 10, 2000
    if args.gpu_scale:
        d, n_dev = 2048, 50_000
    X_train, y_train = synthetic(3000, d, n_classes, informative=40, seed=1)
    X_dev, y_dev = synthetic(n_dev, d, n_classes, informative=40, seed=2)
    print(
        f"data: d={d}, k={k}, {n_classes} classes, {len(y_train)} train, {n_dev} dev; "
        f"device {args.device}, torch threads {args.threads}"
    )
    floor = floor_seconds(n_dev, d, n_classes, k, args.device)
    speedups = []
    for name, ranker in (
        ("latent", LatentRanker(LatentParams(k=k), device=args.device)),
        ("gaussian", GaussianRanker(GaussianParams(k=k), device=args.device)),
    ):
        if args.only not in (None, name):
            continue
        began = time.perf_counter()
        ranker.fit(X_train, y_train, X_dev, y_dev)
        print(f"{name} probe fitted once + greedy: {time.perf_counter() - began:.1f} s")
        speedups.append(compare(name, ranker, X_dev, y_dev, k, floor, loop=not args.gpu_scale))
    if not args.gpu_scale:
        print(f"ratio: {min(speedups):.1f}")


if __name__ == "__main__":
    main()
