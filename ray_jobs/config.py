"""One study config: a YAML file → typed, validated dataclasses.

Validation happens before any Ray work starts and reports every problem at once, each with its
YAML path. Every section validates itself (its dataclass's ``__post_init__``: known methods,
classifiers and tasks read from their registries, k ≥ 1, dtypes, ...; `ray_jobs.typed_yaml` puts the
section's path in front); what crosses sections is checked here on the built config: language and
treebank folders (and their ``*.conllu`` files), layers beyond a model's depth, k above its width,
ranker params against the protocol, the XNLI folder and files and the target languages, local model
directories and their weight files, and the output root (a file, or not writable or creatable: it
is not created here). Relative paths in a config are resolved against the directory of the config
file; ``${VAR}`` is expanded, and one that is not set is a problem. This module does not import Ray.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from probing.conllu_io import CoNLLUError
from probing.datasets import DataParams, treebank_files
from probing.evaluation import CLASSIFIERS, EvaluationParams
from probing.extraction import COMPUTE_DTYPES, ExtractionParams
from probing.interventions import INTERVENTIONS
from probing.pretrain import PretrainParams, checkpoint_steps, step_name
from probing.protocols import PROTOCOLS
from probing.rankers import RANKERS, make_ranker
from probing.unimorph import ATTRIBUTES
from probing.validation import all_known, at_least, one_of, reject
from ray_jobs.typed_yaml import FLAT, build, describe, overlaps, problem_path
from transfer.finetune import FinetuneParams
from transfer.tasks import TASKS
from transfer.xnli_data import XNLIError, read_parallel_devs
from transfer.zero_shot import SOURCE_LANGUAGE

#: Zero-shot transfer tasks (`transfer.tasks.TASKS`).
TRANSFER_TASKS: tuple[str, ...] = tuple(TASKS)
#: How far greedy rankers order neurons: up to the study's k, or up to the k grid's maximum (paper 002).
GREEDY_DEPTHS: tuple[str, ...] = ("k", "k_grid_max")


class ConfigError(ValueError):
    """A config with problems; ``problems`` lists every one of them."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Resources:
    """Ray resources for one worker or trial."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        reject([*at_least("num_cpus", self.num_cpus, 0), *at_least("num_gpus", self.num_gpus, 0)])


@dataclass(frozen=True)
class ModelSpec:
    """A model to study: a hub id or local directory with revisions, or one to pre-train first.

    ``name`` names its results (a path component and a partition value: no '/', '=', '\\' or spaces).
    """

    name: str
    id: str | None = None
    revisions: tuple[str, ...] = ()
    pretrain: PretrainParams | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.name or any(c in self.name for c in "/=\\ "):
            problems.append(
                f"name: a model's name must be non-empty without '/', '=', '\\' or spaces, got {self.name!r}"
            )
        if (self.id is None) == (self.pretrain is None):
            problems.append("id: give exactly one of 'id' (hub id or local path) and 'pretrain'")
        elif self.pretrain is not None and self.revisions:
            problems.append("revisions: a pre-trained model's revisions are its checkpoints; remove them")
        reject(problems)


#: Values of ``extraction.device_map`` (accelerate's automatic placement across the actor's GPUs).
DEVICE_MAPS: tuple[str, ...] = ("auto",)


@dataclass(frozen=True)
class ExtractionConfig:
    """Activation extraction: how (``params``, hashed into the activations' fingerprint) and with which workers.

    In YAML the section is flat: ``batch_tokens``, ``dtype`` and ``max_length`` fill ``params``.
    ``params.dtype`` is the storage dtype of the vectors. ``compute_dtype`` is the dtype asked for the
    forward pass ("auto": bfloat16 when the actor asks for a GPU, else float32); ``params.compute_dtype``
    is always its resolution, set here from the config alone, so that the fingerprint is known before
    any actor starts. ``device_map: auto`` spreads a checkpoint that does not fit one GPU over the
    actor's GPUs. ``overlap_tokenization`` prepares the next chunk in a background thread during the
    forward pass and writes the last chunk's Parquet files in background threads (None: only when the
    actor has a GPU; on 2 CPUs the threads compete with the forward pass for nothing, see the README's
    benchmarks).
    """

    params: ExtractionParams = field(default_factory=ExtractionParams, metadata=FLAT)
    compute_dtype: str = "auto"
    device_map: str | None = None
    overlap_tokenization: bool | None = None
    workers: int = 1
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        problems = [*at_least("workers", self.workers, 1)]
        if self.compute_dtype not in ("auto", *COMPUTE_DTYPES):
            problems.append(f"compute_dtype: expected auto, {', '.join(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")
        accelerate_installed = importlib.util.find_spec("accelerate") is not None
        reject(problems + device_map_problems(self.device_map, self.resources.num_gpus, accelerate_installed))
        resolved = resolve_compute_dtype(self.compute_dtype, self.resources.num_gpus)
        object.__setattr__(self, "params", dataclasses.replace(self.params, compute_dtype=resolved))

    @property
    def overlap(self) -> bool:
        """Whether the actor overlaps tokenization and writing with the forward pass."""
        return self.resources.num_gpus > 0 if self.overlap_tokenization is None else self.overlap_tokenization


def resolve_compute_dtype(requested: str, num_gpus: float) -> str:
    """The forward pass's dtype: "auto" is bfloat16 for an actor with a GPU, float32 on CPU."""
    if requested != "auto":
        return requested
    return "bfloat16" if num_gpus > 0 else "float32"


