"""Model loading and hook points: resolution, limits, word encoding; each hook point holds transformers'
``hidden_states[L]`` (BLOOM, BERT, XLM-R, GPT-2), a hook can replace it, the forward pass can stop early."""

from itertools import islice

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2Model,
    T5Config,
    T5Model,
    XLMRobertaConfig,
    XLMRobertaForTokenClassification,
)

from probing.conllu_io import read_conllu
from probing.models import HookPoints, encode_words, hook_name, load_model, model_max_length, resolve_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEPTH = 3
SMALL = {"vocab_size": 100, "hidden_size": 32, "num_attention_heads": 4}


def tiny(kind: str) -> torch.nn.Module:
    """A random model with DEPTH blocks, in eval mode, built from its config (no download)."""
    torch.manual_seed(0)
    if kind == "bloom":  # blocks at transformer.h, then a final layer norm (ln_f)
        model = BloomForCausalLM(BloomConfig(**SMALL, n_layer=DEPTH))
    elif kind == "bert":  # blocks at encoder.layer, no final norm
        model = BertModel(BertConfig(**SMALL, num_hidden_layers=DEPTH, intermediate_size=64))
    elif kind == "xlm-r":  # blocks at roberta.encoder.layer, under a token classification head
        model = XLMRobertaForTokenClassification(XLMRobertaConfig(**SMALL, num_hidden_layers=DEPTH, num_labels=5))
    else:  # gpt2: blocks at h, then ln_f
        model = GPT2Model(GPT2Config(vocab_size=100, n_embd=32, n_layer=DEPTH, n_head=4))
    return model.eval()


KINDS = ("bloom", "bert", "xlm-r", "gpt2")


@pytest.fixture(scope="module", params=KINDS)
def model(request) -> torch.nn.Module:
    return tiny(request.param)


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    """Two right-padded rows of token ids (none the pad id) and their attention mask."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    return {"input_ids": torch.randint(3, 100, (2, 9), generator=generator), "attention_mask": mask}


def final(output: object) -> torch.Tensor:
    """What a model's caller reads: its head's logits, or the last hidden state of a bare model."""
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@torch.inference_mode()
def test_each_hook_point_holds_the_models_hidden_state_of_its_layer(model, batch):
    points = HookPoints(model)
    assert points.num_layers == DEPTH and points.names == ("embed", "blocks.1", "blocks.2", "blocks.3")
    with points.recording(range(DEPTH + 1)) as recorded:
        out = model(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == DEPTH + 1
    for layer in range(DEPTH + 1):
        assert torch.equal(recorded[layer], out.hidden_states[layer]), layer


@torch.inference_mode()
def test_writing_the_same_values_back_leaves_the_output_bit_identical(model, batch):
    points = HookPoints(model)
    clean = final(model(**batch))
    for name in points.names:
        with points.hooks([(name, lambda hidden: hidden.clone())]):
            assert torch.equal(final(model(**batch)), clean), name


@torch.inference_mode()
def test_writing_zeros_at_a_layer_changes_that_layer_and_every_later_one(model, batch):
    points = HookPoints(model)
    with points.recording(range(DEPTH + 1)) as clean:
        clean_output = final(model(**batch))
    for layer in range(DEPTH + 1):
        with points.hooks([(hook_name(layer), torch.zeros_like)]), points.recording(range(DEPTH + 1)) as written:
            output = final(model(**batch))
        for earlier in range(layer):
            assert torch.equal(written[earlier], clean[earlier]), (layer, earlier)
        assert not written[layer].any(), layer
        for later in range(layer + 1, DEPTH + 1):
            assert not torch.allclose(written[later], clean[later], atol=1e-3), (layer, later)
        assert not torch.allclose(output, clean_output, atol=1e-3), layer  # the head saw the write


@torch.inference_mode()
def test_hooks_are_removed_when_their_block_ends_also_on_an_error(batch):
    model = tiny("bloom")
    points = HookPoints(model)
    clean = final(model(**batch))
    with pytest.raises(KeyError), points.hooks([("blocks.2", torch.zeros_like)]):
        raise KeyError("inside the block")
    assert torch.equal(final(model(**batch)), clean)


@torch.inference_mode()
@pytest.mark.parametrize("kind", ["bloom", "bert"])
def test_reading_layers_stops_the_forward_pass_after_the_deepest(kind, batch):
    model = tiny(kind)
    points = HookPoints(model)
    expected = model(**batch, output_hidden_states=True).hidden_states
    ran = []
    counters = [
        block.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, block in enumerate(points.blocks)
    ]
    read = points.read_layers([0, 2], lambda: model(**batch))
    for counter in counters:
        counter.remove()
    assert ran == [0, 1]  # blocks 1 and 2 ran; block 3 (and BLOOM's final norm, the head) never did
    assert sorted(read) == [0, 2]
    for layer in (0, 2):
        assert torch.equal(read[layer], expected[layer])
    assert torch.equal(points.read_layers([DEPTH], lambda: model(**batch))[DEPTH], expected[DEPTH])


class KeywordBlock(torch.nn.Linear):
    """A block that takes its hidden state by keyword, as some transformers models pass it."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return super().forward(hidden_states)


class KeywordModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = BertConfig(num_hidden_layers=2)
        self.blocks = torch.nn.ModuleList([KeywordBlock(4, 4), KeywordBlock(4, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(hidden_states=x)
        return x


@torch.no_grad()
def test_layer_zero_is_read_and_written_when_the_first_block_gets_it_by_keyword():
    torch.manual_seed(0)
    model, x = KeywordModel(), torch.randn(2, 4)
    points = HookPoints(model)
    with points.recording([0]) as recorded:
        model(x)
    assert torch.equal(recorded[0], x)
    with points.hooks([("embed", lambda hidden: hidden + 1)]):
        written = model(x)
    assert torch.equal(written, model(x + 1))


def test_layers_and_names_beyond_the_models_depth_are_clear_errors():
    points = HookPoints(tiny("bert"))
    with pytest.raises(ValueError, match=r"layers \[4, 7\] out of range 0..3 .*the model has 3 blocks"):
        points.check_layers([1, 4, 7])
    with pytest.raises(ValueError, match=r"layers \[4\] out of range 0..3"), points.recording([0, 4]):
        pass
    for name in ("blocks.4", "blocks.0", "blocks.01", "mlp"):
        with pytest.raises(ValueError, match=rf"no hook point '{name}': this model has embed, blocks.1 .. blocks.3"):
            points.layer(name)
    with pytest.raises(ValueError, match=r"no hook point 'blocks\.9'"), points.hooks([("blocks.9", torch.zeros_like)]):
        pass
    with pytest.raises(RuntimeError, match=r"the forward pass never reached layers \[1, 2\]"):
        points.read_layers([1, 2], lambda: None)


def test_a_model_whose_blocks_cannot_be_told_apart_is_refused():
    t5 = T5Model(T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2))
    with pytest.raises(
        ValueError, match=r"T5Model: expected one ModuleList of 2 blocks, found encoder\.block, decoder\.block"
    ):
        HookPoints(t5)
    no_blocks = torch.nn.Linear(2, 2)
    no_blocks.config = BertConfig(num_hidden_layers=2)
    with pytest.raises(ValueError, match="Linear: expected one ModuleList of 2 blocks, found none"):
        HookPoints(no_blocks)


def test_a_loaded_model_carries_its_hook_points(tiny_bert_dir):
    loaded = load_model(str(tiny_bert_dir))
    assert loaded.hook_points.blocks is loaded.model.encoder.layer
    assert loaded.hook_points.num_layers == loaded.num_layers == 2


@pytest.fixture(scope="module")
def french(ud_dir):
    """Five French dev sentences with a multi-word token."""
    [path] = sorted((ud_dir / "fr").glob("*-dev.conllu"))
    return list(islice((s for s in read_conllu(path) if any(len(t.words) > 1 for t in s.tokens)), 5))


def test_encode_words_keeps_pre_split_words_for_pos_transfer(tiny_bloom_dir, french):
    tok = load_model(str(tiny_bloom_dir), "step-a").tokenizer
    for sentence in french:
        words = [w.form for w in sentence.words]
        ((ids, word_ids),) = encode_words(tok, [words])
        assert ids == tok(" ".join(words), add_special_tokens=True)["input_ids"]
        assert sorted(set(word_ids) - {-1}) == list(range(len(words)))


def test_local_revisions_resolve_to_subdirectories(tiny_bloom_dir, tmp_path):
    assert resolve_model(str(tiny_bloom_dir), "step-a") == (str(tiny_bloom_dir / "step-a"), None)
    assert resolve_model("bigscience/bloom-560m-intermediate", "global_step1000") == (
        "bigscience/bloom-560m-intermediate",
        "global_step1000",
    )
    with pytest.raises(FileNotFoundError, match="step-zzz"):
        resolve_model(str(tiny_bloom_dir), "step-zzz")


def test_model_max_length_prefers_the_config():
    class Config:
        max_position_embeddings = 512

    class Tokenizer:
        model_max_length = int(1e30)

    assert model_max_length(Config(), Tokenizer()) == 512
    assert model_max_length(object()) == 2048
