"""The result store: hive-partitioned Parquet tables under one root, written atomically.

Every file carries a *fingerprint* (a hash of everything that determines its content) in its Parquet
metadata. A stage skips a partition whose file exists with the fingerprint it would write, and
redoes one whose fingerprint differs (settings changed). Files are written under a hidden temporary
name (``.part-0.parquet.<id>.tmp``, invisible to pyarrow datasets and to DuckDB's ``*.parquet``
globs) and renamed when complete, so a killed writer never leaves a partial file in view.
The root is a local path or any URI that ``pyarrow.fs`` understands (``s3://``, ``gs://``, ``file://``).

Every file also carries its row count (``xling.rows``, in the footer) and a CRC-32 of every data page
(Parquet's page checksums, computed by the writer as it writes each page). A file whose footer cannot
be read or whose row count differs is *damaged*; with ``verify`` a file is also read through, so that
a page whose checksum fails (a flipped bit) is damaged too. A damaged file is moved aside (a hidden
``.<name>.damaged``, which no reader sees), logged and counted in `Store.damaged`, and is then as good
as absent: its stage recomputes it. Page checksums rather than one hash of the file: a file's footer
cannot hold a hash of itself, and a sidecar file per result doubles the files to write atomically (and
the objects on S3), while the page checksums cost one CRC per page as it is written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, is_dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.provenance import Provenance
from analysis.tables import LAYOUT

FINGERPRINT_KEY = b"xling.fingerprint"
ROWS_KEY = b"xling.rows"


def fingerprint(*parts: object) -> str:
    """A short stable hash of dataclasses, dicts, lists and scalars (canonical JSON)."""

    def plain(x: object) -> object:
        if is_dataclass(x) and not isinstance(x, type):
            return plain(asdict(x))
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def directory_digest(directory: str) -> str:
    """A hash of the names and contents of the files under a directory (hidden ones left out), so that
    what a local model directory holds, not where it is, enters fingerprints; read once per process."""
    root, digest = Path(directory), hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            digest.update(f"{relative}\0".encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


class Store:
    """Paths and atomic Parquet I/O for one study root.

    ``verify``: read every file through to check its page checksums before counting it as stored (else
    only its footer and row count are checked). ``create``: make the root when it does not exist.
    ``provenance``: what every file written is stamped with (`analysis.provenance`; None: nothing).
    """

    def __init__(
        self, root: str | Path, verify: bool = False, create: bool = True, provenance: Provenance | None = None
    ):
        root = str(root)
        if "://" in root:
            self.fs, self.base = pafs.FileSystem.from_uri(root)
        else:
            self.fs, self.base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
        self.root = root
        self.verify = verify
        self.provenance = provenance
        #: Files found damaged (and moved aside) by this process, in the order found.
        self.damaged: list[str] = []
        self._intact: set[tuple[str, int, int]] = set()
        if create:
            self.fs.create_dir(self.base, recursive=True)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def uri(self, path: str) -> str:
        """A store path as other tools (DuckDB) address it: a local path, or ``scheme://path``."""
        return path if self.is_local else f"{self.root.split('://', 1)[0]}://{path}"

    def local_dir(self) -> Path:
        """Where what must sit on local disk goes (the DuckDB file, the report, model scratch): the root
        itself when it is local, else a folder named after it under ``$XLING_LOCAL_DIR`` (~/.cache/xling)."""
        if self.is_local:
            return Path(self.base)
        cache = Path(os.environ.get("XLING_LOCAL_DIR", "~/.cache/xling")).expanduser()
        return cache / re.sub(r"[^A-Za-z0-9._-]+", "_", self.base)

    def table_files(self, table: str) -> list[str]:
        """The visible Parquet files of a table (hidden temporary files excluded)."""
        if not self.exists(table):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.table_dir(table), recursive=True))
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.base_name.endswith(".parquet")
            and not i.base_name.startswith((".", "_"))
        )

    def intact_files(self, table: str) -> list[str]:
        """The visible files of a table that are not damaged (the damaged ones are moved aside)."""
        return [path for path in self.table_files(table) if self.stored_fingerprint(path) is not None]

    def table_dir(self, table: str) -> str:
        return f"{self.base}/{table}"

    def path(self, table: str, part: str = "part-0", **keys: object) -> str:
        """The file of one partition; every partition column of the table must be given."""
        columns = LAYOUT[table]
        missing = [c for c in columns if c not in keys]
        if missing or set(keys) - set(columns):
            raise KeyError(f"table {table} is partitioned by {columns}; got {sorted(keys)}")
        for column in columns:
            value = str(keys[column])
            if not value or "/" in value or "=" in value:
                raise ValueError(f"{table}.{column}: partition value {value!r} must be non-empty, without '/' or '='")
        sub = "/".join(f"{c}={keys[c]}" for c in columns)
        return f"{self.table_dir(table)}/{sub}/{part}.parquet"

    def partition_of(self, path: str) -> dict[str, str]:
        """The hive keys of a file of the store, from its path: ``{"model": ..., "checkpoint": ...}``."""
        folders = path[len(self.base) + 1 :].split("/")[1:-1]
        return dict(folder.split("=", 1) for folder in folders if "=" in folder)

    def is_file(self, path: str) -> bool:
        """Whether a file is at ``path`` (intact or not)."""
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def stored_fingerprint(self, path: str) -> str | None:
        """The fingerprint of a finished, intact file; None when there is no such file or it is damaged."""
        info = self.fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return None
        try:
            metadata = self._intact_metadata(path, (path, info.size, info.mtime_ns))
            return (metadata.metadata or {}).get(FINGERPRINT_KEY, b"").decode()
        except (OSError, ValueError, pa.ArrowException) as damage:  # ValueError: a footer value that is garbage
            self._set_aside(path, damage)
            return None

    def _intact_metadata(self, path: str, identity: tuple[str, int, int]) -> pq.FileMetaData:
        """The file's footer, after checking its row count (and, with ``verify``, its pages once per version)."""
        with self.fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle, page_checksum_verification=True)
            metadata = parquet.metadata
            written = (metadata.metadata or {}).get(ROWS_KEY)
            row_groups = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
            if row_groups != metadata.num_rows or (written is not None and int(written) != metadata.num_rows):
                raise pa.ArrowInvalid(f"{metadata.num_rows} rows in the footer, {written} written")
            if self.verify and identity not in self._intact:
                read = sum(batch.num_rows for batch in parquet.iter_batches())
                if read != metadata.num_rows:
                    raise pa.ArrowInvalid(f"{read} rows read, {metadata.num_rows} in the footer")
                self._intact.add(identity)
        return metadata

    def _set_aside(self, path: str, damage: BaseException) -> None:
        """Move a damaged file out of every reader's view, log it and count it."""
        directory, name = path.rsplit("/", 1)
        self.fs.move(path, f"{directory}/.{name}.damaged")
        self.damaged.append(path)
        print(f"[store] damaged, will be recomputed: {path} ({type(damage).__name__}: {damage})", flush=True)

    def done(self, path: str, fp: str) -> bool:
        """True when the file exists, is intact and was written with this fingerprint."""
        return self.stored_fingerprint(path) == fp

    def write(self, table: pa.Table, path: str, fp: str) -> None:
        """Write a whole table atomically."""
        with self.writer(path, table.schema, fp) as out:
            out.write_table(table)

    def writer(self, path: str, schema: pa.Schema, fp: str) -> AtomicParquetWriter:
        """A streaming writer that becomes visible at ``path`` only when closed without error; the file is
        stamped with the store's provenance for its partition."""
        stamp = self.provenance.metadata(self.partition_of(path)) if self.provenance is not None else {}
        return AtomicParquetWriter(self.fs, path, schema, fp, stamp)

    def read(
        self, table: str, path: str | None = None, columns: list[str] | None = None, filter: ds.Expression | None = None
    ) -> pa.Table:
        """Read one file (``path``) or a whole hive-partitioned table."""
        if path is not None:
            return pq.read_table(path, filesystem=self.fs, columns=columns)
        return self.dataset(table, self.intact_files(table)).to_table(columns=columns, filter=filter)

    def dataset(self, table: str, files: list[str] | None = None) -> ds.Dataset:
        """A table's files (all visible ones by default) as one hive-partitioned pyarrow dataset."""
        return ds.dataset(
            self.table_files(table) if files is None else files,
            filesystem=self.fs,
            format="parquet",
            partitioning="hive",
            partition_base_dir=self.table_dir(table),
        )

    def exists(self, table: str) -> bool:
        return self.fs.get_file_info(self.table_dir(table)).type == pafs.FileType.Directory