def device_map_problems(device_map: str | None, num_gpus: float, accelerate_installed: bool) -> list[str]:
    """Why ``extraction.device_map`` cannot work, if it cannot (none when it is unset)."""
    if device_map is None:
        return []
    problems = []
    if device_map not in DEVICE_MAPS:
        problems.append(f"device_map: expected null or {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    if not accelerate_installed:
        problems.append(
            "device_map: needs the 'accelerate' package, which is not installed "
            "(pip install accelerate), or remove device_map"
        )
    if num_gpus <= 0:
        problems.append(
            "device_map: spreads a checkpoint over GPUs, but extraction.resources.num_gpus is 0; "
            "give the actor GPUs or remove device_map"
        )
    return problems


@dataclass(frozen=True)
class ProbingConfig:
    """Which rankings to compute, how to evaluate them, and the resources of one Tune trial.

    ``methods`` are ranker names (``probing.rankers.RANKERS``), ``classifiers`` those of the
    classifiers that score a ranking (``probing.evaluation.CLASSIFIERS``). ``params`` maps a method
    to overrides of its hyperparameter dataclass (``probing.rankers``); ``evaluation`` overrides
    ``probing.evaluation.EvaluationParams``; ``max_examples`` caps each split of a dataset by a
    seeded subsample (None: all). A trial with ``num_gpus`` > 0 fits its rankers and evaluation
    classifiers on that GPU.

    ``k_fraction`` gives k relative to each model's width d instead of ``k``: k = max(1, round(k_fraction·d)).
    ``greedy_depth`` is how many positions greedy rankers (latent, gaussian) fill greedily: ``k``, or
    ``k_grid_max`` (the largest k evaluated, as paper 002's code does); the rest follow by score.
    """

    methods: tuple[str, ...] = ("latent", "gaussian", "linear", "probeless", "random", "variance")
    k: int = 50
    k_fraction: float | None = None
    greedy_depth: str = "k"
    seeds: tuple[int, ...] = (0,)
    k_grid: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 150)
    classifiers: tuple[str, ...] = ("linear", "gaussian")
    params: dict[str, dict] = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    max_examples: int | None = None
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        problems = [
            *all_known("methods", "method", self.methods, RANKERS),
            *at_least("k", self.k, 1),
            *one_of("greedy_depth", self.greedy_depth, GREEDY_DEPTHS),
            *(f"seeds: every seed must be at least 0, got {seed}" for seed in self.seeds if seed < 0),
            *at_least("max_examples", self.max_examples, 1),
            *all_known("classifiers", "classifier", self.classifiers, CLASSIFIERS),
            *(f"params.{m}: '{m}' is not one of probing.methods" for m in self.params if m not in self.methods),
        ]
        if self.k_fraction is not None and not 0 < self.k_fraction <= 1:
            problems.append(f"k_fraction: expected a fraction of the width in (0, 1], got {self.k_fraction}")
        if any(k < 1 for k in self.k_grid):
            problems.append(f"k_grid: every k must be at least 1, got {list(self.k_grid)}")
        try:
            EvaluationParams(**self.evaluation)
        except (TypeError, ValueError) as err:
            problems.append(f"evaluation: {err}")
        reject(problems)

    def k_for(self, width: int) -> int:
        """The study's k for a model of hidden size ``width`` (``k_fraction`` of it when given)."""
        return resolve_k(self.k, self.k_fraction, width)


