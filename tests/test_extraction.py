"""Activation extraction: surface text in, sub-words mapped by offsets, mean pooling, layer convention, limits."""

import threading
from itertools import islice

import numpy as np
import pytest
import torch

from probing.conllu_io import SurfaceText, read_conllu
from probing.extraction import (
    WordActivationExtractor,
    compute_torch_dtype,
    encode_text,
    storage_values,
    subword_word_pairs,
    token_budget_batches,
)
from probing.models import LAYER_CONVENTION, load_model

LANGUAGES = ("pt", "fr", "ca", "zh")


@pytest.fixture(scope="module")
def real(ud_dir):
    """Per language: (path of its dev file, 5 sentences; for pt/fr/ca ones with a multi-word token)."""
    chosen = {}
    for language in LANGUAGES:
        [path] = sorted((ud_dir / language).glob("*-dev.conllu"))
        sentences = (s for s in read_conllu(path) if language == "zh" or any(len(t.words) > 1 for t in s.tokens))
        chosen[language] = (path, list(islice(sentences, 5)))
    return chosen


@pytest.fixture(scope="module")
def models(tiny_bloom_dir, tiny_bert_dir):
    return {"bloom": load_model(str(tiny_bloom_dir), "step-b"), "bert": load_model(str(tiny_bert_dir))}


@pytest.fixture(scope="module")
def sentences(real):
    return [s.surface for _, group in real.values() for s in group]


