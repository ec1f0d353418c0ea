"""Stage 4 (when the config has a ``transfer`` section): zero-shot cross-lingual transfer of every
checkpoint, one Ray Tune trial per (checkpoint, task), requesting a GPU when the cluster has one.

Each trial fine-tunes the checkpoint on English (LoRA, or 4-bit QLoRA on CUDA) and writes the
``transfer`` table (model / checkpoint / task partitions): source and target language, metric,
value, best step, training time. Finished trials are skipped; a failing trial is recorded and the
others go on.
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa

from analysis.store import Store, fingerprint
from ray_jobs.common import (
    Failures,
    StageResult,
    checkpoints,
    config_from_args,
    init_ray,
    job_arguments,
    loadable_checkpoint,
)
from ray_jobs.config import StudyConfig
from transfer.tasks import TASKS

TRANSFER_SCHEMA = pa.schema(
    [
        ("source_language", pa.string()),
        ("target_language", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("best_step", pa.int64()),
        ("train_seconds", pa.float64()),
        ("n_examples", pa.int64()),
    ]
)


def task_data_dir(config: StudyConfig, task: str) -> str | None:
    """The data folder the task reads (`transfer.tasks.TransferTask.data_dir`)."""
    return {"ud_dir": config.ud_dir, "xnli_dir": config.transfer.xnli_dir}[TASKS[task].data_dir]


def task_targets(config: StudyConfig, task: str) -> list[str]:
    """Target languages of a task: the configured ones (or the study's) that its data can score."""
    return TASKS[task].targets(task_data_dir(config, task), list(config.transfer.target_languages or config.languages))


def task_params(config: StudyConfig, task: str):
    """The task's fine-tuning hyperparameters: its defaults overridden by the config."""
    from dataclasses import replace

    return replace(TASKS[task].params, **getattr(config.transfer, task))


def transfer_specs(config: StudyConfig, sources: dict[str, str]) -> list[dict]:
    """Every (checkpoint, task) trial with the fingerprint of what determines its result."""
    specs = []
    for spec, revision in checkpoints(config):
        if spec.name not in sources:
            continue
        for task in config.transfer.tasks:
            targets = task_targets(config, task)
            data = TASKS[task].data_fingerprint(task_data_dir(config, task), targets)
            params = task_params(config, task)
            specs.append(
                {
                    "model": spec.name,
                    "checkpoint": revision,
                    "task": task,
                    "source": sources[spec.name],
                    "targets": targets,
                    "params": params,
                    "root": config.output_root,
                    "ud_dir": config.ud_dir,
                    "xnli_dir": config.transfer.xnli_dir,
                    "threads": int(config.transfer.num_cpus),
                    "fingerprint": fingerprint("transfer", sources[spec.name], revision, task, targets, params, data),
                }
            )
    return specs


def _path(store: Store, spec: dict) -> str:
    return store.path("transfer", model=spec["model"], checkpoint=spec["checkpoint"], task=spec["task"])


def run_transfer_trial(spec: dict) -> dict:
    """Fine-tune one checkpoint on one English task, evaluate every target, store the rows."""
    import torch

    torch.set_num_threads(max(1, spec["threads"]))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    began = time.perf_counter()
    task = TASKS[spec["task"]]
    source, revision = loadable_checkpoint(spec["root"], spec["source"], spec["checkpoint"])
    rows = task.run(
        source,
        revision,
        spec[task.data_dir],
        spec["targets"],
        spec["params"],
        device=device,
        checkpoint=spec["checkpoint"],
    )
    store = Store(spec["root"])
    table = pa.Table.from_pylist([{c: r[c] for c in TRANSFER_SCHEMA.names} for r in rows], schema=TRANSFER_SCHEMA)
    store.write(table, _path(store, spec), spec["fingerprint"])
    english = [r["value"] for r in rows if r["target_language"] == r["source_language"] and r["metric"] == "accuracy"]
    return {"status": "ok", "seconds": time.perf_counter() - began, "english_accuracy": english[0] if english else 0.0}


def _trainable(config: dict) -> None:
    from ray import tune

    tune.report(run_transfer_trial(config["spec"]))


def run_transfers(config: StudyConfig, sources: dict[str, str], failures: Failures) -> StageResult:
    """Run every unfinished (checkpoint, task) trial as a Ray Tune sweep."""
    import ray

    from ray_jobs.sweep import run_sweep

    if config.transfer is None:
        return StageResult()
    store = Store(config.output_root)
    specs = transfer_specs(config, sources)
    pending = [s for s in specs if not store.done(_path(store, s), s["fingerprint"])]
    print(f"[transfer] {len(specs)} trials, {len(specs) - len(pending)} already stored, {len(pending)} to run")
    if not pending:
        return StageResult(0, len(specs))
    gpus = 1 if config.transfer.use_gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    results = run_sweep("transfer", _trainable, {"cpu": config.transfer.num_cpus, "gpu": gpus}, pending, store)
    done, busy = 0, 0.0
    for result in results:
        spec = result.config["spec"]
        if result.error is not None:
            failures.add(f"model={spec['model']}/checkpoint={spec['checkpoint']}/task={spec['task']}", result.error)
        else:
            done += 1
            busy += result.metrics["seconds"] * config.transfer.num_cpus
    return StageResult(done, len(specs) - len(pending), busy_seconds=busy)


def main(argv: list[str] | None = None) -> int:
    from ray_jobs.pretrain import run_pretraining

    args = job_arguments("Zero-shot cross-lingual transfer of every checkpoint (LoRA / QLoRA), as Ray Tune trials.")
    config = config_from_args(args.parse_args(argv))
    if config.transfer is None:
        print(f"{args.parse_args(argv).config}: no 'transfer' section; nothing to do")
        return 0
    init_ray()
    failures = Failures("transfer")
    sources, _ = run_pretraining(config, failures)
    run_transfers(config, sources, failures)
    failures.write(Store(config.output_root))
    return 1 if failures.rows else 0


if __name__ == "__main__":
    sys.exit(main())
