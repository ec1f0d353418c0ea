"""A stage's Ray Tune sweep: one trial per spec, with a progress bar instead of Tune's status tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from ray import tune
from tqdm import tqdm

from analysis.store import Store
from ray_jobs.common import Failures
from ray_jobs.config import Resources

#: Retries of a Tune trial whose worker was lost.
TRIAL_RETRIES = 3


class TrialProgress(tune.Callback):
    """Advances a bar as trials end; the bar is left out when Tune pickles its experiment state."""

    def __init__(self, total: int, desc: str) -> None:
        self.bar: tqdm | None = tqdm(total=total, unit="trial", desc=desc, file=sys.stderr, mininterval=2)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def on_experiment_end(self, trials, **info) -> None:
        if self.bar is not None:
            self.bar.close()

    def __getstate__(self) -> dict:
        return {"bar": None}


def run_sweep(
    stage: str,
    trainable: Callable,
    resources: dict,
    specs: list[dict],
    store: Store,
    callbacks: Sequence[tune.Callback] = (),
) -> tune.ResultGrid:
    """Run one trial per spec (it gets ``config["spec"]``); Tune's own files go under the store's local ``_tune``.

    ``callbacks`` are added to the progress bar (the study's tracking, `ray_jobs.tracking.tracking_callbacks`).

    A trial whose worker is lost (its node died) is retried up to `TRIAL_RETRIES` times; the trainables
    report their own errors as results, so that an error of the work itself is not retried. Actors are reused
    from trial to trial: a fresh one per trial paid its torch/transformers imports (~7 s) each time.
    """
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"spec": tune.grid_search(specs)},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(store.local_dir() / "_tune"),
            name=f"{stage}-{int(time.time())}",
            verbose=0,
            callbacks=[TrialProgress(len(specs), stage), *callbacks],
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
        ),
    )
    return tuner.fit()


def run_trials(
    name: str,
    trainable: Callable,
    trials: list,
    resources: Resources,
    store: Store,
    failures: Failures,
    callbacks: Sequence[tune.Callback] = (),
) -> tuple[int, float]:
    """Run trials (each with a ``label``) as a sweep, each with ``resources``; record the failed ones in ``failures``.

    The trainable gets ``config["spec"]`` with the store, the trial, its threads and GPUs, and reports
    ``compute_seconds``; ``callbacks`` go to `run_sweep`. Returns (trials finished, busy CPU-seconds).
    """
    if not trials:
        return 0, 0.0
    specs = [
        {
            "label": t.label,
            "store": store,
            "trial": t,
            "threads": int(resources.num_cpus),
            "num_gpus": float(resources.num_gpus),
        }
        for t in trials
    ]
    requests = {"cpu": resources.num_cpus, "gpu": resources.num_gpus}
    results = run_sweep(name, trainable, requests, specs, store, callbacks=callbacks)
    finished, busy = 0, 0.0
    for result in results:
        trial = result.config["spec"]["trial"]
        if result.error is not None:
            failures.add(trial.label, result.error)
        else:
            finished += 1
            busy += result.metrics["compute_seconds"] * resources.num_cpus
    return finished, busy
