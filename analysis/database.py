"""DuckDB over the study's Parquet tables, so results are queried in place.

``results.duckdb`` in the output root holds only view definitions (``read_parquet`` over each table's
hive-partitioned files), so it stays small, always shows the current files, and opens in the duckdb
CLI as well as in Python. ``xling sql`` does not use it: `open_locked` gives a user's SQL an in-memory
database in which it can read the study's tables and nothing else.

Besides the tables, ``file_metadata`` holds the ``xling.*`` keys of every stored file's footer (its
fingerprint, row count, provenance and checkpoint digest: `analysis.store`, `analysis.provenance`), and
the derived view ``provenance`` shows them one row per file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.provenance import CHECKPOINT_KEY, PROVENANCE_KEY, RUN_FIELDS
from analysis.store import FINGERPRINT_KEY, ROWS_KEY, Store
from analysis.tables import LAYOUT, SUMMARY_TABLES

DATABASE_NAME = "results.duckdb"

#: The footer keys of a stored file that ``file_metadata`` holds.
FILE_KEYS = (FINGERPRINT_KEY, ROWS_KEY, PROVENANCE_KEY, CHECKPOINT_KEY)

#: The schema of ``file_metadata``: one row per key of a file.
FILE_METADATA_SCHEMA = pa.schema([(name, pa.string()) for name in ("table_name", "path", "key", "value")])


def _file_key(key: bytes, column: str) -> str:
    """The value of one footer key of a file in ``file_metadata``, as the column ``column``."""
    return f"any_value(value) FILTER (WHERE key = '{key.decode()}') AS {column}"


def _run_field(name: str) -> str:
    """One field of a file's run provenance (JSON), as a column of its own."""
    value = f"json_extract_string(run, '$.{name}')"
    return f"CAST({value} AS BOOLEAN) AS {name}" if name == "git_dirty" else f"{value} AS {name}"


