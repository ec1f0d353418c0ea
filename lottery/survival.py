"""Do a ranking's top neurons keep their weights in a sub-network? A link between probing and pruning.

Neuron j of layer L (the output of block L, the residual stream) is written by the rows j of block L's
residual-writing matrices: the attention output projection and the MLP's down projection (BLOOM
``self_attention.dense`` and ``mlp.dense_4h_to_h``; BERT/XLM-R ``attention.output.dense`` and
``output.dense``; `RESIDUAL_WRITERS`). Its *survival* in a mask is the share of those rows' weights the
mask keeps. A ranking's top-k survival is the mean over its k neurons; a uniformly random k-set of
neurons has, in expectation, the mean survival over all d neurons, which is the null it is compared with.
Numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lottery.prunable import PrunableWeight

#: Name endings of the matrices (``nn.Linear``, weight shape (out, in)) that write a block's residual output.
RESIDUAL_WRITERS: tuple[str, ...] = ("attention.dense.weight", "output.dense.weight", "dense_4h_to_h.weight")


def residual_writers(weights: Sequence[PrunableWeight], layer: int, hidden_size: int) -> list[PrunableWeight]:
    """Block ``layer``'s matrices that write its output, as (hidden_size, in) nn.Linear weights."""
    return [
        w
        for w in weights
        if w.layer == layer and w.name.endswith(RESIDUAL_WRITERS) and len(w.shape) == 2 and w.shape[0] == hidden_size
    ]


def neuron_survival(
    masks: Mapping[str, np.ndarray], weights: Sequence[PrunableWeight], layer: int, hidden_size: int
) -> np.ndarray:
    """Per neuron of layer ``layer`` (≥ 1), the share of its writing weights that ``masks`` keep (shape (d,)).

    ValueError when block ``layer`` has no residual-writing matrix among ``weights`` (layer 0, the
    embeddings, has none: it is not pruned).
    """
    writers = residual_writers(weights, layer, hidden_size)
    if not writers:
        raise ValueError(f"block {layer} has no residual-writing matrix of output size {hidden_size} to read")
    rows = np.concatenate([np.asarray(masks[w.name], dtype=bool).reshape(w.shape) for w in writers], axis=1)
    return rows.mean(axis=1)


def top_k_survival(survival: np.ndarray, ranking: Sequence[int], k: int) -> float:
    """The mean survival of a ranking's first k neurons."""
    if not 1 <= k <= len(survival):
        raise ValueError(f"k must be in 1..{len(survival)}, got {k}")
    return float(np.mean(survival[np.asarray(ranking[:k], dtype=int)]))
