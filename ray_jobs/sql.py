"""``xling sql "SELECT ..." --root R`` (or ``--config C``): query a study's results and print a table."""

from __future__ import annotations

import argparse
import sys

import duckdb

from analysis.database import create_database, format_table, query
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
    database = create_database(Store(root))
    try:
        columns, rows = query(database, args.sql)
    except duckdb.Error as err:
        print(f"sql: {err}", file=sys.stderr)
        return 2
    print(format_table(columns, rows, args.max_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
