"""The weights a lottery ticket prunes: the 2-D weight matrices of the transformer blocks, read from the module tree.

A weight is prunable when it is the ``weight`` of a linear map (``torch.nn.Linear``, or transformers'
``Conv1D`` that GPT-2 uses) inside one of the model's transformer blocks: BERT/XLM-R's query, key,
value, attention output, intermediate and output; BLOOM's query_key_value, self_attention.dense,
dense_h_to_4h and dense_4h_to_h; GPT-2's c_attn, c_proj, c_fc. Embeddings, layer norms, biases
and everything outside the blocks (pooler, task heads, LM heads) are never pruned (Foroutan et al.
2022; Chen et al. 2020). Nothing is named per architecture: the blocks are the one outermost
``ModuleList`` with ``config.num_hidden_layers`` entries, and the linear maps are found by type.

Each weight carries the layer it belongs to under the project's layer convention (layer L = the
output of block L, counted from 1), so that masks line up with the probed layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.pytorch_utils import Conv1D

from probing.models import find_blocks

#: Module types whose ``weight`` is a prunable 2-D matrix.
LINEAR_TYPES: tuple[type[torch.nn.Module], ...] = (torch.nn.Linear, Conv1D)


@dataclass(frozen=True)
class PrunableWeight:
    """One prunable matrix: its parameter name in the model, its layer (block number, from 1) and its shape."""

    name: str
    layer: int
    shape: tuple[int, ...]


def prunable_weights(model: torch.nn.Module) -> list[PrunableWeight]:
    """The prunable matrices of the model, block by block in module order; ValueError if there are none."""
    prefix, blocks = find_blocks(model)
    found = []
    for index, block in enumerate(blocks):
        for name, module in block.named_modules():
            if isinstance(module, LINEAR_TYPES) and module.weight.dim() == 2:
                full = f"{prefix}.{index}.{name}.weight"
                found.append(PrunableWeight(full, index + 1, tuple(module.weight.shape)))
    if not found:
        raise ValueError(f"{type(model).__name__}: no linear maps inside its transformer blocks")
    return found


def prunable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The prunable matrices of the model by parameter name (the keys of a `lottery.masks.Mask`)."""
    return {w.name: model.get_parameter(w.name) for w in prunable_weights(model)}
