"""Analysis: the Parquet result store, overlap statistics, DuckDB views, plots and the report."""
