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
import time
from collections import Counter
from itertools import product

import numpy as np

from analysis.store import Store
from analysis.tables import rows_table
from probing.datasets import TRIAL_SEED_VERSION, trial_seed
from ray_jobs.common import StageResult, checkpoints, error_result, model_identity
from ray_jobs.config import Resources, StudyConfig, greedy_steps, resolve_k
from ray_jobs.context import StudyContext
from ray_jobs.extract import activation_fingerprint, actor_device
from ray_jobs.prepare import DataFingerprints
from ray_jobs.stages import stage_main
from ray_jobs.trials import ProbeTrial


def probe_trials(
    config: StudyConfig, sources: dict[str, str], data_fps: dict[str, DataFingerprints]
) -> list[ProbeTrial]:
    """Every ranking unit of the study whose model and language are ready."""
    from probing.evaluation import EVALUATION_VERSION
    from probing.rankers import RANKERS_VERSION

    p = config.probing
    languages = [lang for lang in config.languages if lang in data_fps]
    trials = []
    for (spec, revision), layer, language in product(checkpoints(config), config.layers, languages):
        if spec.name not in sources:
            continue
        model = model_identity(spec, sources[spec.name], revision)
        act_fp = activation_fingerprint(config, model, revision, layer, data_fps[language].sentences)
        for attribute, method, seed in product(config.attributes, p.methods, p.seeds):
            trials.append(
                ProbeTrial(
                    model=spec.name,
                    checkpoint=revision,
                    layer=layer,
                    language=language,
                    attribute=attribute,
                    method=method,
                    seed=seed,
                    k=p.k,
                    k_fraction=p.k_fraction,
                    greedy_depth=p.greedy_depth,
                    k_grid=tuple(p.k_grid),
                    classifiers=tuple(p.classifiers),
                    params=dict(p.params.get(method, {})),
                    evaluation=dict(p.evaluation),
                    max_examples=p.max_examples,
                    words_fingerprint=data_fps[language].words[attribute],
                    activation_fingerprint=act_fp,
                    versions=(TRIAL_SEED_VERSION, EVALUATION_VERSION, RANKERS_VERSION),
                )
            )
    return trials


class Partition:
    """One activation partition (checkpoint, layer, language), read once, and its words tables per attribute."""

    def __init__(self, store: Store, trial: ProbeTrial) -> None:
        from probing.probe_data import ActivationIndex

        self.store = store
        self.activations = ActivationIndex.from_table(store.read("activations", path=trial.activation_path(store)))
        self.words: dict[str, object] = {}

    def probe_data(self, trial: ProbeTrial):
        """The unit's ProbeData and value names (`probing.probe_data.build_probe_data`)."""
        from probing.probe_data import CannotProbe, build_probe_data

        attribute, language = trial.attribute, trial.language
        if attribute not in self.words:
            path = self.store.path("words", language=language, attribute=attribute)
            self.words[attribute] = self.store.read("words", path=path) if self.store.is_file(path) else None
        if self.words[attribute] is None:
            raise CannotProbe(f"attribute {attribute} is not annotated in language {language}")
        return build_probe_data(
            self.words[attribute], self.activations, language, attribute, trial.max_examples, trial.seed
        )


def run_unit(trial: ProbeTrial, partition: Partition, device: str = "cpu") -> dict:
    """Fit, evaluate and store one ranking (and its reverse) on the torch ``device``; a dataset that cannot be
    probed is marked, not raised."""
    from probing.evaluation import EvaluationParams, evaluate_ranking
    from probing.probe_data import CannotProbe
    from probing.rankers import RANKERS, make_ranker, reverse

    store = partition.store
    paths, fp, seed, method = trial.paths(store), trial.fingerprint, trial.seed, trial.method
    try:
        data, values = partition.probe_data(trial)
    except CannotProbe as reason:
        marker = {"stage": "probe", "key": trial.label, "error": f"CannotProbe: {reason}", "detail": ""}
        store.write(rows_table("failures", [{**marker, "time": time.time()}]), paths.failure, fp)
        return {"status": "cannot_probe", "reason": str(reason), "compute_seconds": 0.0}
    began = time.perf_counter()
    params = {**trial.params}
    width = data.X_train.shape[1]
    k = resolve_k(trial.k, trial.k_fraction, width)
    if RANKERS[method].needs_k:
        params.setdefault("k", greedy_steps(k, trial.k_grid, trial.greedy_depth, width))
    ranker = make_ranker(method, params, seed=trial_seed(seed, trial.key), device=device)
    ranking = ranker.fit(data.X_train, data.y_train, data.X_dev, data.y_dev)
    rankings = [("ttb", ranking)] + ([("btt", reverse(ranking))] if RANKERS[method].reversible else [])
    metrics, ranking_rows = [], []
    seconds = time.perf_counter() - began
    evaluation = EvaluationParams(**trial.evaluation)
    for direction, r in rankings:
        grid, classifiers = list(trial.k_grid), list(trial.classifiers)
        for row in evaluate_ranking(r.order, data, grid, classifiers, seed, evaluation, device):
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
    store.write(rows_table("probe_metrics", metrics), paths.metrics, fp)
    store.write(rows_table("rankings", ranking_rows), paths.rankings, fp)
    if store.is_file(paths.failure):
        store.fs.delete_file(paths.failure)  # a stale cannot-run marker of an earlier config
    best = max((m["accuracy"] for m in metrics if m["direction"] == "ttb" and m["k"] <= k), default=np.nan)
    return {"status": "ok", "compute_seconds": compute, "accuracy_at_k": best}


