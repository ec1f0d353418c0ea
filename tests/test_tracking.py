"""Experiment tracking (issue 13 §5): the ``tracking.mlflow`` config section, and the probe, transfer and lottery
trials of a copy of the tiny study logged to a local MLflow file store through Ray Tune's callback, read back
with the MLflow client and matched against the stored Parquet results; without the section nothing is logged,
and a tracked run stores files with the fingerprints an untracked run reuses."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analysis.store import Store
from ray_jobs import lottery, probe, transfer
from ray_jobs.config import ConfigError, MLflowConfig, TrackingConfig, load_config, mlflow_problems
from ray_jobs.context import StudyContext
from ray_jobs.tracking import partition_params, trial_metrics, trial_params
from ray_jobs.trials import ProbeTrial, TransferTrial
from tests.conftest import tiny_config
from transfer.finetune import FinetuneParams

# --- the config section ---------------------------------------------------------------------------


def test_the_section_is_read_and_absent_means_no_tracking(tmp_path, ud_dir):
    plain = load_config(tiny_config(tmp_path, ud_dir), check_models=False)
    assert plain.tracking == TrackingConfig() and plain.tracking.mlflow is None
    uri = f"file://{tmp_path}/mlruns"
    tracked = load_config(tiny_config(tmp_path, ud_dir, tracking={"mlflow": {"tracking_uri": uri}}), check_models=False)
    assert tracked.tracking.mlflow == MLflowConfig(tracking_uri=uri, experiment_name=None)
    assert dataclasses.replace(tracked, tracking=TrackingConfig()) == plain  # nothing else differs


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"mlflow": {}}, "tracking.mlflow.tracking_uri: required"),
        ({"mlflow": {"tracking_uri": " "}}, "tracking.mlflow.tracking_uri: expected an MLflow tracking URI"),
        ({"mlflow": {"tracking_uri": 3}}, "tracking.mlflow.tracking_uri: expected str, got int 3"),
        ({"mlflow": {"tracking_uri": "file:///x", "experiment_name": ""}}, "tracking.mlflow.experiment_name:"),
        ({"wandb": {}}, "tracking.wandb: unknown key (known: mlflow)"),
        ([], "tracking: expected a mapping"),
    ],
)
def test_a_bad_section_names_its_yaml_path(tmp_path, ud_dir, section, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(tiny_config(tmp_path, ud_dir, tracking=section), check_models=False)
    assert [p for p in caught.value.problems if p.startswith(problem)], caught.value.problems


def test_tracking_without_the_mlflow_package_says_what_to_install():
    mlflow = MLflowConfig("file:///tmp/mlruns")
    assert mlflow_problems(None, installed=False) == []
    assert mlflow_problems(mlflow, installed=True) == []
    [problem] = mlflow_problems(mlflow, installed=False)
    assert problem.startswith("mlflow: needs the mlflow package") and "pip install -e .[tracking]" in problem


# --- what a run gets --------------------------------------------------------------------------------


def _unit(attribute: str, method: str, params: dict) -> ProbeTrial:
    return ProbeTrial(
        "m", "c", 1, "en", attribute, method, 0, 20, None, "k", (1, 5), ("linear",), params, words_fingerprint=attribute
    )


def test_a_partition_trial_logs_what_its_units_share_and_each_methods_params():
    units = [
        _unit(a, m, {"chunk_size": 8} if m == "gaussian" else {})
        for a in ("POS", "Number")
        for m in ("gaussian", "linear")
    ]
    params = partition_params(units)
    assert params["attribute"] == "POS,Number" and params["method"] == "gaussian,linear" and params["seed"] == "0"
    assert params["params.gaussian.chunk_size"] == 8 and params["k_grid"] == "1,5" and params["units"] == 4
    assert (params["model"], params["checkpoint"], params["layer"], params["language"]) == ("m", "c", 1, "en")
    assert "fingerprint" not in params and "words_fingerprint" not in params  # they differ per unit


def test_a_trial_logs_its_fields_flat_but_not_where_its_inputs_lie():
    trial = TransferTrial("m", "c", "pos", "/models/m", ("en", "fr"), FinetuneParams(lr=0.01), (("en", "ab"),), "/ud")
    params = trial_params(trial)
    assert params["params.lr"] == 0.01 and params["targets"] == "en,fr" and params["fingerprint"] == trial.fingerprint
    assert "source" not in params and "data_dir" not in params and "data" not in params


def test_only_the_trainables_numbers_and_the_trial_time_are_metrics():
    result = {"accuracy/fr": 0.5, "status": "ok", "pid": 7, "done": True, "time_total_s": 2.0, "config": {"a": 1}}
    assert trial_metrics(result) == {"accuracy/fr": 0.5, "time_total_s": 2.0}


# --- a tracked sweep --------------------------------------------------------------------------------


def _stored(root: Path, pattern: str) -> list[Path]:
    """The result files under ``root`` that match ``pattern``, without hidden (temporary or damaged) ones."""
    return sorted(path for path in root.glob(pattern) if not path.name.startswith("."))


def _forget(paths: list[Path]) -> None:
    """Remove stored result files, so that the units that wrote them run again."""
    assert paths
    for path in paths:
        path.unlink()


def _forget_partition(root: Path) -> None:
    """One probe partition: the first checkpoint, layer 1, fr."""
    _forget(_stored(root, "rankings/model=tiny-bloom/checkpoint=*/layer=1/language=fr/*/*/*.parquet")[:4])


def _forget_trials(root: Path) -> None:
    """One transfer trial and one IMP trial (seed 1)."""
    _forget(_stored(root, "transfer/model=tiny-bloom/checkpoint=*/task=pos/*.parquet")[:1])
    _forget(_stored(root, "lottery_rounds/model=tiny-bloom/checkpoint=*/task=pos/language=en/seed-1-*.parquet"))


def _runs(uri: str, experiment: str) -> dict[str, object]:
    """The finished MLflow runs of an experiment by run name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} at {uri}"
    return {run.info.run_name: run for run in client.search_runs([found.experiment_id])}


