"""One study config: a YAML file → typed, validated dataclasses.

Validation happens before any Ray work starts and reports every problem at once (unknown keys,
wrong types, unknown languages/attributes/methods, layers beyond a model's depth, k above its
width, a missing ``ud_dir`` or treebank). Relative paths in a config are resolved against the
directory of the config file; ``${VAR}`` is expanded. This module does not import Ray.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from probing.datasets import DataParams
from probing.extraction import COMPUTE_DTYPES, ExtractionParams
from probing.pretrain import PretrainParams, checkpoint_steps, step_name
from probing.protocols import PROTOCOLS
from probing.unimorph import ATTRIBUTES

#: Ranking methods a study may ask for.
RANKING_METHODS: tuple[str, ...] = ("latent", "gaussian", "linear", "probeless", "random")
#: Zero-shot transfer tasks.
TRANSFER_TASKS: tuple[str, ...] = ("pos", "xnli")
#: How far greedy rankers order neurons: up to the study's k, or up to the k grid's maximum (paper 002).
GREEDY_DEPTHS: tuple[str, ...] = ("k", "k_grid_max")
#: How words are split into train/dev/test (``probing.datasets``).
DATA_SPLITS: tuple[str, ...] = ("lemma", "ud")


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


@dataclass(frozen=True)
class ModelSpec:
    """A model to study: a hub id or local directory with revisions, or one to pre-train first."""

    name: str
    id: str | None = None
    revisions: tuple[str, ...] = ()
    pretrain: PretrainParams | None = None


#: Values of ``extraction.device_map`` (accelerate's automatic placement across the actor's GPUs).
DEVICE_MAPS: tuple[str, ...] = ("auto",)


@dataclass(frozen=True)
class ExtractionConfig:
    """Activation extraction: how (params) and with which workers.

    ``dtype`` is the storage dtype of the vectors; ``compute_dtype`` that of the forward pass ("auto":
    bfloat16 when the actor asks for a GPU, else float32 — resolved from the config alone, so that the
    fingerprint is known before any actor starts). ``device_map: auto`` spreads a checkpoint that does
    not fit one GPU over the actor's GPUs. ``overlap_tokenization`` prepares the next chunk in a
    background thread during the forward pass (None: only when the actor has a GPU; on 2 CPUs the
    thread competes with the forward pass for nothing, see the README's benchmarks).
    """

    batch_tokens: int = 8192
    dtype: str = "float32"
    compute_dtype: str = "auto"
    device_map: str | None = None
    overlap_tokenization: bool | None = None
    max_length: int | None = None
    workers: int = 1
    resources: Resources = field(default_factory=Resources)

    @property
    def params(self) -> ExtractionParams:
        return ExtractionParams(
            batch_tokens=self.batch_tokens,
            dtype=self.dtype,
            max_length=self.max_length,
            compute_dtype=resolve_compute_dtype(self.compute_dtype, self.resources.num_gpus),
        )

    @property
    def overlap(self) -> bool:
        """Whether the actor overlaps tokenization with the forward pass."""
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
        problems.append(f"extraction.device_map: expected null or {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    if not accelerate_installed:
        problems.append(
            "extraction.device_map: needs the 'accelerate' package, which is not installed "
            "(pip install accelerate), or remove device_map"
        )
    if num_gpus <= 0:
        problems.append(
            "extraction.device_map: spreads a checkpoint over GPUs, but extraction.resources.num_gpus is 0; "
            "give the actor GPUs or remove device_map"
        )
    return problems


@dataclass(frozen=True)
class ProbingConfig:
    """Which rankings to compute, how to evaluate them, and the resources of one Tune trial.

    ``params`` maps a method to overrides of its hyperparameter dataclass (``probing.rankers``);
    ``evaluation`` overrides ``probing.evaluation.EvaluationParams`` (the classifiers that score a
    ranking); ``max_examples`` caps each split of a dataset by a seeded subsample (None: all). A trial
    with ``num_gpus`` > 0 fits its rankers and evaluation classifiers on that GPU.

    ``k_fraction`` gives k relative to each model's width d instead of ``k``: k = max(1, round(k_fraction·d)).
    ``greedy_depth`` is how many positions greedy rankers (latent, gaussian) fill greedily: ``k``, or
    ``k_grid_max`` (the largest k evaluated, as paper 002's code does); the rest follow by score.
    """

    methods: tuple[str, ...] = ("latent", "gaussian", "linear", "probeless", "random")
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


def model_revisions(spec: ModelSpec) -> tuple[str, ...]:
    """The checkpoints of a model: its configured revisions, or its pre-training checkpoints."""
    if spec.pretrain is not None:
        return tuple(step_name(s) for s in checkpoint_steps(spec.pretrain.steps, spec.pretrain.checkpoints))
    return spec.revisions or ("main",)


# --- YAML → dataclasses -------------------------------------------------------------------------

_INVALID = object()


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _coerce(hint: object, value: object, where: str, problems: list[str]) -> object:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where, problems)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append(f"{where}: expected a list, got {_describe(value)}")
            return _INVALID
        item_types = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        if len(item_types) != len(value):
            problems.append(f"{where}: expected a list of {len(item_types)} items, got {len(value)}")
            return _INVALID
        pairs = enumerate(zip(item_types, value, strict=True))
        items = [_coerce(t, v, f"{where}[{i}]", problems) for i, (t, v) in pairs]
        return _INVALID if any(x is _INVALID for x in items) else tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            problems.append(f"{where}: expected a mapping with string keys, got {_describe(value)}")
            return _INVALID
        if not args:
            return dict(value)
        items = {key: _coerce(args[1], v, f"{where}.{key}", problems) for key, v in value.items()}
        return _INVALID if any(x is _INVALID for x in items.values()) else items
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, problems)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 as a string
            except ValueError:
                pass
    elif hint is str and isinstance(value, str):
        return value
    problems.append(f"{where}: expected {getattr(hint, '__name__', hint)}, got {_describe(value)}")
    return _INVALID


def _build(cls: type, data: object, where: str, problems: list[str]) -> object:
    """Construct dataclass ``cls`` from a mapping, recording problems instead of stopping at the first."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {_describe(data)}")
        return _INVALID
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - set(fields), key=str):
        problems.append(f"{where}.{key}: unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        value = _coerce(hints[name], data[name], f"{where}.{name}", problems) if name in data else _INVALID
        if name not in data and required:
            problems.append(f"{where}.{name}: required")
        if value is not _INVALID:
            kwargs[name] = value
        elif required:  # a stand-in, so that the other fields can still be checked
            kwargs[name] = () if typing.get_origin(hints[name]) is tuple else hints[name]()
    try:
        return cls(**kwargs)
    except TypeError:
        return _INVALID


# --- semantic checks ----------------------------------------------------------------------------


def _model_shape(spec: ModelSpec, problems: list[str]) -> tuple[int, int] | None:
    """(number of layers, hidden size), read from the pre-training params or the model's config."""
    if spec.pretrain is not None:
        return spec.pretrain.n_layer, spec.pretrain.hidden_size
    from transformers import AutoConfig

    from probing.models import resolve_model

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


def _check(config: StudyConfig, problems: list[str], check_models: bool) -> None:
    ud_dir = Path(config.ud_dir)
    if not ud_dir.is_dir():
        problems.append(f"ud_dir: {ud_dir} is not a directory")
    if not config.languages:
        problems.append("languages: at least one language is required")
    elif ud_dir.is_dir():
        for lang in config.languages:
            if not (ud_dir / lang).is_dir():
                problems.append(f"languages: unknown language '{lang}': no treebank folder {ud_dir / lang}")
            elif not any((ud_dir / lang).glob("*.conllu")):
                problems.append(f"languages: language '{lang}' has no *.conllu file in {ud_dir / lang}")
    if not config.attributes:
        problems.append("attributes: at least one attribute is required")
    for attribute in config.attributes:
        if attribute not in ATTRIBUTES:
            problems.append(f"attributes: unknown attribute '{attribute}' (known: {', '.join(ATTRIBUTES)})")
    if not config.layers:
        problems.append("layers: at least one layer is required")
    for layer in config.layers:
        if layer < 0:
            problems.append(f"layers: layer {layer} is negative (0 = embeddings)")
    for method in config.probing.methods:
        if method not in RANKING_METHODS:
            problems.append(f"probing.methods: unknown method '{method}' (known: {', '.join(RANKING_METHODS)})")
    if config.probing.k < 1:
        problems.append(f"probing.k: must be at least 1, got {config.probing.k}")
    fraction = config.probing.k_fraction
    if fraction is not None and not 0 < fraction <= 1:
        problems.append(f"probing.k_fraction: expected a fraction of the width in (0, 1], got {fraction}")
    if config.probing.greedy_depth not in GREEDY_DEPTHS:
        problems.append(
            f"probing.greedy_depth: expected one of {', '.join(GREEDY_DEPTHS)}, got {config.probing.greedy_depth!r}"
        )
    _check_data(config.data, problems)
    if config.extraction.dtype not in ("float32", "float16"):
        problems.append(f"extraction.dtype: expected float32 or float16, got {config.extraction.dtype!r}")
    if config.extraction.compute_dtype not in ("auto", *COMPUTE_DTYPES):
        problems.append(
            f"extraction.compute_dtype: expected auto, {', '.join(COMPUTE_DTYPES)}, "
            f"got {config.extraction.compute_dtype!r}"
        )
    problems += device_map_problems(
        config.extraction.device_map,
        config.extraction.resources.num_gpus,
        importlib.util.find_spec("accelerate") is not None,
    )
    if config.extraction.batch_tokens < 1 or config.extraction.workers < 1:
        problems.append("extraction: batch_tokens and workers must be at least 1")

    for classifier in config.probing.classifiers:
        if classifier not in ("linear", "gaussian"):
            problems.append(f"probing.classifiers: unknown classifier '{classifier}' (known: linear, gaussian)")
    if any(k < 1 for k in config.probing.k_grid):
        problems.append(f"probing.k_grid: every k must be at least 1, got {list(config.probing.k_grid)}")
    _check_ranker_params(config, problems)
    _check_evaluation(config, problems)
    if config.transfer is not None:
        _check_transfer(config, problems)
    if not config.models:
        problems.append("models: at least one model is required")
    names = [m.name for m in config.models]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"models: name '{name}' is used twice")
    for spec in config.models:
        where = f"models.{spec.name}"
        if not spec.name or any(c in spec.name for c in "/=\\ "):
            problems.append(f"{where}: name must be non-empty without '/', '=', '\\' or spaces")
        if (spec.id is None) == (spec.pretrain is None):
            problems.append(f"{where}: give exactly one of 'id' (hub id or local path) and 'pretrain'")
            continue
        if spec.pretrain is not None:
            p = spec.pretrain
            if spec.revisions:
                problems.append(f"{where}.revisions: a pre-trained model's revisions are its checkpoints; remove them")
            if p.hidden_size % p.n_head:
                problems.append(f"{where}.pretrain: hidden_size {p.hidden_size} is not divisible by n_head {p.n_head}")
            if p.steps < 1 or p.checkpoints < 1:
                problems.append(f"{where}.pretrain: steps and checkpoints must be at least 1")
        if check_models or spec.pretrain is not None:
            shape = _model_shape(spec, problems)
            if shape is None:
                continue
            depth, width = shape
            for layer in config.layers:
                if layer > depth:
                    problems.append(
                        f"layers: layer {layer} is beyond model '{spec.name}' ({depth} layers; "
                        f"valid 0..{depth}, 0 = embeddings)"
                    )
            if config.probing.k_fraction is None and config.probing.k > width:
                problems.append(
                    f"probing.k: {config.probing.k} is larger than the hidden size {width} of model '{spec.name}'"
                )


