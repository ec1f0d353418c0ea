"""Activation extraction: sub-word alignment, mean pooling, layer convention, length limits."""

import numpy as np
import pytest
import torch

from probing.datasets import read_language
from probing.extraction import (
    LAYER_CONVENTION,
    WordActivationExtractor,
    encode_words,
    load_model,
    model_max_length,
    resolve_model,
    token_budget_batches,
)


@pytest.fixture(scope="module")
def sentences(ud_dir):
    from itertools import islice

    return [[w.form for w in s.words] for s in islice(read_language(ud_dir, "fr"), 12)]


def test_byte_level_bpe_words_tokenize_as_running_text(tiny_bloom_dir, sentences):
    loaded = load_model(str(tiny_bloom_dir), "step-a")
    tok = loaded.tokenizer
    for words in sentences:
        ((ids, word_ids),) = encode_words(tok, [words])
        assert ids == tok(" ".join(words), add_special_tokens=True)["input_ids"]
        assert sorted(set(word_ids) - {-1}) == list(range(len(words)))


def test_wordpiece_words_get_special_tokens_and_alignment(tiny_bert_dir, sentences):
    loaded = load_model(str(tiny_bert_dir))
    ((ids, word_ids),) = encode_words(loaded.tokenizer, [sentences[0]])
    assert ids == loaded.tokenizer(" ".join(sentences[0]))["input_ids"]
    assert word_ids[0] == -1 and word_ids[-1] == -1
    assert sorted(set(word_ids) - {-1}) == list(range(len(sentences[0])))


@pytest.mark.parametrize("which", ["bloom", "bert"])
def test_word_vector_is_the_mean_of_its_subword_vectors_from_a_direct_forward_pass(
    which, tiny_bloom_dir, tiny_bert_dir, sentences
):
    loaded = load_model(str(tiny_bloom_dir), "step-b") if which == "bloom" else load_model(str(tiny_bert_dir))
    layers = [0, 1, 2]
    result = WordActivationExtractor(loaded, layers, batch_tokens=64).extract(sentences)
    assert result.kept == list(range(len(sentences))) and not result.dropped
    offset = 0
    for words in sentences:
        ((ids, word_ids),) = encode_words(loaded.tokenizer, [words])
        with torch.inference_mode():
            hidden = loaded.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        word_ids = np.asarray(word_ids)
        for layer in layers:
            for w in range(len(words)):
                expected = hidden[layer][0, word_ids == w].mean(0).numpy()
                np.testing.assert_allclose(result.vectors[layer][offset + w], expected, rtol=1e-4, atol=1e-5)
        offset += len(words)
    assert result.vectors[0].shape == (offset, loaded.hidden_size)


def test_layer_convention_zero_is_the_embedding_output_and_l_the_output_of_block_l(tiny_bloom_dir, sentences):
    """LAYER_CONVENTION, checked against the modules themselves: layer 0 = the embedding output (after BLOOM's
    embedding layer norm), layer L = what block L returns; so paper 002's "layer L" (hidden_states[L-1]) is L-1."""
    assert LAYER_CONVENTION == (
        "layer 0 = embedding output, layer L = output of block L; paper 002's layer L is our L−1"
    )
    loaded = load_model(str(tiny_bloom_dir), "step-a")
    n = loaded.num_layers
    result = WordActivationExtractor(loaded, list(range(n + 1))).extract(sentences[:1])
    ((ids, word_ids),) = encode_words(loaded.tokenizer, sentences[:1])
    block_outputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: block_outputs.append(o[0][0])) for b in loaded.model.h]
    with torch.inference_mode():
        embedded = loaded.model.word_embeddings_layernorm(loaded.model.word_embeddings(torch.tensor([ids])))[0]
        loaded.model(input_ids=torch.tensor([ids]))
    for hook in hooks:
        hook.remove()
    with torch.inference_mode():
        block_outputs[-1] = loaded.model.ln_f(block_outputs[-1])  # transformers' last hidden state is after ln_f
    first_word = np.asarray(word_ids) == 0
    expected = [embedded, *block_outputs]
    assert len(expected) == n + 1
    for layer in range(n + 1):
        np.testing.assert_allclose(
            result.vectors[layer][0], expected[layer][first_word].mean(0).numpy(), rtol=1e-4, atol=1e-5
        )
    assert not np.allclose(result.vectors[1][0], expected[0][first_word].mean(0).numpy(), atol=1e-3)  # not L-1


def test_sentences_over_the_length_limit_are_dropped_and_counted(tiny_bert_dir, sentences):
    loaded = load_model(str(tiny_bert_dir))
    assert loaded.max_length == 512  # read from max_position_embeddings, not assumed
    long_sentence = sentences[0] * 60
    result = WordActivationExtractor(loaded, [1]).extract([sentences[1], long_sentence, sentences[2]])
    assert result.kept == [0, 2] and result.dropped == [1]
    assert result.vectors[1].shape[0] == len(sentences[1]) + len(sentences[2])


def test_layers_beyond_the_model_are_rejected(tiny_bloom_dir):
    loaded = load_model(str(tiny_bloom_dir), "step-a")
    with pytest.raises(ValueError, match=r"layers \[3\] out of range 0..2"):
        WordActivationExtractor(loaded, [1, 3])


def test_local_revisions_resolve_to_subdirectories(tiny_bloom_dir, tmp_path):
    assert resolve_model(str(tiny_bloom_dir), "step-a") == (str(tiny_bloom_dir / "step-a"), None)
    assert resolve_model("bigscience/bloom-560m-intermediate", "global_step1000") == (
        "bigscience/bloom-560m-intermediate",
        "global_step1000",
    )
    with pytest.raises(FileNotFoundError, match="step-zzz"):
        resolve_model(str(tiny_bloom_dir), "step-zzz")


def test_token_budget_batches_cover_every_index_once_within_budget():
    lengths = [5, 40, 7, 7, 100, 3, 12]
    batches = token_budget_batches(lengths, 40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 40


def test_model_max_length_prefers_the_config():
    class Config:
        max_position_embeddings = 512

    class Tokenizer:
        model_max_length = int(1e30)

    assert model_max_length(Config(), Tokenizer()) == 512
    assert model_max_length(object()) == 2048
