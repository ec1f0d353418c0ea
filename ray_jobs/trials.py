"""The units of work of the Tune stages, as frozen dataclasses named by the hash of their own fields.

As open_lth names a run by the hash of its hyperparameters, a trial's ``fingerprint`` is the hash of
every field that determines its result (`fingerprint_fields`): change one and the trial reruns, keep
them and its stored result is reused. Resources (threads, GPUs) are not part of a trial: they decide
where it runs, not what it computes. ``paths(store)`` is where it writes; ``label`` is its key in the
failures table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import NamedTuple

from analysis.store import Store, fingerprint
from analysis.tables import LAYOUT
from ray_jobs.context import key_label

#: Metadata of a field that says where a trial's inputs are, not what they are (their content is
#: fingerprinted by another field), so that it is left out of the trial's fingerprint.
LOCATION = {"fingerprinted": False}


def fingerprint_fields(trial: object, kind: str) -> str:
    """The hash of a trial's kind and all its fields but the `LOCATION` ones."""
    values = {f.name: getattr(trial, f.name) for f in fields(trial) if f.metadata.get("fingerprinted", True)}
    return fingerprint(kind, values)


def rankings_path(store: Store, key: dict, seed: int) -> str:
    """The rankings file of one (checkpoint, layer, language, attribute, method) ``key`` and seed."""
    return store.path("rankings", part=f"seed-{seed}", **key)


class ProbePaths(NamedTuple):
    rankings: str
    metrics: str
    failure: str


@dataclass(frozen=True)
class ProbeTrial:
    """One ranking unit: fit a method on one (checkpoint, layer, language, attribute), evaluate it, store both.

    ``words_fingerprint`` and ``activation_fingerprint`` stand for the data it reads; ``versions`` for the
    code that computes it (trial seeding, evaluation, rankers), so a change there reruns it too.
    """

    model: str
    checkpoint: str
    layer: int
    language: str
    attribute: str
    method: str
    seed: int
    k: int
    k_fraction: float | None
    greedy_depth: str
    k_grid: tuple[int, ...]
    classifiers: tuple[str, ...]
    params: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    max_examples: int | None = None
    words_fingerprint: str = ""
    activation_fingerprint: str = ""
    versions: tuple[int, ...] = ()

    @property
    def key(self) -> dict:
        """The partition columns of its rankings and metrics."""
        return {
            "model": self.model,
            "checkpoint": self.checkpoint,
            "layer": self.layer,
            "language": self.language,
            "attribute": self.attribute,
            "method": self.method,
        }

    @property
    def partition(self) -> tuple:
        """The activation partition it reads: (model, checkpoint, layer, language)."""
        return (self.model, self.checkpoint, self.layer, self.language)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_fields(self, "probe")

    @property
    def label(self) -> str:
        return key_label(**self.key, seed=self.seed)

    def paths(self, store: Store) -> ProbePaths:
        return ProbePaths(
            rankings_path(store, self.key, self.seed),
            store.path("probe_metrics", part=f"seed-{self.seed}", **self.key),
            store.path("failures", part=f"trial-{fingerprint(self.key, self.seed)}", stage="probe"),
        )

    def activation_path(self, store: Store) -> str:
        return store.path(
            "activations", model=self.model, checkpoint=self.checkpoint, layer=self.layer, language=self.language
        )

    def is_done(self, store: Store) -> bool:
        """True when its rankings and metrics, or its cannot-run marker, are stored intact with its fingerprint."""
        paths, fp = self.paths(store), self.fingerprint
        rankings, metrics, marker = (store.done(path, fp) for path in paths)  # each looked at: damage is found
        return (rankings and metrics) or marker


