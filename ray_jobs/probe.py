"""Stage 3: neuron rankings and their evaluation, one Ray Tune trial per activation partition
(checkpoint, layer, language), running every (attribute, method, seed) unit of that partition.

A unit reads its word dataset and the partition's activations (read once per trial), fits the
ranker, evaluates the ranking and its bottom-to-top reverse with both classifiers over the k grid
(with a control task), and writes ``probe_metrics`` then ``rankings`` (the completion marker) as
soon as it finishes, so resumption stays per unit. Finished units (same fingerprint) are not
scheduled again. A unit that cannot run (one value only, too few examples, attribute not
annotated) writes a marker in ``failures``; a unit that raises is recorded as a failure and
retried by the next run; neither stops the other units of its trial.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections import Counter
from itertools import product

import numpy as np
import pyarrow as pa

from analysis.store import Store, fingerprint
from probing.datasets import TRIAL_SEED_VERSION, trial_seed
from ray_jobs.common import (
    FAILURE_SCHEMA,
    Failures,
    StageResult,
    checkpoints,
    config_from_args,
    init_ray,
    job_arguments,
)
from ray_jobs.config import StudyConfig, greedy_steps, resolve_k
from ray_jobs.extract import activation_fingerprint, actor_device
from ray_jobs.prepare import DataFingerprints, run_prepare

RANKING_SCHEMA = pa.schema(
    [
        ("seed", pa.int64()),
        ("direction", pa.string()),
        ("ranking", pa.list_(pa.int32())),
        ("scores", pa.list_(pa.float64())),
        ("k", pa.int64()),
        ("n_greedy", pa.int64()),
        ("d", pa.int64()),
        ("params", pa.string()),
        ("values", pa.list_(pa.string())),
        ("n_train", pa.int64()),
        ("n_dev", pa.int64()),
        ("n_test", pa.int64()),
        ("seconds", pa.float64()),
    ]
)

METRIC_SCHEMA = pa.schema(
    [
        ("seed", pa.int64()),
        ("direction", pa.string()),
        ("classifier", pa.string()),
        ("k", pa.int64()),
        ("accuracy", pa.float64()),
        ("nmi", pa.float64()),
        ("nmi_beta", pa.float64()),
        ("accuracy_control_split", pa.float64()),
        ("control_accuracy", pa.float64()),
        ("selectivity", pa.float64()),
        ("majority", pa.float64()),
    ]
)


def trial_specs(config: StudyConfig, sources: dict[str, str], data_fps: dict[str, DataFingerprints]) -> list[dict]:
    """Every trial of the study, with the fingerprint of what it depends on (the evaluation's and rankers' versions
    included)."""
    from probing.evaluation import EVALUATION_VERSION
    from probing.rankers import RANKERS_VERSION

    p = config.probing
    languages = [lang for lang in config.languages if lang in data_fps]
    specs = []
    for (spec, revision), layer, language in product(checkpoints(config), config.layers, languages):
        if spec.name not in sources:
            continue
        act_fp = activation_fingerprint(config, sources[spec.name], revision, layer, data_fps[language].sentences)
        for attribute, method, seed in product(config.attributes, p.methods, p.seeds):
            key = {
                "model": spec.name,
                "checkpoint": revision,
                "layer": layer,
                "language": language,
                "attribute": attribute,
                "method": method,
            }
            params = p.params.get(method, {})
            specs.append(
                {
                    "key": key,
                    "seed": seed,
                    "root": config.output_root,
                    "k": p.k,
                    "k_fraction": p.k_fraction,
                    "greedy_depth": p.greedy_depth,
                    "k_grid": list(p.k_grid),
                    "classifiers": list(p.classifiers),
                    "params": params,
                    "evaluation": dict(p.evaluation),
                    "max_examples": p.max_examples,
                    "threads": int(p.resources.num_cpus),
                    "num_gpus": float(p.resources.num_gpus),
                    "activation_fingerprint": act_fp,
                    "fingerprint": fingerprint(
                        "probe",
                        TRIAL_SEED_VERSION,
                        EVALUATION_VERSION,
                        RANKERS_VERSION,
                        key,
                        seed,
                        p.k,
                        p.k_fraction,
                        p.greedy_depth,
                        p.k_grid,
                        p.classifiers,
                        p.max_examples,
                        params,
                        p.evaluation,
                        data_fps[language].words[attribute],
                        act_fp,
                    ),
                }
            )
    return specs


def _paths(store: Store, spec: dict) -> tuple[str, str, str]:
    part = f"seed-{spec['seed']}"
    failure = f"trial-{fingerprint(spec['key'], spec['seed'])}"
    return (
        store.path("rankings", part=part, **spec["key"]),
        store.path("probe_metrics", part=part, **spec["key"]),
        store.path("failures", part=failure, stage="probe"),
    )


def activation_path(store: Store, key: dict) -> str:
    return store.path(
        "activations", model=key["model"], checkpoint=key["checkpoint"], layer=key["layer"], language=key["language"]
    )


def is_done(store: Store, spec: dict) -> bool:
    """True when the trial's rankings, or its cannot-run marker, are stored with its fingerprint."""
    ranking_path, _, failure_path = _paths(store, spec)
    return store.done(ranking_path, spec["fingerprint"]) or store.done(failure_path, spec["fingerprint"])


