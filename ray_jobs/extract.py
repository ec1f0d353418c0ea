"""Stage 2: activations. One Ray actor per checkpoint loads it once and is fed chunks of sentences.

Each actor streams word vectors to one Parquet file per (model, checkpoint, layer, language)
partition through an atomic writer, so the corpus is never held in memory and a killed worker
leaves only hidden temporary files. A partition already stored with the same fingerprint is
skipped; re-running after a crash redoes exactly the unfinished (checkpoint, language) units, in
the same chunks and batches, so the output equals that of an uninterrupted run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.store import Store, fingerprint
from ray_jobs.common import (
    Failures,
    StageResult,
    checkpoints,
    config_from_args,
    init_ray,
    job_arguments,
    loadable_checkpoint,
)
from ray_jobs.config import ModelSpec, StudyConfig
from ray_jobs.prepare import DataFingerprints, run_prepare

#: Sentences sent to an actor per call, and calls in flight per actor.
CHUNK_SENTENCES = 256
IN_FLIGHT = 2

STATS_SCHEMA = pa.schema(
    [
        ("sentences", pa.int64()),
        ("dropped_sentences", pa.int64()),
        ("words", pa.int64()),
        ("dropped_words", pa.int64()),
        ("tokens", pa.int64()),
        ("seconds", pa.float64()),
        ("hidden_size", pa.int64()),
        ("max_length", pa.int64()),
    ]
)


def activation_schema(hidden_size: int, dtype: str) -> pa.Schema:
    """Rows of the activations table: the word's key and its vector as a fixed-size list."""
    value_type = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema(
        [
            ("sentence_index", pa.int32()),
            ("position", pa.int32()),
            ("vector", pa.list_(value_type, hidden_size)),
        ]
    )


def activation_fingerprint(config: StudyConfig, source: str, revision: str, layer: int, sentences_fp: str) -> str:
    """What one activation partition depends on (the sentences' fingerprint carries DATASET_VERSION)."""
    from probing.extraction import EXTRACTION_VERSION

    return fingerprint(
        "activations", EXTRACTION_VERSION, source, revision, layer, config.extraction.params, sentences_fp
    )


class CheckpointWorker:
    """Holds one loaded checkpoint; writes the activations of one language at a time."""

    def __init__(self, source: str, revision: str, layers: list[int], config: StudyConfig):
        import torch

        from probing.extraction import WordActivationExtractor, load_model

        torch.set_num_threads(max(1, int(config.extraction.resources.num_cpus)))
        device = "cuda" if config.extraction.resources.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.loaded = load_model(*loadable_checkpoint(config.output_root, source, revision), device=device)
        params = config.extraction.params
        self.extractor = WordActivationExtractor(self.loaded, layers, params.max_length, params.batch_tokens)
        self.dtype = params.dtype
        self.store = Store(config.output_root)
        self.writers: dict[int, object] = {}

    def begin(self, paths: dict[int, str], fingerprints: dict[int, str]) -> None:
        """Open hidden writers for the layers of one language that are not stored yet."""
        schema = activation_schema(self.loaded.hidden_size, self.dtype)
        self.writers = {layer: self.store.writer(path, schema, fingerprints[layer]) for layer, path in paths.items()}
        self.counts = {"sentences": 0, "dropped_sentences": 0, "words": 0, "dropped_words": 0, "tokens": 0}
        self.began = time.perf_counter()

    def process(self, sentence_index: np.ndarray, sentences: list) -> int:
        """Extract and write one chunk of sentences (`SurfaceText`); return how many it held."""
        result = self.extractor.extract(sentences)
        kept_index = sentence_index[result.kept]
        lengths = np.asarray([len(sentences[i].starts) for i in result.kept], dtype=np.int64)
        keys = pa.array(np.repeat(kept_index, lengths).astype(np.int32))
        positions = pa.array(
            np.concatenate([np.arange(n) for n in lengths]).astype(np.int32) if len(lengths) else np.zeros(0, np.int32)
        )
        value_type = np.float16 if self.dtype == "float16" else np.float32
        for layer, writer in self.writers.items():
            flat = pa.array(result.vectors[layer].astype(value_type).reshape(-1))
            vectors = pa.FixedSizeListArray.from_arrays(flat, self.loaded.hidden_size)
            writer.write_table(pa.Table.from_arrays([keys, positions, vectors], schema=writer.schema))
        self.counts["sentences"] += len(result.kept)
        self.counts["dropped_sentences"] += len(result.dropped)
        self.counts["words"] += int(lengths.sum())
        self.counts["dropped_words"] += sum(len(sentences[i].starts) for i in result.dropped)
        self.counts["tokens"] += result.n_tokens
        return len(sentences)

    def abort(self) -> None:
        """Drop the hidden files of a language that failed part-way."""
        for writer in self.writers.values():
            writer.abort()
        self.writers = {}

    def finish(self) -> dict:
        """Make the language's partitions visible; return its extraction statistics."""
        for writer in self.writers.values():
            writer.commit()
        self.writers = {}
        return {
            **self.counts,
            "seconds": time.perf_counter() - self.began,
            "hidden_size": self.loaded.hidden_size,
            "max_length": self.extractor.max_length,
        }


