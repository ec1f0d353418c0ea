"""Benchmark: BLOOM training steps with transformers' GELU against the lean one (`probing.bloom_gelu`).

One run builds two copies of one random BLOOM (default: the demo's pre-training model, 4 layers x 256,
an 8,000-word vocabulary, batches of 24 x 64 tokens), keeps transformers' GELU in one and swaps the lean
one into the other, and trains both on the same batches with the same AdamW, alternating a step of each
(after warm-up steps), so both see the machine's load alike. Every step's loss must be the same float
in both (asserted: the swap changes speed, not results). Also times the GELU alone, forward and
backward, on the MLP's hidden states of one batch (tokens x 4d).

Prints the median seconds per step of each, then last ``ratio: X`` = transformers' step time / the lean
step time (target: above 1; the GELU is ~18% of a step on 2 CPUs).

    python bench/bloom_gelu.py [--steps 20] [--layers 4] [--hidden 256] [--batch 24] [--seq 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WARMUP_STEPS = 3


def gelu_alone(tokens: int, width: int, repeats: int) -> dict[str, float]:
    """Median seconds of forward + backward of each GELU on a (tokens x width) tensor."""
    import torch
    from transformers.models.bloom.modeling_bloom import bloom_gelu_back, bloom_gelu_forward

    from probing.bloom_gelu import gelu_backward, gelu_forward

    x, grad = torch.randn(tokens, width) * 3, torch.randn(tokens, width)
    variants = {
        "transformers": lambda: bloom_gelu_back(grad, (x,)).add_(bloom_gelu_forward(x)),
        "lean": lambda: gelu_backward(grad, x).add_(gelu_forward(x)),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    from probing.bloom_gelu import use_lean_gelu

    torch.set_num_threads(args.threads)
    config = BloomConfig(vocab_size=args.vocab, hidden_size=args.hidden, n_layer=args.layers, n_head=8)
    models = {}
    for name in ("transformers", "lean"):
        torch.manual_seed(0)
        models[name] = BloomForCausalLM(config).train()
    assert use_lean_gelu(models["lean"]) == args.layers
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=2e-3, betas=(0.9, 0.95)) for name, m in models.items()}
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(WARMUP_STEPS + args.steps):
        batch = torch.randint(0, args.vocab, (args.batch, args.seq), generator=generator)
        losses = {}
        for name, model in models.items():
            torch.manual_seed(step)  # the same dropout in both
            began = time.perf_counter()
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            losses[name] = loss.item()
            if step >= WARMUP_STEPS:
                times[name].append(time.perf_counter() - began)
        assert losses["transformers"] == losses["lean"], (step, losses)
    alone = gelu_alone(args.batch * args.seq, 4 * args.hidden, args.steps)
    print(
        f"BLOOM {args.layers} x {args.hidden}, batch {args.batch} x {args.seq}, {args.threads} threads, "
        f"{args.steps} steps each, every loss identical"
    )
    for name in models:
        print(
            f"{name:12s}: {statistics.median(times[name]):.4f} s a step; GELU forward + backward alone "
            f"{1e3 * alone[name]:.1f} ms"
        )
    print(f"GELU alone: {alone['transformers'] / alone['lean']:.2f}x")
    print(f"ratio: {statistics.median(times['transformers']) / statistics.median(times['lean']):.3f}")


if __name__ == "__main__":
    main()