@dataclass(frozen=True)
class TransferTrial:
    """Fine-tune one checkpoint on one English task and score it zero-shot on the target languages.

    ``source`` is where the model loads from and ``model_identity`` what it is
    (`ray_jobs.common.model_identity`); ``data`` is the signature of the task's data files (their
    contents), ``data_dir`` where they are. Only what they are is fingerprinted, so a moved study or
    data folder reuses its results.
    """

    model: str
    checkpoint: str
    task: str
    source: str = field(metadata=LOCATION)
    targets: tuple[str, ...]
    params: object
    data: tuple
    data_dir: str = field(default="", metadata=LOCATION)
    model_identity: str = ""

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_fields(self, "transfer")

    @property
    def label(self) -> str:
        return key_label(model=self.model, checkpoint=self.checkpoint, task=self.task)

    def path(self, store: Store) -> str:
        return store.path("transfer", model=self.model, checkpoint=self.checkpoint, task=self.task)


def mask_path(store: Store, key: dict, seed: int, kind: str, sparsity: float | None = None) -> str:
    """A mask's file in the ``masks`` table: kind imp, one_shot or random at a target sparsity, or resume (no
    sparsity: the mask IMP trains next, kept so that a killed run resumes from its last finished round)."""
    part = f"seed-{seed}-{kind}" + ("" if sparsity is None else f"-{sparsity:.4f}")
    return store.path("masks", part=part, **key)


@dataclass(frozen=True)
class LotteryTrial:
    """Iterative magnitude pruning of one checkpoint for one (task, language, seed): every round, then the
    one-shot and random controls at each target sparsity.

    ``source`` is where the model loads from and ``model_identity`` what it is; ``data`` is the signature of
    the language's task data (file contents), ``data_dir`` where it is. Only what they are is fingerprinted.
    """

    model: str
    checkpoint: str
    task: str
    language: str
    seed: int
    source: str = field(metadata=LOCATION)
    params: object = None
    data: tuple = ()
    data_dir: str = field(default="", metadata=LOCATION)
    model_identity: str = ""

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_fields(self, "lottery")

    @property
    def key(self) -> dict:
        """The partition columns of its rounds and masks."""
        return {"model": self.model, "checkpoint": self.checkpoint, "task": self.task, "language": self.language}

    @property
    def label(self) -> str:
        return key_label(**self.key, seed=self.seed)

    def round_path(self, store: Store, round_index: int) -> str:
        return store.path("lottery_rounds", part=f"seed-{self.seed}-round-{round_index:03d}", **self.key)

    def mask_path(self, store: Store, kind: str, sparsity: float | None = None) -> str:
        return mask_path(store, self.key, self.seed, kind, sparsity)


@dataclass(frozen=True)
class SubnetworkTransferTrial:
    """Fine-tune one target language's θ₀ under other languages' sub-networks, its own, a random mask of its
    own density and none (dense), per target sparsity; one stored score per unit.

    ``masks`` maps each source language to the fingerprint of the `LotteryTrial` that found its masks, so a
    changed sub-network reruns the transfers that used it.
    """

    model: str
    checkpoint: str
    task: str
    target: str
    seed: int
    source: str = field(metadata=LOCATION)
    params: object = None
    data: tuple = ()
    masks: tuple[tuple[str, str], ...] = ()
    sparsities: tuple[float, ...] = ()
    data_dir: str = field(default="", metadata=LOCATION)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_fields(self, "subnetwork_transfer")

    @property
    def label(self) -> str:
        return key_label(model=self.model, checkpoint=self.checkpoint, task=self.task, target=self.target)

    def units(self) -> list[tuple[str, str, float]]:
        """(kind, source language, sparsity) of every score: each source's sub-network, random, dense."""
        units = [("subnetwork", language, s) for language, _ in self.masks for s in self.sparsities]
        return [*units, *(("random", self.target, s) for s in self.sparsities), ("dense", self.target, 0.0)]

    def unit_path(self, store: Store, kind: str, source: str, sparsity: float) -> str:
        key = {"model": self.model, "checkpoint": self.checkpoint, "task": self.task, "target_language": self.target}
        return store.path("subnetwork_transfer", part=f"seed-{self.seed}-{kind}-{source}-{sparsity:.4f}", **key)

    def unit_fingerprint(self, kind: str, source: str, sparsity: float) -> str:
        return fingerprint(self.fingerprint, kind, source, sparsity)