def _check_data(data: DataParams, problems: list[str]) -> None:
    fractions = data.split_fractions
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        problems.append(f"data.split_fractions: expected three positive fractions summing to 1, got {list(fractions)}")
    if data.min_examples_per_split < 1:
        problems.append("data.min_examples_per_split: must be at least 1")
    if data.split not in DATA_SPLITS:
        problems.append(f"data.split: expected one of {', '.join(DATA_SPLITS)}, got {data.split!r}")
    if data.min_types_per_value < 1:
        problems.append(f"data.min_types_per_value: must be at least 1, got {data.min_types_per_value}")


def _check_ranker_params(config: StudyConfig, problems: list[str]) -> None:
    """Construct each ranker from its overrides, so that its params dataclass validates them.

    A field that the study's protocol sets but that this version of the ranker lacks is named in a
    warning rather than a problem: the presets (``probing.protocols``) are the contract the rankers
    implement, and a trial that gets such a field fails loudly in ``make_ranker``.
    """
    from probing.rankers import RANKERS, make_ranker

    preset = PROTOCOLS.get(config.protocol, {})
    for method, overrides in config.probing.params.items():
        if method not in config.probing.methods:
            problems.append(f"probing.params.{method}: '{method}' is not one of probing.methods")
            continue
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


def _check_evaluation(config: StudyConfig, problems: list[str]) -> None:
    """Validate ``probing.evaluation`` by constructing ``EvaluationParams``, or by the presets' names without it."""
    import probing.evaluation

    overrides = config.probing.evaluation
    params_type = getattr(probing.evaluation, "EvaluationParams", None)
    if params_type is None:
        known = {name for preset in PROTOCOLS.values() for name in preset.get("evaluation", {})}
        for name in sorted(set(overrides) - known):
            problems.append(f"probing.evaluation.{name}: unknown key (known: {', '.join(sorted(known))})")
        return
    try:
        params_type(**overrides)
    except (TypeError, ValueError) as err:
        problems.append(f"probing.evaluation: {err}")