def _text_line(sentence) -> str:
    """The '# text' line of the sentence's comment block, read from the file without the parser."""
    with open(sentence.path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")[sentence.line - 1 :]
    block = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    [text] = [line[len("# text = ") :] for line in block if line.startswith("# text = ")]
    return text


def _expected_vectors(loaded, sentence, layer: int) -> np.ndarray:
    """Per word, the mean over the sub-words overlapping its token, from a direct forward pass of the text."""
    enc = loaded.tokenizer(
        sentence.text, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = loaded.model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states[layer][0]
    offsets, special = enc["offset_mapping"][0].tolist(), enc["special_tokens_mask"][0].tolist()
    rows = []
    for word in sentence.words:
        token = sentence.tokens[word.token]
        picked = [i for i, (s, e) in enumerate(offsets) if not special[i] and s < token.end and token.start < e]
        assert picked, (sentence.text, token.form)
        rows.append(hidden[picked].mean(0).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("which", ["bloom", "bert"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_text_fed_to_the_tokenizer_is_the_sentences_text_line(models, real, which, language):
    _, group = real[language]
    tokenizer = models[which].tokenizer
    for sentence, encoded in zip(group, encode_text(tokenizer, [s.surface for s in group]), strict=True):
        raw = _text_line(sentence)
        assert sentence.surface.text == raw.strip()
        assert encoded.ids == tokenizer(raw.strip())["input_ids"]


@pytest.mark.parametrize("language", ["fr", "zh"])
def test_space_after_no_words_are_joined(models, real, language):
    """Joining the words with spaces would tokenize differently: the surface text has none before '.' or between
    Chinese words."""
    tokenizer = models["bloom"].tokenizer
    _, group = real[language]
    differs = [
        encode_text(tokenizer, [s.surface])[0].ids != tokenizer(" ".join(t.form for t in s.tokens))["input_ids"]
        for s in group
    ]
    assert all(differs)


@pytest.mark.parametrize("which", ["bloom", "bert"])
def test_a_word_vector_is_the_mean_of_its_surface_tokens_subwords_from_a_direct_forward_pass(models, real, which):
    loaded = models[which]
    group = [s for _, g in real.values() for s in g]
    layers = [0, 1, 2]
    result = WordActivationExtractor(loaded, layers, batch_tokens=64).extract([s.surface for s in group])
    assert result.kept == list(range(len(group))) and not result.dropped
    offset, n_mwt = 0, 0
    for sentence in group:
        n = len(sentence.words)
        for layer in layers:
            expected = _expected_vectors(loaded, sentence, layer)
            np.testing.assert_allclose(result.vectors[layer][offset : offset + n], expected, rtol=1e-4, atol=1e-5)
        for token in sentence.tokens:  # the parts of a multi-word token share the whole token's vector
            if len(token.words) > 1:
                n_mwt += 1
                parts = result.vectors[2][[offset + w for w in token.words]]
                np.testing.assert_array_equal(parts, np.broadcast_to(parts[0], parts.shape))
        offset += n
    assert n_mwt >= 15 and result.vectors[0].shape == (offset, loaded.hidden_size)


@pytest.mark.parametrize("which", ["bloom", "bert"])
def test_each_words_subwords_spell_its_surface_token(models, real, which):
    """Byte-level BPE (leading space inside the sub-word) and WordPiece ('##' continuations, [CLS]/[SEP]):
    the sub-words mapped to a word, decoded, give its token's form wherever none straddles two tokens."""
    tokenizer = models[which].tokenizer
    checked = 0
    for _, group in real.values():
        for sentence, encoded in zip(group, encode_text(tokenizer, [s.surface for s in group]), strict=True):
            assert encoded.ids[0] != tokenizer.cls_token_id or 0 not in encoded.subword  # specials map to no word
            words_of = {i: set(encoded.word[encoded.subword == i].tolist()) for i in set(encoded.subword.tolist())}
            for position, word in enumerate(sentence.words):
                mine = encoded.subword[encoded.word == position]
                if any(len(words_of[i] - set(sentence.tokens[word.token].words)) for i in mine):
                    continue  # a sub-word shared with the next token (e.g. merged Chinese characters)
                pieces = tokenizer.convert_ids_to_tokens([encoded.ids[i] for i in mine])
                if "[UNK]" in pieces:
                    continue
                spelled = tokenizer.convert_tokens_to_string(pieces).replace(" ", "")
                assert spelled == sentence.tokens[word.token].form.replace(" ", ""), (pieces, sentence.text)
                checked += 1
    assert checked >= 100


@pytest.mark.parametrize("which", ["bloom", "bert"])
def test_a_batch_is_aligned_as_each_of_its_sentences_alone(models, sentences, which):
    """`encode_text` aligns a whole batch in one pass over shifted spans: each sentence's pairs must be the ones
    it gets alone (a wrong shift would map sub-words to a neighbour's words or drop them)."""
    tokenizer = models[which].tokenizer
    together = encode_text(tokenizer, sentences)
    for sentence, batched in zip(sentences, together, strict=True):
        [alone] = encode_text(tokenizer, [sentence])
        assert batched.ids == alone.ids
        assert np.array_equal(batched.subword, alone.subword) and np.array_equal(batched.word, alone.word)
        assert set(alone.word.tolist()) == set(range(len(sentence.starts)))  # every word has a sub-word
    assert encode_text(tokenizer, []) == []


def test_subword_word_pairs_cover_mwt_parts_straddling_subwords_and_skip_specials():
    # text "del coche." : tokens del [0,3) (words 0, 1: a multi-word token), coche [4,9) (word 2), . [9,10) (word 3)
    starts, ends = np.array([0, 0, 4, 9]), np.array([3, 3, 9, 10])
    offsets = np.array([[0, 0], [0, 2], [2, 3], [3, 4], [3, 6], [6, 10], [0, 0]])  # <s> de l ' ' ' co' 'che.' </s>
    special = np.array([1, 0, 0, 0, 0, 0, 1])
    subword, word = subword_word_pairs(offsets, special, starts, ends)
    assert sorted(zip(subword.tolist(), word.tolist(), strict=True)) == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (4, 2),
        (5, 2),
        (5, 3),
    ]  # the lone space (3) and the specials map to no word; 'che.' straddles coche and '.'


def test_layer_zero_is_the_embedding_output(models, sentences):
    loaded = models["bloom"]
    result = WordActivationExtractor(loaded, [0]).extract(sentences[:1])
    [encoded] = encode_text(loaded.tokenizer, sentences[:1])
    with torch.inference_mode():
        ids = torch.tensor([encoded.ids])
        embedded = loaded.model.word_embeddings_layernorm(loaded.model.word_embeddings(ids))[0]
    first_word = encoded.subword[encoded.word == 0]
    np.testing.assert_allclose(result.vectors[0][0], embedded[first_word].mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_layer_convention_zero_is_the_embedding_output_and_l_the_output_of_block_l(models, sentences):
    """LAYER_CONVENTION, checked against the modules themselves: layer 0 = the embedding output (after BLOOM's
    embedding layer norm), layer L = what block L returns; so paper 002's "layer L" (hidden_states[L-1]) is L-1."""
    assert LAYER_CONVENTION == (
        "layer 0 = embedding output, layer L = output of block L; paper 002's layer L is our L−1"
    )
    loaded = models["bloom"]
    n = loaded.num_layers
    result = WordActivationExtractor(loaded, list(range(n + 1))).extract(sentences[:1])
    [encoded] = encode_text(loaded.tokenizer, sentences[:1])
    ids = torch.tensor([encoded.ids])
    block_outputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: block_outputs.append(o[0][0])) for b in loaded.model.h]
    with torch.inference_mode():
        embedded = loaded.model.word_embeddings_layernorm(loaded.model.word_embeddings(ids))[0]
        loaded.model(input_ids=ids)
    for hook in hooks:
        hook.remove()
    with torch.inference_mode():
        block_outputs[-1] = loaded.model.ln_f(block_outputs[-1])  # transformers' last hidden state is after ln_f
    first_word = encoded.subword[encoded.word == 0]
    expected = [embedded, *block_outputs]
    assert len(expected) == n + 1
    for layer in range(n + 1):
        np.testing.assert_allclose(
            result.vectors[layer][0], expected[layer][first_word].mean(0).numpy(), rtol=1e-4, atol=1e-5
        )
    assert not np.allclose(result.vectors[1][0], expected[0][first_word].mean(0).numpy(), atol=1e-3)  # not L-1


def test_the_forward_pass_stops_after_the_deepest_layer_asked_for_with_the_same_vectors(models, sentences):
    loaded = models["bloom"]
    ran = []
    counter = loaded.model.h[1].register_forward_hook(lambda m, i, o: ran.append("block 2"))
    shallow = WordActivationExtractor(loaded, [1]).extract(sentences)
    assert not ran  # block 2 (and the final norm) never ran
    deep = WordActivationExtractor(loaded, [0, 1, 2]).extract(sentences)
    counter.remove()
    assert ran and np.array_equal(shallow.vectors[1], deep.vectors[1])


def test_sentences_over_the_length_limit_are_dropped_and_counted(models, sentences):
    loaded = models["bert"]
    assert loaded.max_length == 512  # read from max_position_embeddings, not assumed
    base = sentences[0]
    width = len(base.text) + 1
    long_sentence = SurfaceText(
        " ".join([base.text] * 60),
        tuple(s + k * width for k in range(60) for s in base.starts),
        tuple(e + k * width for k in range(60) for e in base.ends),
    )
    result = WordActivationExtractor(loaded, [1]).extract([sentences[1], long_sentence, sentences[2]])
    assert result.kept == [0, 2] and result.dropped == [1]
    assert result.vectors[1].shape[0] == len(sentences[1].starts) + len(sentences[2].starts)


def test_layers_beyond_the_model_are_rejected(tiny_bloom_dir):
    loaded = load_model(str(tiny_bloom_dir), "step-a")
    with pytest.raises(ValueError, match=r"layers \[3\] out of range 0..2"):
        WordActivationExtractor(loaded, [1, 3])


def test_token_budget_batches_cover_every_index_once_within_budget():
    lengths = [5, 40, 7, 7, 100, 3, 12]
    batches = token_budget_batches(lengths, 40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 40


def _relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


@pytest.mark.parametrize("which", ["bloom", "bert"])
def test_bfloat16_compute_gives_float32_vectors_close_to_the_float32_forward_pass(models, sentences, which):
    loaded = models[which]
    source = loaded.model.name_or_path
    low = load_model(source, None, dtype=torch.bfloat16)
    assert next(low.model.parameters()).dtype == torch.bfloat16
    exact = WordActivationExtractor(loaded, [1, 2]).extract(sentences)
    approx = WordActivationExtractor(low, [1, 2]).extract(sentences)
    for layer in (1, 2):
        assert approx.vectors[layer].dtype == np.float32  # pooled in float32 whatever the compute dtype
        error = _relative_error(approx.vectors[layer], exact.vectors[layer])
        # bfloat16 keeps 8 mantissa bits (2^-8 ≈ 0.004 per value): a few per mille after two blocks,
        # never zero (else the forward pass did not run in bfloat16)
        assert 0 < error < 0.03, (which, layer, error)


def test_compute_dtype_names_are_checked():
    assert compute_torch_dtype("float16", torch.device("cpu")) is torch.float16
    with pytest.raises(ValueError, match="compute dtype 'int8': expected one of float32, bfloat16, float16"):
        compute_torch_dtype("int8", torch.device("cpu"))


def _chunks(sentences, size: int, readers: list[str]):
    """(tag, sentences) chunks that record which thread read each one."""
    for start in range(0, len(sentences), size):
        readers.append(threading.current_thread().name)
        yield start, sentences[start : start + size]


@pytest.mark.parametrize("which", ["bloom", "bert"])
def test_overlapped_tokenization_is_bit_identical_to_the_sequential_path(models, sentences, which):
    extractor = WordActivationExtractor(models[which], [0, 2], batch_tokens=64)
    sequential_readers, overlapped_readers = [], []
    sequential = list(extractor.extract_stream(_chunks(sentences, 4, sequential_readers), overlap=False))
    overlapped = list(extractor.extract_stream(_chunks(sentences, 4, overlapped_readers), overlap=True))
    assert len(sequential) == len(overlapped) == -(-len(sentences) // 4)
    for (tag_a, chunk_a, a), (tag_b, chunk_b, b) in zip(sequential, overlapped, strict=True):
        assert tag_a == tag_b and chunk_a == chunk_b and a.kept == b.kept and a.n_tokens == b.n_tokens
        for layer in (0, 2):
            assert np.array_equal(a.vectors[layer], b.vectors[layer])
            assert np.array_equal(a.vectors[layer], extractor.extract(chunk_a).vectors[layer])
    # the overlapped stream really read and prepared its chunks in the background thread
    assert set(sequential_readers) == {threading.current_thread().name}
    assert all(name.startswith("xling-prepare") for name in overlapped_readers)


def test_a_device_map_loaded_model_gives_the_same_vectors(models, sentences):
    """The device_map path (accelerate places the weights; on this CPU-only machine all on the CPU)
    feeds inputs to the embeddings' device and pools each layer where it lies: same vectors."""
    loaded = models["bloom"]
    mapped = load_model(loaded.model.name_or_path, None, device_map="auto")
    assert mapped.device == torch.device("cpu")  # read from the input embeddings, where accelerate put them
    expected = WordActivationExtractor(loaded, [1, 2]).extract(sentences)
    result = WordActivationExtractor(mapped, [1, 2]).extract(sentences)
    for layer in (1, 2):
        np.testing.assert_allclose(result.vectors[layer], expected.vectors[layer], rtol=1e-5, atol=1e-6)


def test_float16_storage_rounds_exactly_as_numpy_including_ties_overflow_and_subnormals():
    ties = np.float32(1 + 2**-11) * np.array([1, -1, 3, 5], np.float32)  # halfway between two float16s
    special = np.array([65504, 65520, 1e6, -1e6, 2**-24, 2**-25, 3e-8, -0.0, np.inf, np.nan], np.float32)
    rng = np.random.default_rng(0)
    values = np.concatenate([ties, special, rng.standard_normal(4998).astype(np.float32) * 100]).reshape(-1, 7)
    stored = storage_values(values, "float16")
    assert stored.dtype == np.float16 and stored.shape == values.shape
    assert stored.tobytes() == values.astype(np.float16).tobytes()
    assert storage_values(values, "float32").tobytes() == values.tobytes()
    with pytest.raises(ValueError, match="storage dtype 'bfloat16': expected float32 or float16"):
        storage_values(values, "bfloat16")
