"""Benchmark: the whole extraction path against a bare forward pass, and its memory as the corpus grows.

In one run, on the same model and the same batches of real UD sentences:
* full path: tokenize + forward + pool + write Parquet (the `CheckpointWorker` of `ray_jobs.extract`,
  run in-process so that Ray's scheduling is not what is measured), with the configured defaults
  (on CPU: sequential; on a GPU: bfloat16 compute, tokenization and writing overlapped with the forward pass);
* the same full path with the other overlap setting, to measure what the background thread costs
  or gains on this machine;
* bare: only the batched forward passes (layers read at their hook points) over identical padded batches,
  in the same compute dtype on the same device.
Each variant runs ``--repeats`` times, interleaved, and its best time counts (the machine may be
shared). Prints tokens/s of each, then the peak RSS of the full path (in fresh processes) over 1x
and 4x the corpus, and last ``ratio: X`` = full tokens/s ÷ bare tokens/s (target >= 0.9 on CPU, >= 0.8 on a GPU;
RSS growth <= 10%). ``--gpus 1`` runs everything on the GPU.

    python bench/extract.py [--sentences 2000] [--layers 6] [--hidden 512] [--gpus 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import UD_DIR, build_model  # noqa: E402  (needs REPO on the path)


def corpus(n: int) -> list:
    """The surface texts (`SurfaceText`) of the first n English sentences."""
    from probing.datasets import read_language

    return [s.surface for s in islice(read_language(UD_DIR, "en"), n)]


def study_config(root: Path, model_dir: Path, layers: list[int], gpus: int, overlap: bool | None = None):
    from ray_jobs.config import ExtractionConfig, ModelSpec, Resources, StudyConfig

    return StudyConfig(
        name="bench",
        languages=("en",),
        attributes=("POS",),
        layers=tuple(layers),
        models=(ModelSpec(name="bench", id=str(model_dir)),),
        ud_dir=str(UD_DIR),
        output_root=str(root),
        extraction=ExtractionConfig(overlap_tokenization=overlap, resources=Resources(num_cpus=2, num_gpus=gpus)),
    )


def run_full(
    model_dir: Path, sentences: list, root: Path, layers: list[int], gpus: int = 0, overlap: bool | None = None
) -> tuple[float, int]:
    """Seconds and tokens of the whole extraction path over the sentences, in chunks as the job reads them."""
    import numpy as np

    from analysis.store import Store
    from ray_jobs.extract import CHUNK_SENTENCES, CheckpointWorker

    config = study_config(root, model_dir, layers, gpus, overlap)
    store = Store(root)
    worker = CheckpointWorker(str(model_dir), "main", layers, config, store)
    paths = {
        layer: store.path("activations", model="bench", checkpoint="main", layer=layer, language="en")
        for layer in layers
    }
    began = time.perf_counter()
    worker.begin(paths, {layer: "bench" for layer in layers})
    chunks = (
        (np.arange(start, start + len(chunk)), chunk)
        for start in range(0, len(sentences), CHUNK_SENTENCES)
        if (chunk := sentences[start : start + CHUNK_SENTENCES])
    )
    for _ in worker.write_chunks(chunks):
        pass
    stats = worker.finish()
    return time.perf_counter() - began, stats["tokens"]


def run_bare(model_dir: Path, sentences: list, layers: list[int], gpus: int = 0) -> tuple[float, int]:
    """Seconds and tokens of the forward passes alone, over the same chunks and batches, on the same
    device in the same compute dtype (synchronised at the end, as the full path is by its copies)."""
    import torch

    from probing.extraction import WordActivationExtractor, compute_torch_dtype, encode_text, token_budget_batches
    from probing.models import load_model
    from ray_jobs.extract import CHUNK_SENTENCES, actor_device

    torch.set_num_threads(2)
    config = study_config(Path("unused"), model_dir, layers, gpus).extraction
    device = torch.device(actor_device(gpus, torch.cuda.is_available()))
    dtype = compute_torch_dtype(config.params.compute_dtype, device)
    extractor = WordActivationExtractor(load_model(str(model_dir), "main", str(device), dtype), layers)
    batches = []
    for start in range(0, len(sentences), CHUNK_SENTENCES):
        encoded = encode_text(extractor.loaded.tokenizer, sentences[start : start + CHUNK_SENTENCES])
        ids = [e.ids for e in encoded]
        batches += [[ids[i] for i in b] for b in token_budget_batches([len(x) for x in ids], extractor.batch_tokens)]
    began = time.perf_counter()
    for batch in batches:
        extractor.forward(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began, sum(len(x) for b in batches for x in b)


def peak_rss_child(model_dir: Path, n: int, repeat: int, layers: list[int], gpus: int) -> int:
    """Peak RSS (KiB) of a fresh process running the full path over ``repeat`` copies of the corpus (host
    memory, also when the forward pass runs on a GPU)."""
    code = (
        f"import sys, json, resource, tempfile; sys.path.insert(0, {str(REPO)!r}); "
        f"import bench.extract as b; from pathlib import Path; s = b.corpus({n}) * {repeat}; "
        f"b.run_full(Path({str(model_dir)!r}), s, Path(tempfile.mkdtemp()), {layers}, {gpus}); "
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--gpus", type=int, default=0, help="1: actor and bare pass on the GPU")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each variant; best is kept")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    sentences = corpus(args.sentences)
    layers = [args.layers // 2, args.layers]
    extraction = study_config(Path("unused"), Path("unused"), layers, args.gpus).extraction
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "model", [s.text for s in sentences], args.layers, args.hidden)
        run_bare(model_dir, sentences[:64], layers, args.gpus)  # warm-up
        full_s, other_s, bare_s = [], [], []
        for repeat in range(args.repeats):  # interleaved, best of each: other work on the machine is noise
            seconds, full_tokens = run_full(model_dir, sentences, Path(tmp) / f"full{repeat}", layers, args.gpus)
            full_s.append(seconds)
            root = Path(tmp) / f"other{repeat}"
            other_s.append(run_full(model_dir, sentences, root, layers, args.gpus, not extraction.overlap)[0])
            seconds, bare_tokens = run_bare(model_dir, sentences, layers, args.gpus)
            bare_s.append(seconds)
        assert full_tokens == bare_tokens, (full_tokens, bare_tokens)
        full_s, other_s, bare_s = min(full_s), min(other_s), min(bare_s)
        full_rate, bare_rate = full_tokens / full_s, bare_tokens / bare_s
        print(
            f"model: BLOOM {args.layers} layers x {args.hidden}, layers stored {layers}; "
            f"corpus: {len(sentences)} en sentences, {full_tokens} tokens; "
            f"device: {'cuda' if args.gpus else 'cpu'}, compute {extraction.params.compute_dtype}; "
            f"best of {args.repeats}"
        )
        overlap = "on" if extraction.overlap else "off"
        other = "off" if extraction.overlap else "on"
        print(f"full path, overlap {overlap} (default):  {full_rate:,.0f} tokens/s ({full_s:.2f} s)")
        print(f"full path, overlap {other}:             {full_tokens / other_s:,.0f} tokens/s ({other_s:.2f} s)")
        print(f"bare batched forward:                 {bare_rate:,.0f} tokens/s ({bare_s:.2f} s)")
        small = max(200, args.sentences // 4)
        rss1 = peak_rss_child(model_dir, small, 1, layers, args.gpus)
        rss4 = peak_rss_child(model_dir, small, 4, layers, args.gpus)
        print(
            f"peak RSS, full path: {rss1 / 1024:.0f} MiB for {small} sentences, {rss4 / 1024:.0f} MiB for 4x "
            f"({100 * (rss4 / rss1 - 1):+.1f}%; target <= +10%)"
        )
        print(f"ratio: {full_rate / bare_rate:.3f}")


if __name__ == "__main__":
    main()