def resolve_k(k: int, k_fraction: float | None, width: int) -> int:
    """k itself, or ``round(k_fraction · width)`` (at least 1) when a fraction is given."""
    return k if k_fraction is None else max(1, round(k_fraction * width))


def greedy_steps(k: int, k_grid: tuple[int, ...] | list[int], greedy_depth: str, width: int) -> int:
    """How many positions a greedy ranker fills greedily: k, or the k grid's maximum (never below k), ≤ width."""
    depth = max(k, *k_grid) if greedy_depth == "k_grid_max" else k
    return min(depth, width)


@dataclass(frozen=True)
class TransferConfig:
    """Zero-shot transfer: fine-tune each checkpoint on English, evaluate on the target languages.

    ``pos`` / ``xnli`` override the tasks' fine-tuning hyperparameters (``transfer.finetune.FinetuneParams``);
    ``target_languages`` defaults to the study's languages (XNLI: those with an XNLI file).
    A trial requests a GPU when ``use_gpu`` and the cluster has one.
    """

    tasks: tuple[str, ...] = ("pos",)
    target_languages: tuple[str, ...] = ()
    xnli_dir: str | None = None
    pos: dict = field(default_factory=dict)
    xnli: dict = field(default_factory=dict)
    num_cpus: float = 1.0
    use_gpu: bool = True

    def __post_init__(self) -> None:
        problems = all_known("tasks", "task", self.tasks, TRANSFER_TASKS)
        for task in TRANSFER_TASKS:
            try:
                FinetuneParams(**getattr(self, task))
            except (TypeError, ValueError) as err:
                problems.append(f"{task}: {err}")
        reject(problems)


#: Which checkpoints the lottery prunes: each model's last one, or all of them.
LOTTERY_CHECKPOINTS: tuple[str, ...] = ("last", "all")


@dataclass(frozen=True)
class LotteryConfig:
    """Lottery-ticket sub-networks by iterative magnitude pruning, per (checkpoint, task, language, seed).

    ``params`` overrides `lottery.params.LotteryParams` for every task, ``pos`` / ``lm`` / ``xnli`` for one
    (on top of the task's defaults, `lottery.tasks.TASKS`); ``languages`` defaults to the study's languages
    that have the task's data (UD: train, dev and test files). A second seed gives the noise ceiling of
    mask overlap. ``transfer`` fine-tunes each language's sub-network on every other language.
    """

    tasks: tuple[str, ...] = ("pos", "lm")
    languages: tuple[str, ...] = ()
    checkpoints: str = "last"
    seeds: tuple[int, ...] = (0, 1)
    transfer: bool = True
    xnli_dir: str | None = None
    params: dict = field(default_factory=dict)
    pos: dict = field(default_factory=dict)
    lm: dict = field(default_factory=dict)
    xnli: dict = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        from lottery.tasks import TASKS as LOTTERY_TASKS

        problems = all_known("tasks", "task", self.tasks, LOTTERY_TASKS)
        problems += one_of("checkpoints", self.checkpoints, LOTTERY_CHECKPOINTS)
        if not self.seeds:
            problems.append("seeds: at least one seed is required")
        problems += [f"seeds: must be at least 0, got {seed}" for seed in self.seeds if seed < 0]
        for task in (t for t in self.tasks if t in LOTTERY_TASKS):
            try:
                self.task_params(task)
            except (TypeError, ValueError) as err:
                problems.append(f"{task}: {err}")
        reject(problems)

    def task_params(self, task: str, seed: int = 0):
        """The task's `LotteryParams`: its defaults, then ``params``, then the task's own overrides; the seed."""
        from lottery.tasks import TASKS as LOTTERY_TASKS

        overrides = {**self.params, **getattr(self, task), "seed": seed}
        overrides = {name: tuple(v) if isinstance(v, list) else v for name, v in overrides.items()}
        return dataclasses.replace(LOTTERY_TASKS[task].params, **overrides)


