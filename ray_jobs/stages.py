"""The ordered registry of a study's stages, and how one stage is run and summarised.

A stage is a module of ``ray_jobs`` with ``run(context) -> StageResult`` (and, optionally,
``applies(config) -> bool`` when it runs only for some configs). The pipeline runs `STAGES` in order,
the ``xling`` CLI has a command per stage, and each stage module's ``main`` is `stage_main` of its
name. Adding a stage = one module with ``run`` and ``main = stage_main(...)``, and one line here.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray_jobs.common import StageResult, config_from_args, job_arguments, run_job
from ray_jobs.context import StudyContext


@dataclass(frozen=True)
class Stage:
    """One stage: its name (the failures table's ``stage``, the CLI command), its module and its help."""

    name: str
    module: str
    help: str
    uses_ray: bool = True

    def _module(self):
        return importlib.import_module(self.module)

    def applies(self, context: StudyContext) -> bool:
        """Whether the study asks for this stage (transfer only with a ``transfer`` section)."""
        applies = getattr(self._module(), "applies", None)
        return applies is None or applies(context.config)

    def run(self, context: StudyContext) -> StageResult:
        return self._module().run(context)


STAGES: tuple[Stage, ...] = (
    Stage("pretrain", "ray_jobs.pretrain", "pre-train the study's own models with intermediate checkpoints"),
    Stage("prepare", "ray_jobs.prepare", "build the word datasets (sentences, words, dataset_stats)"),
    Stage("weights", "ray_jobs.weights", "hash every checkpoint's weights; flag revisions that duplicate another's"),
    Stage("extract", "ray_jobs.extract", "extract per-word activations of every checkpoint into Parquet"),
    Stage("probe", "ray_jobs.probe", "rank and evaluate neurons, one Ray Tune trial per activation partition"),
    Stage("transfer", "ray_jobs.transfer", "zero-shot cross-lingual transfer of every checkpoint (LoRA / QLoRA)"),
    Stage("lottery", "ray_jobs.lottery", "lottery-ticket sub-networks: IMP per (checkpoint, task, language), transfer"),
    Stage("intervene", "ray_jobs.intervene", "causal check of the rankings: edit their top-k neurons, read the LM"),
    Stage("analyse", "ray_jobs.analyse", "overlap statistics and correlations", uses_ray=False),
    Stage("report", "ray_jobs.report", "the DuckDB database of views and the HTML report", uses_ray=False),
)


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(f"no stage {name!r} (stages: {', '.join(s.name for s in STAGES)})")


def efficiency(busy_seconds: float, wall_seconds: float) -> str:
    """Busy CPU-seconds over wall seconds × the cluster's CPUs, as text ("" when the stage reports none)."""
    if busy_seconds <= 0 or wall_seconds <= 0:
        return ""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
    return f"{busy_seconds / (wall_seconds * cpus):.2f}"


def run_stage(stage: Stage, context: StudyContext) -> dict:
    """Run one stage; record its failures (a stage that raises is one failure, and the study goes on);
    write them to the store; append and return its summary row. ``repaired`` counts the stored files the
    stage found damaged (and so recomputed, or recorded as failed)."""
    failures = context.failures_of(stage.name)
    damaged_before = len(context.store.damaged)
    began = time.perf_counter()
    try:
        result = stage.run(context)
    except Exception as err:  # a broken stage is recorded; the later stages still run on what exists
        failures.add(stage.name, err)
        result = StageResult()
    failures.write(context.store)
    seconds = time.perf_counter() - began
    row = {
        "stage": stage.name,
        "run": result.run,
        "already stored": result.reused,
        "no data": result.no_data,
        "failed": len(failures.rows),
        "repaired": len(context.store.damaged) - damaged_before,
        "seconds": round(seconds, 1),
        "efficiency": efficiency(result.busy_seconds, seconds),
    }
    context.summary.append(row)
    return row


def stage_main(name: str) -> Callable[[list[str] | None], int]:
    """The ``main`` of one stage's module: parse the job arguments, run that stage alone on the stored
    results of the stages before it, exit 1 when it recorded a failure."""

    def main(argv: list[str] | None = None) -> int:
        stage = stage_named(name)
        args = job_arguments(f"{stage.help} (the '{name}' stage alone)").parse_args(argv)
        config = config_from_args(args)
        context = StudyContext.open(config, verify=args.verify)
        if not stage.applies(context):
            print(f"[{name}] this study does not ask for the {name} stage; nothing to do")
            return 0

        def run_alone() -> int:
            run_stage(stage, context)
            return 1 if context.failure_rows() else 0

        return run_job(context, args, run_alone, stage.uses_ray)

    return main
