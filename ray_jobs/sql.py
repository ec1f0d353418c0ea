"""``xling sql "SELECT ..." --root R`` (or ``--config C``): query a study's results and print a table.

The query runs in `analysis.database.open_locked`: it reads the study's tables, and cannot write a
file, read one outside them, attach a database or install an extension. A root that holds no result
table is refused (and never created).
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from analysis.database import format_table, open_locked, query, reads_file_metadata, study_tables
from analysis.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run SQL over a study's results (DuckDB views) and print a table.")
    parser.add_argument("sql", help='e.g. "SELECT * FROM overlap_summary LIMIT 5"')
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", help="the study's output root")
    where.add_argument("--config", help="the study config (its output_root is used)")
    parser.add_argument("--max-rows", type=int, default=50)
    args = parser.parse_args(argv)
    if args.config:
        from ray_jobs.config import load_config

        root = load_config(args.config, check_models=False).output_root
    else:
        root = args.root
    store = Store(root, create=False)
    if not study_tables(store):
        print(f"sql: {root} is not a study: it holds no result table", file=sys.stderr)
        return 2
    try:
        columns, rows = query(open_locked(store, file_metadata=reads_file_metadata(args.sql)), args.sql)
    except duckdb.Error as err:
        print(f"sql: {err}", file=sys.stderr)
        return 2
    print(format_table(columns, rows, args.max_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