class Partition:
    """One activation partition (checkpoint, layer, language), read once, and its words tables per attribute."""

    def __init__(self, store: Store, key: dict) -> None:
        from probing.probe_data import ActivationIndex

        self.store = store
        self.activations = ActivationIndex.from_table(store.read("activations", path=activation_path(store, key)))
        self.words: dict[str, object] = {}

    def probe_data(self, key: dict, max_examples: int | None, seed: int):
        """The unit's ProbeData and value names (`probing.probe_data.build_probe_data`)."""
        from probing.probe_data import CannotProbe, build_probe_data

        attribute, language = key["attribute"], key["language"]
        if attribute not in self.words:
            path = self.store.path("words", language=language, attribute=attribute)
            stored = self.store.stored_fingerprint(path) is not None
            self.words[attribute] = self.store.read("words", path=path) if stored else None
        if self.words[attribute] is None:
            raise CannotProbe(f"attribute {attribute} is not annotated in language {language}")
        return build_probe_data(self.words[attribute], self.activations, language, attribute, max_examples, seed)


def unit_label(spec: dict) -> str:
    """The unit's key as written in the failures table."""
    return "/".join(f"{k}={v}" for k, v in spec["key"].items()) + f"/seed={spec['seed']}"


def run_unit(spec: dict, partition: Partition, device: str = "cpu") -> dict:
    """Fit, evaluate and store one ranking (and its reverse) on the torch ``device``; a dataset that cannot be
    probed is marked, not raised."""
    from probing.evaluation import EvaluationParams, evaluate_ranking
    from probing.probe_data import CannotProbe
    from probing.rankers import RANKERS, make_ranker, reverse

    store = partition.store
    ranking_path, metrics_path, failure_path = _paths(store, spec)
    key, seed, method = spec["key"], spec["seed"], spec["key"]["method"]
    try:
        data, values = partition.probe_data(key, spec["max_examples"], seed)
    except CannotProbe as reason:
        row = {
            "stage": "probe",
            "key": unit_label(spec),
            "error": f"CannotProbe: {reason}",
            "detail": "",
            "time": time.time(),
        }
        store.write(pa.Table.from_pylist([row], schema=FAILURE_SCHEMA), failure_path, spec["fingerprint"])
        return {"status": "cannot_probe", "reason": str(reason), "compute_seconds": 0.0}
    began = time.perf_counter()
    params = {**spec["params"]}
    width = data.X_train.shape[1]
    k = resolve_k(spec["k"], spec["k_fraction"], width)
    if RANKERS[method].needs_k:
        params.setdefault("k", greedy_steps(k, spec["k_grid"], spec["greedy_depth"], width))
    ranker = make_ranker(method, params, seed=trial_seed(seed, key), device=device)
    ranking = ranker.fit(data.X_train, data.y_train, data.X_dev, data.y_dev)
    rankings = [("ttb", ranking)] + ([("btt", reverse(ranking))] if RANKERS[method].reversible else [])
    metrics, ranking_rows = [], []
    seconds = time.perf_counter() - began
    evaluation = EvaluationParams(**spec["evaluation"])
    for direction, r in rankings:
        for row in evaluate_ranking(r.order, data, spec["k_grid"], spec["classifiers"], seed, evaluation, device):
            metrics.append({"seed": seed, "direction": direction, **row})
        ranking_rows.append(
            {
                "seed": seed,
                "direction": direction,
                "ranking": r.order.astype(np.int32).tolist(),
                "scores": np.asarray(r.scores, dtype=np.float64).tolist(),
                "k": k,
                "n_greedy": r.n_greedy,
                "d": len(r.order),
                "params": json.dumps(r.params, sort_keys=True, default=str),
                "values": values,
                "n_train": len(data.y_train),
                "n_dev": len(data.y_dev),
                "n_test": len(data.y_test),
                "seconds": seconds,
            }
        )
    compute = time.perf_counter() - began
    store.write(pa.Table.from_pylist(metrics, schema=METRIC_SCHEMA), metrics_path, spec["fingerprint"])
    store.write(pa.Table.from_pylist(ranking_rows, schema=RANKING_SCHEMA), ranking_path, spec["fingerprint"])
    if store.fs.get_file_info(failure_path).type.name == "File":
        store.fs.delete_file(failure_path)  # a stale cannot-run marker of an earlier config
    best = max((m["accuracy"] for m in metrics if m["direction"] == "ttb" and m["k"] <= k), default=np.nan)
    return {"status": "ok", "compute_seconds": compute, "accuracy_at_k": best}


