"""The fault campaign of issue 14 against the tiny study, kept as tests: two runs on one root (one refused,
one waiting), a driver killed mid-probe that leaves nothing running, every table damaged three ways and
repaired identically, and a disk that fills up."""

import shutil
from pathlib import Path

import pytest

from analysis.store import Store
from bench.fault_injection import damage_every_table, differences, fill_the_disk, small_disk, table_rows
from ray_jobs import pipeline
from ray_jobs.lease import BUSY_EXIT

pytestmark = [pytest.mark.slow, pytest.mark.campaign]


def test_a_second_run_on_the_study_is_refused_naming_the_first(tiny_study):
    assert tiny_study.refused.returncode == BUSY_EXIT
    assert f"pid {tiny_study.killed_pid}" in tiny_study.refused.stderr
    assert "--wait" in tiny_study.refused.stderr and "[pipeline] report" not in tiny_study.refused.stdout


def test_a_waiting_run_takes_the_killed_runs_lease_over_and_finishes(tiny_study):
    log = tiny_study.resumed_log
    assert "[lease] waiting" in log and "taking over the stale lease" in log and "its process is gone" in log
    assert tiny_study.resumed == 1  # the broken model; everything else finished
    assert "[pipeline] report:" in log


def test_the_killed_driver_leaves_no_process_and_no_temporary_file(tiny_study):
    assert tiny_study.leftover == []
    hidden = [p.name for p in tiny_study.root.iterdir() if p.name.startswith(".results.duckdb")]
    assert hidden == [] and not (tiny_study.root / ".xling-lease.json").exists()


def test_no_failure_is_left_of_work_that_succeeded(tiny_study):
    rows = Store(tiny_study.root).read("failures").to_pylist()
    # the broken model fails where it is loaded (extract, transfer, lottery); nothing else is left
    assert {r["stage"] for r in rows if not r["error"].startswith("CannotProbe")} == {"extract", "transfer", "lottery"}
    assert all("broken" in r["key"] for r in rows if not r["error"].startswith("CannotProbe"))


def copy_of(tiny_study, root: Path) -> Path:
    shutil.copytree(tiny_study.root, root, ignore=shutil.ignore_patterns("_tune"))
    return root


def rerun(tiny_study, root: Path, *extra: str) -> int:
    return pipeline.main(["--config", str(tiny_study.config), "--output-root", str(root), *extra])


def test_every_table_damaged_three_ways_is_repaired_identically(ray_cluster, tiny_study, tmp_path, capsys):
    root = copy_of(tiny_study, tmp_path / "study")
    expected = table_rows(tiny_study.root)
    damaged = damage_every_table(root)
    assert {table for table, _, _ in damaged} == set(expected) and {kind for _, kind, _ in damaged} == {
        "truncate",
        "garble",
        "flip",
    }
    capsys.readouterr()
    assert rerun(tiny_study, root, "--verify") == tiny_study.resumed
    out = capsys.readouterr().out
    assert differences(expected, table_rows(root)) == []
    # each damaged file was found (a stage's own failures file is simply rewritten by that stage)
    found = [str(path) for _, _, path in damaged if f"[store] damaged, will be recomputed: {path}" in out]
    rewritten = [str(path) for _, _, path in damaged if path.name == "part-0.parquet" and "failures" in path.parts]
    assert sorted(found + rewritten) == sorted({str(path) for _, _, path in damaged})
    assert "were damaged; they were moved aside" in out


def test_a_full_disk_is_a_clear_error_and_a_rerun_after_freeing_space_is_identical(
    ray_cluster, tiny_study, tmp_path, capsys
):
    def in_process(root: Path) -> tuple[int, str]:
        capsys.readouterr()
        return rerun(tiny_study, root), capsys.readouterr().out

    try:
        with small_disk(tmp_path / "disk") as mount:
            outcome = fill_the_disk(tiny_study.root, mount, in_process)
    except OSError as err:
        pytest.skip(str(err))
    assert outcome.full_status == 1 and "No space left on device" in outcome.full_output
    assert outcome.half_written_in_view == []
    assert outcome.freed_status == tiny_study.resumed and outcome.differences == []
