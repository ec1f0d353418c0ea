"""Faults to inject into a study, and what "identical results" means: shared by `bench/faults.py` and the tests.

Damage to a stored Parquet file comes in three kinds: ``truncate`` (the second half cut off, as by a
full disk or a killed copy), ``garble`` (a run of bytes overwritten where the first column's pages
begin, size kept) and ``flip`` (one bit flipped in the first column's page data: only its page
checksum tells). Two studies are identical when every table has the same rows, except the
columns that measure time and the text of real failures (`comparable`). `fill_the_disk` runs a
study's rerun on a tmpfs too small for it, then again after growing it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from analysis.store import Store
from analysis.tables import LAYOUT

#: Columns that no two runs share: wall times, and the tracebacks of failures (process ids).
VOLATILE_COLUMNS = frozenset({"seconds", "train_seconds", "time", "detail"})


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
    """Flip one bit in the last byte of the first column's pages, which is page data (a flip in a page
    header may hit only its statistics, harmless and unseen); the middle of a file without pages."""
    data = bytearray(path.read_bytes())
    chunk = _first_column_chunk(path)
    position = chunk[1] - 1 if chunk else len(data) // 2
    data[position] ^= 0x04
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {"truncate": truncate, "garble": garble, "flip": flip}


def damage_every_table(root: Path, kinds: tuple[str, ...] = tuple(DAMAGE)) -> list[tuple[str, str, Path]]:
    """Damage a file of every stored table per kind of damage (a table with fewer files gets the kinds in
    turn); return (table, kind, path) of each."""
    store, done = Store(root), []
    for number, table in enumerate(t for t in LAYOUT if store.table_files(t)):
        files = store.table_files(table)
        for offset, path in enumerate(files[: len(kinds)]):
            kind = kinds[(number + offset) % len(kinds)]
            DAMAGE[kind](Path(path))
            done.append((table, kind, Path(path)))
    return done


def comparable(row: dict) -> str:
    """A row without its volatile columns; a failure's error reduced to its kind (its text names pids)."""
    kept = {k: v for k, v in row.items() if k not in VOLATILE_COLUMNS}
    if "error" in kept and not kept["error"].startswith("CannotProbe"):
        kept["error"] = kept["error"].split(":", 1)[0]
    return repr(sorted(kept.items()))


def table_rows(root: Path) -> dict[str, list[str]]:
    """Every stored table's rows (`comparable`), sorted."""
    store, contents = Store(root, create=False), {}
    for table in (t for t in LAYOUT if store.table_files(t)):
        contents[table] = sorted(comparable(row) for row in store.read(table).to_pylist())
    return contents


def differences(expected: dict[str, list], found: dict[str, list]) -> list[str]:
    """The tables whose rows differ, each with a count of the rows on either side."""
    return [
        f"{table}: {len(expected.get(table, []))} rows expected, {len(found.get(table, []))} found"
        for table in sorted(set(expected) | set(found))
        if expected.get(table) != found.get(table)
    ]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every half second; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.5)


#: A rerun of a study at a root: (its exit status, what it printed).
Rerun = Callable[[Path], tuple[int, str]]


@contextlib.contextmanager
def small_disk(mount: Path) -> Iterator[Path]:
    """A tmpfs mounted at ``mount`` for the block (OSError with the reason where mounting is not allowed)."""
    mount.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        raise OSError(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _resize(mount: Path, kilobytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={kilobytes}k", str(mount)], check=True)


def _used_kilobytes(mount: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(mount)], capture_output=True, text=True).stdout.split()[0])


@dataclass
class DiskFull:
    """What a rerun did on a full disk, and after space was freed."""

    full_status: int
    full_output: str
    half_written_in_view: list[str]
    freed_status: int
    differences: list[str]


def fill_the_disk(study: Path, mount: Path, rerun: Rerun) -> DiskFull:
    """Copy a finished study onto a tmpfs, drop one (checkpoint, language) unit's activations, shrink the
    disk so that extracting them again fills it, rerun; then grow it and rerun. Reports every visible file
    that is not whole after the first rerun, and how the second one's tables differ from the study's."""
    from analysis.database import open_locked, study_tables

    root = shutil.copytree(study, mount / "study", ignore=shutil.ignore_patterns("_tune"))
    unit = sorted((root / "activations").glob("model=*/checkpoint=*/layer=*/language=en/*.parquet"))[:2]
    freed = sum(path.stat().st_size for path in unit) // 1024
    for path in unit:
        path.unlink()
    _resize(mount, _used_kilobytes(mount) + freed // 2)
    full_status, full_output = rerun(root)
    store = Store(root, verify=True)
    in_view = [f for t in study_tables(store) for f in sorted(set(store.table_files(t)) - set(store.intact_files(t)))]
    with open_locked(store) as con:  # every table still reads whole in DuckDB
        for table in study_tables(store):
            con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    _resize(mount, 200 * 1024)
    freed_status, _ = rerun(root)
    return DiskFull(full_status, full_output, in_view, freed_status, differences(table_rows(study), table_rows(root)))