#: Values of ``interventions.readout``: by the model's type, or forced.
INTERVENTION_READOUTS: tuple[str, ...] = ("auto", "masked", "causal")


@dataclass(frozen=True)
class InterventionsConfig:
    """Causal check of the rankings (paper 003 §4, `probing.interventions`): edit each ranking's top-k neurons.

    ``layers``, ``attributes``, ``languages`` and ``methods`` default to the study's (a subset of them; the
    ``random`` ranking is always intervened with, as the control, and must be among ``probing.methods``).
    ``k_grid`` empty: every ~1.3% of the width up to d (003's step of 10 for d = 768). ``betas``: translation's
    β; with more than one, β is chosen on the dev split (`probing.interventions.choose_beta`) and reported on
    test. ``max_words`` caps the words read per split. ``cross_lingual`` also edits each language's words with
    every other language's top-k neurons, at ``cross_lingual_k`` (default: the study's probing k, the k of the
    overlap matrix). ``readout``: ``auto`` reads a masked LM's reconstruction of the word and a causal LM's next
    word. ``compute_dtype`` as in extraction ("auto": bfloat16 on a GPU).
    """

    layers: tuple[int, ...] = ()
    attributes: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    interventions: tuple[str, ...] = ("ablation", "translation")
    k_grid: tuple[int, ...] = ()
    betas: tuple[float, ...] = (8.0,)
    checkpoints: str = "last"
    max_words: int | None = 500
    cross_lingual: bool = True
    cross_lingual_k: int | None = None
    readout: str = "auto"
    batch_tokens: int = 4096
    compute_dtype: str = "auto"
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        problems = [
            *all_known("interventions", "intervention", self.interventions, INTERVENTIONS),
            *all_known("methods", "method", self.methods, RANKERS),
            *all_known("attributes", "attribute", self.attributes, ATTRIBUTES),
            *one_of("checkpoints", self.checkpoints, LOTTERY_CHECKPOINTS),
            *one_of("readout", self.readout, INTERVENTION_READOUTS),
            *one_of("compute_dtype", self.compute_dtype, ("auto", *COMPUTE_DTYPES)),
            *at_least("batch_tokens", self.batch_tokens, 1),
        ]
        if not self.interventions:
            problems.append("interventions: at least one of ablation, translation")
        if not self.betas or any(beta <= 0 for beta in self.betas):
            problems.append(f"betas: one or more translation strengths above 0, got {list(self.betas)}")
        problems += [f"k_grid: every k must be at least 1, got {k}" for k in self.k_grid if k < 1]
        problems += [f"layers: layer {layer} is negative" for layer in self.layers if layer < 0]
        for name in ("max_words", "cross_lingual_k"):
            value = getattr(self, name)
            problems += [] if value is None else at_least(name, value, 1)
        reject(problems)


#: What to install for ``tracking.mlflow`` (the project's optional extra).
TRACKING_INSTALL = "pip install -e .[tracking]"


