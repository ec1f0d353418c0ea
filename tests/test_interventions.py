"""Interventions on the top-k neurons (paper 003 §4): the edits touch exactly what they should, the cached
suffix forward is the full forward, and a model with a planted value gives the CLWV the ranking deserves."""

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BloomConfig, BloomForCausalLM

from probing.datasets import SENTENCE_SCHEMA, WORD_SCHEMA
from probing.intervention_data import EditSites, InterventionBatch, intervention_batches
from probing.interventions import (
    Counts,
    Edit,
    cache_batches,
    choose_beta,
    edit_state,
    effect,
    read_prefix,
    saturation_index,
)
from probing.lexicon import Analysis, Lexicon
from probing.models import HookPoints, hook_name
from probing.readout import LanguageModel, ReadTargets
from probing.suffix import LayerCache
from probing.translation import (
    ALPHA_FLOOR,
    default_k_grid,
    next_values,
    translation_coefficients,
    translation_shifts,
    value_means,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEPTH, WIDTH = 3, 32
SMALL = {"vocab_size": 100, "hidden_size": WIDTH, "num_attention_heads": 4}


def tiny_lm(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "bloom":
        return BloomForCausalLM(BloomConfig(**SMALL, n_layer=DEPTH)).eval()
    return BertForMaskedLM(BertConfig(**SMALL, num_hidden_layers=DEPTH, intermediate_size=64)).eval()


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    return {"input_ids": torch.randint(3, 100, (2, 9), generator=generator), "attention_mask": mask}


SITES = EditSites(torch.tensor([2, 3, 9 + 4]), torch.tensor([0, 0, 1]))  # row 0 tokens 2-3 (value 0), row 1 token 4
SHIFTS = torch.from_numpy(np.random.default_rng(0).normal(size=(2, WIDTH)))
ORDER = np.random.default_rng(1).permutation(WIDTH)


def test_alpha_runs_log_linearly_from_beta_at_rank_one_to_the_floor_at_rank_d():
    alpha = translation_coefficients(768, 8.0)
    assert alpha[0] == pytest.approx(8.0) and alpha[-1] == pytest.approx(ALPHA_FLOOR)
    steps = np.diff(np.log(alpha))
    assert np.allclose(steps, steps[0]) and steps[0] < 0
    assert not translation_coefficients(768, 0.0).any()
    assert default_k_grid(768)[:3] == [10, 20, 30] and default_k_grid(32) == list(range(1, 33))


def test_the_target_value_is_the_next_in_sorted_order_whatever_the_hash_seed():
    assert next_values(["SG", "PL"]) == {"PL": "SG", "SG": "PL"}
    assert next_values(["NEUT", "MASC", "FEM"]) == {"FEM": "MASC", "MASC": "NEUT", "NEUT": "FEM"}
    script = "from probing.translation import next_values; print(next_values(set('ADJ N V ADV PRO DET'.split())))"
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True).stdout)
    assert len(outputs) == 1 and "'V': 'ADJ'" in outputs.pop()


def test_translation_moves_each_value_by_the_difference_of_the_means():
    X = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    means = value_means(X, np.array([0, 0, 1]), 2)
    assert np.array_equal(means, [[2.0, 1.0], [0.0, 4.0]])
    assert np.array_equal(translation_shifts(means, ["PL", "SG"]), [[-2.0, 3.0], [2.0, -3.0]])


@pytest.mark.parametrize("k", [1, 5, WIDTH])
def test_translation_changes_only_the_sites_and_the_top_k_neurons_by_exactly_alpha_times_the_shift(k):
    state = torch.randn(2, 9, WIDTH, generator=torch.Generator().manual_seed(2))
    edited = edit_state(state, SITES, Edit.top_k("translation", ORDER, k, 8.0, SHIFTS))
    flat, before = edited.reshape(-1, WIDTH), state.reshape(-1, WIDTH)
    expected_changed = torch.zeros_like(flat, dtype=torch.bool)
    expected_changed[SITES.positions[:, None], torch.as_tensor(ORDER[:k])[None, :]] = True
    assert torch.equal(flat != before, expected_changed)
    alpha = torch.as_tensor(translation_coefficients(WIDTH, 8.0)[:k], dtype=torch.float32)
    for position, value in zip(SITES.positions, SITES.values, strict=True):
        neurons = torch.as_tensor(ORDER[:k])
        want = before[position, neurons] + alpha * SHIFTS[value, neurons].float()
        assert torch.equal(flat[position, neurons], want)


