"""Stage 6: the DuckDB database of views over the study's tables, and the HTML report with its plots.

The report is rebuilt whenever a stage before it did work or failed; a rerun of a finished study
whose report exists leaves it as it is.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from analysis.database import create_database, open_results
from analysis.store import Store
from analysis.study_report import build_report
from ray_jobs.common import StageResult
from ray_jobs.config import StudyConfig, model_revisions
from ray_jobs.context import StudyContext
from ray_jobs.stages import stage_main


def report_path(store: Store) -> Path:
    """Where the study's HTML report is written (next to results.duckdb)."""
    return store.local_dir() / "report" / "index.html"


def study_k(config: StudyConfig, con: duckdb.DuckDBPyConnection, views: set[str]) -> int:
    """The overlap k of the study: the config's k, or with ``k_fraction`` the k most overlap matrices used."""
    if config.probing.k_fraction is None or "overlap_summary" not in views:
        return config.probing.k
    return int(con.execute("SELECT k FROM overlap_summary GROUP BY k ORDER BY count(*) DESC, k LIMIT 1").fetchone()[0])


def write_database(store: Store) -> None:
    """Recreate results.duckdb (its views name the root's files by path, so a moved study needs new ones)."""
    try:
        create_database(store)
    except duckdb.Error as err:
        if store.is_local:
            raise
        print(
            f"[report] results.duckdb not written: DuckDB could not read {store.uri(store.base)} "
            f"({str(err).splitlines()[0]}); it needs its httpfs extension and credentials for the store"
        )


def write_report(config: StudyConfig, store: Store, stages: list[dict]) -> str:
    """Recreate the DuckDB views and write the HTML report; return the report's path."""
    write_database(store)
    con = open_results(store)
    study = {
        "name": config.name,
        "k": study_k(config, con, {row[0] for row in con.execute("SHOW TABLES").fetchall()}),
        "methods": list(config.probing.methods),
        "languages": list(config.languages),
        "attributes": list(config.attributes),
        "layers": list(config.layers),
        "checkpoints": {spec.name: list(model_revisions(spec)) for spec in config.models},
        "stages": stages,
        "provenance": dict(store.provenance.run) if store.provenance is not None else {},
    }
    return str(build_report(con, report_path(store).parent, study))


def run(context: StudyContext) -> StageResult:
    """Write the report, unless every stage before it in this run did nothing and it exists already (then
    only the database of views is recreated, which takes milliseconds)."""
    earlier = context.summary
    nothing_done = bool(earlier) and all(row["run"] == 0 and row["failed"] == 0 for row in earlier)
    if nothing_done and report_path(context.store).is_file():
        write_database(context.store)
        return StageResult(0, 1)
    print(f"[report] {write_report(context.config, context.store, list(earlier))}")
    return StageResult(1, 0)


main = stage_main("report")

if __name__ == "__main__":
    raise SystemExit(main())
