"""Benchmark: an intervention sweep with the layer-L cache against full forward passes.

One run builds a random BLOOM (default 8 layers x 256, an 8k byte-level BPE tokenizer trained on the
English UD text), the English Number words of the UD treebanks and their test-split batches
(`probing.intervention_data.intervention_batches`, causal readout: the next word), and sweeps
translation over ``--rankings`` random neuron orders x ``--ks`` values of k at layer ``--layer``
(default: half the depth) three times:

* cached: each batch, cut after the last column a word is read at (`probing.interventions.read_prefix`:
  in a causal LM nothing read sees the columns after it), runs once up to layer L
  (`probing.interventions.cache_batches`), then every (ranking, k) edits the cached state and re-runs only
  the blocks after L (`probing.interventions.effect`);
* full, same batches: every (ranking, k) runs the whole model on the cut batches, the edit written at layer L
  by a hook (what the cache alone saves: at most 2x at half the depth, where the blocks after L are half
  the blocks and the embedding, the LM head at the read positions and the readout are paid either way);
* full: every (ranking, k) runs the whole model on the batches as built, the edit written by a hook (what a
  sweep without this module's design does).

All three read the same words the same way; the benchmark checks that their counts are identical (and the
mean change in log-probability equal within 1e-5 for the uncut batches, whose shapes round differently).
It prints the three times, the share of token positions the cut keeps, the cache's own ratio, then last
``ratio: X`` = full / cached seconds (target: at least 2 at half the depth). Times are CPU seconds of this
process (one torch thread unless ``--threads``), so the neighbours' load on a shared machine does not count.

    python bench/intervene.py [--layers 8] [--hidden 256] [--layer 4] [--rankings 3] [--ks 10] [--words 200]
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


def full_effect(lm, layer: int, batches: list, edit, lexicon, baselines: list):
    """The counts of one edit with the whole model run on every batch, the edit written at layer L by a hook."""
    import torch

    from probing.interventions import Counts, edit_state
    from probing.models import hook_name
    from probing.readout import read_words

    counts = Counts()
    with torch.inference_mode():
        for batch, baseline in zip(batches, baselines, strict=True):
            with lm.points.hooks([(hook_name(layer), lambda hidden, b=batch: edit_state(hidden, b.sites, edit))]):
                last = lm.base(**batch.inputs).last_hidden_state
            read = read_words(lm, last, batch.targets)
            counts.add(read, baseline, batch.targets.gold, lexicon, "Number")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layer", type=int, default=None, help="the layer edited (default: half the depth)")
    parser.add_argument("--rankings", type=int, default=3)
    parser.add_argument("--ks", type=int, default=10, help="how many k, evenly spaced over the default grid")
    parser.add_argument("--words", type=int, default=200, help="test words read")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from probing.datasets import DataParams, build_language
    from probing.intervention_data import intervention_batches
    from probing.interventions import Edit, cache_batches, effect
    from probing.lexicon import Lexicon
    from probing.readout import load_language_model
    from probing.translation import default_k_grid, translation_shifts

    torch.set_num_threads(args.threads)
    layer = args.layer if args.layer is not None else args.layers // 2
    data = build_language(UD_DIR, "en", ["Number"], DataParams(max_sentences_per_language=2000))
    words = data.datasets["Number"]
    values = sorted(set(words.column("value").to_pylist()))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(
            Path(tmp) / "model", data.sentences.column("text").to_pylist(), args.layers, args.hidden
        )
        lm = load_language_model(str(model_dir), None)
    lexicon = Lexicon.from_ud(UD_DIR, "en")
    batches = intervention_batches(lm, data.sentences, words, "test", values, args.words, ("bench",))
    rng = np.random.default_rng(0)
    shifts = torch.from_numpy(translation_shifts(rng.normal(size=(len(values), args.hidden)), values))
    grid = default_k_grid(args.hidden)
    ks = [grid[i] for i in np.linspace(0, len(grid) - 1, args.ks).round().astype(int)]
    edits = [
        Edit.top_k("translation", rng.permutation(args.hidden), k, 8.0, shifts)
        for _ in range(args.rankings)
        for k in ks
    ]
    n_tokens = sum(int(b.inputs["attention_mask"].sum()) for b in batches)
    print(
        f"BLOOM {args.layers} x {args.hidden}, layer {layer}; {len(batches)} batches, {n_tokens} tokens, "
        f"{sum(len(b.targets.gold) for b in batches)} words read; {len(edits)} edits ({args.rankings} rankings x {ks})"
    )

    began = time.process_time()
    cache, cached = cache_batches(lm, layer, batches)
    cached_counts = [effect(lm, cache, cached, edit, lexicon, "Number").row() for edit in edits]
    cached_seconds = time.process_time() - began

    cut = [c.batch for c in cached]
    cut_seconds, cut_counts = full_sweep(lm, layer, cut, edits, lexicon)
    whole = [b.to(lm.device) for b in batches]
    full_seconds, full_counts = full_sweep(lm, layer, whole, edits, lexicon)
    if cut_counts != cached_counts:
        raise AssertionError("the cached sweep's counts differ from the full forward passes' on the same batches")
    for ours, theirs in zip(cached_counts, full_counts, strict=True):
        delta = ours.pop("mean_delta_logp") - theirs.pop("mean_delta_logp")
        if ours != theirs or not abs(delta) < 1e-5:
            raise AssertionError(f"the cut batches read otherwise than the whole ones: {ours} vs {theirs}")
    kept = sum(b.inputs["input_ids"].numel() for b in cut) / sum(b.inputs["input_ids"].numel() for b in whole)
    print(f"cached sweep: {cached_seconds:.2f} CPU s (one pass up to layer {layer} per batch, then blocks > {layer})")
    print(f"full passes, same cut batches: {cut_seconds:.2f} CPU s (all {args.layers} blocks per edit and batch)")
    print(f"full passes, whole batches: {full_seconds:.2f} CPU s; counts identical in all three")
    print(f"the cut after the last read column keeps {kept:.1%} of the padded token positions")
    print(f"cache alone (same cut batches): {cut_seconds / cached_seconds:.2f}")
    print(f"ratio: {full_seconds / cached_seconds:.2f}")


def full_sweep(lm, layer: int, batches: list, edits: list, lexicon) -> tuple[float, list[dict]]:
    """CPU seconds and count rows of every edit by full forward passes, with the unedited readout they are
    compared with (one pass per batch here too)."""
    import torch

    from probing.readout import read_words

    began = time.process_time()
    with torch.inference_mode():
        baselines = [read_words(lm, lm.base(**b.inputs).last_hidden_state, b.targets) for b in batches]
    counts = [full_effect(lm, layer, batches, edit, lexicon, baselines).row() for edit in edits]
    return time.process_time() - began, counts


if __name__ == "__main__":
    main()