def run_partition(specs: list[dict]) -> list[dict]:
    """Every unit of one activation partition, reading the partition once; one unit's error does not stop the rest.

    Each unit writes its own result files as it finishes, so a trial killed midway loses only the unit in progress.
    The units compute on the trial's GPU when ``probing.resources.num_gpus`` gives it one (`actor_device`).
    """
    import torch

    torch.set_num_threads(max(1, specs[0]["threads"]))
    device = actor_device(specs[0].get("num_gpus", 0.0), torch.cuda.is_available(), "probing")
    partition = Partition(Store(specs[0]["root"]), specs[0]["key"])
    results = []
    for spec in specs:
        try:
            results.append(run_unit(spec, partition, device))
        except Exception as err:  # recorded by the driver as this unit's failure; the other units still run
            detail = "".join(traceback.format_exception(err))
            results.append({"status": "error", "error": f"{type(err).__name__}: {err}", "detail": detail})
    return results


def run_trial(spec: dict) -> dict:
    """One unit on its own (its partition read for it alone)."""
    return run_partition([spec])[0]


def partition_trainable(config: dict) -> None:
    from ray import tune

    began = time.perf_counter()
    results = run_partition(config["spec"]["units"])
    tune.report({"units": json.dumps(results), "trial_seconds": time.perf_counter() - began})


def partition_key(spec: dict) -> tuple:
    """The activation partition a unit reads: (model, checkpoint, layer, language)."""
    return tuple(spec["key"][c] for c in ("model", "checkpoint", "layer", "language"))


def run_probing(
    config: StudyConfig, sources: dict[str, str], data_fps: dict[str, DataFingerprints], failures: Failures
) -> StageResult:
    """Run every unfinished unit, one Ray Tune trial per activation partition; count units run now and stored.

    A unit is one (checkpoint, layer, language, attribute, method, seed) ranking; the trial of a partition runs
    all of its pending units in one process, so the partition is read once and Tune schedules a few dozen
    trials instead of thousands. The stage prints its compute efficiency: the units' fit + evaluation seconds
    over wall seconds × CPUs.
    """
    from ray_jobs.sweep import run_sweep

    store = Store(config.output_root)
    specs = trial_specs(config, sources, data_fps)
    pending = [s for s in specs if not is_done(store, s)]
    waiting = [s for s in pending if not store.done(activation_path(store, s["key"]), s["activation_fingerprint"])]
    pending = [s for s in pending if s not in waiting]
    groups: dict[tuple, list[dict]] = {}
    for spec in pending:
        groups.setdefault(partition_key(spec), []).append(spec)
    print(
        f"[probe] {len(specs)} rankings, {len(specs) - len(pending) - len(waiting)} already stored, "
        f"{len(pending)} to run in {len(groups)} partition trials"
        + (f", {len(waiting)} waiting for activations that failed" if waiting else "")
    )
    stored = len(specs) - len(pending) - len(waiting)
    if not pending:
        return StageResult(0, stored)
    resources = {"cpu": config.probing.resources.num_cpus, "gpu": config.probing.resources.num_gpus}
    trials = [{"label": "/".join(map(str, key)), "units": units} for key, units in groups.items()]
    began = time.perf_counter()
    results = run_sweep("probe", partition_trainable, resources, trials, store, reuse_actors=True)
    wall = time.perf_counter() - began
    cannot: Counter[str] = Counter()
    compute = 0.0
    for result in results:
        units = result.config["spec"]["units"]
        if result.error is not None:  # the whole trial died: every unit it had not stored is a failure
            for spec in units:
                if not is_done(store, spec):
                    failures.add(unit_label(spec), result.error)
            continue
        for spec, outcome in zip(units, json.loads(result.metrics["units"]), strict=True):
            compute += outcome.get("compute_seconds", 0.0)
            if outcome["status"] == "error":
                failures.add(unit_label(spec), outcome["error"] + "\n" + outcome["detail"])
            elif outcome["status"] == "cannot_probe":
                cannot[outcome["reason"]] += 1
    for reason, units in sorted(cannot.items()):
        print(f"[probe] cannot probe ({units} rankings): {reason}")
    cpus = _cluster_cpus()
    print(
        f"[probe] compute {compute:.0f} s (ranker fits and evaluation) in {wall:.0f} s wall on {cpus:g} CPUs: "
        f"efficiency {compute / max(wall * cpus, 1e-9):.2f}"
    )
    return StageResult(len(pending), stored, no_data=sum(cannot.values()), busy_seconds=compute)


def _cluster_cpus() -> float:
    """CPUs of the Ray cluster the sweep ran on."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def main(argv: list[str] | None = None) -> int:
    from ray_jobs.pretrain import run_pretraining

    args = job_arguments("Rank neurons for every (checkpoint, layer, language, attribute, method) with Ray Tune.")
    config = config_from_args(args.parse_args(argv))
    init_ray()
    failures = Failures("probe")
    sources, _ = run_pretraining(config, failures)
    data_fps, _ = run_prepare(config, failures)
    run_probing(config, sources, data_fps, failures)
    failures.write(Store(config.output_root))
    return 1 if failures.rows else 0


if __name__ == "__main__":
    sys.exit(main())
