"""Stage 4 (when the config has a ``transfer`` section): zero-shot cross-lingual transfer of every
checkpoint, one Ray Tune trial per (checkpoint, task), requesting a GPU when the cluster has one.

Each trial fine-tunes the checkpoint on English (LoRA, or 4-bit QLoRA on CUDA) and writes the
``transfer`` table (model / checkpoint / task partitions): source and target language, metric,
value, best step, training time. Finished trials are skipped; a failing trial is recorded and the
others go on.
"""

from __future__ import annotations

import time

from analysis.store import Store
from analysis.tables import rows_table, schema_of
from ray_jobs.common import StageResult, checkpoints, loadable_checkpoint, model_identity
from ray_jobs.config import Resources, StudyConfig
from ray_jobs.context import StudyContext
from ray_jobs.resources import node_shapes, transfer_gpus
from ray_jobs.stages import stage_main
from ray_jobs.trials import TransferTrial
from transfer.tasks import TASKS


def applies(config: StudyConfig) -> bool:
    """The stage runs for a config with a ``transfer`` section."""
    return config.transfer is not None


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


def transfer_trials(config: StudyConfig, sources: dict[str, str]) -> list[TransferTrial]:
    """Every (checkpoint, task) trial of the study whose model is ready."""
    trials = []
    for spec, revision in checkpoints(config):
        if spec.name not in sources:
            continue
        for task in config.transfer.tasks:
            targets = task_targets(config, task)
            data_dir = task_data_dir(config, task)
            trials.append(
                TransferTrial(
                    model=spec.name,
                    checkpoint=revision,
                    task=task,
                    source=sources[spec.name],
                    targets=tuple(targets),
                    params=task_params(config, task),
                    data=tuple(TASKS[task].data_fingerprint(data_dir, targets)),
                    data_dir=data_dir,
                    model_identity=model_identity(spec, sources[spec.name], revision),
                )
            )
    return trials


def run_transfer_trial(store: Store, trial: TransferTrial, threads: int) -> dict:
    """Fine-tune one checkpoint on one English task, evaluate every target, store the rows."""
    import torch

    torch.set_num_threads(max(1, threads))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    began = time.perf_counter()
    source, revision = loadable_checkpoint(store, trial.source, trial.checkpoint)
    rows = TASKS[trial.task].run(
        source, revision, trial.data_dir, list(trial.targets), trial.params, device=device, checkpoint=trial.checkpoint
    )
    columns = schema_of("transfer").names
    table = rows_table("transfer", [{c: r[c] for c in columns} for r in rows])
    store.write(table, trial.path(store), trial.fingerprint)
    english = [r["value"] for r in rows if r["target_language"] == r["source_language"] and r["metric"] == "accuracy"]
    scores = {f"{r['metric']}/{r['target_language']}": float(r["value"]) for r in rows}  # what tracking logs
    seconds = time.perf_counter() - began
    return {"status": "ok", "compute_seconds": seconds, "english_accuracy": english[0] if english else 0.0, **scores}


def transfer_trainable(config: dict) -> None:
    """A Tune trial: ``config["spec"]`` holds the store, one trial and its threads."""
    from ray import tune

    spec = config["spec"]
    tune.report(run_transfer_trial(spec["store"], spec["trial"], spec["threads"]))


def run(context: StudyContext) -> StageResult:
    """Run every unfinished (checkpoint, task) trial as a Ray Tune sweep."""
    from ray_jobs.sweep import run_trials
    from ray_jobs.tracking import tracking_callbacks

    config, store, failures = context.config, context.store, context.failures_of("transfer")
    trials = transfer_trials(config, context.sources)
    pending = [t for t in trials if not store.done(t.path(store), t.fingerprint)]
    print(f"[transfer] {len(trials)} trials, {len(trials) - len(pending)} already stored, {len(pending)} to run")
    if not pending:
        return StageResult(0, len(trials))
    resources = Resources(num_cpus=config.transfer.num_cpus, num_gpus=transfer_gpus(config, node_shapes()))
    callbacks = tracking_callbacks(config, "transfer")
    done, busy = run_trials("transfer", transfer_trainable, pending, resources, store, failures, callbacks)
    return StageResult(done, len(trials) - len(pending), busy_seconds=busy)


main = stage_main("transfer")

if __name__ == "__main__":
    raise SystemExit(main())