@dataclass(frozen=True)
class MLflowConfig:
    """Where the Tune stages log their trials in MLflow (`ray_jobs.tracking`).

    ``tracking_uri`` goes to MLflow as written: a server (``http://host:5000``), a database
    (``sqlite:///abs/mlflow.db``) or a file store (``file:///abs/mlruns``); the driver logs, so a file store
    lies on the driver's machine. ``experiment_name`` defaults to the study's name.
    """

    tracking_uri: str
    experiment_name: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.tracking_uri.strip():
            problems.append("tracking_uri: expected an MLflow tracking URI (e.g. file:///abs/mlruns), got ''")
        if self.experiment_name is not None and not self.experiment_name.strip():
            problems.append("experiment_name: expected a name or null (the study's name), got ''")
        reject(problems)


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking of the Tune trials; none when ``mlflow`` is absent. Never part of a result."""

    mlflow: MLflowConfig | None = None

    def __post_init__(self) -> None:
        reject(mlflow_problems(self.mlflow, importlib.util.find_spec("mlflow") is not None))


def mlflow_problems(mlflow: MLflowConfig | None, installed: bool) -> list[str]:
    """Asking for MLflow tracking without the mlflow package (an optional extra) is a problem."""
    if mlflow is None or installed:
        return []
    return [f"mlflow: needs the mlflow package, which is not installed ({TRACKING_INSTALL}), or remove tracking.mlflow"]


@dataclass(frozen=True)
class StudyConfig:
    """A whole study; ``protocol`` names the preset its choices were resolved from (``probing.protocols``)."""

    name: str
    languages: tuple[str, ...]
    attributes: tuple[str, ...]
    layers: tuple[int, ...]
    models: tuple[ModelSpec, ...]
    ud_dir: str
    output_root: str
    protocol: str = "default"
    data: DataParams = field(default_factory=DataParams)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    probing: ProbingConfig = field(default_factory=ProbingConfig)
    transfer: TransferConfig | None = None
    lottery: LotteryConfig | None = None
    interventions: InterventionsConfig | None = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def model_revisions(spec: ModelSpec) -> tuple[str, ...]:
    """The checkpoints of a model: its configured revisions, or its pre-training checkpoints."""
    if spec.pretrain is not None:
        return tuple(step_name(s) for s in checkpoint_steps(spec.pretrain.steps, spec.pretrain.checkpoints))
    return spec.revisions or ("main",)


# --- checks across sections ---------------------------------------------------------------------


def _is_name(name: str) -> bool:
    """Whether a language is a plain folder name (not ``../ud/fr`` or ``/abs/fr``)."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\")


def is_local_path(model_id: str) -> bool:
    """Whether a model id names a local directory (absolute, or relative to the config) rather than a hub id."""
    return Path(model_id).is_absolute() or model_id.startswith((".", "~", "$"))


def _local_model_problems(spec: ModelSpec) -> list[str]:
    """A local model directory that is missing, lacks a revision, or whose weight files are cut short."""
    from probing.checkpoint_files import weight_problems
    from probing.models import resolve_model

    if not Path(spec.id).is_dir():
        return [f"models.{spec.name}: the local model directory {spec.id} does not exist"]
    problems = []
    for revision in model_revisions(spec):
        try:
            directory = resolve_model(spec.id, revision)[0]
        except FileNotFoundError as err:
            problems.append(f"models.{spec.name}: {err}")
            continue
        problems += [f"models.{spec.name}: {revision}: {problem}" for problem in weight_problems(directory)]
    return problems


def _model_shape(spec: ModelSpec, problems: list[str]) -> tuple[int, int] | None:
    """(number of layers, hidden size), read from the pre-training params or the model's config."""
    if spec.pretrain is not None:
        return spec.pretrain.n_layer, spec.pretrain.hidden_size
    from transformers import AutoConfig

    from probing.models import resolve_model

    if is_local_path(spec.id):
        local = _local_model_problems(spec)
        if local:
            problems += local
            return None
    revision = model_revisions(spec)[0]
    try:
        source, rev = resolve_model(spec.id, revision)
        config = AutoConfig.from_pretrained(source, revision=rev)
    except Exception as err:
        problems.append(
            f"models.{spec.name}: cannot read the config of {spec.id}@{revision}: {str(err).splitlines()[0]}"
        )
        return None
    return int(config.num_hidden_layers), int(config.hidden_size)


def _study_problems(config: StudyConfig, check_models: bool) -> list[str]:
    """What no section can check alone: folders on disk, models against layers and k, params against the protocol."""
    problems = _data_problems(config) + _ranker_params_problems(config)
    if config.transfer is not None:
        problems += _section_problems(config, "transfer", "target_languages")
    if config.lottery is not None:
        problems += _section_problems(config, "lottery", "languages")
    if config.interventions is not None:
        problems += _interventions_problems(config)
    if not config.models:
        problems.append("models: at least one model is required")
    for spec in config.models:
        if check_models or spec.pretrain is not None:
            problems += _model_fit_problems(config, spec)
    return problems


