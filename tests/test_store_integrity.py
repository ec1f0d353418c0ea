"""A damaged stored file is found, moved out of view, counted, and then counts as not stored: its footer
and row count are checked on every look, its page checksums when the store verifies."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.store import ROWS_KEY, Store
from analysis.tables import activation_schema
from bench.fault_injection import DAMAGE


def activations(rows: int = 2000) -> pa.Table:
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.random.default_rng(0).random(rows * 8, np.float32)), 8)
    keys = pa.array(np.arange(rows, dtype=np.int32))
    return pa.Table.from_arrays([keys, keys, vectors], schema=activation_schema(8, "float32"))


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, str]:
    store = Store(tmp_path)
    path = store.path("activations", model="m", checkpoint="c", layer=1, language="en")
    with store.writer(path, activations().schema, "fp") as out:  # streamed in two parts: rows add up
        out.write_table(activations().slice(0, 1200))
        out.write_table(activations().slice(1200))
    return tmp_path, path


def test_a_written_file_carries_its_row_count_and_page_checksums(stored):
    root, path = stored
    assert pq.read_metadata(path).metadata[ROWS_KEY] == b"2000"
    assert Store(root, verify=True).done(path, "fp")
    assert Store(root).read("activations").num_rows == 2000


def leaf_columns(path: str) -> dict[str, pq.ColumnChunkMetaData]:
    group = pq.read_metadata(path).row_group(0)
    return {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}


def test_float_vectors_are_written_lz4_and_plain_and_other_columns_zstd_with_statistics(stored):
    root, path = stored
    columns = leaf_columns(path)
    vector = columns.pop("vector.list.element")
    assert (vector.compression, vector.is_stats_set, "RLE_DICTIONARY" in vector.encodings) == ("LZ4", False, False)
    for key in columns.values():
        assert (key.compression, key.is_stats_set, "RLE_DICTIONARY" in key.encodings) == ("ZSTD", True, True)
    read = Store(root).read("activations", path)
    assert (
        read.column("vector")
        .combine_chunks()
        .flatten()
        .equals(activations().column("vector").combine_chunks().flatten())
    )


def test_nested_columns_that_are_not_float_vectors_keep_zstd(tmp_path):
    table = pa.table(
        {
            "values": pa.array([["a", "b"], ["c"]]),
            "means": pa.array([[{"value": "a", "mean": 0.5}], []]),
            "scores": pa.array([[0.25, 0.5], [1.0]], pa.list_(pa.float64())),
        }
    )
    store = Store(tmp_path)
    path = store.path("dataset_stats", language="en")
    store.write(table, path, "fp")
    codecs = {name: column.compression for name, column in leaf_columns(path).items()}
    assert codecs == {
        "values.list.element": "ZSTD",
        "means.list.element.value": "ZSTD",
        "means.list.element.mean": "ZSTD",
        "scores.list.element": "LZ4",
    }
    assert store.read("dataset_stats", path).to_pylist() == table.to_pylist()


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_is_found_moved_aside_and_counted_when_verifying(stored, kind):
    root, path = stored
    DAMAGE[kind](Path(path))
    store = Store(root, verify=True)
    assert not store.done(path, "fp")
    assert store.damaged == [path]
    assert not Path(path).exists() and (Path(path).parent / ".part-0.parquet.damaged").is_file()
    assert store.table_files("activations") == []  # out of every reader's view


def test_without_verify_the_footer_and_row_count_are_still_checked(stored):
    root, path = stored
    DAMAGE["truncate"](Path(path))
    store = Store(root)
    assert not store.done(path, "fp") and store.damaged == [path]


def test_a_footer_that_disagrees_with_the_rows_written_is_damage(tmp_path):
    store = Store(tmp_path)
    path = store.path("activations", model="m", checkpoint="c", layer=1, language="en")
    table = activations(10).replace_schema_metadata({b"xling.fingerprint": b"fp"})
    Path(path).parent.mkdir(parents=True)
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({ROWS_KEY: b"11"})
    assert not store.done(path, "fp") and store.damaged == [path]


def test_a_whole_table_read_leaves_damaged_files_out(tmp_path):
    store = Store(tmp_path)
    paths = [store.path("activations", model="m", checkpoint="c", layer=layer, language="en") for layer in (1, 2)]
    for path in paths:
        store.write(activations(10), path, "fp")
    DAMAGE["truncate"](Path(paths[0]))
    table = store.read("activations")
    assert table.num_rows == 10 and set(table.column("layer").to_pylist()) == {2}
    assert store.damaged == [paths[0]]


def test_files_written_before_row_counts_are_accepted(tmp_path):
    store = Store(tmp_path)
    path = store.path("activations", model="m", checkpoint="c", layer=1, language="en")
    Path(path).parent.mkdir(parents=True)
    pq.write_table(activations(10).replace_schema_metadata({b"xling.fingerprint": b"fp"}), path)
    assert Store(tmp_path, verify=True).done(path, "fp")
