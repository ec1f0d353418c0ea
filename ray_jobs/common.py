"""Shared plumbing of the jobs: argument parsing, Ray start-up, failure records."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# Tune's default console output prints a status box per sweep; the jobs show their own progress bars.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from analysis.store import Store, directory_digest
from analysis.tables import rows_table
from ray_jobs.config import ConfigError, ModelSpec, StudyConfig, load_config, model_revisions

if TYPE_CHECKING:
    from ray_jobs.context import StudyContext


def job_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every job takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="study config (YAML)")
    parser.add_argument("--output-root", help="results root (path or pyarrow URI); overrides the config")
    parser.add_argument("--ud-dir", help="UD treebank folder; overrides the config")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every stored result through to check its checksums (else only its footer and row count); "
        "a damaged one is recomputed",
    )
    parser.add_argument("--wait", action="store_true", help="when another run holds the study, wait for it to end")
    parser.add_argument(
        "--wait-for-nodes",
        action="store_true",
        help="start even when no node can hold a task of the config (an autoscaler adds nodes on demand)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    return load_config(args.config, output_root=args.output_root, ud_dir=args.ud_dir)


def init_ray() -> None:
    """Connect to the cluster named by RAY_ADDRESS (set by ``ray job submit``; ``auto`` finds a running one),
    else start a fresh local one (never a stale cluster left in /tmp/ray by an earlier ``ray start``),
    watched by `ray_jobs.reaper` so that a killed driver leaves none of its processes running.

    A local Ray starts without its dashboard: the dashboard's ~10 processes cost 1.2 s more start-up and ~3
    CPU-seconds taken from the first stage on 2 CPUs (measured 2026-11-23), and a one-command run reports
    through its progress bars and summary table. A cluster started with ``ray start`` keeps its dashboard,
    which ``ray job submit`` goes through (README)."""
    import psutil
    import ray

    from ray_jobs.reaper import watch

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS", "local")
        before = {child.pid for child in psutil.Process().children()}
        local = {"include_dashboard": False} if address == "local" else {}
        ray.init(address=address, log_to_driver=True, configure_logging=False, **local)
        if address == "local":  # a Ray of our own: stopped even when this driver is killed
            watch([child.pid for child in psutil.Process().children() if child.pid not in before])


def run_job(context: StudyContext, args: argparse.Namespace, body: Callable[[], int], uses_ray: bool = True) -> int:
    """Run a job's ``body`` while it holds the study's lease (`ray_jobs.lease`), after starting Ray and
    checking that some node holds every task the config asks for (exit status 2 with the fields to
    change when not, unless ``--wait-for-nodes``)."""
    from ray_jobs.lease import holding_study
    from ray_jobs.resources import node_shapes, resource_problems

    def started() -> int:
        if uses_ray:
            init_ray()
            problems = [] if args.wait_for_nodes else resource_problems(context.config, node_shapes())
            if problems:
                print(ConfigError(f"{args.config} on this Ray cluster", problems), file=sys.stderr)
                return 2
        return body()

    return holding_study(context.store, args.wait, started)


@dataclass
class StageResult:
    """What a stage did: units of work run now, units found already stored, and units run now that had no data.

    ``no_data`` counts units that ran but found nothing to compute (a language without the attribute, a value
    left with too few examples); they are recorded in ``failures`` with their reason but are not failures.
    ``busy_seconds`` is the CPU-seconds spent inside the stage's units of work (each unit's seconds × the CPUs it
    held; for the probe stage, the ranker fits and evaluations), so that busy / (wall × CPUs) is how well the
    stage used the cluster.
    """

    run: int = 0
    reused: int = 0
    no_data: int = 0
    busy_seconds: float = 0.0


def error_result(err: Exception) -> dict:
    """The result a trial (or one unit of it) reports when its work raised: the error and its traceback.

    Reported, not raised: Tune retries a trial that raises (`ray_jobs.sweep.TRIAL_RETRIES`), and a checkpoint
    that does not load fails the same way each time, every retry on a fresh actor that imports torch,
    transformers and peft again (~12 s on 2 CPUs). Retries are for trials whose worker was lost.
    """
    detail = "".join(traceback.format_exception(err))
    return {"status": "error", "error": f"{type(err).__name__}: {err}", "detail": detail}


@dataclass
class Failures:
    """Failures of one stage: recorded, reported, and written to the ``failures`` table."""

    stage: str
    rows: list[dict] = field(default_factory=list)

    def add(self, key: str, error: BaseException | str, detail: str = "") -> None:
        """Record a failure; an error raised in a Ray task is named by the error it wraps (e.g. ``OSError:
        [Errno 28] No space left on device``), its whole text going to the detail. An error reported as text
        (`error_result`) comes with its traceback as ``detail``."""
        if isinstance(error, BaseException):
            detail = "".join(traceback.format_exception(error))
        cause = getattr(error, "cause", None)  # a RayTaskError's original exception
        named = cause if isinstance(cause, BaseException) else error
        message = f"{type(named).__name__}: {named}" if isinstance(named, BaseException) else str(named)
        self.rows.append(
            {
                "stage": self.stage,
                "key": key,
                "error": message.strip()[:2000],
                "detail": detail[-8000:],
                "time": time.time(),
            }
        )
        print(f"[{self.stage}] FAILED {key}: {message.strip().splitlines()[0] if message.strip() else ''}")

    def write(self, store: Store) -> None:
        """Replace this stage's failure file with the failures of this run (none: an empty file)."""
        store.write(rows_table("failures", self.rows), store.path("failures", stage=self.stage), fp="failures")