def _pending_units(
    config: StudyConfig, store: Store, sources: dict[str, str], data_fps: dict[str, DataFingerprints]
) -> list:
    """(model, revision, language, {layer: path}, {layer: fingerprint}) for every unfinished unit."""
    units = []
    for spec, revision in checkpoints(config):
        for language in config.languages:
            if language not in data_fps:
                continue
            paths, fps = {}, {}
            for layer in config.layers:
                path = store.path("activations", model=spec.name, checkpoint=revision, layer=layer, language=language)
                fp = activation_fingerprint(config, sources[spec.name], revision, layer, data_fps[language].sentences)
                if not store.done(path, fp):
                    paths[layer], fps[layer] = path, fp
            if paths:
                units.append((spec, revision, language, paths, fps))
    return units


def _sentence_chunks(store: Store, language: str):
    """Stream a language's sentence table in chunks of CHUNK_SENTENCES, as (indices, `SurfaceText`s)."""
    from probing.datasets import surface_texts

    columns = ["sentence_index", "text", "char_start", "char_end"]
    with store.fs.open_input_file(store.path("sentences", language=language)) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=CHUNK_SENTENCES, columns=columns):
            yield batch.column("sentence_index").to_numpy(), surface_texts(batch)


def _count_sentences(store: Store, language: str) -> int:
    with store.fs.open_input_file(store.path("sentences", language=language)) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def run_extraction(
    config: StudyConfig, sources: dict[str, str], data_fps: dict[str, DataFingerprints], failures: Failures
) -> StageResult:
    """Extract every unfinished partition; count (checkpoint, language) units done now and already stored."""
    import ray
    from tqdm import tqdm

    store = Store(config.output_root)
    units = _pending_units(config, store, sources, data_fps)
    possible = sum(1 for spec, _ in checkpoints(config) if spec.name in sources) * len(data_fps)
    if not units:
        print("[extract] every activation partition is already stored; nothing to do")
        return StageResult(0, possible)
    by_checkpoint: dict[tuple[str, str], list] = {}
    for unit in units:
        by_checkpoint.setdefault((unit[0].name, unit[1]), []).append(unit)
    total = sum(_count_sentences(store, unit[2]) for unit in units)
    resources = config.extraction.resources
    remote_worker = ray.remote(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)(CheckpointWorker)
    bar = tqdm(total=total, unit="sent", desc="extract", file=sys.stderr, mininterval=2)
    lock = threading.Lock()
    done_units = []

    def run_checkpoint(work: list) -> None:
        spec: ModelSpec = work[0][0]
        revision = work[0][1]
        layers = sorted({layer for unit in work for layer in unit[3]})
        try:
            actor = remote_worker.options(name=f"xling-extract-{spec.name}-{revision}-{time.time_ns()}").remote(
                sources[spec.name], revision, layers, config
            )
        except Exception as err:
            failures.add(f"model={spec.name}/checkpoint={revision}", err)
            return
        try:
            for position, (_, _, language, paths, fps) in enumerate(work):
                key = f"model={spec.name}/checkpoint={revision}/language={language}"
                try:
                    ray.get(actor.begin.remote(paths, fps))
                    in_flight: deque = deque()
                    for index, sentences in _sentence_chunks(store, language):
                        in_flight.append(actor.process.remote(index, sentences))
                        if len(in_flight) >= IN_FLIGHT:
                            n = ray.get(in_flight.popleft())
                            with lock:
                                bar.update(n)
                    for ref in in_flight:
                        n = ray.get(ref)
                        with lock:
                            bar.update(n)
                    stats = ray.get(actor.finish.remote())
                    store.write(
                        pa.Table.from_pylist([stats], schema=STATS_SCHEMA),
                        store.path("extraction_stats", model=spec.name, checkpoint=revision, language=language),
                        fingerprint(fps),
                    )
                    done_units.append(stats["seconds"] * resources.num_cpus)
                except ray.exceptions.RayActorError as err:
                    remaining = [unit[2] for unit in work[position:]]
                    failures.add(f"model={spec.name}/checkpoint={revision}/languages={','.join(remaining)}", err)
                    return  # the actor is gone; the checkpoint's unfinished languages wait for a rerun
                except Exception as err:
                    failures.add(key, err)
                    ray.get(actor.abort.remote())
        finally:
            ray.kill(actor)

    with ThreadPoolExecutor(max_workers=config.extraction.workers) as pool:
        list(pool.map(run_checkpoint, by_checkpoint.values()))
    bar.close()
    return StageResult(len(done_units), possible - len(units), busy_seconds=sum(done_units))


def main(argv: list[str] | None = None) -> int:
    from ray_jobs.pretrain import run_pretraining

    args = job_arguments("Extract per-word activations of every checkpoint into Parquet.").parse_args(argv)
    config = config_from_args(args)
    init_ray()
    store = Store(config.output_root)
    failures = Failures("extract")
    sources, _ = run_pretraining(config, failures)
    data_fps, _ = run_prepare(config, failures)
    run_extraction(config, sources, data_fps, failures)
    failures.write(store)
    return 1 if failures.rows else 0


if __name__ == "__main__":
    sys.exit(main())