def _data_problems(config: StudyConfig) -> list[str]:
    """The treebank folders of the languages, the attributes, the layers asked for."""
    problems = []
    ud_dir = Path(config.ud_dir)
    if not ud_dir.is_dir():
        problems.append(f"ud_dir: {ud_dir} is not a directory")
    if not config.languages:
        problems.append("languages: at least one language is required")
    elif ud_dir.is_dir():
        for lang in config.languages:
            if not _is_name(lang):
                problems.append(f"languages: '{lang}' is a path, not a language (a folder name in {ud_dir})")
            elif not (ud_dir / lang).is_dir():
                problems.append(f"languages: unknown language '{lang}': no treebank folder {ud_dir / lang}")
            elif not any((ud_dir / lang).glob("*.conllu")):
                problems.append(f"languages: language '{lang}' has no *.conllu file in {ud_dir / lang}")
            else:
                try:
                    treebank_files(ud_dir, lang)
                except CoNLLUError as err:
                    problems.append(f"languages: {err}")
    if not config.attributes:
        problems.append("attributes: at least one attribute is required")
    problems += all_known("attributes", "attribute", config.attributes, ATTRIBUTES)
    if not config.layers:
        problems.append("layers: at least one layer is required")
    for layer in config.layers:
        if layer < 0:
            problems.append(f"layers: layer {layer} is negative (0 = embeddings)")
    return problems


def _model_fit_problems(config: StudyConfig, spec: ModelSpec) -> list[str]:
    """Layers beyond the model's depth, k above its width."""
    problems: list[str] = []
    shape = _model_shape(spec, problems)
    if shape is None:
        return problems
    depth, width = shape
    for layer in config.layers:
        if layer > depth:
            problems.append(
                f"layers: layer {layer} is beyond model '{spec.name}' ({depth} layers; "
                f"valid 0..{depth}, 0 = embeddings)"
            )
    if config.probing.k_fraction is None and config.probing.k > width:
        problems.append(f"probing.k: {config.probing.k} is larger than the hidden size {width} of model '{spec.name}'")
    return problems


def _ranker_params_problems(config: StudyConfig) -> list[str]:
    """Construct each ranker from its overrides, so that its params dataclass validates them.

    A field that the study's protocol sets but that this version of the ranker lacks is named in a
    warning rather than a problem: the presets (``probing.protocols``) are the contract the rankers
    implement, and a trial that gets such a field fails loudly in ``make_ranker``.
    """
    problems = []
    preset = PROTOCOLS.get(config.protocol, {})
    for method, overrides in config.probing.params.items():
        known = {f.name for f in dataclasses.fields(RANKERS[method].params_type)}
        missing = sorted(set(preset.get(method, {})) - known)
        if missing:
            warnings.warn(
                f"protocol {config.protocol!r} sets probing.params.{method}.{{{', '.join(missing)}}}, "
                f"which this version of the {method} ranker does not have; its trials will fail",
                stacklevel=2,
            )
        try:
            make_ranker(method, {name: v for name, v in overrides.items() if name not in missing})
        except (TypeError, ValueError) as err:
            problems.append(f"probing.params.{method}: {err}")
    return problems


def _xnli_dir_problems(section: str, tasks: tuple[str, ...], xnli_dir: str | None) -> list[str]:
    """A section that asks for the xnli task needs its folder of XNLI files."""
    if "xnli" in tasks and not (xnli_dir and Path(xnli_dir).is_dir()):
        return [f"{section}.xnli_dir: the xnli task needs a folder of dev-<lang>.tsv files, got {xnli_dir}"]
    return []