#: Views over other views, created when the views they read exist. The transfer joins pair each
#: checkpoint's overlap (averaged over the study's layers, attributes and seeds) with its scores.
DERIVED_VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    # A checkpoint whose weights digest equals another's is a duplicate of the first of them by (step, model,
    # checkpoint): a revision branch that holds another step's weights.
    "checkpoints": (
        ("checkpoint_weights",),
        """
        SELECT model, checkpoint, step, weights_sha256,
               CASE WHEN row_number() OVER w > 1 THEN first_value(concat(model, '@', checkpoint)) OVER w END
                   AS duplicate_of,
               format, files, tensors, size_bytes
        FROM checkpoint_weights
        WINDOW w AS (PARTITION BY weights_sha256 ORDER BY step NULLS LAST, model, checkpoint)""",
    ),
    # One row per stored file: its table, path, fingerprint, rows, the provenance of the run that wrote it
    # (null where a file predates provenance) and the weights digest of its checkpoint where it has one.
    "provenance": (
        ("file_metadata",),
        f"""
        WITH f AS (SELECT table_name, path, {_file_key(FINGERPRINT_KEY, "fingerprint")},
                          {_file_key(ROWS_KEY, "n_rows")}, {_file_key(PROVENANCE_KEY, "run")},
                          {_file_key(CHECKPOINT_KEY, "checkpoint_sha256")}
                   FROM file_metadata GROUP BY ALL)
        SELECT table_name, path, fingerprint, CAST(n_rows AS BIGINT) AS n_rows,
               {", ".join(_run_field(name) for name in RUN_FIELDS)}, checkpoint_sha256
        FROM f""",
    ),
    "overlap_transfer_average": (
        ("overlap_summary", "transfer"),
        """
        WITH o AS (SELECT model, checkpoint, method, avg(average_rate) AS overlap_rate
                   FROM overlap_summary WHERE n_languages > 1 GROUP BY ALL),
             t AS (SELECT model, checkpoint, task, metric, avg(value) AS value, count(*) AS n_targets
                   FROM transfer WHERE target_language <> source_language GROUP BY ALL)
        SELECT t.model, t.checkpoint, t.task, t.metric, o.method, o.overlap_rate, t.value, t.n_targets
        FROM t JOIN o USING (model, checkpoint)""",
    ),
    "overlap_transfer_pairwise": (
        ("overlap_pairs", "transfer"),
        """
        WITH pairs AS (SELECT model, checkpoint, method, rate, language_a AS source_language,
                              language_b AS target_language FROM overlap_pairs
                       UNION ALL
                       SELECT model, checkpoint, method, rate, language_b, language_a FROM overlap_pairs),
             o AS (SELECT model, checkpoint, method, source_language, target_language, avg(rate) AS overlap_rate
                   FROM pairs GROUP BY ALL)
        SELECT t.model, t.checkpoint, t.task, t.metric, o.method, t.source_language, t.target_language,
               o.overlap_rate, t.value
        FROM transfer t JOIN o USING (model, checkpoint, source_language, target_language)""",
    ),
    "mask_overlap_summary": (
        ("mask_overlaps",),
        """
        SELECT model, checkpoint, task, sparsity, kind_a, language_a, seed_a, kind_b, language_b, seed_b,
               n_total, n_a, n_b, n_both, n_both / (n_a + n_b - n_both) AS jaccard,
               (n_total - n_a - n_b + 2 * n_both) / n_total AS agreement, n_a * n_b / n_total AS expected_both,
               (n_a * n_b / n_total) / (n_a + n_b - n_a * n_b / n_total) AS expected_jaccard, pvalue
        FROM mask_overlaps WHERE tensor = 'all'""",
    ),
    "relative_drop": (
        ("subnetwork_transfer",),
        """
        WITH s AS (SELECT * FROM subnetwork_transfer WHERE kind = 'subnetwork'),
             own AS (SELECT model, checkpoint, task, sparsity, seed, target_language, score AS own_score
                     FROM s WHERE source_language = target_language)
        SELECT s.model, s.checkpoint, s.task, s.sparsity, s.seed, s.source_language,
               avg((s.score - own.own_score) / own.own_score) AS relative_drop, count(*) AS n_targets
        FROM s JOIN own USING (model, checkpoint, task, sparsity, seed, target_language)
        WHERE s.source_language <> s.target_language GROUP BY ALL""",
    ),
    "lottery_overlap_transfer": (
        ("mask_overlap_summary", "overlap_pairs", "subnetwork_transfer"),
        """
        WITH m AS (SELECT model, checkpoint, task, sparsity, least(language_a, language_b) AS language_a,
                          greatest(language_a, language_b) AS language_b, avg(jaccard) AS mask_jaccard,
                          avg(expected_jaccard) AS mask_jaccard_chance
                   FROM mask_overlap_summary
                   WHERE kind_a = 'imp' AND kind_b = 'imp' AND language_a <> language_b AND seed_a = seed_b
                   GROUP BY ALL),
             n AS (SELECT model, checkpoint, method, least(language_a, language_b) AS language_a,
                          greatest(language_a, language_b) AS language_b, avg(rate) AS neuron_overlap
                   FROM overlap_pairs GROUP BY ALL),
             sub AS (SELECT model, checkpoint, task, sparsity, seed, source_language, target_language, score
                     FROM subnetwork_transfer WHERE kind = 'subnetwork'),
             own AS (SELECT model, checkpoint, task, sparsity, seed, target_language, score AS own_score
                     FROM sub WHERE source_language = target_language),
             t AS (SELECT sub.model, sub.checkpoint, sub.task, sub.sparsity,
                          least(source_language, sub.target_language) AS language_a,
                          greatest(source_language, sub.target_language) AS language_b,
                          avg((score - own_score) / own_score) AS subnetwork_transfer_change
                   FROM sub JOIN own USING (model, checkpoint, task, sparsity, seed, target_language)
                   WHERE source_language <> sub.target_language GROUP BY ALL)
        SELECT m.model, m.checkpoint, m.task, m.sparsity, m.language_a, m.language_b, n.method, n.neuron_overlap,
               m.mask_jaccard, m.mask_jaccard_chance, t.subnetwork_transfer_change
        FROM m JOIN n USING (model, checkpoint, language_a, language_b)
        LEFT JOIN t USING (model, checkpoint, task, sparsity, language_a, language_b)""",
    ),
    "intervention_rates": (
        ("interventions",),
        """
        SELECT *, n_correct + n_clwv + n_other_form + n_wrong_lemma AS relevant,
               CASE WHEN relevant > 0 THEN 1 - n_correct / relevant END AS error_rate,
               CASE WHEN relevant > 0 THEN n_clwv / relevant END AS clwv_rate,
               n_unknown / nullif(relevant + n_unknown, 0) AS unknown_rate,
               flips / nullif(n_words, 0) AS flip_rate
        FROM interventions""",
    ),
    # 003 footnote 5 (`probing.interventions.saturation_index`): the first k from which the CLWV rate rises by a
    # factor below 1.05 at the next two k; null where the curve never saturates.
    "intervention_saturation": (
        ("intervention_rates",),
        """
        WITH w AS (SELECT *, lead(clwv_rate, 1) OVER s AS next1, lead(clwv_rate, 2) OVER s AS next2
                   FROM intervention_rates WHERE source_language = language
                   WINDOW s AS (PARTITION BY model, checkpoint, layer, language, attribute, method, direction, seed,
                                split, intervention, beta, readout ORDER BY k))
        SELECT model, checkpoint, layer, language, attribute, method, direction, seed, split, intervention, beta,
               readout, min(k) FILTER (WHERE next1 < 1.05 * clwv_rate AND next2 < 1.05 * next1) AS saturation_k,
               arg_min(clwv_rate, k) FILTER (WHERE next1 < 1.05 * clwv_rate AND next2 < 1.05 * next1)
                   AS clwv_at_saturation,
               arg_min(error_rate, k) FILTER (WHERE next1 < 1.05 * clwv_rate AND next2 < 1.05 * next1)
                   AS error_at_saturation,
               max(clwv_rate) AS max_clwv, max(k) AS max_k
        FROM w GROUP BY ALL""",
    ),
    # The cross-lingual causal matrix: language A's top-k neurons edited on B's words, against B's own and the
    # random ranking at the same k, beside the overlap of A's and B's top-k (the overlap matrix's k).
    "causal_overlap": (
        ("intervention_rates", "overlap_pairs"),
        """
        WITH e AS (SELECT model, checkpoint, layer, attribute, method, seed, split, intervention, beta, readout, k,
                          source_language, language AS target_language, flip_rate, clwv_rate
                   FROM intervention_rates WHERE direction = 'ttb' AND split = 'test'),
             own AS (SELECT * EXCLUDE (source_language) FROM e WHERE source_language = target_language),
             rnd AS (SELECT * EXCLUDE (method) FROM own WHERE method = 'random'),
             pairs AS (SELECT model, checkpoint, layer, attribute, method, seed, k, language_a, language_b, rate
                       FROM overlap_pairs UNION ALL
                       SELECT model, checkpoint, layer, attribute, method, seed, k, language_b, language_a, rate
                       FROM overlap_pairs)
        SELECT c.model, c.checkpoint, c.layer, c.attribute, c.method, c.seed, c.intervention, c.beta, c.readout,
               c.k, c.source_language, c.target_language, c.flip_rate, o.flip_rate AS own_flip_rate,
               r.flip_rate AS random_flip_rate, c.flip_rate / nullif(o.flip_rate, 0) AS relative_flip_rate,
               c.clwv_rate, o.clwv_rate AS own_clwv_rate, r.clwv_rate AS random_clwv_rate,
               c.clwv_rate / nullif(o.clwv_rate, 0) AS relative_clwv_rate, p.rate AS overlap_rate
        FROM e c
        JOIN own o USING (model, checkpoint, layer, attribute, method, seed, split, intervention, beta, readout, k,
                          target_language)
        LEFT JOIN rnd r USING (model, checkpoint, layer, attribute, seed, split, intervention, beta, readout, k,
                               target_language)
        LEFT JOIN pairs p ON p.model = c.model AND p.checkpoint = c.checkpoint AND p.layer = c.layer
             AND p.attribute = c.attribute AND p.method = c.method AND p.seed = c.seed AND p.k = c.k
             AND p.language_a = c.source_language AND p.language_b = c.target_language
        WHERE c.source_language <> c.target_language""",
    ),
}


