"""The HTML report's rendering: long tables collapsed, every table downloadable as CSV with the same rows."""

import csv

from analysis.report import COLLAPSE_ROWS, Paragraph, Section, Table, write_report


def test_long_tables_are_collapsed_and_every_table_is_a_csv_with_its_rows(tmp_path):
    short = Table("short one", ["a", "b"], [(1, "x"), (2, "y")])
    long = Table("long one", ["language", "values"], [(f"l{i}", ["SG", "PL"]) for i in range(COLLAPSE_ROWS + 1)])
    path = write_report(tmp_path / "report" / "index.html", "t", [Section("S", tables=[short, long])])
    page = path.read_text()
    assert page.count("<details>") == 1 and "long one (16 rows; show)" in page
    assert page.index("short one") < page.index("<details>")  # the short table stays open
    assert "href='table-1.csv'" in page and "href='table-2.csv'" in page
    with open(path.parent / "table-2.csv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["language", "values"] and rows[1:] == [[f"l{i}", "SG, PL"] for i in range(COLLAPSE_ROWS + 1)]
    with open(path.parent / "table-1.csv", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [["a", "b"], ["1", "x"], ["2", "y"]]


def test_a_section_links_its_pages_next_to_the_report_with_escaped_text(tmp_path):
    links = [("POS: 3 shared neurons", "neurons_POS.html"), ("<b>x</b>", "a'b.html")]
    page = write_report(tmp_path / "index.html", "t", [Section("Neurons", links=links)]).read_text()
    assert "<ul><li><a href='neurons_POS.html'>POS: 3 shared neurons</a></li>" in page
    assert "<a href='a&#x27;b.html'>&lt;b&gt;x&lt;/b&gt;</a>" in page
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed into place


def test_a_paragraph_links_the_sections_it_rests_on_under_their_titles_and_drops_absent_ones(tmp_path):
    sections = [
        Section("Findings", paragraphs=[Paragraph("Overlap is above chance.", ("heat", "gone")), "plain"]),
        Section("Overlap <heatmaps>", anchor="heat"),
    ]
    page = write_report(tmp_path / "index.html", "t", sections).read_text()
    assert "<h2 id='heat'>Overlap &lt;heatmaps&gt;</h2>" in page
    link = "<a href='#heat'>Overlap &lt;heatmaps&gt;</a>"
    assert f"<p>Overlap is above chance. <span class='see'>(see {link})</span></p>" in page
    assert "#gone" not in page and "<p>plain</p>" in page