def _section_problems(config: StudyConfig, section: str, languages_field: str) -> list[str]:
    """A transfer-like section's XNLI folder when it asks for the xnli task, and its languages' treebank folders."""
    values = getattr(config, section)
    problems = _xnli_dir_problems(section, values.tasks, values.xnli_dir)
    if "xnli" in values.tasks and not problems:
        languages = getattr(values, languages_field) or config.languages
        targets = TASKS["xnli"].targets(values.xnli_dir, languages)
        try:  # read now, so that a malformed file stops the study before it starts, not inside a trial
            read_parallel_devs(values.xnli_dir, SOURCE_LANGUAGE, [SOURCE_LANGUAGE, *targets])
        except (XNLIError, FileNotFoundError) as err:
            problems.append(f"{section}.xnli_dir: {err}")
    for language in getattr(values, languages_field):
        if not _is_name(language):
            problems.append(f"{section}.{languages_field}: '{language}' is a path, not a language")
        elif not (Path(config.ud_dir) / language).is_dir():
            problems.append(f"{section}.{languages_field}: unknown language '{language}': no folder in {config.ud_dir}")
    return problems


def _interventions_problems(config: StudyConfig) -> list[str]:
    """Interventions read the study's rankings: their layers, attributes, languages and methods must be the
    study's, and the random control must be among the rankings."""
    section = config.interventions
    problems = []
    for name, chosen, study in (
        ("layers", section.layers, config.layers),
        ("attributes", section.attributes, config.attributes),
        ("languages", section.languages, config.languages),
        ("methods", section.methods, config.probing.methods),
    ):
        problems += [f"interventions.{name}: {x!r} is not one of the study's {name}" for x in chosen if x not in study]
    if "random" not in config.probing.methods:
        problems.append("interventions: the random control needs 'random' among probing.methods")
    return problems


# --- YAML → StudyConfig -------------------------------------------------------------------------


def _resolve(path: str, base: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(path))
    if "://" in expanded or Path(expanded).is_absolute():
        return expanded
    return str((base / expanded).resolve())


#: ``$NAME`` or ``${NAME}`` in a path.
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _unset_variables(field: str, path: object) -> list[str]:
    """A problem for each environment variable a path names that is not set (it stays in the path as
    written, and would become a folder named ``${VAR}``)."""
    if not isinstance(path, str):
        return []
    names = {a or b for a, b in _VARIABLE.findall(path)}
    return [f"{field}: ${{{name}}} is not set in the environment" for name in sorted(names - set(os.environ))]


def _output_root_problems(root: str) -> list[str]:
    """A local output root that is a file, or that cannot be written or created (nothing is created here)."""
    if "://" in root:
        return []
    path = Path(root)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        return [f"output_root: {root} {where}"]
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        where = "is not writable" if existing == path else f"cannot be created in {existing}"
        return [f"output_root: {root} {where} ({err.strerror})"]
    return []


def _merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``; mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


#: Where each section of a preset (``probing.protocols``) goes in the study config's YAML.
_PRESET_PLACES: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "probing": ("probing",),
    "evaluation": ("probing", "evaluation"),
    **{method: ("probing", "params", method) for method in ("latent", "gaussian", "linear")},
}


def _preset_yaml(protocol: str, methods: object) -> dict:
    """A preset as config YAML: its sections at their places; ranker sections only for the study's methods."""
    tree: dict = {}
    for section, overrides in PROTOCOLS[protocol].items():
        place = _PRESET_PLACES[section]
        if place[:2] == ("probing", "params") and section not in methods:
            continue
        node = tree
        for key in place[:-1]:
            node = node.setdefault(key, {})
        node[place[-1]] = {**node.get(place[-1], {}), **overrides}
    return tree