def table_glob(store: Store, table: str) -> str:
    """The glob of a table's files, as DuckDB addresses them (hidden temporary files do not match)."""
    depth = "/".join("*" for _ in LAYOUT[table])
    return store.uri(f"{store.table_dir(table)}/{depth}/*.parquet")


def sql_string(text: str) -> str:
    """``text`` as one SQL string literal, whatever quotes it holds (a root named ``it's``)."""
    return "'" + text.replace("'", "''") + "'"


def file_metadata_sql(store: Store, tables: list[str]) -> str:
    """``file_metadata`` as DuckDB reads it from the files in place (``parquet_kv_metadata``)."""
    keys = ", ".join(f"{sql_string(key.decode())}::BLOB" for key in FILE_KEYS)
    return " UNION ALL ".join(
        f"SELECT {sql_string(table)} AS table_name, file_name AS path, decode(key) AS key, decode(value) AS value "
        f"FROM parquet_kv_metadata({sql_string(table_glob(store, table))}) WHERE key IN ({keys})"
        for table in tables
    )


def file_metadata_table(store: Store) -> pa.Table:
    """``file_metadata`` read through the store's filesystem (local or remote): every file's footer."""
    rows = []
    for table in study_tables(store):
        for path in store.table_files(table):
            with store.fs.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata.metadata or {}
            rows += [
                {"table_name": table, "path": store.uri(path), "key": key.decode(), "value": metadata[key].decode()}
                for key in FILE_KEYS
                if key in metadata
            ]
    return pa.Table.from_pylist(rows, schema=FILE_METADATA_SCHEMA)


