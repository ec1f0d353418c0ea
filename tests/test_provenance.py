"""The tiny study traces every result to what produced it: each file of each table carries the run's
provenance (versions, commit, config hash), each file of a checkpoint's partition that checkpoint's weights
digest, the ``provenance`` view has a row per file, and the report names both."""

import json
import subprocess
from importlib.metadata import version

import duckdb
import pyarrow.parquet as pq
import pytest

from analysis.database import DATABASE_NAME
from analysis.provenance import CHECKPOINT_KEY, PROVENANCE_KEY
from analysis.store import Store
from analysis.tables import LAYOUT
from probing.weights_digest import weights_digest
from ray_jobs import sql
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def head_commit() -> str | None:
    if not (REPO / ".git").exists():
        return None
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def every_file(store: Store) -> list[tuple[str, str]]:
    return [(table, path) for table in LAYOUT for path in store.table_files(table)]


def footer(path: str) -> dict[bytes, bytes]:
    return pq.read_metadata(path).metadata


def test_every_file_of_every_table_carries_the_runs_provenance(tiny_study):
    files = every_file(Store(tiny_study.root, create=False))
    tables = {table for table, _ in files}
    assert {"activations", "rankings", "transfer", "masks", "overlap_summary", "failures"} <= tables
    libraries = {library: version(library) for library in ("torch", "transformers", "ray", "peft", "duckdb")}
    config_hashes = set()
    for table, path in files:
        run = json.loads(footer(path)[PROVENANCE_KEY])
        assert {library: run[library] for library in libraries} == libraries, (table, path)
        assert run["project_version"] == version("xling-neurons")
        assert run.get("git_commit") == head_commit()
        config_hashes.add(run["config_hash"])
    assert len(config_hashes) == 1  # the killed run and the run that finished it ran one config


def test_each_checkpoints_files_carry_its_weights_digest_and_no_other_file_does(tiny_study, tmp_path):
    store = Store(tiny_study.root, create=False)
    rows = store.read("checkpoint_weights").to_pylist()
    digests = {(row["model"], str(row["checkpoint"])): row["weights_sha256"] for row in rows}
    assert sorted(digests) == [("broken", "step-x"), ("tiny-bloom", "step-000000"), ("tiny-bloom", "step-000020")]
    for (model, checkpoint), digest in digests.items():  # hashed anew here, with an empty cache
        if model == "broken":
            directory = tiny_study.tmp_path / "broken-model" / checkpoint
        else:
            directory = next((tiny_study.root / "models").glob(f"{model}-*/{checkpoint}"))
        assert digest == weights_digest(directory, tmp_path / "cache").sha256
    assert len(set(digests.values())) == 3
    stamped = 0
    for table, path in every_file(store):
        keys = store.partition_of(path)
        found = footer(path).get(CHECKPOINT_KEY)
        if "checkpoint" in LAYOUT[table]:
            assert found.decode() == digests[(keys["model"], keys["checkpoint"])], path
            stamped += 1
        else:
            assert found is None, path
    assert stamped >= len(store.table_files("activations")) > 0


def test_the_provenance_view_has_one_row_per_file(tiny_study, capsys):
    store = Store(tiny_study.root, create=False)
    files = sorted(store.uri(path) for _, path in every_file(store))
    with duckdb.connect(str(tiny_study.root / DATABASE_NAME), read_only=True) as con:
        rows = con.execute("SELECT path, table_name, torch, git_commit FROM provenance").fetchall()
    assert sorted(path for path, *_ in rows) == files
    assert {(torch, commit) for _, _, torch, commit in rows} == {(version("torch"), head_commit())}
    assert sql.main(["SELECT count(*) AS n_files FROM provenance", "--root", str(tiny_study.root)]) == 0
    assert f"\n{len(files)}" in capsys.readouterr().out


def test_the_report_names_what_produced_it_and_each_checkpoints_digest(tiny_study):
    html = (tiny_study.root / "report" / "index.html").read_text()
    footer_text = html.split("<footer>")[1]
    assert f"torch {version('torch')}" in footer_text and f"ray {version('ray')}" in footer_text
    commit = head_commit()
    assert commit is None or f"commit {commit}" in footer_text
    assert "<h2 id='checkpoints'>Checkpoints</h2>" in html and "Every checkpoint&#x27;s weights differ" in html
    for row in Store(tiny_study.root, create=False).read("checkpoint_weights").to_pylist():
        assert row["weights_sha256"][:16] in html
