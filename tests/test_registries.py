"""The registries that tie the code together: every table has its view, every stage its command, and a
trial's fingerprint follows its own fields."""

import dataclasses

import duckdb
import pytest

from analysis.database import create_database
from analysis.store import Store
from analysis.tables import TABLES, activation_schema, rows_table, schema_of
from ray_jobs.cli import COMMANDS, entry_point
from ray_jobs.stages import STAGES, stage_named
from ray_jobs.trials import ProbeTrial, TransferTrial


def _partition_values(columns: tuple[str, ...]) -> dict:
    return {c: (2 if c == "layer" else f"{c}-x") for c in columns}


def test_every_registered_table_gets_a_duckdb_view_with_its_columns(tmp_path):
    store = Store(tmp_path / "study")
    for name, spec in TABLES.items():
        schema = spec.schema if spec.schema is not None else activation_schema(4, "float32")
        store.write(schema.empty_table(), store.path(name, **_partition_values(spec.partitions)), "fp")
    database = create_database(store)
    with duckdb.connect(str(database), read_only=True) as con:
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert set(TABLES) <= views
        for name, spec in TABLES.items():
            columns = {row[0] for row in con.execute(f'DESCRIBE "{name}"').fetchall()}
            stored = (spec.schema or activation_schema(4, "float32")).names
            assert set(stored) | set(spec.partitions) <= columns, name


def test_every_stage_is_a_cli_command_running_its_modules_main():
    for stage in STAGES:
        assert stage.name in COMMANDS
        module = __import__(stage.module, fromlist=["main"])
        assert entry_point(stage.name) is module.main
        assert callable(module.run)
    order = [
        "pretrain",
        "prepare",
        "weights",
        "extract",
        "probe",
        "transfer",
        "lottery",
        "intervene",
        "analyse",
        "report",
    ]
    assert [s.name for s in STAGES] == order
    with pytest.raises(KeyError, match="no stage 'nope'"):
        stage_named("nope")


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_each_stage_command_answers_help(stage, capsys):
    with pytest.raises(SystemExit) as done:
        entry_point(stage)(["--help"])
    assert done.value.code == 0 and "--config" in capsys.readouterr().out


def test_rows_must_have_exactly_the_tables_columns():
    row = {"stage": "probe", "key": "k", "error": "e", "detail": "", "time": 1.0}
    assert rows_table("failures", [row]).num_rows == 1
    with pytest.raises(ValueError, match=r"missing columns \['time'\], unknown columns \[\]"):
        rows_table("failures", [{k: v for k, v in row.items() if k != "time"}])
    with pytest.raises(ValueError, match=r"unknown columns \['extra'\]"):
        rows_table("failures", [{**row, "extra": 1}])
    assert rows_table("failures", [{**row, "model": "m"}], drop=("model",)).num_rows == 1
    with pytest.raises(ValueError, match="per-study schema"):
        schema_of("activations")


PROBE = ProbeTrial(
    model="m",
    checkpoint="c",
    layer=2,
    language="en",
    attribute="Number",
    method="linear",
    seed=0,
    k=10,
    k_fraction=None,
    greedy_depth="k",
    k_grid=(1, 10),
    classifiers=("linear",),
    words_fingerprint="w",
    activation_fingerprint="a",
    versions=(1, 2, 3),
)


def test_a_probe_trials_fingerprint_changes_with_every_field_and_its_label_names_its_key(tmp_path):
    changed = {
        "model": "m2",
        "checkpoint": "c2",
        "layer": 3,
        "language": "fr",
        "attribute": "Gender",
        "method": "probeless",
        "seed": 1,
        "k": 11,
        "k_fraction": 0.1,
        "greedy_depth": "k_grid_max",
        "k_grid": (1, 5),
        "classifiers": ("gaussian",),
        "params": {"l1": 0.1},
        "evaluation": {"control": False},
        "max_examples": 100,
        "words_fingerprint": "w2",
        "activation_fingerprint": "a2",
        "versions": (1, 2, 4),
    }
    assert set(changed) == {f.name for f in dataclasses.fields(ProbeTrial)}
    fingerprints = {dataclasses.replace(PROBE, **{name: value}).fingerprint for name, value in changed.items()}
    assert len(fingerprints) == len(changed) and PROBE.fingerprint not in fingerprints
    assert dataclasses.replace(PROBE).fingerprint == PROBE.fingerprint
    assert PROBE.label == "model=m/checkpoint=c/layer=2/language=en/attribute=Number/method=linear/seed=0"
    paths = PROBE.paths(Store(tmp_path))
    assert "/rankings/model=m/checkpoint=c/layer=2/language=en/attribute=Number/method=linear/seed-0" in paths.rankings


def test_a_transfer_trials_fingerprint_ignores_where_its_data_and_model_are():
    trial = TransferTrial(
        "m", "c", "pos", "/models/m", ("fr",), {"lr": 1e-3}, (("a.conllu", "h1"),), "/data/ud", "pretrained:m-1"
    )
    moved = dataclasses.replace(trial, data_dir="/elsewhere/ud", source="/elsewhere/models/m")
    edited = dataclasses.replace(trial, data=(("a.conllu", "h2"),))
    retrained = dataclasses.replace(trial, model_identity="pretrained:m-2")
    assert moved.fingerprint == trial.fingerprint
    assert len({trial.fingerprint, edited.fingerprint, retrained.fingerprint}) == 3
    assert trial.label == "model=m/checkpoint=c/task=pos"
