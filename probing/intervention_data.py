"""The batches an intervention sweep runs on, built from the stored sentences and words tables.

A batch holds padded token ids and two sets of positions. The *edit sites* are every sub-word of every
word of its sentences that carries the attribute (with a value that has a mean vector), as 003 applies
its intervention to all the words of a sentence that possess the attribute (§4 footnote 4); each site
knows its word's value, since translation moves each word from its own value. The *read targets* are
the words of one split (at most ``max_words`` of them, drawn by a seed that depends on the language,
attribute and split only, so that every checkpoint and layer reads the same words), read as the model's
readout says (`probing.readout.word_targets`). Sentences longer than the model's limit are left out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from probing.conllu_io import SurfaceText
from probing.datasets import stable_seed
from probing.extraction import EncodedText, encode_text, pad_batch, token_budget_batches
from probing.lexicon import GoldWord
from probing.readout import LanguageModel, ReadTargets, word_targets


@dataclass(frozen=True)
class EditSites:
    """The edited sub-words of a batch: flat positions in (rows × tokens) and their word's value index."""

    positions: torch.Tensor
    values: torch.Tensor

    def to(self, device: torch.device) -> EditSites:
        return EditSites(self.positions.to(device), self.values.to(device))


@dataclass(frozen=True)
class InterventionBatch:
    """Padded inputs, where to edit and what to read."""

    inputs: dict[str, torch.Tensor]
    sites: EditSites
    targets: ReadTargets

    def to(self, device: torch.device) -> InterventionBatch:
        inputs = {name: tensor.to(device) for name, tensor in self.inputs.items()}
        return InterventionBatch(inputs, self.sites.to(device), self.targets.to(device))


def sampled_reads(words: pa.Table, split: str, values: list[str], max_words: int | None, seed: int) -> np.ndarray:
    """Rows of ``words`` to read: those of ``split`` with one of ``values``, at most ``max_words`` by ``seed``."""
    split_of = np.asarray(words.column("split").to_pylist(), dtype=object)
    value_of = np.asarray(words.column("value").to_pylist(), dtype=object)
    rows = np.flatnonzero((split_of == split) & np.isin(value_of, values))
    if max_words is not None and len(rows) > max_words:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_words, replace=False))
    return rows


def _next_token(starts: list[int], position: int) -> list[int]:
    """The syntactic words of the surface token after the one carrying ``position`` (all its parts)."""
    after = [q for q in range(position + 1, len(starts)) if starts[q] != starts[position]]
    return [q for q in after if starts[q] == starts[after[0]]] if after else []


#: One read word: its read positions (flat), its gold sub-word ids, the gold word it is judged against.
Read = tuple[list[int], list[int], GoldWord | None]


def _gold(row: dict | None) -> GoldWord | None:
    return None if row is None else GoldWord(row["form"], row["lemma"], row["value"])


def sentence_parts(
    readout: str,
    offset: int,
    encoded: EncodedText,
    starts: list[int],
    annotated: dict[int, dict],
    reads: list[int],
    index: dict[str, int],
) -> tuple[list[tuple[int, int]], list[Read]]:
    """The edit sites (flat position, value index) and read words of one sentence at ``offset`` in its batch.

    ``annotated`` maps a word position to its row of the words table, ``reads`` are the positions to read.
    """
    subwords: dict[int, list[int]] = defaultdict(list)
    for s, w in zip(encoded.subword.tolist(), encoded.word.tolist(), strict=True):
        subwords[w].append(s)
    sites = [
        (offset + s, index[row["value"]])
        for position, row in annotated.items()
        if row["value"] in index
        for s in subwords[position]
    ]
    read: list[Read] = []
    for position in sorted(reads):
        following = _next_token(starts, position)
        target = word_targets(
            readout, encoded.ids, subwords[position], sorted({s for q in following for s in subwords[q]})
        )
        if target is not None:
            gold = (
                annotated[position]
                if readout == "masked"
                else next((annotated[q] for q in following if q in annotated), None)
            )
            read.append(([offset + p for p in target[0]], target[1], _gold(gold)))
    return sites, read


def _batch(inputs: dict[str, torch.Tensor], sites: list[tuple[int, int]], reads: list[Read]) -> InterventionBatch:
    site_array = np.asarray(sites, dtype=np.int64).reshape(-1, 2)
    targets = ReadTargets(
        positions=torch.tensor([p for r in reads for p in r[0]], dtype=torch.long),
        gold_ids=torch.tensor([g for r in reads for g in r[1]], dtype=torch.long),
        word=torch.tensor([w for w, r in enumerate(reads) for _ in r[0]], dtype=torch.long),
        gold=tuple(r[2] for r in reads),
    )
    return InterventionBatch(
        inputs, EditSites(torch.from_numpy(site_array[:, 0]), torch.from_numpy(site_array[:, 1])), targets
    )


def intervention_batches(
    lm: LanguageModel,
    sentences: pa.Table,
    words: pa.Table,
    split: str,
    values: list[str],
    max_words: int | None,
    seed_parts: tuple,
    batch_tokens: int = 4096,
) -> list[InterventionBatch]:
    """The batches of one (language, attribute, split); ``values`` (sorted) index the edit sites' values,
    ``seed_parts`` seed the draw of the read words (`sampled_reads`)."""
    index = {v: i for i, v in enumerate(values)}
    rows = words.to_pylist()
    annotated: dict[int, dict[int, dict]] = defaultdict(dict)
    for row in rows:
        annotated[row["sentence_index"]][row["position"]] = row
    reads: dict[int, list[int]] = defaultdict(list)
    for i in sampled_reads(words, split, values, max_words, stable_seed(*seed_parts, split)):
        reads[rows[i]["sentence_index"]].append(rows[i]["position"])
    texts = {
        r["sentence_index"]: SurfaceText(r["text"], tuple(r["char_start"]), tuple(r["char_end"]))
        for r in sentences.select(["sentence_index", "text", "char_start", "char_end"]).to_pylist()
        if r["sentence_index"] in reads
    }
    order = sorted(texts)
    encoded = encode_text(lm.tokenizer, [texts[s] for s in order])
    kept = [i for i, e in enumerate(encoded) if len(e.ids) <= lm.max_length]
    batches = []
    for members in token_budget_batches([len(encoded[i].ids) for i in kept], batch_tokens):
        chosen = [kept[j] for j in members]
        input_ids, mask = pad_batch([encoded[i].ids for i in chosen], lm.tokenizer.pad_token_id or 0)
        sites: list[tuple[int, int]] = []
        read: list[Read] = []
        for row, i in enumerate(chosen):
            s = order[i]
            parts = sentence_parts(
                lm.readout, row * input_ids.shape[1], encoded[i], list(texts[s].starts), annotated[s], reads[s], index
            )
            sites += parts[0]
            read += parts[1]
        if read:
            batches.append(_batch({"input_ids": input_ids, "attention_mask": mask}, sites, read))
    return batches
