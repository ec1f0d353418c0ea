"""The probe stage's efficiency: compute it does (ranker fits + evaluation) over wall seconds × CPUs.

One fixed study in one run: the demo's languages, attributes, methods, k grid and example caps on
real UD word datasets, with generated activations of the demo's shape (d = 256; each word's vector
is a fixed random embedding of its lowercased form plus Gaussian noise, so word identity is
learnable as in a real model) for ``--checkpoints`` × ``--layers`` partitions per language. The
same units are run twice through Ray Tune on a fresh local Ray instance of ``--cpus`` CPUs: one
trial per unit (the old scheduling) and one trial per activation partition (the stage's
scheduling). Prints both efficiencies and Tune's overhead per trial, and last ``ratio: X`` = the
partition scheduling's efficiency (target ≥ 0.7).

    python bench/probe_stage.py [--languages en fr es pt] [--checkpoints 2] [--layers 2] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.store import Store
from analysis.tables import activation_schema
from bench.common import UD_DIR
from ray_jobs import prepare, probe
from ray_jobs.config import Resources, load_config
from ray_jobs.context import StudyContext
from ray_jobs.prepare import serial_map
from ray_jobs.sweep import run_sweep
from ray_jobs.trials import ProbeTrial

REPO = Path(__file__).resolve().parents[1]


def study_config(root: Path, languages: list[str], checkpoints: int, layers: int):
    """The demo's probing settings over a stand-in model whose activations this script writes."""
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    demo.update(
        name="probe-bench",
        ud_dir=str(UD_DIR),
        output_root=str(root),
        languages=languages,
        layers=list(range(1, layers + 1)),
        models=[{"name": "bench", "id": str(root / "no-model"), "revisions": [f"c{i}" for i in range(checkpoints)]}],
    )
    demo.pop("transfer", None)
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(demo))
    return load_config(path, check_models=False)


def word_vector_table(sentences: pa.Table, d: int, seed: int) -> pa.Table:
    """One vector per syntactic word: a fixed embedding of its lowercased form plus noise."""
    keys, vectors = [], []
    rng = np.random.default_rng(seed)
    for index, words in zip(
        sentences.column("sentence_index").to_pylist(), sentences.column("words").to_pylist(), strict=True
    ):
        for position, form in enumerate(words):
            embedding = np.random.default_rng(zlib.crc32(form.lower().encode())).normal(size=d)
            vectors.append(embedding + rng.normal(scale=0.5, size=d))
            keys.append((index, position))
    matrix = np.asarray(vectors, dtype=np.float32)
    return pa.table(
        {
            "sentence_index": pa.array([k[0] for k in keys], pa.int32()),
            "position": pa.array([k[1] for k in keys], pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), d),
        },
        schema=activation_schema(d, "float32"),
    )


def write_activations(store: Store, trials: list[ProbeTrial], d: int) -> None:
    """The activation partition of every unit, under the fingerprint the units expect."""
    done = set()
    for trial in trials:
        if trial.partition in done:
            continue
        done.add(trial.partition)
        sentences = store.read("sentences", path=store.path("sentences", language=trial.language))
        table = word_vector_table(sentences, d, seed=zlib.crc32(repr(trial.partition).encode()))
        store.write(table, trial.activation_path(store), trial.activation_fingerprint)


def timed_sweep(store: Store, trials: list[dict], cpus: int) -> tuple[float, float, int]:
    """Wall seconds, summed unit compute seconds and the number of trials of one sweep, from no stored results
    (a trial skips the units already stored, so the results of an earlier sweep are removed first)."""
    for table in ("rankings", "probe_metrics", "failures"):
        store.fs.delete_dir_contents(store.table_dir(table), missing_dir_ok=True)
    began = time.perf_counter()
    results = run_sweep("probe-bench", probe.partition_trainable, {"cpu": 1}, trials, store)
    wall = time.perf_counter() - began
    compute = 0.0
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"a bench trial failed: {result.error}")
        compute += sum(u.get("compute_seconds", 0.0) for u in json.loads(result.metrics["units"]))
    return wall, compute, len(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=["en", "fr", "es", "pt"])
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--d", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = study_config(root, args.languages, args.checkpoints, args.layers)
        context = StudyContext.open(config, sources={"bench": str(root / "no-model")})
        store = context.store
        prepare.run(context, runner=serial_map)
        specs = probe.probe_trials(config, context.sources, context.data_fps)
        write_activations(store, specs, args.d)
        ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
        one_cpu = Resources(num_cpus=1)
        per_unit = [probe.sweep_spec(store, t.label, [t], one_cpu) for t in specs]
        groups: dict[tuple, list[ProbeTrial]] = {}
        for trial in specs:
            groups.setdefault(trial.partition, []).append(trial)
        per_partition = [probe.sweep_spec(store, "/".join(map(str, k)), u, one_cpu) for k, u in groups.items()]
        rows = []
        for name, trials in (("one trial per unit", per_unit), ("one trial per partition", per_partition)):
            wall, compute, n = timed_sweep(store, trials, args.cpus)
            efficiency = compute / (wall * args.cpus)
            overhead = (wall * args.cpus - compute) / n
            rows.append((name, n, wall, compute, efficiency, overhead))
        ray.shutdown()
    print(f"{len(specs)} units over {len(groups)} partitions (d = {args.d}, {args.cpus} CPUs)")
    print(f"{'scheduling':<26}{'trials':>8}{'wall s':>9}{'compute s':>11}{'efficiency':>12}{'overhead s/trial':>18}")
    for name, n, wall, compute, efficiency, overhead in rows:
        print(f"{name:<26}{n:>8}{wall:>9.1f}{compute:>11.1f}{efficiency:>12.2f}{overhead:>18.3f}")
    print(f"ratio: {rows[-1][4]:.2f}")


if __name__ == "__main__":
    main()
