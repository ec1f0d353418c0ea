"""A stage's Ray Tune sweep: one trial per spec, with a progress bar instead of Tune's status tables."""

from __future__ import annotations

import functools
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence

import ray
from ray import tune
from ray.tune.search import Searcher
from tqdm import tqdm

from analysis.store import Store
from ray_jobs.common import Failures, error_result
from ray_jobs.config import Resources

#: Retries of a Tune trial whose worker was lost. Tune retries a trial whose trainable raised as well, so the
#: trainables report their own errors as results (`error_result`, `errors_as_results`).
TRIAL_RETRIES = 3

#: Trials running or pending at once. For a search algorithm other than its grid search, Tune keeps one trial
#: pending, starting actors one by one; this limit lets it keep up to 200 pending (its grid-search default, which
#: still asks an autoscaler for many nodes at once). It also caps running trials at 200, far above the GPUs or
#: CPUs of the clusters in configs/ (a CPU cluster of more than 200 trial slots would need it raised).
MAX_CONCURRENT_TRIALS = 200


class TrialProgress(tune.Callback):
    """Advances a bar as trials end; the bar is left out when Tune pickles its experiment state."""

    def __init__(self, total: int, desc: str) -> None:
        self.bar: tqdm | None = tqdm(total=total, unit="trial", desc=desc, file=sys.stderr, mininterval=2)

    def add(self, trials: int) -> None:
        """Count ``trials`` more (follow-up trials released during the sweep)."""
        if self.bar is not None:
            self.bar.total += trials
            self.bar.refresh()

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


#: A sweep's follow-ups: given the spec of a trial that just ended, the specs that can run now.
FollowUp = Callable[[dict], list[dict]]


def trial_config(spec: dict) -> dict:
    """Tune's config of the trial of ``spec``: its label, and the spec itself in Ray's object store.

    Tune keeps a trial's config three times in its experiment state and once more in each result, each a
    hex-encoded pickle, and rewrites the state file as the sweep runs: the demo's probe partitions (18 units
    each) took ~120 KB per trial, 9.2 MB for 80 trials, now 2.3 MB (what is left is Tune's own bookkeeping
    and the reported metrics). By reference, a config is ~0.2 KB; the trainable reads the spec
    (`reading_spec`) and the driver looks it up (`spec_of`). The specs stay in the object store until the
    driver exits (Tune's pickling of a config pins its reference): a few KB per trial.
    """
    return {**({"label": spec["label"]} if "label" in spec else {}), "spec": ray.put(spec)}


def spec_of(config: dict) -> dict:
    """The spec of a trial's config (`trial_config`)."""
    return ray.get(config["spec"])


def reading_spec(trainable: Callable[[dict], None]) -> Callable[[dict], None]:
    """A Tune trainable that calls ``trainable`` with the trial's spec in ``config["spec"]`` (`trial_config`)."""

    @functools.wraps(trainable)
    def with_spec(config: dict) -> None:
        trainable({**config, "spec": spec_of(config)})

    return with_spec


class FollowUpSearcher(Searcher):
    """Hands Tune the sweep's specs, then, as each trial ends, the specs `follow_up` releases, then finishes.

    Some trials need the results of others (a sub-network's transfer needs the IMP trials of every language
    whose masks it tries). Releasing them into the same Tune run, rather than a second run after the first,
    keeps the actors that already paid their torch/transformers imports (``reuse_actors``; a new Tune run
    costs ~10 s of start-up and imports on 2 CPUs) and starts each follow-up as soon as its inputs exist,
    not after the slowest trial of the first batch. A trial ends, for `follow_up`, when it succeeded or
    failed for good (after Tune's retries); the follow-up decides what a failure means for its dependants.
    """

    def __init__(self, specs: list[dict], follow_up: FollowUp, on_release: Callable[[int], None]) -> None:
        super().__init__()
        self.queue, self.running = deque(specs), {}
        self.follow_up, self.on_release = follow_up, on_release

    def suggest(self, trial_id: str) -> dict | str | None:
        """The next queued spec's config (`trial_config`); None while none is queued but trials run (they may release
        more); else FINISHED."""
        if self.queue:
            self.running[trial_id] = self.queue.popleft()
            return trial_config(self.running[trial_id])
        return None if self.running else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        released = self.follow_up(self.running.pop(trial_id))
        self.queue.extend(released)
        if released:
            self.on_release(len(released))

    def save(self, checkpoint_path: str) -> None:
        """Nothing: a study resumes from what its store holds, never from Tune's experiment state."""

    def __getstate__(self) -> dict:
        """Without the specs: Tune pickles its search algorithm into its own files (``tuner.pkl``), once per
        sweep, which a study never restores from (`save`)."""
        return {**self.__dict__, "queue": deque(), "running": {}, "follow_up": no_follow_up, "on_release": None}


