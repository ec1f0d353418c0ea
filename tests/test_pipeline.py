"""The one-command study on a tiny config through a real local Ray cluster: every stage, the DuckDB
views, plots and report, a failing part that is recorded while the rest finishes, and a rerun that
does no work."""

import shutil

import duckdb
import matplotlib.image
import pyarrow.dataset as ds
import pytest

from analysis.database import DATABASE_NAME
from analysis.store import Store
from analysis.tables import LAYOUT
from ray_jobs import pipeline
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_study(tiny_study):
    """The tiny study plus a model whose checkpoint does not load, as the fault campaign left it (its first
    run killed mid-probe, finished by a run that waited for it): exit status 1, the rest complete."""
    return tiny_study.tmp_path, tiny_study.config, tiny_study.resumed


def test_a_failing_part_is_recorded_and_the_rest_finishes(finished_study):
    tmp_path, _, status = finished_study
    assert status == 1
    root = tmp_path / "study"
    con = duckdb.connect(str(root / DATABASE_NAME), read_only=True)
    failures = con.execute("SELECT stage, key FROM failures WHERE stage IN ('extract', 'transfer')").fetchall()
    assert sorted(stage for stage, _ in failures) == ["extract", "transfer"]
    assert all("broken" in key for _, key in failures)
    # the good model went through every stage
    trials = con.execute("SELECT count(*) FROM rankings WHERE direction = 'ttb' AND model = 'tiny-bloom'").fetchone()
    assert trials[0] == 2 * 2 * 2 * 2 * 2  # checkpoints x layers x languages x attributes x methods
    assert con.execute("SELECT count(DISTINCT checkpoint) FROM transfer WHERE model = 'tiny-bloom'").fetchone()[0] == 2
    summary = con.execute("SELECT count(*), min(n_languages) FROM overlap_summary").fetchone()
    assert summary == (2 * 2 * 2 * 2, 2)  # checkpoints x layers x attributes x methods, 2 languages each
    assert con.execute("SELECT count(*) FROM correlations").fetchone()[0] > 0


def test_every_view_returns_the_rows_written(finished_study):
    root = finished_study[0] / "study"
    store = Store(root)
    con = duckdb.connect(str(root / DATABASE_NAME), read_only=True)
    for table in LAYOUT:
        if not store.exists(table):
            continue
        written = ds.dataset(store.table_dir(table), format="parquet", partitioning="hive").count_rows()
        assert con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == written, table
    for view in ("overlap_transfer_average", "overlap_transfer_pairwise"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] > 0


def test_report_and_plots_are_written_and_not_blank(finished_study):
    report = finished_study[0] / "study" / "report"
    html = (report / "index.html").read_text()
    images = sorted(report.glob("*.png"))
    kinds = {p.name.split("-")[0] for p in images}
    assert {"loss", "overlap", "heatmap", "accuracy", "transfer", "lottery"} <= kinds
    for image in images:
        assert image.name in html
        pixels = matplotlib.image.imread(image)
        assert pixels.std() > 0.02, image.name  # not a blank canvas
    headings = ("Findings", "Word datasets", "Cross-lingual overlap", "Probing", "Zero-shot", "Lottery", "Failures")
    for heading in headings:
        assert heading in html


def test_a_rerun_of_the_finished_study_moved_elsewhere_does_no_work(
    ray_cluster, finished_study, tmp_path, ud_dir, capsys
):
    """Fingerprints hold what the results depend on, never where the study lies: a copy at another path
    (without the broken model) reruns nothing and keeps its report."""
    shutil.copytree(finished_study[0] / "study", tmp_path / "study", ignore=shutil.ignore_patterns("_tune"))
    path = tiny_config(tmp_path, ud_dir)
    report = tmp_path / "study" / "report" / "index.html"
    before = report.stat().st_mtime_ns
    capsys.readouterr()
    assert pipeline.main(["--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out
    assert report.stat().st_mtime_ns == before, out
    with duckdb.connect(str(tmp_path / "study" / DATABASE_NAME), read_only=True) as con:
        assert (
            str(tmp_path / "study")
            in con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'rankings'").fetchone()[0]
        )
