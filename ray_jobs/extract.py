"""Stage 2: activations. One Ray actor per checkpoint loads it once and extracts one language at a time.

The actor reads the language's sentences from the store in chunks (a streaming generator reports
each chunk to the driver's progress bar), so that it can prepare the next chunk while the current
one runs forward (`WordActivationExtractor.extract_stream`). It runs on the GPU when its resources
ask for one, in the config's compute dtype, across several GPUs with a ``device_map``.
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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.store import Store, fingerprint
from analysis.tables import activation_schema, rows_table
from ray_jobs.common import StageResult, checkpoints, loadable_checkpoint, model_identity
from ray_jobs.config import ModelSpec, StudyConfig
from ray_jobs.context import StudyContext, key_label
from ray_jobs.prepare import DataFingerprints
from ray_jobs.stages import stage_main

#: Sentences an actor extracts and writes at a time.
CHUNK_SENTENCES = 256


def activation_fingerprint(config: StudyConfig, model: str, revision: str, layer: int, sentences_fp: str) -> str:
    """What one activation partition depends on: the model (`ray_jobs.common.model_identity`), the revision,
    the layer, the extraction params and the sentences (their fingerprint carries DATASET_VERSION)."""
    from probing.extraction import EXTRACTION_VERSION

    return fingerprint(
        "activations", EXTRACTION_VERSION, model, revision, layer, config.extraction.params, sentences_fp
    )


def actor_device(num_gpus: float, cuda_available: bool, section: str = "extraction") -> str:
    """The torch device of an actor or trial: "cuda" when its resources ask for a GPU, else "cpu".

    Ray only places an actor that asks for a GPU on a node with one, so a GPU that torch cannot see
    (a CPU-only torch build) is an error here rather than a silent, far slower, run on the CPU.
    ``section`` names the config section whose ``resources.num_gpus`` asked for it, for the message.
    """
    if num_gpus <= 0:
        return "cpu"
    if not cuda_available:
        raise RuntimeError(
            f"{section}.resources.num_gpus is {num_gpus} but torch sees no CUDA device "
            f"(is torch built with CUDA?); set num_gpus: 0 to run {section} on the CPU"
        )
    return "cuda"


class CheckpointWorker:
    """Holds one loaded checkpoint; writes the activations of one language at a time."""

    def __init__(self, source: str, revision: str, layers: list[int], config: StudyConfig, store: Store):
        import torch

        from probing.extraction import WordActivationExtractor, compute_torch_dtype
        from probing.models import load_model

        extraction = config.extraction
        torch.set_num_threads(max(1, int(extraction.resources.num_cpus)))
        device = torch.device(actor_device(extraction.resources.num_gpus, torch.cuda.is_available()))
        params = extraction.params
        self.loaded = load_model(
            *loadable_checkpoint(store, source, revision),
            device=str(device),
            dtype=compute_torch_dtype(params.compute_dtype, device),
            device_map=extraction.device_map,
        )
        self.extractor = WordActivationExtractor(self.loaded, layers, params.max_length, params.batch_tokens)
        self.dtype = params.dtype
        self.overlap = extraction.overlap
        self.store = store
        self.writers: dict[int, object] = {}

    def begin(self, paths: dict[int, str], fingerprints: dict[int, str]) -> None:
        """Open hidden writers for the layers of one language that are not stored yet."""
        schema = activation_schema(self.loaded.hidden_size, self.dtype)
        self.writers = {layer: self.store.writer(path, schema, fingerprints[layer]) for layer, path in paths.items()}
        self.counts = {"sentences": 0, "dropped_sentences": 0, "words": 0, "dropped_words": 0, "tokens": 0}
        self.began = time.perf_counter()

    def extract_language(
        self, language: str, paths: dict[int, str], fingerprints: dict[int, str], chunk_sentences: int
    ) -> Iterator[int | dict]:
        """Extract a language's stored sentences into its partitions: yields the sentences of each chunk
        as it is written, then the language's statistics (`finish`); on any error, nothing is kept."""
        self.begin(paths, fingerprints)
        try:
            yield from self.write_chunks(_sentence_chunks(self.store, language, chunk_sentences))
        except BaseException:
            self.abort()
            raise
        yield self.finish()

    def write_chunks(self, chunks: Iterable[tuple[np.ndarray, list]]) -> Iterator[int]:
        """Extract and write (sentence indices, `SurfaceText`s) chunks in order; yield each one's size once written.

        With ``overlap`` the Parquet writes of chunk i run in background threads, one per layer (pyarrow
        releases the GIL), while chunk i+1 runs forward: on a GPU, encoding and writing the word vectors
        costs more than the forward pass of a small model, and would otherwise leave the GPU idle. One
        chunk's writes are in flight at a time, so memory stays bounded; the files are the same.
        """
        results = self.extractor.extract_stream(chunks, self.overlap)
        if not self.overlap:
            for sentence_index, sentences, result in results:
                for write in self.layer_writes(sentence_index, sentences, result):
                    write()
                yield len(sentences)
            return
        with ThreadPoolExecutor(max_workers=max(1, len(self.writers)), thread_name_prefix="xling-write") as pool:
            pending: tuple[int, list[Future]] | None = None
            for sentence_index, sentences, result in results:
                if pending is not None:
                    yield self._finished(*pending)
                writes = self.layer_writes(sentence_index, sentences, result)
                pending = len(sentences), [pool.submit(write) for write in writes]
            if pending is not None:
                yield self._finished(*pending)

    @staticmethod
    def _finished(size: int, writes: list[Future]) -> int:
        """Wait for one chunk's layer writes (raising the first error); its number of sentences."""
        for write in writes:
            write.result()
        return size

    def layer_writes(self, sentence_index: np.ndarray, sentences: list, result) -> list[Callable[[], None]]:
        """Count one extracted chunk (a `BatchResult` of ``sentences``); one call per layer that writes its rows."""
        keys, positions = self.count(sentence_index, sentences, result)

        def write(layer: int, writer) -> None:
            writer.write_table(self.layer_table(layer, writer.schema, keys, positions, result))

        return [partial(write, layer, writer) for layer, writer in self.writers.items()]

    def count(self, sentence_index: np.ndarray, sentences: list, result) -> tuple[pa.Array, pa.Array]:
        """Count one extracted chunk; its rows' sentence keys and word positions."""
        kept_index = sentence_index[result.kept]
        lengths = np.asarray([len(sentences[i].starts) for i in result.kept], dtype=np.int64)
        keys = pa.array(np.repeat(kept_index, lengths).astype(np.int32))
        positions = pa.array(
            np.concatenate([np.arange(n) for n in lengths]).astype(np.int32) if len(lengths) else np.zeros(0, np.int32)
        )
        self.counts["sentences"] += len(result.kept)
        self.counts["dropped_sentences"] += len(result.dropped)
        self.counts["words"] += int(lengths.sum())
        self.counts["dropped_words"] += sum(len(sentences[i].starts) for i in result.dropped)
        self.counts["tokens"] += result.n_tokens
        return keys, positions

    def layer_table(self, layer: int, schema: pa.Schema, keys: pa.Array, positions: pa.Array, result) -> pa.Table:
        """One layer's rows of an extracted chunk, in the stored dtype."""
        from probing.extraction import storage_values

        flat = pa.array(storage_values(result.vectors[layer], self.dtype).reshape(-1))
        vectors = pa.FixedSizeListArray.from_arrays(flat, self.loaded.hidden_size)
        return pa.Table.from_arrays([keys, positions, vectors], schema=schema)

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
    """(model, revision, language, {layer: path}, {layer: fingerprint}) for every unfinished unit of the
    models that have a source (a model that failed to pre-train has none) and the prepared languages.

    A unit is unfinished when a layer's partition is not stored, or its statistics are not (then every
    layer is redone, since the statistics count what the extraction of all of them saw)."""
    units = []
    for spec, revision in checkpoints(config):
        if spec.name not in sources:
            continue
        for language in (lang for lang in config.languages if lang in data_fps):
            paths, fps = {}, {}
            for layer in config.layers:
                paths[layer] = store.path(
                    "activations", model=spec.name, checkpoint=revision, layer=layer, language=language
                )
                fps[layer] = activation_fingerprint(
                    config,
                    model_identity(spec, sources[spec.name], revision),
                    revision,
                    layer,
                    data_fps[language].sentences,
                )
            stats = store.path("extraction_stats", model=spec.name, checkpoint=revision, language=language)
            pending = [layer for layer in config.layers if not store.done(paths[layer], fps[layer])]
            if not store.done(stats, fingerprint(fps)):
                pending = list(config.layers)
            if pending:
                units.append((spec, revision, language, {n: paths[n] for n in pending}, fps))
    return units


