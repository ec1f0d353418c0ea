"""Neuron rankers with one interface: ``fit(X_train, y_train, X_dev, y_dev) -> Ranking``.

X are float arrays (n, d), y integer class ids 0..C-1 (all present in train). Each ranker is built
from its frozen hyperparameter dataclass; `make_ranker` builds one by method name from a dict of
overrides. Methods: "latent" (latent-variable probe, greedy), "gaussian" (Gaussian probe, greedy),
"linear" (elastic-net weights), "probeless" (class-mean differences), "random" (control), "variance" (the
scale control: pooled within-class standard deviation); `reverse`
gives the bottom-to-top control of any ranking. Every ranker is deterministic given its seed.

`RANKERS` is the registry a study's methods are read from; each class states its traits
(``reversible``, ``greedy``, ``needs_k``: `probing.rankers.base.RankerBase`), which the orchestration
asks instead of keeping lists of method names. A new ranker is a module with its params dataclass and
class, and one entry in `RANKERS`.
"""

from __future__ import annotations

from dataclasses import fields

from probing.rankers.base import Ranker, RankerParams, Ranking, greedy_select, reverse
from probing.rankers.gaussian import GaussianModel, GaussianParams, GaussianRanker, fit_gaussian_niw
from probing.rankers.latent import LatentParams, LatentProbe, LatentRanker
from probing.rankers.linear import LinearParams, LinearRanker
from probing.rankers.probeless import ProbelessRanker, RandomRanker, VarianceRanker

#: Version of what the rankers compute for the same hyperparameter overrides; hashed into every probe
#: trial's fingerprint so that stored rankings are recomputed when it changes. 2 (issue 8): new latent
#: defaults (H(q) weight 1 in the gradient, raw inputs, per-example masks, leave-one-out baseline,
#: early stopping on the MC ELBO) and the linear ranker's ``standardise``/``l2_penalty``. 3 (issue 10):
#: greedy steps screened in float32 and confirmed in float64 (the same choices; scores may differ by float
#: rounding), the ``greedy_precision`` field and new ``chunk_size`` defaults of the greedy rankers. 4: the
#: latent probe's log q(m) as a matrix-vector product (the same value up to float32 rounding).
RANKERS_VERSION = 4

RANKERS: dict[str, type] = {
    cls.method: cls
    for cls in (LatentRanker, GaussianRanker, LinearRanker, ProbelessRanker, RandomRanker, VarianceRanker)
}


def make_ranker(method: str, params: dict | None = None, seed: int = 0, device: str = "cpu") -> Ranker:
    """A ranker by method name, its hyperparameters = defaults overridden by ``params``, with ``seed``,
    computing on the torch ``device`` (not a hyperparameter: not in ``params`` nor in any fingerprint)."""
    if method not in RANKERS:
        raise ValueError(f"unknown ranking method {method!r}; known: {sorted(RANKERS)}")
    cls = RANKERS[method]
    params = dict(params or {})
    known = {f.name for f in fields(cls.params_type)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for method {method!r}; known: {sorted(known)}")
    if params.setdefault("seed", seed) != seed:
        raise ValueError(f"params give seed {params['seed']} but seed={seed}; pass the seed once")
    return cls(cls.params_type(**params), device=device)


__all__ = [
    "RANKERS",
    "RANKERS_VERSION",
    "GaussianModel",
    "GaussianParams",
    "GaussianRanker",
    "LatentParams",
    "LatentProbe",
    "LatentRanker",
    "LinearParams",
    "LinearRanker",
    "ProbelessRanker",
    "RandomRanker",
    "Ranker",
    "RankerParams",
    "Ranking",
    "VarianceRanker",
    "fit_gaussian_niw",
    "greedy_select",
    "make_ranker",
    "reverse",
]