def write_options(schema: pa.Schema) -> dict:
    """`pyarrow.parquet.ParquetWriter` options for a table: zstd, dictionaries and min/max statistics for
    its other columns; for its columns of float vectors (a list of floats per row: word activations,
    neuron scores) lz4, plain encoding and no statistics.

    Float vectors are dense, high-entropy numbers: zstd shrinks activations by 4-6% only, no dictionary
    ever forms (pyarrow tries one anew in every row group), and no reader prunes on a vector's min/max.
    On 8,761 vectors of 768, written in chunks as extraction writes them (2026-11-23, best of 7):
    float32 139 -> 329 MB/s written, 546 -> 874 MB/s read; float16 46 -> 143 and 107 -> 561 MB/s;
    files 2-5% larger. Writing is what bounds extraction on a GPU (issue 10 section 4).
    """
    vectors = {
        field.name
        for field in schema
        if (pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type))
        and pa.types.is_floating(field.type.value_type)
    }
    leaves = parquet_leaf_columns(schema.remove_metadata())
    other = [path for field, path in leaves if field not in vectors]
    return {
        "compression": {path: "lz4" if field in vectors else "zstd" for field, path in leaves},
        "use_dictionary": other,
        "write_statistics": other,
    }


@functools.cache
def parquet_leaf_columns(schema: pa.Schema) -> tuple[tuple[str, str], ...]:
    """(top-level field, Parquet column path) of each leaf column of an Arrow schema, named as pyarrow
    names them when it writes (``vector.list.element``): per-column writer options are keyed by them."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    parquet = pq.read_metadata(pa.BufferReader(sink.getvalue())).schema
    leaves = []
    for i in range(len(parquet)):
        path = parquet.column(i).path
        leaves.append((next(name for name in schema.names if path == name or path.startswith(f"{name}.")), path))
    return tuple(leaves)


class AtomicParquetWriter:
    """Parquet writer to a hidden temporary file, renamed into place on a clean close; ``stamp``: more
    key-value metadata for the file (its provenance)."""

    def __init__(
        self, fs: pafs.FileSystem, path: str, schema: pa.Schema, fp: str, stamp: dict[bytes, bytes] | None = None
    ):
        self.fs, self.path = fs, path
        directory, name = path.rsplit("/", 1)
        fs.create_dir(directory, recursive=True)
        for stale in fs.get_file_info(pafs.FileSelector(directory)):
            if stale.base_name.startswith(f".{name}.") and stale.base_name.endswith(".tmp"):
                fs.delete_file(stale.path)
        self.tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        schema = schema.with_metadata({**(schema.metadata or {}), **(stamp or {}), FINGERPRINT_KEY: fp.encode()})
        self._writer = pq.ParquetWriter(
            self.tmp, schema, filesystem=fs, write_page_checksum=True, **write_options(schema)
        )
        self.rows = 0

    @property
    def schema(self) -> pa.Schema:
        return self._writer.schema

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table.replace_schema_metadata(self._writer.schema.metadata))
        self.rows += table.num_rows

    def commit(self) -> None:
        self._writer.add_key_value_metadata({ROWS_KEY: str(self.rows).encode()})
        try:
            self._writer.close()
        except BaseException:  # a file that could not be finished (a full disk) leaves nothing behind
            self.fs.delete_file(self.tmp)
            raise
        self.fs.move(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # flushing what is thrown away may fail (a full disk): it goes anyway
            self._writer.close()
        self.fs.delete_file(self.tmp)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
