"""Extraction job on a real local Ray cluster over real UD files: row counts, resume, kill-and-resume."""

import contextlib
import dataclasses
import os
import shutil
import signal
import threading
import time
from itertools import islice
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from analysis.store import Store
from probing.datasets import read_language
from ray_jobs import extract, prepare
from ray_jobs.common import model_identity
from ray_jobs.config import ModelSpec, load_config
from ray_jobs.context import StudyContext
from ray_jobs.prepare import DataFingerprints


def study(tmp_path: Path, ud_dir: Path, model_dir: Path, root: str, sentences: int = 120):
    path = tmp_path / f"{root}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "extract-test",
                "ud_dir": str(ud_dir),
                "output_root": str(tmp_path / root),
                "languages": ["en", "fr"],
                "attributes": ["POS", "Number"],
                "layers": [0, 2],
                "models": [{"name": "tiny", "id": str(model_dir), "revisions": ["step-a", "step-b"]}],
                "data": {"max_sentences_per_language": sentences, "min_examples_per_split": 3},
                "extraction": {"batch_tokens": 2048, "dtype": "float16"},
                "probing": {"k": 10},
            }
        )
    )
    return load_config(path)


def extract_all(config, model_dir):
    context = StudyContext.open(config, sources={"tiny": str(model_dir)})
    prepare.run(context)
    result = extract.run(context)
    return result.run, context.failure_rows()


@pytest.mark.slow
def test_activations_cover_every_word_and_a_rerun_does_nothing(ray_cluster, tmp_path, ud_dir, tiny_bloom_dir):
    config = study(tmp_path, ud_dir, tiny_bloom_dir, "out")
    done, failures = extract_all(config, tiny_bloom_dir)
    assert done == 4 and not failures
    root = config.output_root
    con = duckdb.connect()
    words = dict(
        con.execute(
            f"SELECT language, sum(len(words)) FROM read_parquet('{root}/sentences/*/*.parquet', hive_partitioning=1) "
            "GROUP BY language"
        ).fetchall()
    )
    rows = con.execute(
        f"SELECT checkpoint, layer, language, count(*), min(len(vector)), max(len(vector)) "
        f"FROM read_parquet('{root}/activations/*/*/*/*/*.parquet', hive_partitioning=1) GROUP BY ALL"
    ).fetchall()
    assert len(rows) == 2 * 2 * 2
    for checkpoint, layer, language, count, shortest, longest in rows:
        assert count == words[language], (checkpoint, layer, language)
        assert shortest == longest == 32
    # every labelled word of the datasets has its vector
    missing = con.execute(
        f"SELECT count(*) FROM read_parquet('{root}/words/*/*/*.parquet', hive_partitioning=1) w "
        f"ANTI JOIN read_parquet('{root}/activations/*/*/*/*/*.parquet', hive_partitioning=1) a "
        "ON a.language = w.language AND a.sentence_index = w.sentence_index AND a.position = w.position "
        "AND a.checkpoint = 'step-b' AND a.layer = 2"
    ).fetchone()[0]
    assert missing == 0
    stats = con.execute(
        f"SELECT sum(words), sum(dropped_sentences) FROM read_parquet('{root}/extraction_stats/*/*/*/*.parquet')"
    ).fetchone()
    assert stats == (2 * sum(words.values()), 0)

    again, failures = extract_all(config, tiny_bloom_dir)
    assert again == 0 and not failures


def _worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::CheckpointWorker"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a worker that has just exited
            os.kill(pid, signum)


def _visible_and_hidden(root: str) -> tuple[list[Path], list[Path]]:
    files = list(Path(root, "activations").rglob("*"))
    return (
        [f for f in files if f.name == "part-0.parquet"],
        [f for f in files if f.is_file() and f.name.startswith(".")],
    )