def test_ablation_zeroes_exactly_k_values_at_each_site():
    state = torch.randn(2, 9, WIDTH, generator=torch.Generator().manual_seed(3)) + 5  # no zero anywhere
    for k in (1, 7, WIDTH):
        flat = edit_state(state, SITES, Edit.top_k("ablation", ORDER, k)).reshape(-1, WIDTH)
        assert int((flat == 0).sum()) == k * len(SITES.positions)
        assert not flat[SITES.positions][:, ORDER[:k]].any()


@pytest.mark.parametrize("kind", ["bloom", "bert"])
@torch.inference_mode()
def test_the_cached_state_is_the_layer_and_resuming_from_an_edit_is_the_full_forward_with_it(kind, inputs):
    model = tiny_lm(kind)
    base, points = model.base_model, HookPoints(model.base_model)
    full = base(**inputs, output_hidden_states=True)
    edit = Edit.top_k("translation", ORDER, 4, 8.0, SHIFTS)
    for layer in range(DEPTH + 1):
        cache = LayerCache(base, points, layer)
        state, last = cache.full(inputs)
        assert torch.equal(state, full.hidden_states[layer]) and torch.equal(last, full.last_hidden_state)
        edited = edit_state(state, SITES, edit)
        with points.hooks([(hook_name(layer), lambda hidden: edit_state(hidden, SITES, edit))]):
            reference = base(**inputs).last_hidden_state
        resumed = cache.resume(edited, inputs)
        assert torch.equal(resumed, reference), layer
        assert not torch.allclose(resumed, last), layer  # the edit reached the output


@torch.inference_mode()
def test_resuming_runs_only_the_blocks_after_the_layer(inputs):
    model = tiny_lm("bloom")
    points = HookPoints(model.base_model)
    ran: list[int] = []
    for index, block in enumerate(points.blocks, start=1):
        block.self_attention.register_forward_hook(lambda *_, index=index: ran.append(index))
    cache = LayerCache(model.base_model, points, 2)
    state, _ = cache.full(inputs)
    assert ran == [1, 2, 3]
    ran.clear()
    cache.resume(state, inputs)
    assert ran == [3]
    ran.clear()
    model(**inputs)
    assert ran == [1, 2, 3]  # the blocks compute again once the resumed pass is over


@pytest.mark.parametrize("kind", ["bloom", "bert"])
@torch.inference_mode()
def test_k_zero_or_beta_zero_leaves_the_logits_bit_identical(kind, inputs):
    model = tiny_lm(kind)
    clean = model(**inputs).logits
    points = HookPoints(model.base_model)
    for edit in (Edit.top_k("translation", ORDER, 0, 8.0, SHIFTS), Edit.top_k("translation", ORDER, 9, 0.0, SHIFTS)):
        with points.hooks([(hook_name(2), lambda hidden, edit=edit: edit_state(hidden, SITES, edit))]):
            assert torch.equal(model(**inputs).logits, clean)
    cache = LayerCache(model.base_model, points, 2)
    state, _ = cache.full(inputs)
    assert torch.equal(
        model.lm_head(cache.resume(state, inputs)) if kind == "bloom" else model.cls(cache.resume(state, inputs)), clean
    )


