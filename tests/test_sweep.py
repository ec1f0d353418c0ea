"""Stage sweeps on a real local Ray cluster: follow-up trials join the running Tune sweep once what they need ends;
a trial whose work raises is recorded once, a trial whose worker is lost is retried."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from analysis.store import Store
from ray_jobs.common import Failures
from ray_jobs.config import Resources
from ray_jobs.sweep import TRIAL_RETRIES, FollowUpSearcher, run_sweep, run_trials, spec_of


def test_a_follow_up_runs_in_the_same_sweep_after_its_trial_on_an_actor_already_started(ray_cluster, tmp_path):
    def trainable(config: dict) -> None:
        import os

        from ray import tune

        began = time.time()
        time.sleep(config["spec"]["sleep"])
        tune.report({"pid": os.getpid(), "began": began, "ended": time.time()})

    specs = [{"name": "imp-en", "sleep": 1.0}, {"name": "imp-fr", "sleep": 3.0}]
    releases = {"imp-en": [{"name": "transfer-en", "sleep": 0.0}], "imp-fr": [{"name": "transfer-fr", "sleep": 0.0}]}
    ended: list[str] = []

    def follow_up(spec: dict) -> list[dict]:
        ended.append(spec["name"])
        return releases.get(spec["name"], [])

    results = run_sweep("test", trainable, {"cpu": 1}, specs, Store(tmp_path), follow_up=follow_up)
    runs = {spec_of(r.config)["name"]: r.metrics for r in results}
    assert sorted(runs) == ["imp-en", "imp-fr", "transfer-en", "transfer-fr"] and not any(r.error for r in results)
    assert sorted(ended) == sorted(runs)  # every trial's end is reported, follow-ups' too
    assert runs["transfer-en"]["began"] >= runs["imp-en"]["ended"]
    assert runs["transfer-en"]["began"] < runs["imp-fr"]["ended"]  # not held back by the other first-batch trial
    first_actors = {runs["imp-en"]["pid"], runs["imp-fr"]["pid"]}
    assert {runs["transfer-en"]["pid"], runs["transfer-fr"]["pid"]} <= first_actors  # reused, no new imports


def test_the_searcher_finishes_only_when_nothing_runs_and_a_failed_trial_still_releases(ray_cluster):
    released: list[int] = []
    searcher = FollowUpSearcher(
        [{"name": "a"}], lambda spec: [{"name": "b"}] if spec["name"] == "a" else [], released.append
    )
    assert spec_of(searcher.suggest("1")) == {"name": "a"}
    assert searcher.suggest("2") is None  # a runs and may release more
    searcher.on_trial_complete("1", error=True)
    assert released == [1] and spec_of(searcher.suggest("3")) == {"name": "b"}
    searcher.on_trial_complete("3", result={})
    assert searcher.suggest("4") == FollowUpSearcher.FINISHED


def test_a_trial_that_raises_is_recorded_once_and_one_whose_worker_dies_is_retried(ray_cluster, tmp_path):
    def trainable(config: dict) -> None:
        """``broken`` raises, as a checkpoint that does not load would; ``lost``'s worker dies on its first attempt
        (as when its node goes), then it succeeds; ``fine`` succeeds."""
        import os
        from pathlib import Path

        from ray import tune

        trial = config["spec"]["trial"]
        with Path(trial.attempts).open("a") as out:
            out.write("attempt\n")
        if trial.label == "broken":
            raise RuntimeError("the checkpoint does not load")
        if trial.label == "lost" and len(Path(trial.attempts).read_text().splitlines()) == 1:
            os._exit(1)
        tune.report({"status": "ok", "compute_seconds": 0.5})

    trials = [
        SimpleNamespace(label=label, attempts=str(tmp_path / f"{label}.attempts"))
        for label in ("broken", "lost", "fine")
    ]
    failures = Failures("test")
    finished, busy = run_trials("test", trainable, trials, Resources(num_cpus=1), Store(tmp_path), failures)
    attempts = {t.label: len(Path(t.attempts).read_text().splitlines()) for t in trials}
    assert TRIAL_RETRIES >= 1 and attempts == {"broken": 1, "lost": 2, "fine": 1}  # the work's own error: no retry
    assert (finished, busy) == (2, 1.0)
    [failure] = failures.rows
    assert (failure["key"], failure["error"]) == ("broken", "RuntimeError: the checkpoint does not load")
    assert "in trainable" in failure["detail"]  # its traceback says where it raised


def test_tunes_own_files_hold_a_trial_by_reference_not_its_spec(ray_cluster, tmp_path):
    """Tune rewrites its experiment state as a sweep runs, with each trial's config in it several times: a spec
    (a probe partition's units) must not be copied there, only its label and a reference."""

    def trainable(config: dict) -> None:
        from ray import tune

        tune.report({"status": "ok", "compute_seconds": float(len(config["spec"]["trial"].payload))})

    payload = "neuron " * 20_000  # 140 KB, the size of a large partition's units
    trials = [SimpleNamespace(label=f"trial-{i}", payload=payload) for i in range(3)]
    store = Store(tmp_path)
    finished, busy = run_trials("state", trainable, trials, Resources(num_cpus=1), store, Failures("test"))
    assert (finished, busy) == (3, 3.0 * len(payload))  # each trial read its whole spec
    tune_files = [p for p in (store.local_dir() / "_tune").rglob("*") if p.is_file()]
    assert any(p.name.startswith("experiment_state") for p in tune_files)
    assert sum(p.stat().st_size for p in tune_files) < len(payload)  # all trials' files together
