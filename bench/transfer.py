"""Benchmark: LoRA against full fine-tuning of the same model on the same batches of English UD POS data.

One run builds a random BLOOM (default 4 layers x 256, an 8k byte-level BPE tokenizer trained on the
English UD text), encodes the first English train sentences with first-sub-word UPOS labels, and
then trains each variant in a fresh child process over identical batches with the library's own
training step (`transfer.finetune.training_step`, AdamW, a token-classification head). A child
reports examples/s over the timed steps (after warm-up steps) and its peak RSS (``ru_maxrss``),
both before training and at the end, so the memory that training adds (gradients, optimizer state)
is visible. The children alternate (LoRA, full, LoRA, full, ...) and each variant's fastest run is
kept, since a shared machine's load drifts. One torch thread by default: on a shared 2-core
machine, waiting OpenMP threads swamp the timing of small ops. Both variants run without
quantization: 4-bit NF4 is a GPU setting (slow on CPU). Prints both, then last ``ratio: X`` =
LoRA examples/s / full examples/s.

    python bench/transfer.py [--steps 30] [--batch 16] [--repeats 2] [--threads 1] [--layers 4] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import UD_DIR, build_model  # noqa: E402  (needs REPO on the path)

WARMUP_STEPS = 3
VARIANTS = ("lora", "full")


def english_train(n: int):
    """The first ``n`` English UD train sentences with their UPOS ids."""
    from transfer.pos_data import read_tagged, split_files

    return read_tagged(split_files(UD_DIR, "en", "train"))[:n]


def run_child(variant: str, model_dir: Path, steps: int, batch_size: int, threads: int) -> dict:
    """Train one variant in this process over the fixed batches; its speed and peak memory."""
    import torch

    from transfer.examples import collate
    from transfer.finetune import FinetuneParams, make_optimizer, seed_everything, training_step
    from transfer.models import load_for_task
    from transfer.pos_data import UPOS_TAGS, encode_pos

    torch.set_num_threads(threads)
    params = FinetuneParams(lr=1e-4, quantization="none", full_finetune=variant == "full")
    seed_everything(0)
    model, tokenizer = load_for_task(str(model_dir), None, "token", UPOS_TAGS, params, "cpu")
    model.train()
    examples = encode_pos(tokenizer, english_train((steps + WARMUP_STEPS) * batch_size), params.max_length)
    batches = [
        collate(examples[i : i + batch_size], tokenizer.pad_token_id) for i in range(0, len(examples), batch_size)
    ]
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    optimizer = make_optimizer(model, params)
    for batch in batches[:WARMUP_STEPS]:
        training_step(model, optimizer, batch, params.max_grad_norm)
    began = time.perf_counter()
    for batch in batches[WARMUP_STEPS:]:
        training_step(model, optimizer, batch, params.max_grad_norm)
    seconds = time.perf_counter() - began
    return {
        "examples": steps * batch_size,
        "tokens": sum(int(b["attention_mask"].sum()) for b in batches[WARMUP_STEPS:]),
        "seconds": seconds,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
        "loaded_kib": loaded_kib,
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def in_fresh_process(variant: str, model_dir: Path, steps: int, batch_size: int, threads: int) -> dict:
    """``run_child`` in a new Python process, so that its peak RSS is its own."""
    command = [sys.executable, __file__, "--child", variant, "--model", str(model_dir)]
    command += ["--steps", str(steps), "--batch", str(batch_size), "--threads", str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.model, args.steps, args.batch, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        texts = [" ".join(s.words) for s in english_train(4000)]
        model_dir = build_model(Path(tmp) / "model", texts, args.layers, args.hidden)
        runs = [
            (v, in_fresh_process(v, model_dir, args.steps, args.batch, args.threads))
            for _ in range(args.repeats)
            for v in VARIANTS
        ]
    lora, full = (min((r for name, r in runs if name == v), key=lambda r: r["seconds"]) for v in VARIANTS)
    print(
        f"model: BLOOM {args.layers} layers x {args.hidden}, 8k BPE, token-classification head over 17 UPOS; "
        f"{args.steps} timed steps (+{WARMUP_STEPS} warm-up) x batch {args.batch} of en UD train sentences "
        f"({lora['tokens']} tokens), same batches for both; "
        f"{args.threads} thread(s), fastest of {args.repeats} alternating runs each"
    )
    for name, r in (("LoRA r=8 (query_key_value) + head", lora), ("full fine-tuning", full)):
        print(
            f"{name:34s} {r['examples'] / r['seconds']:7.1f} examples/s ({r['seconds']:.2f} s); "
            f"trainable {r['trainable']:,} of {r['total']:,}; peak RSS {r['peak_kib'] / 1024:.0f} MiB "
            f"(before training {r['loaded_kib'] / 1024:.0f}, so training adds "
            f"{(r['peak_kib'] - r['loaded_kib']) / 1024:.0f})"
        )
    print(f"ratio: {(lora['examples'] / lora['seconds']) / (full['examples'] / full['seconds']):.3f}")


if __name__ == "__main__":
    main()
