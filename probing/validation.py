"""Self-validating parameter dataclasses: every problem of one object at once, each naming its field.

A parameter dataclass's ``__post_init__`` lists what is wrong with it, each problem as
``"field: what is wrong"``, and passes the list to `reject`. A direct caller of ``DataParams(split="x")``
gets a ValueError that names the field; a study config (``ray_jobs.config``) puts the YAML path of
the object in front of each problem (``data.split: expected one of lemma, ud, got 'x'``) and so
reports every problem of every section at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class InvalidParams(ValueError):
    """The problems of one parameter object, each ``"field: what is wrong"``."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    @property
    def fields(self) -> set[str]:
        """The fields the problems are about ("params.latent: ..." → "params")."""
        return {problem.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0] for problem in self.problems}


def reject(problems: list[str]) -> None:
    """Raise `InvalidParams` when there is any problem."""
    if problems:
        raise InvalidParams(problems)


def at_least(name: str, value: float | None, low: float) -> list[str]:
    """The problem of a field below its minimum (or NaN), if it is; None (an optional field not given) passes."""
    return [] if value is None or value >= low else [f"{name}: must be at least {low}, got {value}"]


def positive(name: str, value: float) -> list[str]:
    """The problem of a field that must be a finite number above 0 (a learning rate), if it is not."""
    return [] if math.isfinite(value) and value > 0 else [f"{name}: must be a finite number above 0, got {value}"]


def fraction(name: str, value: float) -> list[str]:
    """The problem of a field that must lie in [0, 1), if it does not."""
    return [] if 0 <= value < 1 else [f"{name}: must be at least 0 and below 1, got {value}"]


def one_of(name: str, value: object, allowed: Iterable[str]) -> list[str]:
    """The problem of a field outside its allowed names, if it is."""
    allowed = tuple(allowed)
    return [] if value in allowed else [f"{name}: expected one of {', '.join(allowed)}, got {value!r}"]


def all_known(name: str, kind: str, values: Iterable[str], known: Iterable[str]) -> list[str]:
    """A problem for each value that is not a known name ("methods: unknown method 'x' (known: a, b)")."""
    known = tuple(known)
    return [f"{name}: unknown {kind} '{value}' (known: {', '.join(known)})" for value in values if value not in known]