def trial_dirname(trial: tune.experiment.Trial) -> str:
    """A trial's folder under the sweep's: its trainable, its id and its label (Tune's default names it by the
    whole config, which holds the spec's reference)."""
    label = re.sub(r"[^\w.=-]+", "_", str(trial.config.get("label", "")))[:100]
    return f"{trial.trainable_name}_{trial.trial_id}_{label}".rstrip("_")


def errors_as_results(trainable: Callable[[dict], None]) -> Callable[[dict], None]:
    """A Tune trainable that reports the error of ``trainable`` as its result (`error_result`) instead of raising."""

    @functools.wraps(trainable)
    def reporting_errors(config: dict) -> None:
        try:
            trainable(config)
        except Exception as err:
            tune.report(error_result(err))

    return reporting_errors


def record_failure(failures: Failures, label: str, result: tune.Result) -> bool:
    """Record a finished trial's failure, if it failed: its worker's loss (Tune's error, after the retries) or the
    error its trainable reported (`error_result`); whether it failed."""
    if result.error is not None:
        failures.add(label, result.error)
    elif result.metrics.get("status") == "error":
        failures.add(label, result.metrics["error"], result.metrics["detail"])
    else:
        return False
    return True


def no_follow_up(ended: object) -> list:
    """A sweep whose trials are all known at the start."""
    return []


def run_sweep(
    stage: str,
    trainable: Callable,
    resources: dict,
    specs: list[dict],
    store: Store,
    callbacks: Sequence[tune.Callback] = (),
    follow_up: FollowUp = no_follow_up,
) -> tune.ResultGrid:
    """Run one trial per spec (it gets ``config["spec"]``), and one per spec that ``follow_up`` releases when a
    trial ends (`FollowUpSearcher`); Tune's own files go under the store's local ``_tune``.

    ``callbacks`` are added to the progress bar (the study's tracking, `ray_jobs.tracking.tracking_callbacks`).

    A trial whose worker is lost (its node died) is retried up to `TRIAL_RETRIES` times; the trainables
    report their own errors as results (`errors_as_results`), so that an error of the work itself is not
    retried. Actors are reused from trial to trial: a fresh one per trial paid its torch/transformers imports
    (~7 s) each time.
    """
    progress = TrialProgress(len(specs), stage)
    tuner = tune.Tuner(
        tune.with_resources(reading_spec(trainable), resources),
        tune_config=tune.TuneConfig(
            search_alg=FollowUpSearcher(specs, follow_up, progress.add),
            num_samples=-1,
            max_concurrent_trials=MAX_CONCURRENT_TRIALS,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            storage_path=str(store.local_dir() / "_tune"),
            name=f"{stage}-{int(time.time())}",
            verbose=0,
            callbacks=[progress, *callbacks],
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
    follow_up: Callable[[object], list] = no_follow_up,
) -> tuple[int, float]:
    """Run trials (each with a ``label``) as a sweep, each with ``resources``, and the trials ``follow_up``
    returns when a trial ends (`FollowUpSearcher`); record the failed ones in ``failures``.

    The trainable gets ``config["spec"]`` with the store, the trial, its threads and GPUs, and reports
    ``compute_seconds``; an error it raises is its result (`errors_as_results`), recorded without a retry.
    ``callbacks`` go to `run_sweep`. Returns (trials finished, busy CPU-seconds).
    """
    if not trials:
        return 0, 0.0

    def spec(trial) -> dict:
        threads, gpus = int(resources.num_cpus), float(resources.num_gpus)
        return {"label": trial.label, "store": store, "trial": trial, "threads": threads, "num_gpus": gpus}

    requests = {"cpu": resources.num_cpus, "gpu": resources.num_gpus}
    results = run_sweep(
        name,
        errors_as_results(trainable),
        requests,
        [spec(t) for t in trials],
        store,
        callbacks=callbacks,
        follow_up=lambda ended: [spec(t) for t in follow_up(ended["trial"])],
    )
    finished, busy = 0, 0.0
    for result in results:
        if not record_failure(failures, spec_of(result.config)["trial"].label, result):
            finished += 1
            busy += result.metrics["compute_seconds"] * resources.num_cpus
    return finished, busy
