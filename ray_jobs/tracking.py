"""Experiment tracking: with ``tracking.mlflow`` in the config, every Tune trial of a stage's sweep is an MLflow
run, logged by Ray Tune's `MLflowLoggerCallback` from the driver.

A run is named by its trial's label and tagged with the study and the stage; its params are the trial's own
fields, flat (`spec_params`), and its metrics the numbers its trainable reports (`trial_metrics`). Tune's
default would log the trial's config (its label and the reference to its spec, `ray_jobs.sweep.trial_config`)
as params and its bookkeeping (pid, timestamp) as metrics, hence the two overrides. Tracking is never part of a
result: nothing here reaches a trial or its fingerprint, so a study tracked or not stores and reuses the same
files. mlflow is an optional extra (`ray_jobs.config.TRACKING_INSTALL`), checked when the config is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from urllib.parse import urlparse

from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.result import AUTO_RESULT_KEYS, TIME_TOTAL_S, TRAINING_ITERATION

from ray_jobs.config import MLflowConfig, StudyConfig
from ray_jobs.sweep import spec_of

#: The label fields of a probe unit, which differ between the units of one partition trial.
UNIT_FIELDS = ("attribute", "method", "seed")


def flat_params(value: object, prefix: str) -> dict[str, object]:
    """``value`` as MLflow params under ``prefix``: dataclasses and mappings as dotted keys, a sequence of
    plain values as comma-joined text, a plain value as is. A sequence of sequences is a signature of input
    files or rankings, which the trial's fingerprint stands for: it is left out."""
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: v for name, item in value.items() for k, v in flat_params(item, f"{prefix}.{name}").items()}
    if isinstance(value, list | tuple):
        if any(isinstance(item, list | tuple | dict) for item in value):
            return {}
        return {prefix: ",".join(map(str, value))}
    return {prefix: value}


def trial_params(trial: object) -> dict[str, object]:
    """A trial's fingerprinted fields (not where its inputs lie) as flat params, and its fingerprint."""
    params = {"fingerprint": trial.fingerprint}
    for f in dataclasses.fields(trial):
        if f.metadata.get("fingerprinted", True):
            params |= flat_params(getattr(trial, f.name), f.name)
    return params


def partition_params(units: Sequence) -> dict[str, object]:
    """The params of a probe partition trial: what its units share, the attributes, methods and seeds they
    cover (comma-joined), each method's ranker params under ``params.<method>``, and the number of units.
    What else differs between units (their fingerprints, their words) is left out."""
    merged: dict[str, object] = {}
    differing: set[str] = set()
    for unit in units:
        flat = {k: v for k, v in trial_params(unit).items() if not k.startswith("params.")}
        flat |= flat_params(unit.params, f"params.{unit.method}")
        for key, value in flat.items():
            if merged.setdefault(key, value) != value:
                differing.add(key)
    for key in differing:
        del merged[key]
    for name in UNIT_FIELDS:
        merged[name] = ",".join(dict.fromkeys(str(getattr(unit, name)) for unit in units))
    return {**merged, "units": len(units)}


def spec_params(spec: dict) -> dict[str, object]:
    """The params of one Tune trial's spec: a probe partition (``units``) or one trial (``trial``)."""
    return partition_params(spec["units"]) if "units" in spec else trial_params(spec["trial"])


def trial_metrics(result: dict) -> dict[str, float]:
    """The numbers a trainable reported, and the trial's total time; Tune's bookkeeping is left out."""
    return {
        key: float(value)
        for key, value in result.items()
        if (key == TIME_TOTAL_S or key not in AUTO_RESULT_KEYS)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def is_file_store(uri: str) -> bool:
    """Whether a tracking URI names MLflow's file store (``file:`` or a bare path)."""
    return urlparse(uri).scheme in ("", "file")


class TrialTracker(MLflowLoggerCallback):
    """Ray Tune's MLflow callback with a run per trial named by its label, flat params and numeric metrics."""

    def __init__(self, mlflow: MLflowConfig, study: str, stage: str) -> None:
        super().__init__(
            mlflow.tracking_uri, experiment_name=mlflow.experiment_name or study, tags={"study": study, "stage": stage}
        )

    def setup(self, *args, **kwargs) -> None:
        """A file store named in the config is asked for: MLflow ≥ 3.7 refuses one unless this opts in."""
        if is_file_store(self.tracking_uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        if trial in self._trial_runs:  # a retried trial keeps its run
            return
        spec = spec_of(trial.config)
        run = self.mlflow_util.start_run(run_name=spec["label"], tags={**self.tags, "trial_name": str(trial)})
        self._trial_runs[trial] = run.info.run_id
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=spec_params(spec))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = trial_metrics(result)
        self.mlflow_util.log_metrics(
            run_id=self._trial_runs[trial], metrics_to_log=metrics, step=result[TRAINING_ITERATION]
        )

    def log_trial_end(self, trial, failed: bool = False) -> None:
        """A trial whose trainable reported an error (`ray_jobs.common.error_result`, not raised so that Tune
        does not retry it) ends as a FAILED run, with the error as its ``error`` tag."""
        from mlflow.tracking import MlflowClient

        result = trial.last_result or {}
        reported_error = result.get("status") == "error"
        if reported_error:
            MlflowClient(self.tracking_uri).set_tag(self._trial_runs[trial], "error", result["error"][:5000])
        super().log_trial_end(trial, failed or reported_error)


def tracking_callbacks(config: StudyConfig, stage: str) -> list[tune.Callback]:
    """The Tune callbacks that track a stage's trials: none without ``tracking.mlflow``."""
    mlflow = config.tracking.mlflow
    return [] if mlflow is None else [TrialTracker(mlflow, config.name, stage)]