@pytest.fixture(scope="module")
def tracked(ray_cluster, tiny_study, tmp_path_factory):
    """A copy of the tiny study, one of whose probe partitions is removed and reprobed untracked; then that
    partition, a transfer trial and an IMP trial are removed and rerun with tracking to a file store; then probed
    once more untracked. (Every stage gets its callbacks from one `tracking_callbacks`, so the untracked run
    is the probe stage's only, to spare two sweeps.)"""
    tmp = tmp_path_factory.mktemp("tracking")
    root = shutil.copytree(tiny_study.root, tmp / "study", ignore=shutil.ignore_patterns("_tune"))
    plain = load_config(tiny_study.config, output_root=str(root))
    uri = f"file://{tmp}/mlruns"
    tracked = dataclasses.replace(plain, tracking=TrackingConfig(MLflowConfig(uri)))
    workdir = tmp / "workdir"
    workdir.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)  # where MLflow would put ./mlruns or ./mlflow.db by default
        _forget_partition(root)
        untracked = probe.run(StudyContext.open(plain))
        _forget_partition(root)
        _forget_trials(root)
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # for the reading client; the tracker sets it for itself
        results = [stage.run(StudyContext.open(tracked)) for stage in (probe, transfer, lottery)]
        again = probe.run(StudyContext.open(plain))
        yield {
            "root": root,
            "uri": uri,
            "name": plain.name,
            "workdir": workdir,
            "untracked": untracked,
            "results": results,
            "again": again,
            "runs": _runs(uri, plain.name),
        }


@pytest.mark.slow
def test_without_the_section_nothing_is_logged(tracked):
    assert tracked["untracked"].run == tracked["results"][0].run == 4  # 2 attributes x 2 methods
    assert list(tracked["workdir"].iterdir()) == []  # no ./mlruns, no ./mlflow.db


@pytest.mark.slow
def test_tracking_changes_no_fingerprint(tracked):
    """What the tracked run stored is what an untracked run would: it reuses every unit."""
    first, again = tracked["untracked"], tracked["again"]
    assert again.run == 0 and again.reused == first.reused + first.run