class InterventionUnit(NamedTuple):
    """One stored file of an intervention trial: the curves of one ranking on one split."""

    split: str
    source_language: str
    method: str
    direction: str


@dataclass(frozen=True)
class InterventionTrial:
    """Edit the top-k neurons of every ranking of one (checkpoint, layer, language, attribute) on that language's
    words (`probing.interventions`); cross-lingually, also those of the other languages' rankings.

    ``rankings`` lists (language, method, fingerprint) of every rankings file it reads, so a re-ranked method
    reruns it. Its units (`units`) are written one file each: on dev, translation with every β of
    ``betas`` for each own top-to-bottom ranking (only when there is a β to choose); on test, every own
    ranking and its reverse over the k grid, and each other language's top-to-bottom ranking at ``cross_k``.
    ``cross_k`` and ``cross_k_fraction`` resolve to a k with the width (`ray_jobs.config.resolve_k`);
    ``lexicon`` is the signature of the language's UD files, which the lexicon is read from (``ud_dir``).
    """

    model: str
    checkpoint: str
    layer: int
    language: str
    attribute: str
    seed: int
    source: str = field(metadata=LOCATION)
    rankings: tuple[tuple[str, str, str], ...]
    interventions: tuple[str, ...]
    k_grid: tuple[int, ...]
    betas: tuple[float, ...]
    cross_k: int
    cross_k_fraction: float | None
    max_words: int | None
    readout: str
    batch_tokens: int
    compute_dtype: str
    words_fingerprint: str
    sentences_fingerprint: str
    activation_fingerprint: str
    lexicon: tuple
    versions: tuple[int, ...] = ()
    ud_dir: str = field(default="", metadata=LOCATION)

    @property
    def key(self) -> dict:
        """The partition columns of its rows."""
        return {column: getattr(self, column) for column in LAYOUT["interventions"]}

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_fields(self, "interventions")

    @property
    def label(self) -> str:
        return key_label(**self.key, seed=self.seed)

    def units(self) -> list[InterventionUnit]:
        """Its files: dev (β to choose), then own rankings and their reverses, then other languages' rankings."""
        from probing.rankers import RANKERS

        own = [m for language, m, _ in self.rankings if language == self.language]
        dev = [InterventionUnit("dev", self.language, m, "ttb") for m in own] if len(self.betas) > 1 else []
        test = [
            InterventionUnit("test", self.language, m, direction)
            for m in own
            for direction in (("ttb", "btt") if RANKERS[m].reversible else ("ttb",))
        ]
        cross = [
            InterventionUnit("test", language, m, "ttb")
            for language, m, _ in self.rankings
            if language != self.language
        ]
        return dev + test + cross

    def unit_path(self, store: Store, unit: InterventionUnit) -> str:
        part = f"seed-{self.seed}-{unit.split}-{unit.source_language}-{unit.method}-{unit.direction}"
        return store.path("interventions", part=part, **self.key)

    def unit_fingerprint(self, unit: InterventionUnit) -> str:
        return fingerprint(self.fingerprint, *unit)

    def is_done(self, store: Store) -> bool:
        return all(store.done(self.unit_path(store, u), self.unit_fingerprint(u)) for u in self.units())

    def activation_path(self, store: Store) -> str:
        """The activations of its language at its checkpoint and layer (the mean vectors of translation)."""
        return store.path("activations", **{column: getattr(self, column) for column in LAYOUT["activations"]})

    def ranking_path(self, store: Store, language: str, method: str) -> str:
        """The rankings file of one language's method at this trial's checkpoint, layer, attribute and seed."""
        return rankings_path(store, {**self.key, "language": language, "method": method}, self.seed)
