"""Pruning schedules: the sparsity (pruned share of the prunable weights) after each round of IMP.

``linear`` is the reference's (Foroutan et al. 2022): 10% of the ORIGINAL weights per round, so 50%
after 5 rounds and 80% after 8. ``geometric`` is open_lth's default (Frankle & Carbin 2019): 20% of
the weights that REMAIN per round, so 1 − 0.8^r after r rounds (59% after 4, 83% after 8). A
schedule is one line in `SCHEDULES`: its sparsity as a function of the number of rounds.

Counts are taken from the formula, never accumulated round by round: after r rounds exactly
round(sparsity_after(r) · n) of n weights are pruned, so rounding never drifts. A target sparsity
is reached after the first round whose sparsity is at least the target (`rounds_to`); under
``geometric`` that round's sparsity can exceed the target (0.59 for 0.5), and the model kept for the
target is that round's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: Sparsity after r rounds, by schedule name.
SCHEDULES: dict[str, Callable[[int], float]] = {
    "linear": lambda rounds: min(1.0, rounds / 10),
    "geometric": lambda rounds: 1.0 - 0.8**rounds,
}
#: No schedule may need more rounds than this to reach a target (the linear one prunes all after 10).
MAX_ROUNDS = 100
#: Slack for comparing a schedule's float sparsity with a target written in decimal.
_TOLERANCE = 1e-9


def schedule(name: str) -> Callable[[int], float]:
    """The schedule of a name; ValueError listing the known ones when it is unknown."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown pruning schedule {name!r}; known: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def sparsity_after(name: str, rounds: int) -> float:
    """The share of the prunable weights pruned after ``rounds`` rounds of the schedule."""
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    return schedule(name)(rounds)


def share_count(share: float, n_total: int) -> int:
    """A share of ``n_total`` weights as a count, rounded half up (every pruned count is rounded this one way)."""
    return math.floor(share * n_total + 0.5)


def pruned_count(name: str, rounds: int, n_total: int) -> int:
    """How many of ``n_total`` weights are pruned after ``rounds`` rounds of the schedule."""
    return share_count(sparsity_after(name, rounds), n_total)


def rounds_to(name: str, target: float) -> int:
    """The fewest rounds after which the schedule's sparsity is at least ``target`` (0 ≤ target < 1)."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"a target sparsity must be in [0, 1), got {target}")
    for rounds in range(MAX_ROUNDS + 1):
        if sparsity_after(name, rounds) >= target - _TOLERANCE:
            return rounds
    raise ValueError(f"schedule {name!r} does not reach sparsity {target} within {MAX_ROUNDS} rounds")