def _check_transfer(config: StudyConfig, problems: list[str]) -> None:
    from transfer.finetune import FinetuneParams

    transfer = config.transfer
    for task in transfer.tasks:
        if task not in TRANSFER_TASKS:
            problems.append(f"transfer.tasks: unknown task '{task}' (known: {', '.join(TRANSFER_TASKS)})")
    if "xnli" in transfer.tasks and not (transfer.xnli_dir and Path(transfer.xnli_dir).is_dir()):
        problems.append(
            f"transfer.xnli_dir: the xnli task needs a folder of dev-<lang>.tsv files, got {transfer.xnli_dir}"
        )
    for language in transfer.target_languages:
        if not (Path(config.ud_dir) / language).is_dir():
            problems.append(f"transfer.target_languages: unknown language '{language}': no folder in {config.ud_dir}")
    for task in ("pos", "xnli"):
        try:
            FinetuneParams(**getattr(transfer, task))
        except (TypeError, ValueError) as err:
            problems.append(f"transfer.{task}: {err}")


def _field_of(problem: str) -> str:
    """The top-level field a problem message is about ("layers[1]: ..." → "layers")."""
    return problem.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]


def _resolve(path: str, base: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(path))
    if "://" in expanded or Path(expanded).is_absolute():
        return expanded
    return str((base / expanded).resolve())


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
    if isinstance(raw, dict):
        raw = {"name": path.stem, **raw}
        for key in ("output_root", "ud_dir"):
            if isinstance(raw.get(key), str):
                raw[key] = _resolve(raw[key], path.parent)
        for key, value in (("output_root", output_root), ("ud_dir", ud_dir)):
            if value is not None:
                raw[key] = _resolve(value, Path.cwd())
        transfer = raw.get("transfer")
        if isinstance(transfer, dict) and isinstance(transfer.get("xnli_dir"), str):
            raw["transfer"] = {**transfer, "xnli_dir": _resolve(transfer["xnli_dir"], path.parent)}
        for model in raw.get("models") or []:
            if isinstance(model, dict) and isinstance(model.get("id"), str) and model["id"].startswith((".", "~")):
                model["id"] = _resolve(model["id"], path.parent)
    problems: list[str] = []
    if isinstance(raw, dict):
        raw = _apply_protocol(raw, problems)
        _k_given_once(raw, problems)
    config = _build(StudyConfig, raw, "config", problems)
    problems = [p.replace("config.", "", 1) for p in problems]
    if config is not _INVALID:
        semantic: list[str] = []
        _check(config, semantic, check_models)
        broken = {_field_of(p) for p in problems}
        problems += [p for p in semantic if _field_of(p) not in broken]
    if problems:
        raise ConfigError(str(path), problems)
    return config