def _sentence_chunks(store: Store, language: str, chunk_sentences: int) -> Iterator[tuple[np.ndarray, list]]:
    """Stream a language's sentence table in chunks of ``chunk_sentences``, as (indices, `SurfaceText`s)."""
    from probing.datasets import surface_texts

    columns = ["sentence_index", "text", "char_start", "char_end"]
    with store.fs.open_input_file(store.path("sentences", language=language)) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=chunk_sentences, columns=columns):
            yield batch.column("sentence_index").to_numpy(), surface_texts(batch)


def _count_sentences(store: Store, language: str) -> int:
    with store.fs.open_input_file(store.path("sentences", language=language)) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def run(context: StudyContext) -> StageResult:
    """Extract every unfinished partition; count (checkpoint, language) units done now and already stored."""
    import ray
    from tqdm import tqdm

    config, store, sources, data_fps = context.config, context.store, context.sources, context.data_fps
    failures = context.failures_of("extract")
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
                sources[spec.name], revision, layers, config, store
            )
        except Exception as err:
            failures.add(key_label(model=spec.name, checkpoint=revision), err)
            return
        try:
            for position, (_, _, language, paths, fps) in enumerate(work):
                key = key_label(model=spec.name, checkpoint=revision, language=language)
                try:
                    stream = actor.extract_language.options(num_returns="streaming").remote(
                        language, paths, fps, CHUNK_SENTENCES
                    )
                    for ref in stream:
                        item = ray.get(ref)
                        if isinstance(item, dict):
                            stats = item
                        else:
                            with lock:
                                bar.update(item)
                    store.write(
                        rows_table("extraction_stats", [stats]),
                        store.path("extraction_stats", model=spec.name, checkpoint=revision, language=language),
                        fingerprint(fps),
                    )
                    done_units.append(stats["seconds"] * resources.num_cpus)
                except ray.exceptions.RayActorError as err:
                    remaining = [unit[2] for unit in work[position:]]
                    failures.add(key_label(model=spec.name, checkpoint=revision, languages=",".join(remaining)), err)
                    return  # the actor is gone; the checkpoint's unfinished languages wait for a rerun
                except Exception as err:
                    failures.add(key, err)  # the actor dropped the language's hidden files
        finally:
            ray.kill(actor)

    with ThreadPoolExecutor(max_workers=config.extraction.workers) as pool:
        list(pool.map(run_checkpoint, by_checkpoint.values()))
    bar.close()
    return StageResult(len(done_units), possible - len(units), busy_seconds=sum(done_units))


main = stage_main("extract")

if __name__ == "__main__":
    raise SystemExit(main())
