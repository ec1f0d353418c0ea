"""Benchmark: writing word activations to the store, against the Parquet settings the store used before.

Extraction's writer threads turn each chunk's float32 word vectors into the stored dtype and append
them to one Parquet file per layer; on a GPU this, not the forward pass, bounded extraction (issue 10
§4). In one run, on the same vectors (real activations of a random BLOOM over UD English sentences,
written in chunks of `ray_jobs.extract.CHUNK_SENTENCES` sentences as extraction writes them):
* store: `probing.extraction.storage_values` and `analysis.store.Store.writer` (float vectors lz4,
  plain, no statistics; other columns zstd);
* before: numpy's ``astype`` and a ParquetWriter with zstd, dictionaries and statistics everywhere,
  page checksums on (the store's settings until 2026-11-23).
Each is run ``--repeats`` times interleaved, best kept, for float32 and float16 storage. Prints MB/s of
vectors written and read back, the file size over the raw bytes, the µs per word of one layer, and
last ``ratio: X`` = the smaller over the two dtypes of store write rate / before write rate (target ≥ 2).

    python bench/activation_writes.py [--sentences 800] [--hidden 768] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import build_model  # noqa: E402  (needs REPO on the path)
from bench.extract import corpus  # noqa: E402


def word_vectors(sentences: list, hidden: int, root: Path) -> tuple[list, list]:
    """Float32 vectors (layer 2 of a random 2-layer BLOOM) of each chunk of sentences, and each chunk's
    word keys (sentence index, position)."""
    import numpy as np
    import torch

    from probing.extraction import WordActivationExtractor
    from probing.models import load_model
    from ray_jobs.extract import CHUNK_SENTENCES

    model_dir = build_model(root / "model", [s.text for s in sentences], 2, hidden)
    extractor = WordActivationExtractor(load_model(str(model_dir), "main", "cpu", torch.float32), [2])
    chunks, keys = [], []
    for start in range(0, len(sentences), CHUNK_SENTENCES):
        part = sentences[start : start + CHUNK_SENTENCES]
        result = extractor.extract(part)
        lengths = [len(part[i].starts) for i in result.kept]
        chunks.append(result.vectors[2])
        sentence = np.repeat(np.asarray(result.kept) + start, lengths).astype(np.int32)
        keys.append((sentence, np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])))
    return chunks, keys


def write(chunks: list, keys: list, dtype: str, path: Path, store_settings: bool) -> float:
    """Seconds to convert and write every chunk to one file, with the store's writer or the former settings."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis.store import Store
    from analysis.tables import activation_schema
    from probing.extraction import storage_values

    schema = activation_schema(chunks[0].shape[1], dtype)
    began = time.perf_counter()
    if store_settings:
        out = Store(path.parent).writer(str(path), schema, "bench")
    else:
        out = pq.ParquetWriter(str(path), schema, compression="zstd", write_page_checksum=True)
    for vectors, (sentence, position) in zip(chunks, keys, strict=True):
        values = storage_values(vectors, dtype) if store_settings else vectors.astype(np.dtype(dtype))
        flat = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), vectors.shape[1])
        out.write_table(pa.Table.from_arrays([pa.array(sentence), pa.array(position), flat], schema=schema))
    if store_settings:
        out.commit()
    else:
        out.close()
    return time.perf_counter() - began


def read(path: Path) -> float:
    """Seconds to read the file's vectors back into one numpy array."""
    import pyarrow.parquet as pq

    began = time.perf_counter()
    pq.read_table(str(path), columns=["vector"]).column("vector").combine_chunks().flatten().to_numpy()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=800)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each variant; best is kept")
    args = parser.parse_args()
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chunks, keys = word_vectors(corpus(args.sentences), args.hidden, root)
        words = sum(len(c) for c in chunks)
        print(f"{words} word vectors of {args.hidden} (a random BLOOM's layer 2, {args.sentences} en sentences)")
        speedups = []
        for dtype in ("float32", "float16"):
            raw = words * args.hidden * np.dtype(dtype).itemsize
            expected = np.concatenate(chunks).astype(np.dtype(dtype))  # numpy's rounding, the reference
            written = {"store": np.inf, "before": np.inf}
            read_back, size = dict(written), {}
            for repeat in range(args.repeats):
                for name in written:
                    path = root / f"{name}-{dtype}-{repeat}" / "part-0.parquet"
                    path.parent.mkdir()
                    written[name] = min(written[name], write(chunks, keys, dtype, path, name == "store"))
                    read_back[name] = min(read_back[name], read(path))
                    vectors = pq.read_table(str(path), columns=["vector"]).column("vector").combine_chunks()
                    assert np.array_equal(vectors.flatten().to_numpy().reshape(words, -1), expected), (name, dtype)
                    size[name] = path.stat().st_size
            for name in written:
                print(
                    f"{dtype} {name:6s}: write {raw / written[name] / 1e6:5.0f} MB/s "
                    f"({1e6 * written[name] / words:.2f} µs/word), read {raw / read_back[name] / 1e6:5.0f} MB/s, "
                    f"file {size[name] / raw:.3f} of the raw bytes"
                )
            speedups.append(written["before"] / written["store"])
            reads = read_back["before"] / read_back["store"]
            print(f"{dtype}: the store writes {speedups[-1]:.2f}x as fast, reads {reads:.2f}x")
        print(f"ratio: {min(speedups):.2f}")


if __name__ == "__main__":
    main()
