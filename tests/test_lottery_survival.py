"""Neuron survival: which weights write a neuron, and the share a mask keeps, on a planted mask."""

import numpy as np
import pytest
from transformers import BloomConfig, BloomForCausalLM

from lottery.prunable import prunable_weights
from lottery.survival import neuron_survival, residual_writers, top_k_survival


@pytest.fixture(scope="module")
def bloom():
    model = BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=2, n_head=2))
    return model, prunable_weights(model)


def test_the_writers_are_the_attention_output_and_the_mlp_down_projection(bloom):
    _, weights = bloom
    names = [w.name for w in residual_writers(weights, 2, 16)]
    assert names == ["transformer.h.1.self_attention.dense.weight", "transformer.h.1.mlp.dense_4h_to_h.weight"]


def test_survival_is_the_kept_share_of_each_neurons_rows_and_top_k_reads_the_ranking(bloom):
    _, weights = bloom
    masks = {w.name: np.ones(w.shape, dtype=bool) for w in weights}
    attention, down = residual_writers(weights, 1, 16)
    masks[attention.name][3, :] = False  # neuron 3 loses its 16 attention weights of 16 + 64
    masks[down.name][5, :32] = False  # neuron 5 loses half of its 64 MLP weights
    masks["transformer.h.1.mlp.dense_h_to_4h.weight"][:] = False  # not a writer of the residual: no effect
    survival = neuron_survival(masks, weights, 1, 16)
    expected = np.ones(16)
    expected[3], expected[5] = 64 / 80, 48 / 80
    np.testing.assert_allclose(survival, expected)
    assert top_k_survival(survival, [3, 5, 0], 2) == pytest.approx((64 / 80 + 48 / 80) / 2)
    assert top_k_survival(survival, [0, 1], 2) == 1.0
    with pytest.raises(ValueError, match="no residual-writing matrix"):
        neuron_survival(masks, weights, 0, 16)
    with pytest.raises(ValueError, match="k must be in"):
        top_k_survival(survival, [0], 0)