@pytest.mark.slow
def test_killing_a_worker_mid_run_hides_partial_files_and_a_rerun_matches(
    ray_cluster, tmp_path, ud_dir, tiny_bloom_dir, monkeypatch
):
    monkeypatch.setattr(extract, "CHUNK_SENTENCES", 16)
    reference = study(tmp_path, ud_dir, tiny_bloom_dir, "reference", sentences=400)
    assert extract_all(reference, tiny_bloom_dir)[0] == 4

    config = study(tmp_path, ud_dir, tiny_bloom_dir, "killed", sentences=400)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=extract_all(config, tiny_bloom_dir)))
    runner.start()
    killed = False
    deadline = time.time() + 120
    while runner.is_alive() and time.time() < deadline and not killed:
        if all(_visible_and_hidden(config.output_root)):
            # Freeze the workers before looking again, so that a commit cannot slip in between the
            # look and the kill: kill only if, frozen, one unit is finished and the next half-written.
            pids = _worker_pids()
            _signal_all(pids, signal.SIGSTOP)
            killed = all(_visible_and_hidden(config.output_root))
            _signal_all(pids, signal.SIGKILL if killed else signal.SIGCONT)
        time.sleep(0.05)
    runner.join()
    assert killed, "the extraction finished before a worker could be killed"
    done, failures = outcome["result"]
    assert len(failures) == 1 and failures[0]["error"].startswith("ActorDiedError")
    visible, hidden = _visible_and_hidden(config.output_root)
    assert hidden, "the killed worker's partial file should remain hidden"
    for path in visible:  # whatever is visible is complete
        reference_path = Path(str(path).replace("killed", "reference"))
        assert pq.read_table(path).num_rows == pq.read_table(reference_path).num_rows

    done, failures = extract_all(config, tiny_bloom_dir)
    assert not failures and 0 < done < 4
    visible, hidden = _visible_and_hidden(config.output_root)
    assert len(visible) == 8 and not hidden
    for path in visible:
        reference_path = Path(str(path).replace("killed", "reference"))
        assert pq.read_table(path).equals(pq.read_table(reference_path))
    assert Store(config.output_root).stored_fingerprint(str(visible[0])) == Store(
        reference.output_root
    ).stored_fingerprint(str(Path(str(visible[0]).replace("killed", "reference"))))


def test_the_actor_runs_on_cuda_exactly_when_its_resources_ask_for_a_gpu():
    assert extract.actor_device(1, cuda_available=True) == "cuda"
    assert extract.actor_device(0.5, cuda_available=True) == "cuda"
    assert extract.actor_device(0, cuda_available=True) == "cpu"
    assert extract.actor_device(0, cuda_available=False) == "cpu"
    with pytest.raises(RuntimeError, match="num_gpus is 1 but torch sees no CUDA device"):
        extract.actor_device(1, cuda_available=False)


def with_extraction(config, **changes):
    return dataclasses.replace(config, extraction=dataclasses.replace(config.extraction, **changes))


def test_the_compute_dtype_is_in_the_activation_fingerprint_and_the_overlap_is_not(tmp_path, ud_dir, tiny_bloom_dir):
    config = study(tmp_path, ud_dir, tiny_bloom_dir, "out")

    def fp(c):
        return extract.activation_fingerprint(c, str(tiny_bloom_dir), "step-b", 2, "sentences")

    gpu = with_extraction(config, resources=dataclasses.replace(config.extraction.resources, num_gpus=1))
    assert fp(config) == fp(with_extraction(config, compute_dtype="float32"))  # auto on CPU is float32
    assert fp(config) != fp(with_extraction(config, compute_dtype="bfloat16"))
    assert fp(gpu) == fp(with_extraction(gpu, compute_dtype="bfloat16"))  # auto with a GPU is bfloat16
    assert fp(config) == fp(with_extraction(config, overlap_tokenization=True))  # bit-identical vectors


def _write_language(config, model_dir, layer: int, sentences: list, name: str) -> np.ndarray:
    """Run the actor's class in-process over the sentences; the stored vectors of one layer."""
    worker = extract.CheckpointWorker(str(model_dir), "step-b", [layer], config, Store(config.output_root))
    path = Store(config.output_root).path("activations", model=name, checkpoint="step-b", layer=layer, language="en")
    worker.begin({layer: path}, {layer: name})
    chunks = ((np.arange(start, start + 8), sentences[start : start + 8]) for start in range(0, len(sentences), 8))
    assert sum(worker.write_chunks(chunks)) == len(sentences)
    worker.finish()
    table = pq.read_table(path)
    assert table.schema.field("vector").type.value_type.to_pandas_dtype() == np.dtype(config.extraction.params.dtype)
    return np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)


def test_bfloat16_compute_is_stored_as_configured_and_close_to_float32(tmp_path, ud_dir, tiny_bloom_dir):
    config = study(tmp_path, ud_dir, tiny_bloom_dir, "out")  # stores float16
    sentences = [s.surface for s in islice(read_language(ud_dir, "en"), 24)]
    stored_f32 = dataclasses.replace(config.extraction.params, dtype="float32")
    exact = _write_language(with_extraction(config, params=stored_f32), tiny_bloom_dir, 2, sentences, "f32")
    half = _write_language(config, tiny_bloom_dir, 2, sentences, "f16")
    low = _write_language(with_extraction(config, compute_dtype="bfloat16"), tiny_bloom_dir, 2, sentences, "bf16")
    assert exact.shape == half.shape == low.shape == (sum(len(s.starts) for s in sentences), 32)

    def error(x):
        return float(np.linalg.norm(x - exact) / np.linalg.norm(exact))

    assert 0 < error(half) < 1e-3  # float16 storage alone: 11 mantissa bits
    assert error(half) < error(low) < 0.03  # bfloat16 compute: 8 mantissa bits, a few per mille