def run_partition(store: Store, trials: list[ProbeTrial], threads: int = 1, num_gpus: float = 0.0) -> list[dict]:
    """Every unit of one activation partition, reading the partition once; one unit's error does not stop the rest.

    Each unit writes its own result files as it finishes, so a trial killed midway loses only the unit in progress,
    and its retry (Tune retries a trial whose node died) skips the units already stored.
    The units compute on the trial's GPU when ``probing.resources.num_gpus`` gives it one (`actor_device`).
    """
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        device = actor_device(num_gpus, torch.cuda.is_available(), "probing")
        partition = Partition(store, trials[0])
    except Exception as err:  # every unit fails with it; the trial itself does not, so Tune retries only lost ones
        return [error_result(err)] * len(trials)
    results = []
    for trial in trials:
        if trial.is_done(store):  # stored by an attempt of this trial that lost its node
            results.append({"status": "stored", "compute_seconds": 0.0})
            continue
        try:
            results.append(run_unit(trial, partition, device))
        except Exception as err:  # recorded by the driver as this unit's failure; the other units still run
            results.append(error_result(err))
    return results


def sweep_spec(store: Store, label: str, units: list[ProbeTrial], resources: Resources) -> dict:
    """The Tune config of one trial running ``units`` (all of one activation partition)."""
    return {
        "label": label,
        "store": store,
        "units": units,
        "threads": int(resources.num_cpus),
        "num_gpus": float(resources.num_gpus),
    }


def partition_trainable(config: dict) -> None:
    """A Tune trial: ``config["spec"]`` holds the store, one partition's units and the trial's resources."""
    from ray import tune

    spec = config["spec"]
    began = time.perf_counter()
    results = run_partition(spec["store"], spec["units"], spec["threads"], spec["num_gpus"])
    report = {"units": json.dumps(results), "trial_seconds": time.perf_counter() - began}
    tune.report({**report, **unit_metrics(spec["units"], results)})


def unit_metrics(units: list[ProbeTrial], results: list[dict]) -> dict[str, float]:
    """A partition trial's numbers (what experiment tracking logs): its units per outcome, their compute seconds,
    and each ranking's best top-to-bottom accuracy at k or below (``accuracy_at_k/<attribute>/<method>/seed-<s>``)."""
    outcomes = Counter(result["status"] for result in results)
    metrics = {f"units_{status}": float(outcomes[status]) for status in ("ok", "stored", "cannot_probe", "error")}
    metrics["compute_seconds"] = float(sum(result.get("compute_seconds", 0.0) for result in results))
    for unit, result in zip(units, results, strict=True):
        if result["status"] == "ok":
            metrics[f"accuracy_at_k/{unit.attribute}/{unit.method}/seed-{unit.seed}"] = float(result["accuracy_at_k"])
    return metrics


def run(context: StudyContext) -> StageResult:
    """Run every unfinished unit, one Ray Tune trial per activation partition; count units run now and stored.

    A unit is one (checkpoint, layer, language, attribute, method, seed) ranking; the trial of a partition runs
    all of its pending units in one process, so the partition is read once and Tune schedules a few dozen
    trials instead of thousands. The stage prints its compute efficiency: the units' fit + evaluation seconds
    over wall seconds × CPUs.
    """
    from ray_jobs.sweep import run_sweep, spec_of
    from ray_jobs.tracking import tracking_callbacks

    config, store, failures = context.config, context.store, context.failures_of("probe")
    trials = probe_trials(config, context.sources, context.data_fps)
    pending = [t for t in trials if not t.is_done(store)]
    waiting = [t for t in pending if not store.done(t.activation_path(store), t.activation_fingerprint)]
    pending = [t for t in pending if t not in waiting]
    groups: dict[tuple, list[ProbeTrial]] = {}
    for trial in pending:
        groups.setdefault(trial.partition, []).append(trial)
    stored = len(trials) - len(pending) - len(waiting)
    print(
        f"[probe] {len(trials)} rankings, {stored} already stored, {len(pending)} to run in {len(groups)} "
        "partition trials" + (f", {len(waiting)} waiting for activations that failed" if waiting else "")
    )
    if not pending:
        return StageResult(0, stored)
    resources = config.probing.resources
    specs = [sweep_spec(store, "/".join(map(str, key)), units, resources) for key, units in groups.items()]
    began = time.perf_counter()
    requests = {"cpu": resources.num_cpus, "gpu": resources.num_gpus}
    callbacks = tracking_callbacks(config, "probe")
    results = run_sweep("probe", partition_trainable, requests, specs, store, callbacks)
    wall = time.perf_counter() - began
    cannot: Counter[str] = Counter()
    compute = 0.0
    for result in results:
        units = spec_of(result.config)["units"]
        if result.error is not None:  # the whole trial died: every unit it had not stored is a failure
            for trial in units:
                if not trial.is_done(store):
                    failures.add(trial.label, result.error)
            continue
        for trial, outcome in zip(units, json.loads(result.metrics["units"]), strict=True):
            compute += outcome.get("compute_seconds", 0.0)
            if outcome["status"] == "error":
                failures.add(trial.label, outcome["error"], outcome["detail"])
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


main = stage_main("probe")

if __name__ == "__main__":
    raise SystemExit(main())
