"""Benchmark: the linear classifier's loss and gradient, classes × rows layout against rows × classes.

Evaluating a ranking fits three multinomial logistic regressions per (classifier, k) by L-BFGS
(`probing.evaluation`), each calling `smooth_linear_loss` ~30 times; on the tiny study these fits were
64 of the probe stage's 75 CPU-seconds. The loss now forms the logits as W Xᵀ (C × n) from the inputs
stored one neuron per row; before 2026-11-23 it formed X Wᵀ (n × C). In one run, on the same random
data, for the shapes a study evaluates (n rows, k neurons of the k grid, C classes), both are timed
(best of ``--repeats``, interleaved) and their values compared. Prints ms per call of each, and last
``ratio: X`` = geometric mean over the shapes of former time / current time (target ≥ 1.2).

    python bench/linear_fit.py [--rows 6000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def former_loss(weight, bias, x, y, l2: float) -> tuple:
    """The loss and gradient as computed before, on X (n × d) with n × C logits."""
    import torch

    logits = torch.addmm(bias, x, weight.T)
    log_norm = torch.logsumexp(logits, dim=1, keepdim=True)
    n = len(y)
    loss = (log_norm.sum() - logits.gather(1, y[:, None]).sum()) / n + l2 * weight.square().sum()
    residual = torch.exp_(logits.sub_(log_norm))
    residual[torch.arange(n), y] -= 1
    residual /= n
    return loss, residual.T @ x + (2 * l2) * weight, residual.sum(dim=0)


def mean_ms(loss, *args, calls: int = 50) -> float:
    """Mean ms of ``calls`` calls of ``loss(*args)``."""
    began = time.perf_counter()
    for _ in range(calls):
        loss(*args)
    return (time.perf_counter() - began) / calls * 1e3


def main() -> None:
    import numpy as np
    import torch

    from probing.evaluation import smooth_linear_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000, help="training rows (the demo's POS sets: 5,000–7,000)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a probe trial on one CPU
    generator = torch.Generator().manual_seed(0)
    ratios = []
    print(f"{'k':>4} {'C':>3} {'former ms':>10} {'current ms':>11} {'ratio':>6} {'max |diff|':>11}")
    for classes in (2, 9, 17):
        for k in (1, 5, 20, 50, 150):
            x = torch.randn(args.rows, k, dtype=torch.float64, generator=generator)
            x_t = x.T.contiguous()
            y = torch.randint(0, classes, (args.rows,), generator=generator)
            weight = torch.randn(classes, k, dtype=torch.float64, generator=generator) * 0.1
            bias = torch.randn(classes, dtype=torch.float64, generator=generator) * 0.1
            former = former_loss(weight, bias, x, y, 1e-3)
            current = smooth_linear_loss(weight, bias, x_t, y, 1e-3)
            diff = max(float((a - b).abs().max()) for a, b in zip(former, current, strict=True))
            if diff > 1e-12:
                raise SystemExit(f"the two layouts disagree by {diff:.2e} at k={k}, C={classes}")
            slow = fast = float("inf")
            for _ in range(args.repeats):  # interleaved, so that a noisy moment hits both
                slow = min(slow, mean_ms(former_loss, weight, bias, x, y, 1e-3))
                fast = min(fast, mean_ms(smooth_linear_loss, weight, bias, x_t, y, 1e-3))
            ratios.append(slow / fast)
            print(f"{k:>4} {classes:>3} {slow:>10.3f} {fast:>11.3f} {slow / fast:>6.2f} {diff:>11.1e}")
    print(f"ratio: {float(np.exp(np.mean(np.log(ratios)))):.2f}")


if __name__ == "__main__":
    main()
