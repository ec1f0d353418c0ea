"""The checkpoints' weights digests, with the revisions whose weights duplicate another's flagged."""

from __future__ import annotations

from analysis.report import Section, Table
from analysis.report_sections.section import ReportContext, ReportSection

#: Hex digits of a digest shown in the report (the ``checkpoints`` view has all 64).
SHOWN_DIGITS = 16


def build(context: ReportContext) -> Section:
    rows = context.records(
        "SELECT model, checkpoint, step, weights_sha256, duplicate_of, format, files, size_bytes FROM checkpoints "
        "ORDER BY model, step NULLS LAST, checkpoint"
    )
    duplicates = [row for row in rows if row["duplicate_of"] is not None]
    if duplicates:
        named = ", ".join(f"{row['model']}@{row['checkpoint']} = {row['duplicate_of']}" for row in duplicates)
        verdict = (
            f"WARNING: {len(duplicates)} checkpoint(s) hold exactly the weights of another ({named}): their "
            "results repeat the other's and are no evidence of training dynamics; leave them out of such "
            "conclusions (paper 002 dropped such checkpoints by hand)."
        )
    else:
        verdict = "Every checkpoint's weights differ from every other's."
    table = Table(
        "SHA-256 of each checkpoint's weights (its tensors' names, dtypes, shapes and data; the first "
        f"{SHOWN_DIGITS} hex digits) and the checkpoint whose weights a duplicate repeats",
        ["model", "checkpoint", "step", "weights sha256", "duplicate of", "format", "files", "MB"],
        [
            (
                row["model"],
                row["checkpoint"],
                "" if row["step"] is None else row["step"],
                row["weights_sha256"][:SHOWN_DIGITS],
                "" if row["duplicate_of"] is None else f"DUPLICATE of {row['duplicate_of']}",
                row["format"],
                row["files"],
                round(row["size_bytes"] / 1e6, 1),
            )
            for row in rows
        ],
    )
    return Section("Checkpoints", paragraphs=[verdict], tables=[table])


CHECKPOINTS = ReportSection("checkpoints", ("checkpoints",), build)
