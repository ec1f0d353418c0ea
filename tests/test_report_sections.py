"""The report's section registry: every section reads views the study can have, a section whose views are
absent is left out while the rest render, and a section added to the registry shows in the report."""

import re

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import false_discovery_control

from analysis.database import DERIVED_VIEWS
from analysis.report import Section
from analysis.report_sections import SECTIONS, ReportContext, ReportSection
from analysis.report_sections.findings import TOPIC_ORDER, TOPIC_SECTIONS
from analysis.report_sections.overlap import error_control_query
from analysis.study_report import build_report
from analysis.tables import SUMMARY_TABLES

STUDY = {"name": "s", "checkpoints": {"m": ["step-0"]}, "languages": ["en"], "attributes": ["Number"]}
STUDY |= {"layers": [1], "methods": ["random"], "k": 5}


def test_every_section_needs_only_views_the_report_loads():
    provided = set(SUMMARY_TABLES) | set(DERIVED_VIEWS)  # what analysis.database.open_results provides
    for section in SECTIONS:
        assert set(section.needs) <= provided, section.name


def test_section_names_are_unique():
    names = [section.name for section in SECTIONS]
    assert len(names) == len(set(names))


def test_every_findings_topic_links_registered_sections():
    """A findings sentence links its plots and tables by section name; a misspelt name would drop the link."""
    assert set(TOPIC_SECTIONS) == set(TOPIC_ORDER)
    names = {section.name for section in SECTIONS}
    for topic, refs in TOPIC_SECTIONS.items():
        assert refs and set(refs) <= names, topic


@pytest.fixture
def con_with_datasets() -> duckdb.DuckDBPyConnection:
    """A database with only the word datasets' table, registered as `open_results` registers it."""
    con = duckdb.connect()
    stats = {"language": ["en"], "attribute": ["Number"], "n_train": [10], "n_dev": [2], "n_test": [3]}
    stats |= {"n_values": [2], "values": [["Sing", "Plur"]], "note": [""]}
    con.register("dataset_stats", pa.table(stats))
    return con


def headings(html: str) -> list[str]:
    return re.findall(r"<h2[^>]*>(.*?)</h2>", html)


def test_sections_whose_views_are_absent_are_left_out_and_the_rest_render(tmp_path, con_with_datasets):
    html = build_report(con_with_datasets, tmp_path, STUDY).read_text(encoding="utf-8")
    assert headings(html) == ["Study", "Word datasets", "Query the results"]
    assert "Plur" in html


def test_the_failures_table_orders_equal_counts_by_reason_whatever_the_rows_order(tmp_path, con_with_datasets):
    """Two runs of one study store their failures in whichever order their trials ended; the report must not."""
    reasons = ["CannotProbe: Gender in eu", "CannotProbe: Gender in en", "CannotProbe: Number in zh"]
    rows = [(reason, f"language={i}/method={m}") for i, reason in enumerate(reasons) for m in ("a", "b")]
    pages = []
    for ordered in (rows, rows[::-1]):
        con_with_datasets.register(
            "failures",
            pa.table({"stage": ["probe"] * 6, "error": [r for r, _ in ordered], "key": [k for _, k in ordered]}),
        )
        pages.append(build_report(con_with_datasets, tmp_path / str(len(pages)), STUDY).read_text(encoding="utf-8"))
    assert pages[0] == pages[1]
    failures = pages[0][pages[0].index("id='failures'") :]
    assert [failures.index(reason) for reason in sorted(reasons)] == sorted(failures.index(r) for r in reasons)


def test_a_section_added_to_the_registry_shows_in_the_report(tmp_path, con_with_datasets):
    def unbuildable(context: ReportContext) -> Section:
        raise AssertionError("built without its views")

    def languages(context: ReportContext) -> Section:
        return Section("Languages", tables=[context.table("languages", "SELECT DISTINCT language FROM dataset_stats")])

    sections = [
        *SECTIONS,
        ReportSection("lottery", ("rankings",), unbuildable),
        ReportSection("languages", ("dataset_stats",), languages),
    ]
    html = build_report(con_with_datasets, tmp_path, STUDY, sections).read_text(encoding="utf-8")
    assert headings(html) == ["Study", "Word datasets", "Query the results", "Languages"]


def test_a_section_needing_any_of_its_views_shows_when_one_is_present():
    section = ReportSection("either", ("overlap_pairs", "probe_metrics"), lambda context: Section("x"), needs_any=True)
    assert section.shown(frozenset({"probe_metrics"}))
    assert not section.shown(frozenset({"transfer"}))
    assert ReportSection("always", (), lambda context: Section("x")).shown(frozenset())


def test_error_control_table_counts_each_correction_as_numpy_does():
    """The heatmaps' table of pairs above chance: uncorrected, Holm, BH and BY counts per group match a count
    over the same p-values, and the corrections are ordered as they must be (BY ≤ BH ≤ uncorrected)."""
    rng = np.random.default_rng(0)
    n = 60
    raw = rng.uniform(0, 0.2, n) ** 2
    table = {
        "model": ["m"] * n,
        "attribute": ["Number", "POS"] * (n // 2),
        "method": ["latent"] * n,
        "layer": [1] * n,
        "rate": rng.uniform(0, 0.3, n),
        "expected": [169 / 256] * n,  # the expected overlap count k²/d
        "k": [13] * n,
        "pvalue": raw,
        "pvalue_holm": np.minimum(raw * 10, 1),
        "pvalue_bh": false_discovery_control(raw),
        "pvalue_by": false_discovery_control(raw, method="by"),
    }
    con = duckdb.connect()
    con.register("overlap_pairs", pa.table(table))
    caption, sql = error_control_query(0.05)
    rows = {r[1]: r for r in con.execute(sql).fetchall()}
    for i, attribute in enumerate(["Number", "POS"]):
        mine = slice(i, None, 2)
        expected = [int((np.asarray(table[c])[mine] <= 0.05).sum()) for c in ("pvalue", "pvalue_holm")]
        expected += [int((table[c][mine] <= 0.05).sum()) for c in ("pvalue_bh", "pvalue_by")]
        assert list(rows[attribute][-4:]) == expected
        assert rows[attribute][4] == n // 2 and rows[attribute][6] == round(13 / 256, 3)
        assert expected[3] <= expected[2] <= expected[0] and expected[3] < expected[0]
    assert "BY" in caption
