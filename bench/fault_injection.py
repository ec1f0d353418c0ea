"""Faults to inject into a study, and what "identical results" means: shared by `bench/faults.py` and the tests.

Damage to a stored Parquet file comes in three kinds: ``truncate`` (the second half cut off, as by a
full disk or a killed copy), ``garble`` (a run of bytes overwritten where the first column's pages
begin, size kept) and ``flip`` (one bit flipped in the middle of the first column's pages: only its
page checksum tells). Two studies are identical when every table has the same rows, except the
columns that measure time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from analysis.store import Store
from analysis.tables import LAYOUT

#: Columns that measure wall time, which no two runs share.
TIME_COLUMNS = frozenset({"seconds", "train_seconds", "time", "detail"})


def _first_column_chunk(path: Path) -> tuple[int, int] | None:
    """(start, end) byte offsets of the first column chunk's pages, or None when the file has none."""
    metadata = pq.read_metadata(path)
    if metadata.num_row_groups == 0 or metadata.row_group(0).num_columns == 0:
        return None
    column = metadata.row_group(0).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    return start, start + column.total_compressed_size


def truncate(path: Path) -> None:
    """Cut the file in half: the footer is gone."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    """Overwrite 64 bytes where the first column's pages begin (the middle of the file when it has none)."""
    data = bytearray(path.read_bytes())
    chunk = _first_column_chunk(path)
    start = chunk[0] if chunk else len(data) // 2
    data[start : start + 64] = bytes(range(64))[: len(data[start : start + 64])]
    path.write_bytes(bytes(data))


def flip(path: Path) -> None:
    """Flip one bit in the middle of the first column's pages (of the file when it has none)."""
    data = bytearray(path.read_bytes())
    chunk = _first_column_chunk(path)
    position = (chunk[0] + chunk[1]) // 2 if chunk else len(data) // 2
    data[position] ^= 0x04
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {"truncate": truncate, "garble": garble, "flip": flip}


def damage_every_table(root: Path) -> list[tuple[str, str, Path]]:
    """Damage up to three files of every stored table, one per kind of damage (a table with fewer files
    gets the kinds in turn); return (table, kind, path) of each."""
    store, kinds, done = Store(root), list(DAMAGE), []
    for number, table in enumerate(t for t in LAYOUT if store.table_files(t)):
        files = store.table_files(table)
        for offset, path in enumerate(files[: len(kinds)]):
            kind = kinds[(number + offset) % len(kinds)]
            DAMAGE[kind](Path(path))
            done.append((table, kind, Path(path)))
    return done


def table_rows(root: Path) -> dict[str, list[tuple]]:
    """Every stored table's rows (time columns left out), sorted, as comparable tuples."""
    store, contents = Store(root, create=False), {}
    for table in (t for t in LAYOUT if store.table_files(t)):
        rows = store.read(table).to_pylist()
        contents[table] = sorted(repr(sorted((k, v) for k, v in row.items() if k not in TIME_COLUMNS)) for row in rows)
    return contents


def differences(expected: dict[str, list], found: dict[str, list]) -> list[str]:
    """The tables whose rows differ, each with a count of the rows on either side."""
    return [
        f"{table}: {len(expected.get(table, []))} rows expected, {len(found.get(table, []))} found"
        for table in sorted(set(expected) | set(found))
        if expected.get(table) != found.get(table)
    ]