def _stored_layers(config, model_dir, sentences: list, name: str) -> dict[int, object]:
    """Every layer of the study written by the actor's class in-process; the stored tables by layer."""
    store = Store(config.output_root)
    worker = extract.CheckpointWorker(str(model_dir), "step-b", list(config.layers), config, store)
    paths = {
        layer: store.path("activations", model=name, checkpoint="step-b", layer=layer, language="en")
        for layer in config.layers
    }
    worker.begin(paths, {layer: name for layer in config.layers})
    chunks = ((np.arange(start, start + 8), sentences[start : start + 8]) for start in range(0, len(sentences), 8))
    assert list(worker.write_chunks(chunks)) == [
        len(sentences[start : start + 8]) for start in range(0, len(sentences), 8)
    ]
    stats = worker.finish()
    assert stats["words"] == sum(len(s.starts) for s in sentences)
    return {layer: pq.read_table(path) for layer, path in paths.items()}


def test_background_writes_store_the_same_rows_as_sequential_writes(tmp_path, ud_dir, tiny_bloom_dir):
    config = study(tmp_path, ud_dir, tiny_bloom_dir, "out")
    sentences = [s.surface for s in islice(read_language(ud_dir, "en"), 40)]
    sequential = _stored_layers(with_extraction(config, overlap_tokenization=False), tiny_bloom_dir, sentences, "seq")
    background = _stored_layers(with_extraction(config, overlap_tokenization=True), tiny_bloom_dir, sentences, "bg")
    assert set(sequential) == set(background) == {0, 2}
    for layer in sequential:
        assert sequential[layer].equals(background[layer])
    assert not sequential[0].column("vector").equals(sequential[2].column("vector"))  # each file got its own layer


def test_a_failing_background_write_raises_and_leaves_no_visible_file(tmp_path, ud_dir, tiny_bloom_dir, monkeypatch):
    config = with_extraction(study(tmp_path, ud_dir, tiny_bloom_dir, "out"), overlap_tokenization=True)
    sentences = [s.surface for s in islice(read_language(ud_dir, "en"), 24)]
    store = Store(config.output_root)
    worker = extract.CheckpointWorker(str(tiny_bloom_dir), "step-b", [0, 2], config, store)
    written = []

    def table_or_full_disk(layer, *args):
        written.append(layer)
        if len(written) == 3:  # the second chunk's first layer
            raise OSError("No space left on device")
        return extract.CheckpointWorker.layer_table(worker, layer, *args)

    monkeypatch.setattr(worker, "layer_table", table_or_full_disk)
    paths = {
        layer: store.path("activations", model="t", checkpoint="step-b", layer=layer, language="en") for layer in (0, 2)
    }
    worker.begin(paths, {0: "t", 2: "t"})
    chunks = ((np.arange(start, start + 8), sentences[start : start + 8]) for start in range(0, len(sentences), 8))
    with pytest.raises(OSError, match="No space left"):
        for _ in worker.write_chunks(chunks):
            pass
    worker.abort()
    assert not any(Path(p).exists() for p in paths.values())
    assert not list(Path(config.output_root).rglob("*.tmp"))


def test_a_model_without_a_source_is_left_out_and_the_others_are_extracted(tmp_path, ud_dir, tiny_bloom_dir):
    """A model that failed to pre-train has no source; the other models' units are still found."""
    config = study(tmp_path, ud_dir, tiny_bloom_dir, "out")
    untrained = dataclasses.replace(config.models[0], name="untrained")
    config = dataclasses.replace(config, models=(*config.models, untrained))
    data_fps = {lang: DataFingerprints(f"sentences-{lang}", {}, "stats") for lang in config.languages}
    units = extract._pending_units(config, Store(config.output_root), {"tiny": str(tiny_bloom_dir)}, data_fps)
    assert {(spec.name, revision, language) for spec, revision, language, _, _ in units} == {
        ("tiny", revision, language) for revision in ("step-a", "step-b") for language in ("en", "fr")
    }


def test_a_local_model_is_fingerprinted_by_what_it_holds_not_where_it_is(tmp_path, tiny_bloom_dir):
    spec = ModelSpec("tiny", id=str(tiny_bloom_dir), revisions=("step-a", "step-b"))
    moved = shutil.copytree(tiny_bloom_dir, tmp_path / "moved")
    assert model_identity(spec, str(tiny_bloom_dir), "step-a") == model_identity(spec, str(moved), "step-a")
    assert model_identity(spec, str(moved), "step-a") != model_identity(spec, str(moved), "step-b")
