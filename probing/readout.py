"""What a language model predicts for a word, read from its last hidden state: the effect of an intervention.

Two readouts, by the kind of model (`resolve_readout`):

* ``masked`` (BERT, XLM-R: paper 003 §4): the model's reconstruction of the word itself. At each of the
  word's sub-words the argmax of the LM head; the sub-words joined (the tokenizer's decoder) are the word.
* ``causal`` (BLOOM, GPT-2): the model's next word after the edited word. At the position before each
  sub-word of the gold next word the argmax of the LM head, joined: the greedy next word with the gold
  sub-words as context (teacher forcing), so one forward pass reads every word of a batch.

Either way the log-probability of the gold word (the sum over its sub-words) is read too, so that an
edit's Δ log p is defined even where it does not flip the argmax. The LM head is applied only at the
read positions (a vocabulary of 250k × every token of a batch would not fit), so `LanguageModel` keeps
the model's base (blocks and final norm) and its head apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from probing.bloom_gelu import use_lean_gelu
from probing.lexicon import GoldWord
from probing.models import HookPoints, load_fast_tokenizer, model_max_length

#: The readouts (module docstring); ``auto`` picks by the model's type.
READOUTS: tuple[str, ...] = ("masked", "causal")


def resolve_readout(requested: str, model_type: str) -> str:
    """``masked`` for a model type with a masked-LM head in transformers (BERT, XLM-R), else ``causal``."""
    if requested != "auto":
        if requested not in READOUTS:
            raise ValueError(f"readout {requested!r}: expected auto, {', '.join(READOUTS)}")
        return requested
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "masked" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "causal"


@dataclass
class LanguageModel:
    """A model with an LM head, split into its base (``last_hidden_state``) and head, with hook points."""

    base: torch.nn.Module
    head: torch.nn.Module
    points: HookPoints
    tokenizer: object
    readout: str
    max_length: int
    decoded: dict[tuple[int, ...], str] = field(default_factory=dict)

    @classmethod
    def of(cls, model: torch.nn.Module, tokenizer: object, readout: str) -> LanguageModel:
        """Split a transformers ``*ForMaskedLM`` / ``*ForCausalLM``: its base model and its one other child."""
        base = model.base_model
        heads = [m for name, m in model.named_children() if name != model.base_model_prefix]
        if len(heads) != 1:
            raise ValueError(f"{type(model).__name__}: expected one head beside the base model, found {len(heads)}")
        return cls(base, heads[0], HookPoints(base), tokenizer, readout, model_max_length(model.config, tokenizer))

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def decode(self, ids: Sequence[int]) -> str:
        """Sub-word ids joined into a word by the tokenizer's decoder (cached: sweeps decode the same ids often)."""
        key = tuple(int(i) for i in ids)
        if key not in self.decoded:
            self.decoded[key] = self.tokenizer.decode(list(key), clean_up_tokenization_spaces=False).strip()
        return self.decoded[key]


def load_language_model(
    model_id: str, revision: str | None, readout: str = "auto", device: str = "cpu", dtype: torch.dtype = torch.float32
) -> LanguageModel:
    """A checkpoint with its LM head (masked or causal, `resolve_readout`), in eval mode, and its fast tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    tokenizer, source, rev = load_fast_tokenizer(model_id, revision)
    kind = resolve_readout(readout, AutoConfig.from_pretrained(source, revision=rev).model_type)
    auto = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    model = auto.from_pretrained(source, revision=rev, dtype=dtype).to(device).eval()
    use_lean_gelu(model)
    return LanguageModel.of(model, tokenizer, kind)


def word_targets(readout: str, ids: Sequence[int], word_subwords: Sequence[int], next_subwords: Sequence[int]):
    """Where one word is read in its sentence and what the gold sub-words are: (positions, gold ids), or None.

    ``masked``: at the word's own sub-words. ``causal``: at the position before each sub-word of the next
    word (None when there is no next word).
    """
    if readout == "masked":
        return (list(word_subwords), [ids[s] for s in word_subwords]) if word_subwords else None
    if not next_subwords or min(next_subwords) < 1:
        return None
    return [s - 1 for s in next_subwords], [ids[s] for s in next_subwords]


@dataclass(frozen=True)
class ReadTargets:
    """The read words of one batch: per read sub-word its flat position in (rows × tokens), its gold id and
    its word (0..n−1, non-decreasing); per word the gold word its prediction is judged against (None: the
    causal next word carries no value of the attribute)."""

    positions: torch.Tensor
    gold_ids: torch.Tensor
    word: torch.Tensor
    gold: tuple[GoldWord | None, ...]

    def to(self, device: torch.device) -> ReadTargets:
        return ReadTargets(self.positions.to(device), self.gold_ids.to(device), self.word.to(device), self.gold)


@dataclass(frozen=True)
class ReadOut:
    """Per read word: the predicted word and the log-probability of the gold word."""

    words: tuple[str, ...]
    logp: np.ndarray


@torch.inference_mode()
def read_words(lm: LanguageModel, hidden: torch.Tensor, targets: ReadTargets) -> ReadOut:
    """The predicted words and gold log-probabilities of a batch's read words, from its last hidden state."""
    logits = lm.head(hidden.reshape(-1, hidden.shape[-1])[targets.positions]).float()
    gold = torch.log_softmax(logits, dim=-1).gather(1, targets.gold_ids[:, None])[:, 0]
    n_words = len(targets.gold)
    logp = torch.zeros(n_words, device=gold.device).index_add_(0, targets.word, gold)
    predicted = logits.argmax(dim=-1).cpu().numpy()
    bounds = np.cumsum(np.bincount(targets.word.cpu().numpy(), minlength=n_words))[:-1]
    words = tuple(lm.decode(ids) for ids in np.split(predicted, bounds))
    return ReadOut(words, logp.cpu().numpy())
