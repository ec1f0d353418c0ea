"""``xling sql`` reads a study's tables and nothing else: it writes no file, reads none outside them,
installs and attaches nothing, refuses a root that is not a study, and quotes the root safely."""

from importlib.metadata import version
from pathlib import Path

import duckdb
import pytest

from analysis.database import create_database, open_locked, query, reads_file_metadata
from analysis.provenance import Provenance
from analysis.store import Store
from analysis.tables import rows_table
from ray_jobs import sql


def failure_row(stage: str) -> dict:
    return {"stage": stage, "key": f"model={stage}", "error": "E", "detail": "", "time": 1.0}


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A study root holding one stored table, and a secret file next to it."""
    root = tmp_path / "it's a study"
    store = Store(root)
    for stage in ("extract", "probe"):
        store.write(rows_table("failures", [failure_row(stage)]), store.path("failures", stage=stage), "fp")
    (tmp_path / "secret.txt").write_text("secret\n")
    return root


def run_sql(capsys, root: Path, text: str) -> tuple[int, str]:
    status = sql.main([text, "--root", str(root)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_query_reads_the_tables_of_a_root_with_a_quote_in_its_path(study, capsys):
    status, out = run_sql(capsys, study, "SELECT stage, count(*) AS n FROM failures GROUP BY ALL ORDER BY stage")
    assert status == 0, out
    assert "extract" in out and "probe" in out and "(2 rows)" in out


def test_the_views_of_results_duckdb_quote_the_root(study):
    with duckdb.connect(str(create_database(Store(study))), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 2


@pytest.mark.parametrize(
    "attempt",
    [
        "COPY (SELECT 1 AS x) TO '{root}/failures/stage=probe/part-0.parquet' (FORMAT parquet)",
        "COPY failures TO '{outside}/copied.csv'",
        "SELECT * FROM read_text('{outside}/secret.txt')",
        "SELECT * FROM read_csv('{outside}/secret.txt')",
        "SELECT * FROM read_parquet('{root}/failures/*/*.parquet')",
        "INSTALL httpfs",
        "ATTACH '{outside}/other.duckdb' AS other",
        "ATTACH '{root}/results.duckdb' AS mine",
        "EXPORT DATABASE '{outside}/exported'",
        "SET enable_external_access = true",
    ],
)
def test_nothing_outside_the_tables_is_reached_and_nothing_is_written(study, capsys, attempt):
    before = sorted(p.relative_to(study.parent) for p in study.parent.rglob("*"))
    stored = (study / "failures" / "stage=probe" / "part-0.parquet").read_bytes()
    status, out = run_sql(capsys, study, attempt.format(root=study, outside=study.parent))
    assert status == 2, out
    assert "secret" not in out.replace("secret.txt", "")
    assert sorted(p.relative_to(study.parent) for p in study.parent.rglob("*")) == before
    assert (study / "failures" / "stage=probe" / "part-0.parquet").read_bytes() == stored


@pytest.mark.parametrize("make", ["missing", "empty", "other files"])
def test_a_root_that_is_not_a_study_is_refused_and_not_created(tmp_path, capsys, make):
    root = tmp_path / "nothing"
    if make != "missing":
        root.mkdir()
    if make == "other files":
        (root / "notes.txt").write_text("x")
    status, out = run_sql(capsys, root, "SELECT 1")
    assert status == 2 and "not a study" in out
    assert root.exists() == (make != "missing")


def test_a_killed_runs_half_built_database_is_removed(study):
    for leftover in (".results.duckdb.0123abcd.tmp", ".results.duckdb.0123abcd.tmp.wal"):
        (study / leftover).write_bytes(b"half")
    create_database(Store(study))
    assert sorted(p.name for p in study.iterdir() if "duckdb" in p.name) == ["results.duckdb"]


def test_the_provenance_view_has_a_row_per_file_in_xling_sql_and_in_results_duckdb(study, capsys):
    """One file written by a run with provenance, two before it (none: null fields, still a row each)."""
    store = Store(study, provenance=Provenance.of_run("cfg"))
    store.write(rows_table("failures", [failure_row("report")]), store.path("failures", stage="report"), "fp")
    sql_text = "SELECT table_name, config_hash, torch, n_rows FROM provenance ORDER BY path"
    expected = [("failures", None, None, 1), ("failures", None, None, 1), ("failures", "cfg", version("torch"), 1)]
    with duckdb.connect(str(create_database(Store(study))), read_only=True) as con:
        assert con.execute(sql_text).fetchall() == expected
    assert query(open_locked(Store(study), file_metadata=reads_file_metadata(sql_text)), sql_text)[1] == expected
    status, out = run_sql(capsys, study, sql_text)
    assert status == 0 and "(3 rows)" in out and "cfg" in out