def loadable_checkpoint(store: Store, source: str, revision: str) -> tuple[str, str]:
    """A (model id or local directory, revision) that transformers can load.

    Checkpoints the study pre-trained into a remote store (``s3://.../models/<run>``) are copied once
    to the local run directory under `Store.local_dir`; hub ids and local directories pass through.
    """
    import pyarrow.fs as pafs

    scheme = store.uri("")
    if store.is_local or not source.startswith(scheme):
        return source, revision
    remote = source[len(scheme) :]
    local = store.local_dir() / "models" / remote.rstrip("/").rsplit("/", 1)[-1]
    if not (local / revision / "config.json").is_file():  # copy, then rename: workers may race for it
        tmp = local / f".{revision}.{uuid.uuid4().hex[:8]}.tmp"
        pafs.copy_files(f"{remote}/{revision}", str(tmp), source_filesystem=store.fs)
        try:
            tmp.rename(local / revision)
        except OSError:  # another worker renamed its copy first
            shutil.rmtree(tmp)
    return str(local), revision


def model_identity(spec: ModelSpec, source: str, revision: str) -> str:
    """What a checkpoint's results depend on, wherever the study and the model lie: a pre-trained model's run
    name (`ray_jobs.pretrain.run_name`, a hash of its params and its UD text), a local directory's file
    contents, or a hub id (its revision is fingerprinted next to it). So a study copied or moved elsewhere
    finds its results stored."""
    from probing.models import resolve_model

    if spec.pretrain is not None:
        return "pretrained:" + source.rstrip("/").rsplit("/", 1)[-1]
    if Path(source).is_dir():
        return "local:" + directory_digest(resolve_model(source, revision)[0])
    return "hub:" + source


def checkpoints(config: StudyConfig, which: str = "all") -> list[tuple[ModelSpec, str]]:
    """Every (model, revision) of the study, or only each model's last revision (``which="last"``)."""
    return [
        (spec, revision)
        for spec in config.models
        for revision in (model_revisions(spec) if which == "all" else model_revisions(spec)[-1:])
    ]


def ray_map(function: Callable, config: StudyConfig, items: Sequence, **options: object) -> list:
    """Run ``function(config, *item)`` as one Ray task per item (a tuple); a task's exception is returned, not
    raised."""
    import ray

    remote = ray.remote(**options)(function) if options else ray.remote(function)
    refs = [remote.remote(config, *item) for item in items]
    outcomes = []
    for ref in refs:
        try:
            outcomes.append(ray.get(ref))
        except Exception as err:  # recorded by the caller as a failure of that item
            outcomes.append(err)
    return outcomes
