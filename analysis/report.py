"""A static HTML report: one file plus its PNGs, built from sections of text, tables and images."""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; max-width: 560px; }
img { max-width: 560px; border: 1px solid #eee; } pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
p.note { color: #555; font-size: 0.9em; } span.see { font-size: 0.85em; }
details summary { cursor: pointer; color: #555; font-size: 0.9em; }
"""

#: Tables with more rows than this are collapsed (<details>); every table is also written as CSV.
COLLAPSE_ROWS = 15


@dataclass
class Table:
    """A captioned table of rows."""

    caption: str
    columns: list[str]
    rows: list[tuple]


@dataclass(frozen=True)
class Paragraph:
    """A paragraph that points to other sections of the report by their anchors (``refs``); `render` links
    each one that the report has, under that section's title, and drops the rest."""

    text: str
    refs: tuple[str, ...] = ()


@dataclass
class Section:
    """A report section: paragraphs, tables, images (file names relative to the report), code, and links to
    pages next to the report ((text, file name)). ``anchor`` is the id of its heading, the target of a
    `Paragraph`'s refs."""

    title: str
    paragraphs: list[str | Paragraph] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    anchor: str = ""


def _paragraph_html(paragraph: str | Paragraph, titles: dict[str, str]) -> str:
    if isinstance(paragraph, str):
        return f"<p>{html.escape(paragraph)}</p>"
    links = [f"<a href='#{html.escape(ref)}'>{html.escape(titles[ref])}</a>" for ref in paragraph.refs if ref in titles]
    see = f" <span class='see'>(see {', '.join(links)})</span>" if links else ""
    return f"<p>{html.escape(paragraph.text)}{see}</p>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    return f"<td>{html.escape(str(value))}</td>"


def table_files(sections: list[Section]) -> list[tuple[str, Table]]:
    """The CSV file name of every table of the report, in order (``table-1.csv``, ...)."""
    tables = [table for section in sections for table in section.tables]
    return [(f"table-{i}.csv", table) for i, table in enumerate(tables, start=1)]


def _table_html(table: Table, csv_name: str) -> list[str]:
    caption = html.escape(table.caption)
    link = f" <a href='{csv_name}' download>CSV</a>"
    head = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr>"
    body = ["<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows]
    if len(table.rows) <= COLLAPSE_ROWS:
        return [f"<p class='note'>{caption}{link}</p>", head, *body, "</table>"]
    summary = f"<details><summary>{caption} ({len(table.rows)} rows; show)</summary>"
    return [f"<p class='note'>{link}</p>", summary, head, *body, "</table></details>"]


def render(title: str, sections: list[Section], footer: str = "") -> str:
    """The HTML text of a report (tables link their CSV files, `table_files`), ``footer`` at its end."""
    csv_names = {id(table): name for name, table in table_files(sections)}
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    titles = {section.anchor: section.title for section in sections if section.anchor}
    for section in sections:
        anchor = f" id='{html.escape(section.anchor)}'" if section.anchor else ""
        parts.append(f"<h2{anchor}>{html.escape(section.title)}</h2>")
        parts += [_paragraph_html(p, titles) for p in section.paragraphs]
        for table in section.tables:
            parts += _table_html(table, csv_names[id(table)])
        for caption, image in section.images:
            parts.append(
                f"<figure><img src='{html.escape(image)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts += [f"<pre>{html.escape(c)}</pre>" for c in section.code]
        if section.links:
            items = (f"<li><a href='{html.escape(href)}'>{html.escape(text)}</a></li>" for text, href in section.links)
            parts.append(f"<ul>{''.join(items)}</ul>")
    if footer:
        parts.append(f"<footer><p class='note'>{html.escape(footer)}</p></footer>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_page(path: Path, text: str) -> Path:
    """Write one HTML page atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(path: Path | str, title: str, sections: list[Section], footer: str = "") -> Path:
    """Write the report atomically (a reader never sees half a file), and each table as CSV next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, table in table_files(sections):
        with open(path.parent / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(table.columns)
            writer.writerows(
                [", ".join(map(str, v)) if isinstance(v, list | tuple) else v for v in row] for row in table.rows
            )
    return write_page(path, render(title, sections, footer))
