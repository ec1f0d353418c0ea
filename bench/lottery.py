"""Benchmark: masked against dense fine-tuning on the same batches, and all pairwise mask overlaps at BERT-base size.

Training: one run builds a random BLOOM (default 4 layers x 256, an 8k byte-level BPE tokenizer
trained on the English UD text) loaded for the lottery's POS task, and trains it with the lottery's
own loop (`lottery.training.train_steps`: AdamW, full fine-tuning, seeded batches, so both variants
see identical batches) either dense or under a 50% global magnitude mask of θ₀, which the loop
enforces on gradients and weights at every step. Each timed run starts from θ₀ (rewound); the
variants alternate (masked, dense, masked, ...) after a warm-up run, and each keeps its fastest run.
Throughput is counted per second of this process's CPU time, and also shown per wall-clock second:
on a shared machine the wall clock measures the neighbours' load as much as the training (with one
torch thread, the default, CPU time is the training's own work; waiting OpenMP threads would swamp
the timing of small ops on a shared 2-core machine).

Overlap: 11 random 50% masks over the prunable matrices of a BERT-base (12 layers x query, key,
value, attention output 768x768, intermediate 768x3072, output 3072x768: 84,934,656 weights), stored
packed as the `masks` table holds them; the time is that of `lottery.overlap.all_pair_overlap_counts`
over them, from packed bits to the per-tensor counts of all 55 pairs (target: 2 s on 2 CPUs).

Prints both, then last ``ratio: X`` = masked / dense examples per CPU second (target: at least 0.9).

    python bench/lottery.py [--steps 30] [--batch 16] [--repeats 3] [--threads 1] [--layers 4] [--hidden 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import UD_DIR, build_model  # noqa: E402  (needs REPO on the path)

#: The prunable matrices of one BERT-base layer: query, key, value, attention output, intermediate, output.
BERT_BASE_LAYER = ((768, 768),) * 4 + ((3072, 768), (768, 3072))
BERT_BASE_LAYERS = 12
LANGUAGES = 11
WARMUP_STEPS = 3


def time_training(model_dir: Path, steps: int, batch_size: int, repeats: int, threads: int) -> dict:
    """Examples/s of dense and of masked (50%) fine-tuning over the same batches, fastest of ``repeats`` each."""
    import dataclasses

    import torch

    from lottery.imp import prepare, rewind
    from lottery.masks import magnitude_mask
    from lottery.params import LotteryParams
    from lottery.prunable import prunable_parameters
    from lottery.training import train_steps

    torch.set_num_threads(threads)
    params = LotteryParams(steps_per_round=steps, lr=1e-4, batch_size=batch_size, max_train_examples=steps * batch_size)
    run = prepare("pos", str(model_dir), None, UD_DIR, "en", dataclasses.replace(params, max_eval_examples=1))
    mask = magnitude_mask(prunable_parameters(run.learner.model), 0.5)
    variants = {"masked": mask, "dense": None}
    train_steps(run.learner, run.data.train, mask, dataclasses.replace(params, steps_per_round=WARMUP_STEPS))
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, m in variants.items():
            rewind(run.learner.model, run.theta0)
            began = time.process_time()
            wall[name].append(train_steps(run.learner, run.data.train, m, params).seconds)
            cpu[name].append(time.process_time() - began)
    weights = prunable_parameters(run.learner.model)
    return {
        "wall": {name: min(s) for name, s in wall.items()},
        "cpu": {name: min(s) for name, s in cpu.items()},
        "prunable": sum(w.numel() for w in weights.values()),
        "total": sum(p.numel() for p in run.learner.model.parameters()),
    }


def bert_base_masks(n: int, seed: int = 0) -> dict[str, dict]:
    """``n`` random packed 50% masks over BERT-base's prunable matrices (random bytes are random 50% masks)."""
    from lottery.overlap import popcount
    from lottery.packing import PackedTensor, mask_checksum

    rng = np.random.default_rng(seed)
    masks = {}
    for index in range(n):
        packed = {}
        for layer in range(BERT_BASE_LAYERS):
            for position, shape in enumerate(BERT_BASE_LAYER):
                bits = rng.integers(0, 256, size=shape[0] * shape[1] // 8, dtype=np.uint8).tobytes()
                kept = int(popcount(np.frombuffer(bits, dtype=np.uint64)).sum())
                packed[f"encoder.layer.{layer}.{position}.weight"] = PackedTensor(
                    shape, kept, bits, mask_checksum(shape, bits)
                )
        masks[f"lang{index}"] = packed
    return masks


def time_overlaps(repeats: int) -> dict:
    """Seconds (fastest of ``repeats``) to count all pairwise overlaps of 11 BERT-base masks, per tensor."""
    from lottery.overlap import all_pair_overlap_counts

    masks = bert_base_masks(LANGUAGES)
    timings, pairs = [], {}
    for _ in range(repeats):
        began = time.perf_counter()
        pairs = all_pair_overlap_counts(masks)
        timings.append(time.perf_counter() - began)
    first = next(iter(masks.values()))
    return {
        "seconds": min(timings),
        "pairs": len(pairs),
        "rows": sum(len(counts) for counts in pairs.values()),
        "weights": sum(p.numel for p in first.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    from transfer.pos_data import read_tagged, split_files

    overlap = time_overlaps(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        texts = [" ".join(s.words) for s in read_tagged(split_files(UD_DIR, "en", "train"))[:4000]]
        model_dir = build_model(Path(tmp) / "model", texts, args.layers, args.hidden)
        training = time_training(model_dir, args.steps, args.batch, args.repeats, args.threads)
    print(
        f"overlap: {overlap['pairs']} pairs of {LANGUAGES} packed masks over BERT-base's {overlap['weights']:,} "
        f"prunable weights -> {overlap['rows']:,} per-tensor count rows in {overlap['seconds']:.3f} s "
        f"(fastest of {args.repeats})"
    )
    print(
        f"model: BLOOM {args.layers} layers x {args.hidden}, 8k BPE, POS head; {training['prunable']:,} prunable of "
        f"{training['total']:,} weights; {args.steps} timed steps x batch {args.batch} of en UD train sentences, "
        f"same batches for both; {args.threads} thread(s), fastest of {args.repeats} alternating runs each"
    )
    examples = args.steps * args.batch
    for name in ("dense", "masked"):
        label = "dense fine-tuning" if name == "dense" else "masked fine-tuning (50% pruned)"
        print(
            f"{label:32s} {examples / training['cpu'][name]:7.1f} examples per CPU second "
            f"({training['cpu'][name]:.2f} s); {examples / training['wall'][name]:7.1f} examples/s wall clock"
        )
    print(f"ratio: {training['cpu']['dense'] / training['cpu']['masked']:.3f}")


if __name__ == "__main__":
    main()