def reads_file_metadata(sql: str) -> bool:
    """Whether a query names a view over the files' footers (which `open_locked` then reads, file by file)."""
    over = [name for name, (needs, _) in DERIVED_VIEWS.items() if "file_metadata" in needs]
    return any(name in sql.lower() for name in ("file_metadata", *over))


def _create_derived_views(con: duckdb.DuckDBPyConnection, temporary: bool) -> None:
    views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    for name, (needs, sql) in DERIVED_VIEWS.items():  # in order: a derived view may read one defined above it
        if set(needs) <= views:
            con.execute(f'CREATE {"TEMP " if temporary else ""}VIEW "{name}" AS {sql}')
            views.add(name)


def create_database(store: Store, path: str | Path | None = None) -> Path:
    """(Re)create the database of views for every table present under the root; return its path.

    It goes to the root (or, for a remote root, to `Store.local_dir`). It is built under a temporary
    name and renamed into place, so a user who has the old one open (the duckdb CLI holds a lock)
    never blocks a study and never sees a half-built one; what a killed run left of its own build
    (``.results.duckdb.*.tmp`` and its ``.wal``) is removed first. Over a remote root, DuckDB needs its
    httpfs extension to read the files.
    """
    path = Path(path) if path is not None else store.local_dir() / DATABASE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp*"):  # of a run killed while building it (and its .wal)
        stale.unlink()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tables = study_tables(store)
    with duckdb.connect(str(tmp)) as con:
        for table in tables:
            con.execute(
                f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet({sql_string(table_glob(store, table))}, '
                f"hive_partitioning = true, union_by_name = true)"
            )
        if tables:
            con.execute(f"CREATE VIEW file_metadata AS {file_metadata_sql(store, tables)}")
        _create_derived_views(con, temporary=False)
    os.replace(tmp, path)
    return path


def open_results(store: Store) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the summary tables (read through pyarrow, so any filesystem works)
    and the derived views; what the report and the correlations query."""
    con = duckdb.connect()
    for table in SUMMARY_TABLES:
        files = store.intact_files(table)  # a damaged file is left out (its stage recomputes it)
        if files:
            con.register(table, store.dataset(table, files).to_table())
    _create_derived_views(con, temporary=True)
    return con


def study_tables(store: Store) -> list[str]:
    """The registered tables that have files under the root (none: the root is not a study)."""
    return [table for table in LAYOUT if store.table_files(table)]


def open_locked(store: Store, file_metadata: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB in which SQL reads the study's tables and can reach nothing else.

    The project registers each table as a pyarrow dataset (read through the store's filesystem, local or
    remote), with ``file_metadata`` also the files' footers (`file_metadata_table`, a read per file, so only
    when asked: `reads_file_metadata`), and creates the derived views; then DuckDB's own access to files,
    extensions and the network is switched off and its configuration locked. So ``COPY ... TO``,
    ``ATTACH``, ``EXPORT``, ``INSTALL``, ``read_text``/``read_csv`` of any file fail with a permission
    error, and nothing a query does outlives the connection.
    """
    con = duckdb.connect()
    for table in study_tables(store):
        con.register(table, store.dataset(table))
    if file_metadata:
        con.register("file_metadata", file_metadata_table(store))
    _create_derived_views(con, temporary=False)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def duplicate_checkpoints(store: Store) -> list[tuple[str, str, str]]:
    """(model, checkpoint, duplicate_of) of every stored checkpoint whose weights are another's (the
    ``checkpoints`` view), in order."""
    files = store.intact_files("checkpoint_weights")
    if not files:
        return []
    con = duckdb.connect()
    con.register("checkpoint_weights", store.dataset("checkpoint_weights", files).to_table())
    _create_derived_views(con, temporary=True)
    sql = "SELECT model, checkpoint, duplicate_of FROM checkpoints WHERE duplicate_of IS NOT NULL ORDER BY ALL"
    return [(str(model), str(checkpoint), original) for model, checkpoint, original in con.execute(sql).fetchall()]


def query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL on a connection (`open_locked`); return column names and rows."""
    result = con.execute(sql)
    return [c[0] for c in result.description], result.fetchall()


def format_table(columns: list[str], rows: list[tuple], max_rows: int = 50) -> str:
    """An aligned text table of a query result (floats to 4 significant digits)."""

    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.4g}"
        text = str(x)
        return text if len(text) <= 60 else text[:57] + "..."

    shown = [[cell(x) for x in row] for row in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in shown]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows")
    lines.append(f"({len(rows)} rows)")
    return "\n".join(line.rstrip() for line in lines)
