"""Benchmark: the evaluation's linear-classifier fit, torch's L-BFGS against scipy's on a numpy loss.

Evaluating a ranking fits three multinomial logistic regressions per (classifier, k) to convergence
(`probing.evaluation.fit_linear`); before EVALUATION_VERSION 3 these fits were ~55% of the demo's
probe-stage compute. They ran ``torch.optim.LBFGS`` (its two-loop recursion and strong-Wolfe search
in Python) on the torch loss `smooth_linear_loss`; on the CPU they now run scipy's compiled L-BFGS-B
on `numpy_linear_loss`. In one run, on the same data for the shapes a study evaluates (n rows,
k neurons of the k grid, C classes; classes shift a few neurons, the rest is noise), both fits are
timed (best of ``--repeats``, interleaved) and checked to reach the same minimum: the current loss
is at most the former's + 1e-9 and both fits predict the same class for ≥ 99.5% of the rows (ties
of a near-flat fit may differ). Prints ms per fit of each, and last ``ratio: X`` = geometric mean
over the shapes of former time / current time (target ≥ 2).

    python bench/linear_fit.py [--rows 600] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def former_fit(x_t, y, n_classes: int, l2: float) -> tuple:
    """Weights and bias as fitted before: torch.optim.LBFGS (strong Wolfe) on the closed-form torch loss."""
    import torch

    from probing.evaluation import smooth_linear_loss

    weight = torch.zeros(n_classes, x_t.shape[0], dtype=torch.float64)
    bias = torch.zeros(n_classes, dtype=torch.float64)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        loss, weight.grad, bias.grad = smooth_linear_loss(weight, bias, x_t, y, l2)
        return loss

    optimizer.step(closure)
    return weight.numpy(), bias.numpy()


def timed(fit, *args) -> tuple[float, tuple]:
    """ms of one call of ``fit(*args)``, and its result."""
    began = time.perf_counter()
    result = fit(*args)
    return (time.perf_counter() - began) * 1e3, result


def main() -> None:
    import numpy as np
    import torch

    from probing.evaluation import EvaluationParams, fit_linear, numpy_objective

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600, help="training rows (the demo's cap: 600)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a probe trial on one CPU
    params = EvaluationParams()
    rng = np.random.default_rng(0)
    ratios = []
    print(f"{'k':>4} {'C':>3} {'former ms':>10} {'current ms':>11} {'ratio':>6} {'Δ loss':>9} {'same class':>10}")
    for classes in (2, 6, 17):
        for k in (1, 3, 13, 51, 150):
            y = rng.integers(0, classes, args.rows)
            X = rng.normal(size=(args.rows, k))
            X[:, : min(k, 3)] += rng.normal(size=(classes, min(k, 3)))[y]
            x_t = np.ascontiguousarray((X - X.mean(axis=0)).T)
            x_torch, y_torch = torch.from_numpy(x_t), torch.from_numpy(y)
            slow = fast = float("inf")
            for _ in range(args.repeats):  # interleaved, so that a noisy moment hits both
                ms, former = timed(former_fit, x_torch, y_torch, classes, params.linear_l2)
                slow = min(slow, ms)
                ms, current = timed(fit_linear, X, y, classes, params)
                fast = min(fast, ms)
            objective = numpy_objective(x_t, y, classes, params.linear_l2)
            former_loss = objective(np.c_[former[0], former[1]].ravel())[0]
            current_bias = current[1] + current[0] @ X.mean(axis=0)  # fit_linear shifts the bias to raw inputs
            current_loss = objective(np.c_[current[0], current_bias].ravel())[0]
            former_classes = (former[0] @ x_t + former[1][:, None]).argmax(axis=0)  # fitted on centred inputs
            same = float(np.mean(former_classes == (X @ current[0].T + current[1]).argmax(axis=1)))
            if current_loss > former_loss + 1e-9 or same < 0.995:
                raise SystemExit(
                    f"the fits disagree at k={k}, C={classes}: Δ loss {current_loss - former_loss:.2e}, same {same}"
                )
            ratios.append(slow / fast)
            gap = current_loss - former_loss
            print(f"{k:>4} {classes:>3} {slow:>10.2f} {fast:>11.2f} {slow / fast:>6.2f} {gap:>9.1e} {same:>10.3f}")
    print(f"ratio: {float(np.exp(np.mean(np.log(ratios)))):.2f}")


if __name__ == "__main__":
    main()