@pytest.mark.slow
def test_each_probe_partition_trial_is_a_run_with_its_params_and_accuracies(tracked):
    root, runs = tracked["root"], tracked["runs"]
    [(name, run)] = [(n, r) for n, r in runs.items() if r.data.tags.get("stage") == "probe"]
    model, checkpoint, layer, language = name.split("/")  # its label: the activation partition
    assert (layer, language) == ("1", "fr")
    params = run.data.params
    assert [params[name] for name in ("model", "checkpoint", "layer", "language")] == [model, checkpoint, "1", "fr"]
    assert sorted(params["attribute"].split(",")) == ["Number", "POS"]
    assert sorted(params["method"].split(",")) == ["linear", "probeless"] and params["k"] == "20"
    assert run.data.tags["study"] == tracked["name"] and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["units_ok"] + metrics["units_cannot_probe"] == 4 and metrics["units_ok"] >= 1
    logged = {key: value for key, value in metrics.items() if key.startswith("accuracy_at_k/")}
    assert len(logged) == metrics["units_ok"]
    store = Store(root)
    for key, value in logged.items():
        _, attribute, method, _ = key.split("/")
        unit = {"model": model, "checkpoint": checkpoint, "layer": 1, "language": "fr"}
        unit |= {"attribute": attribute, "method": method}
        rows = pq.read_table(store.path("probe_metrics", part="seed-0", **unit)).to_pylist()
        k = pq.read_table(store.path("rankings", part="seed-0", **unit)).column("k")[0].as_py()
        assert value == pytest.approx(max(r["accuracy"] for r in rows if r["direction"] == "ttb" and r["k"] <= k))


@pytest.mark.slow
def test_a_transfer_trial_is_a_run_with_its_hyperparameters_and_scores(tracked):
    root, runs = tracked["root"], tracked["runs"]
    [run] = [r for r in runs.values() if r.data.tags.get("stage") == "transfer" and "tiny-bloom" in r.info.run_name]
    params = run.data.params
    assert params["task"] == "pos" and params["params.lr"] == "0.005" and params["params.epochs"] == "1"
    checkpoint = params["checkpoint"]
    stored = pq.read_table(root / "transfer" / "model=tiny-bloom" / f"checkpoint={checkpoint}" / "task=pos").to_pylist()
    scores = {f"{r['metric']}/{r['target_language']}": r["value"] for r in stored}
    assert scores and {key: run.data.metrics[key] for key in scores} == pytest.approx(scores)


@pytest.mark.slow
def test_a_lottery_trial_is_a_run_with_its_params_and_each_rounds_dev_metric(tracked):
    root, runs = tracked["root"], tracked["runs"]
    [run] = [r for r in runs.values() if r.data.tags.get("stage") == "lottery" and "tiny-bloom" in r.info.run_name]
    params = run.data.params
    assert (params["task"], params["language"], params["seed"]) == ("pos", "en", "1")
    assert params["params.sparsities"] == "0.5" and params["params.steps_per_round"] == "3"
    folder = root / "lottery_rounds" / "model=tiny-bloom" / f"checkpoint={params['checkpoint']}" / "task=pos"
    rounds = [pq.read_table(path).to_pylist()[0] for path in _stored(folder, "language=en/seed-1-*.parquet")]
    assert rounds
    for row in rounds:
        assert run.data.metrics[f"dev_metric/round-{row['round']:03d}"] == pytest.approx(row["dev_metric"])
        assert run.data.metrics[f"sparsity/round-{row['round']:03d}"] == pytest.approx(row["sparsity"])


@pytest.mark.slow
def test_a_trial_whose_work_raised_is_a_failed_run_with_its_error(tracked):
    """The broken model's checkpoint does not load: its transfer and IMP trials report the error (no retry) and
    their runs end FAILED, tagged with it."""
    failed = [run for run in tracked["runs"].values() if "model=broken" in run.info.run_name]
    assert {run.data.tags["stage"] for run in failed} == {"transfer", "lottery"}
    for run in failed:
        assert run.info.status == "FAILED", run.info.run_name
        assert run.data.tags["error"].startswith("RuntimeError: You set `ignore_mismatched_sizes`")
    assert all(run.info.status == "FINISHED" for run in tracked["runs"].values() if run not in failed)
