"""Shared plumbing of the jobs: argument parsing, Ray start-up, failure records."""

from __future__ import annotations

import argparse
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Tune's default console output prints a status box per sweep; the jobs show their own progress bars.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from analysis.store import Store
from analysis.tables import rows_table
from ray_jobs.config import ModelSpec, StudyConfig, load_config, model_revisions


def job_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every job takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="study config (YAML)")
    parser.add_argument("--output-root", help="results root (path or pyarrow URI); overrides the config")
    parser.add_argument("--ud-dir", help="UD treebank folder; overrides the config")
    return parser


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    return load_config(args.config, output_root=args.output_root, ud_dir=args.ud_dir)


def init_ray() -> None:
    """Connect to the cluster named by RAY_ADDRESS (set by ``ray job submit``; ``auto`` finds a running one),
    else start a fresh local one (never a stale cluster left in /tmp/ray by an earlier ``ray start``)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "local"), log_to_driver=True, configure_logging=False)


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


@dataclass
class Failures:
    """Failures of one stage: recorded, reported, and written to the ``failures`` table."""

    stage: str
    rows: list[dict] = field(default_factory=list)

    def add(self, key: str, error: BaseException | str) -> None:
        detail = "".join(traceback.format_exception(error)) if isinstance(error, BaseException) else ""
        message = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
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
