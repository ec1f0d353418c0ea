"""Stage 5: overlap statistics from the stored rankings, and their correlation with transfer.

The overlap tables carry the fingerprint of the rankings they were computed from, and the correlations
that of the points they correlate, so a rerun over unchanged results does no work.
"""

from __future__ import annotations

import hashlib

import pyarrow.dataset as ds

from analysis.correlation import correlation_rows
from analysis.database import open_results
from analysis.findings import benjamini_hochberg, pooled_trend_rows, trend_rows
from analysis.overlap_tables import cross_lingual_rows, method_overlap_rows
from analysis.store import Store, fingerprint
from analysis.tables import rows_table
from ray_jobs.common import StageResult, checkpoints
from ray_jobs.config import StudyConfig, model_revisions
from ray_jobs.context import StudyContext
from ray_jobs.stages import stage_main

OVERLAP_TABLES = ("overlap_pairs", "overlap_summary", "method_overlaps", "overlap_trends", "pooled_trends")


def read_rankings(config: StudyConfig, store: Store) -> list[dict]:
    """Top-to-bottom rankings of this study's models, checkpoints, layers, languages, attributes and seeds."""
    if not store.table_files("rankings"):
        return []
    columns = ["model", "checkpoint", "layer", "language", "attribute", "method", "seed", "k", "ranking"]
    keys = {(spec.name, revision) for spec, revision in checkpoints(config)}
    table = store.read("rankings", columns=columns, filter=ds.field("direction") == "ttb")
    records = sorted(table.to_pylist(), key=lambda r: tuple(str(r[c]) for c in columns[:-1]))
    return [
        r
        for r in records
        if (r["model"], r["checkpoint"]) in keys
        and r["layer"] in config.layers
        and r["language"] in config.languages
        and r["attribute"] in config.attributes
        and r["method"] in config.probing.methods
        and r["seed"] in config.probing.seeds
    ]


def rankings_fingerprint(records: list[dict]) -> str:
    """A hash of every ranking's key, its k (the trial's, per model) and neuron order."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(
            repr(
                (
                    r["model"],
                    r["checkpoint"],
                    r["layer"],
                    r["language"],
                    r["attribute"],
                    r["method"],
                    r["seed"],
                    r["k"],
                    r["ranking"],
                )
            ).encode()
        )
    return digest.hexdigest()[:16]


def with_study_wide_bh(pairs: list[dict]) -> list[dict]:
    """``pairs`` with ``pvalue_bh`` and ``pvalue_by``: Benjamini–Hochberg and Benjamini–Yekutieli over every
    overlap test of the study (all models, checkpoints, layers, attributes, methods and seeds), next to Holm's
    per-matrix correction."""
    pvalues = [r["pvalue"] for r in pairs]
    for column, method in (("pvalue_bh", "bh"), ("pvalue_by", "by")):
        for row, adjusted in zip(pairs, benjamini_hochberg(pvalues, method), strict=True):
            row[column] = float(adjusted)
    return pairs


def run_overlaps(config: StudyConfig, store: Store) -> bool:
    """Compute and store the overlap tables per model; return False when they were already up to date."""
    records = read_rankings(config, store)
    if not records:
        print("[analyse] no rankings stored yet; nothing to analyse")
        return False
    fp = fingerprint("overlaps", rankings_fingerprint(records))
    models = sorted({r["model"] for r in records})
    if all([store.done(store.path(t, model=m), fp) for t in OVERLAP_TABLES for m in models]):  # each looked at
        print("[analyse] overlap tables are up to date")
        return False
    order = {(spec.name, rev): i for spec in config.models for i, rev in enumerate(model_revisions(spec))}
    pairs, summaries = cross_lingual_rows(records, order)
    tables = {
        "overlap_pairs": with_study_wide_bh(pairs),
        "overlap_summary": summaries,
        "method_overlaps": method_overlap_rows(records),
        "overlap_trends": trend_rows(summaries),
        "pooled_trends": pooled_trend_rows(summaries),
    }
    for model in models:
        for table, all_rows in tables.items():
            rows = [r for r in all_rows if r["model"] == model]
            if rows:
                store.write(rows_table(table, rows, drop=("model",)), store.path(table, model=model), fp)
    return True


def run_correlations(store: Store) -> bool:
    """Correlate overlap with transfer across checkpoints (Average and Pairwise); False when up to date or no data."""
    con = open_results(store)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if not {"overlap_transfer_average", "overlap_transfer_pairwise"} <= views:
        return False
    columns = ("model", "checkpoint", "task", "metric", "method", "overlap_rate", "value")
    points = [
        {**dict(zip(columns, row, strict=True)), "kind": "average"}
        for row in con.execute(f"SELECT {', '.join(columns)} FROM overlap_transfer_average ORDER BY ALL").fetchall()
    ]
    points += [
        {**dict(zip(columns, row, strict=True)), "kind": "pairwise"}
        for row in con.execute(
            f"SELECT {', '.join(columns)} FROM overlap_transfer_pairwise "
            f"WHERE target_language <> source_language ORDER BY ALL"
        ).fetchall()
    ]
    fp = fingerprint("correlations", points)
    models = sorted({p["model"] for p in points})
    if all([store.done(store.path("correlations", model=m), fp) for m in models]):
        return False
    for model in models:
        rows = correlation_rows([p for p in points if p["model"] == model])
        store.write(rows_table("correlations", rows, drop=("model",)), store.path("correlations", model=model), fp)
    return True


def run(context: StudyContext) -> StageResult:
    """The overlap tables, then the correlations; one unit each, run or already up to date."""
    changed = [run_overlaps(context.config, context.store), run_correlations(context.store)]
    return StageResult(sum(changed), len(changed) - sum(changed))


main = stage_main("analyse")

if __name__ == "__main__":
    raise SystemExit(main())