def _apply_protocol(raw: dict, problems: list[str]) -> dict:
    """The config's YAML over its protocol's preset: an explicit setting wins, field by field."""
    protocol = raw.get("protocol", "default")
    if protocol not in PROTOCOLS:
        problems.append(f"protocol: unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        return raw
    probing = raw.get("probing")
    methods = probing.get("methods") if isinstance(probing, dict) else None
    if not isinstance(methods, list | tuple):
        methods = ProbingConfig.methods
    return _merge(_preset_yaml(protocol, methods), raw)


def _k_given_once(raw: dict, problems: list[str]) -> None:
    """``probing.k`` and ``probing.k_fraction`` are alternatives: a config gives at most one."""
    probing = raw.get("probing")
    if isinstance(probing, dict) and "k" in probing and probing.get("k_fraction") is not None:
        problems.append("probing.k_fraction: give either probing.k or probing.k_fraction, not both")


def _model_names_unique(raw: dict, problems: list[str]) -> None:
    """No two models share a name; read from the YAML, so that a model rejected for another reason is compared too."""
    models = raw.get("models")
    specs = models if isinstance(models, list) else []
    names = [spec.get("name") for spec in specs if isinstance(spec, dict) and isinstance(spec.get("name"), str)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"models: name '{name}' is used twice")


def _read_yaml(path: Path, seen: tuple[Path, ...]) -> object:
    """The YAML of a config, with ``extends: other.yaml`` (relative to this file) merged under it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["no such file"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"not valid YAML: {err}"]) from None
    if not (isinstance(raw, dict) and "extends" in raw):
        return raw
    base_path = (path.parent / str(raw.pop("extends"))).resolve()
    if base_path in seen:
        raise ConfigError(str(path), [f"extends: {base_path} extends itself"])
    base = _read_yaml(base_path, (*seen, base_path))
    if not isinstance(base, dict):
        raise ConfigError(str(path), [f"extends: {base_path} is not a mapping"])
    return _merge(base, raw)


def load_config(
    path: str | Path, *, output_root: str | None = None, ud_dir: str | None = None, check_models: bool = True
) -> StudyConfig:
    """Read, resolve and validate a study config; raise ConfigError listing every problem.

    ``extends: base.yaml`` starts from another config and overrides it key by key (relative paths
    then resolve against the extending file's directory). ``output_root`` and ``ud_dir`` override
    the file's values (a job runs in a copy of the working directory, so a resubmitted job must be
    pointed at the same absolute output root).
    ``check_models=False`` skips reading hub model configs (for offline checks of cluster configs).
    ``protocol:`` (default, wang2024, antverg2022) sets every choice its preset in ``probing.protocols``
    lists, under the file's own settings: a setting in the file wins over the preset, field by field.
    """
    path = Path(path)
    raw = _read_yaml(path, ())
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"config: expected a mapping, got {describe(raw)}"])
    raw = {"name": path.stem, **raw}
    for key in ("output_root", "ud_dir"):
        if isinstance(raw.get(key), str):
            raw[key] = _resolve(raw[key], path.parent)
    for key, value in (("output_root", output_root), ("ud_dir", ud_dir)):
        if value is not None:
            raw[key] = _resolve(value, Path.cwd())
    for section in ("transfer", "lottery"):
        values = raw.get(section)
        if isinstance(values, dict) and isinstance(values.get("xnli_dir"), str):
            raw[section] = {**values, "xnli_dir": _resolve(values["xnli_dir"], path.parent)}
    models = [model for model in raw.get("models") or [] if isinstance(model, dict)]
    for model in models:
        if isinstance(model.get("id"), str) and is_local_path(model["id"]):
            model["id"] = _resolve(model["id"], path.parent)
    problems = [
        *_unset_variables("output_root", raw.get("output_root")),
        *_unset_variables("ud_dir", raw.get("ud_dir")),
        *_unset_variables("transfer.xnli_dir", (raw.get("transfer") or {}).get("xnli_dir")),
        *(p for i, model in enumerate(models) for p in _unset_variables(f"models[{i}].id", model.get("id"))),
    ]
    if isinstance(raw.get("output_root"), str) and not problems:
        problems += _output_root_problems(raw["output_root"])
    raw = _apply_protocol(raw, problems)
    _k_given_once(raw, problems)
    _model_names_unique(raw, problems)
    built: list[str] = []
    config = build(StudyConfig, raw, "", built)
    # a value that could not be built was replaced by a default: checks that read it would mislead
    across = _study_problems(config, check_models)
    problems += built + [p for p in across if not any(overlaps(problem_path(p), problem_path(b)) for b in built)]
    if problems:
        raise ConfigError(str(path), problems)
    return config