@torch.inference_mode()
def test_a_causal_batch_cut_after_its_last_read_column_reads_what_the_whole_batch_reads(inputs):
    """Row 0 is read at column 4, row 1 at column 3: columns 5.. go, with the sites there (row 0's 7, row 1's 5)."""
    model = tiny_lm("bloom")
    sites = EditSites(torch.tensor([2, 3, 7, 9 + 4, 9 + 5]), torch.tensor([0, 0, 1, 1, 1]))
    targets = ReadTargets(torch.tensor([4, 9 + 3]), torch.tensor([5, 6]), torch.tensor([0, 1]), (None, None))
    cut = read_prefix(InterventionBatch(inputs, sites, targets))
    assert cut.inputs["input_ids"].shape == (2, 5)
    assert torch.equal(cut.inputs["input_ids"], inputs["input_ids"][:, :5])
    assert cut.sites.positions.tolist() == [2, 3, 5 + 4] and cut.sites.values.tolist() == [0, 0, 1]
    assert cut.targets.positions.tolist() == [4, 5 + 3]
    base, points = model.base_model, HookPoints(model.base_model)
    edit = Edit.top_k("translation", ORDER, 9, 8.0, SHIFTS)
    with points.hooks([(hook_name(1), lambda hidden: edit_state(hidden, sites, edit))]):
        whole = base(**inputs).last_hidden_state.reshape(-1, WIDTH)[targets.positions]
    cache = LayerCache(base, points, 1)
    state, _ = cache.full(cut.inputs)
    resumed = cache.resume(edit_state(state, cut.sites, edit), cut.inputs).reshape(-1, WIDTH)[cut.targets.positions]
    torch.testing.assert_close(resumed, whole, rtol=0, atol=1e-6)
    unedited = base(**inputs).last_hidden_state.reshape(-1, WIDTH)[targets.positions]
    assert not torch.allclose(whole, unedited)  # the kept sites' edit reached what is read


# --- a model with a planted Number value -----------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "the", "dog", "dogs", "cat", "cats", "runs", "run"]
PLANTED = [3, 7, 11, 13]  # the neurons that carry Number
D = 16


def planted_matrix(lemma: float, other: float) -> torch.Tensor:
    """Vocabulary × neurons: a noun's lemma on its own neuron (dog 0, cat 1), its Number as +1 (SG) or −1 (PL)
    on every planted neuron; the other words on neurons 4–6. As embeddings it writes Number into the planted
    neurons; as the LM head it reads singular when they sum above 0 and plural below."""
    weight = torch.zeros(len(VOCAB), D)
    for word, lemma_neuron, sign in (("dog", 0, 1), ("dogs", 0, -1), ("cat", 1, 1), ("cats", 1, -1)):
        weight[VOCAB.index(word), lemma_neuron] = lemma
        weight[VOCAB.index(word), PLANTED] = sign
    for neuron, word in enumerate(["the", "runs", "run"], start=4):
        weight[VOCAB.index(word), neuron] = other
    return weight


