"""Stage 3: neuron rankings and their evaluation, one Ray Tune trial per
(checkpoint, layer, language, attribute, method, seed).

A trial reads the word dataset and the activation partition it needs from the store, fits the
ranker, evaluates the ranking and its bottom-to-top reverse with both classifiers over the k grid
(with a control task), and writes ``probe_metrics`` then ``rankings`` (the completion marker).
Finished trials (same fingerprint) are not scheduled again. A trial that cannot run (one value
only, too few examples, attribute not annotated) writes a marker in ``failures`` and does not stop
the sweep; an unexpected error is recorded too and retried by the next run.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from itertools import product

import numpy as np
import pyarrow as pa

from analysis.store import Store, fingerprint
from ray_jobs.common import (
    FAILURE_SCHEMA,
    Failures,
    StageResult,
    checkpoints,
    config_from_args,
    init_ray,
    job_arguments,
)
from ray_jobs.config import StudyConfig
from ray_jobs.extract import activation_fingerprint
from ray_jobs.prepare import DataFingerprints, run_prepare

#: Ranking methods whose reverse is evaluated as a bottom-to-top control (a random ranking's reverse is random).
REVERSIBLE = ("latent", "gaussian", "linear", "probeless")

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
        ("control_accuracy", pa.float64()),
        ("selectivity", pa.float64()),
        ("majority", pa.float64()),
    ]
)


class CannotProbe(ValueError):
    """The dataset of a trial cannot support a ranking (recorded as a failure, not retried)."""


def trial_specs(config: StudyConfig, sources: dict[str, str], data_fps: dict[str, DataFingerprints]) -> list[dict]:
    """Every trial of the study, with the fingerprint of what it depends on (the rankers' version included)."""
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
                    "k_grid": list(p.k_grid),
                    "classifiers": list(p.classifiers),
                    "params": params,
                    "max_examples": p.max_examples,
                    "threads": int(p.resources.num_cpus),
                    "activation_fingerprint": act_fp,
                    "fingerprint": fingerprint(
                        "probe",
                        RANKERS_VERSION,
                        key,
                        seed,
                        p.k,
                        p.k_grid,
                        p.classifiers,
                        p.max_examples,
                        params,
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


def _activation_path(store: Store, key: dict) -> str:
    return store.path(
        "activations", model=key["model"], checkpoint=key["checkpoint"], layer=key["layer"], language=key["language"]
    )


def is_done(store: Store, spec: dict) -> bool:
    """True when the trial's rankings, or its cannot-run marker, are stored with its fingerprint."""
    ranking_path, _, failure_path = _paths(store, spec)
    return store.done(ranking_path, spec["fingerprint"]) or store.done(failure_path, spec["fingerprint"])


def load_probe_data(store: Store, key: dict, max_examples: int | None, seed: int):
    """The trial's X/y/word types per split, aligned on (sentence_index, position); and the value names."""
    from probing.evaluation import ProbeData

    words_path = store.path("words", language=key["language"], attribute=key["attribute"])
    if store.stored_fingerprint(words_path) is None:
        raise CannotProbe(f"attribute {key['attribute']} is not annotated in language {key['language']}")
    words = store.read("words", path=words_path)
    kept = sorted(set(words.column("value").to_pylist()))
    if len(kept) < 2:
        raise CannotProbe(
            f"{key['attribute']} in {key['language']}: {len(kept)} value(s) with enough examples "
            f"in every split ({', '.join(kept) or 'none'}); a ranking needs 2"
        )
    acts = store.read("activations", path=_activation_path(store, key))
    act_keys = acts.column("sentence_index").to_numpy().astype(np.int64) << 32 | acts.column("position").to_numpy()
    word_keys = words.column("sentence_index").to_numpy().astype(np.int64) << 32 | words.column("position").to_numpy()
    sorter = np.argsort(act_keys)
    at = np.searchsorted(act_keys, word_keys, sorter=sorter)
    found = (at < len(act_keys)) & (act_keys[sorter[np.minimum(at, len(act_keys) - 1)]] == word_keys)
    rows = sorter[np.minimum(at, len(act_keys) - 1)]
    vectors = acts.column("vector").combine_chunks()
    d = vectors.type.list_size
    matrix = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32)
    value_of = np.asarray(words.column("value").to_pylist(), dtype=object)
    split = np.asarray(words.column("split").to_pylist())
    forms = np.asarray([f.lower() for f in words.column("form").to_pylist()], dtype=object)
    rng = np.random.default_rng(seed)
    parts = {}
    for name in ("train", "dev", "test"):
        index = np.flatnonzero((split == name) & found)
        if max_examples is not None and len(index) > max_examples:
            index = np.sort(rng.choice(index, max_examples, replace=False))
        parts[name] = index
    values = sorted(set(value_of[parts["train"]].tolist()))  # every class must be seen in train
    for name, index in parts.items():
        parts[name] = index[np.isin(value_of[index], values)]
        if len(set(value_of[parts[name]].tolist())) < 2:
            raise CannotProbe(
                f"{key['attribute']} in {key['language']}: the {name} split has fewer than 2 values "
                f"({len(parts[name])} examples)"
            )
    label = {v: i for i, v in enumerate(values)}
    y_all = np.asarray([label.get(v, -1) for v in value_of])
    data = ProbeData(
        X_train=matrix[rows[parts["train"]]],
        y_train=y_all[parts["train"]],
        X_dev=matrix[rows[parts["dev"]]],
        y_dev=y_all[parts["dev"]],
        X_test=matrix[rows[parts["test"]]],
        y_test=y_all[parts["test"]],
        types_train=forms[parts["train"]],
        types_test=forms[parts["test"]],
    )
    return data, values


def run_trial(spec: dict) -> dict:
    """Fit, evaluate and store one ranking (and its reverse); never raises for data that cannot be probed."""
    import torch

    from probing.evaluation import evaluate_ranking
    from probing.rankers import make_ranker, reverse

    torch.set_num_threads(max(1, spec["threads"]))
    store = Store(spec["root"])
    ranking_path, metrics_path, failure_path = _paths(store, spec)
    key, seed, method = spec["key"], spec["seed"], spec["key"]["method"]
    began = time.perf_counter()
    try:
        data, values = load_probe_data(store, key, spec["max_examples"], seed)
    except CannotProbe as reason:
        row = {
            "stage": "probe",
            "key": "/".join(f"{k}={v}" for k, v in key.items()) + f"/seed={seed}",
            "error": f"CannotProbe: {reason}",
            "detail": "",
            "time": time.time(),
        }
        store.write(pa.Table.from_pylist([row], schema=FAILURE_SCHEMA), failure_path, spec["fingerprint"])
        return {"status": "cannot_probe", "reason": str(reason)}
    params = {**spec["params"]}
    if method in ("latent", "gaussian"):
        params.setdefault("k", min(spec["k"], data.X_train.shape[1]))
    ranker = make_ranker(method, params, seed=seed)
    ranking = ranker.fit(data.X_train, data.y_train, data.X_dev, data.y_dev)
    rankings = [("ttb", ranking)] + ([("btt", reverse(ranking))] if method in REVERSIBLE else [])
    metrics, ranking_rows = [], []
    seconds = time.perf_counter() - began
    for direction, r in rankings:
        for row in evaluate_ranking(r.order, data, spec["k_grid"], spec["classifiers"], seed=seed):
            metrics.append({"seed": seed, "direction": direction, **row})
        ranking_rows.append(
            {
                "seed": seed,
                "direction": direction,
                "ranking": r.order.astype(np.int32).tolist(),
                "scores": np.asarray(r.scores, dtype=np.float64).tolist(),
                "k": spec["k"],
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
    store.write(pa.Table.from_pylist(metrics, schema=METRIC_SCHEMA), metrics_path, spec["fingerprint"])
    store.write(pa.Table.from_pylist(ranking_rows, schema=RANKING_SCHEMA), ranking_path, spec["fingerprint"])
    if store.fs.get_file_info(failure_path).type.name == "File":
        store.fs.delete_file(failure_path)  # a stale cannot-run marker of an earlier config
    best = max((m["accuracy"] for m in metrics if m["direction"] == "ttb" and m["k"] <= spec["k"]), default=np.nan)
    return {"status": "ok", "seconds": time.perf_counter() - began, "accuracy_at_k": best}


def _tune_trainable(config: dict) -> None:
    from ray import tune

    tune.report(run_trial(config["spec"]))


def run_probing(
    config: StudyConfig, sources: dict[str, str], data_fps: dict[str, DataFingerprints], failures: Failures
) -> StageResult:
    """Run every unfinished trial as a Ray Tune sweep; count trials run now and already stored."""
    from ray_jobs.sweep import run_sweep

    store = Store(config.output_root)
    specs = trial_specs(config, sources, data_fps)
    pending = [s for s in specs if not is_done(store, s)]
    waiting = [s for s in pending if not store.done(_activation_path(store, s["key"]), s["activation_fingerprint"])]
    pending = [s for s in pending if s not in waiting]
    print(
        f"[probe] {len(specs)} trials, {len(specs) - len(pending) - len(waiting)} already stored, "
        f"{len(pending)} to run" + (f", {len(waiting)} waiting for activations that failed" if waiting else "")
    )
    stored = len(specs) - len(pending) - len(waiting)
    if not pending:
        return StageResult(0, stored)
    resources = {"cpu": config.probing.resources.num_cpus, "gpu": config.probing.resources.num_gpus}
    results = run_sweep("probe", _tune_trainable, resources, pending, store, reuse_actors=True)
    cannot: Counter[str] = Counter()
    for result in results:
        spec = result.config["spec"]
        if result.error is not None:
            failures.add("/".join(f"{k}={v}" for k, v in spec["key"].items()) + f"/seed={spec['seed']}", result.error)
        elif result.metrics.get("status") == "cannot_probe":
            cannot[result.metrics["reason"]] += 1
    for reason, trials in sorted(cannot.items()):
        print(f"[probe] cannot probe ({trials} trials): {reason}")
    return StageResult(len(pending), stored, no_data=sum(cannot.values()))


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