class PlantedBase(torch.nn.Module):
    """The planted embeddings and two identity blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=2)
        self.embed = torch.nn.Embedding.from_pretrained(planted_matrix(1.0, 1.0))
        self.blocks = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = block(hidden)
        return SimpleNamespace(last_hidden_state=hidden)


def planted_head() -> torch.nn.Linear:
    head = torch.nn.Linear(D, len(VOCAB), bias=False)
    head.weight.data = planted_matrix(10.0, 20.0)
    return head


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def planted_tables() -> tuple[pa.Table, pa.Table]:
    """Eight sentences 'the <noun> <verb>'; the nouns carry Number, half of them in train, half in test."""
    nouns = ["dog", "dogs", "cat", "cats"] * 2
    texts = [f"the {n} {'runs' if n in ('dog', 'cat') else 'run'}" for n in nouns]
    sentences = pa.Table.from_pylist(
        [
            {
                "sentence_index": i,
                "sentence_id": str(i),
                "words": t.split(),
                "text": t,
                "char_start": [0, 4, 5 + len(n)],
                "char_end": [3, 4 + len(n), len(t)],
            }
            for i, (t, n) in enumerate(zip(texts, nouns, strict=True))
        ],
        schema=SENTENCE_SCHEMA,
    )
    words = pa.Table.from_pylist(
        [
            {
                "sentence_index": i,
                "position": 1,
                "form": n,
                "lemma": n.rstrip("s"),
                "value": "PL" if n.endswith("s") else "SG",
                "split": "train" if i < 4 else "test",
            }
            for i, n in enumerate(nouns)
        ],
        schema=WORD_SCHEMA,
    )
    return sentences, words


PLANTED_LEXICON = Lexicon(
    {
        n: frozenset({Analysis(n.rstrip("s"), "NOUN", (("Number", "PL" if n.endswith("s") else "SG"),))})
        for n in ("dog", "dogs", "cat", "cats")
    }
)


def clwv_curve(lm: LanguageModel, order: np.ndarray, ks: list[int]) -> list[float]:
    sentences, words = planted_tables()
    values = ["PL", "SG"]
    batches = intervention_batches(lm, sentences, words, "test", values, None, ("planted",))
    cache, cached = cache_batches(lm, 1, batches)
    train = words.filter(pa.compute.equal(words.column("split"), "train")).to_pylist()
    X = lm.base.embed.weight.detach().numpy()[[VOCAB.index(w["form"]) for w in train]]
    shifts = torch.from_numpy(
        translation_shifts(value_means(X, np.array([values.index(w["value"]) for w in train]), 2), values)
    )
    curve = []
    for k in ks:
        counts = effect(lm, cache, cached, Edit.top_k("translation", order, k, 8.0, shifts), PLANTED_LEXICON, "Number")
        assert counts.n_words == 4 and counts.relevant == 4
        curve.append(counts.rates()[1])
    return curve


def test_a_planted_value_is_translated_by_its_neurons_and_not_by_the_others():
    base = PlantedBase().eval()
    lm = LanguageModel(base, planted_head(), HookPoints(base), word_tokenizer(), "masked", 64)
    top = np.array(PLANTED + [n for n in range(D) if n not in PLANTED])
    ks = list(range(0, D + 1))
    planted_first = clwv_curve(lm, top, ks)
    assert planted_first[0] == 0.0  # the unedited model reads every noun right
    assert planted_first[len(PLANTED)] == 1.0 and all(c == 1.0 for c in planted_first[1:])
    assert all(c == 0.0 for c in clwv_curve(lm, top[::-1].copy(), ks))  # the reverse: α too small where it hits
    rng = np.random.default_rng(0)
    random = [clwv_curve(lm, rng.permutation(D), [len(PLANTED)])[0] for _ in range(12)]
    assert 0.0 < np.mean(random) < 1.0


def test_counts_keep_unknown_forms_and_unannotated_words_out_of_the_rates():
    counts = Counts()
    counts.categories.update({"correct": 2, "clwv": 1, "wrong_lemma": 1, "unknown": 6})
    counts.unannotated = 3
    assert counts.relevant == 4 and counts.rates() == (0.5, 0.25)
    assert Counts().rates() != Counts().rates()  # NaN: no relevant word


def test_saturation_is_the_first_point_of_two_rises_below_five_percent():
    assert saturation_index([0.1, 0.2, 0.3, 0.31, 0.312, 0.5]) == 2
    assert saturation_index([0.0, 0.0, 0.0, 0.2, 0.4, 0.41, 0.40]) == 4  # a flat start at 0 is no saturation
    assert saturation_index([0.1, 0.2, 0.4, 0.8]) is None and saturation_index([0.3, 0.2]) is None


def test_beta_is_chosen_by_clwv_at_saturation_minus_the_gap_to_the_error_rate():
    steady = [(0.1, 0.05), (0.4, 0.3), (0.42, 0.3), (0.43, 0.3)]  # saturates at CLWV 0.3, error 0.4: score 0.2
    noisy = [(0.1, 0.05), (0.9, 0.35), (0.95, 0.35), (0.96, 0.35)]  # more CLWV but most errors are not: -0.2
    assert choose_beta({4.0: [steady], 8.0: [noisy]}) == 4.0
    assert choose_beta({8.0: [steady], 4.0: [steady]}) == 4.0  # a tie: the smaller beta


def test_a_causal_readout_reads_the_next_word_and_a_masked_one_the_word_itself():
    base = PlantedBase().eval()
    sentences, words = planted_tables()
    for readout, gold_position in (("masked", 1), ("causal", 2)):
        lm = LanguageModel(base, planted_head(), HookPoints(base), word_tokenizer(), readout, 64)
        (batch,) = intervention_batches(lm, sentences, words, "test", ["PL", "SG"], None, ("all",))
        ids = batch.inputs["input_ids"]
        rows, positions = np.divmod(batch.targets.positions.numpy(), ids.shape[1])
        assert sorted(rows) == [0, 1, 2, 3] and set(positions) == {1}  # causal: read before the next word
        assert torch.equal(batch.targets.gold_ids, ids[rows, gold_position])
        gold = [g.form if g else None for g in batch.targets.gold]
        assert gold == ([VOCAB[i] for i in ids[rows, 1]] if readout == "masked" else [None] * 4)  # verbs: no Number
        assert sorted(np.divmod(batch.sites.positions.numpy(), ids.shape[1])[1]) == [1] * 4  # every noun is edited
