"""Per-word activations from a transformers model: tokenize running text, forward, pool.

Layers are numbered as `probing.models.LAYER_CONVENTION` says (0 = embedding output, L = output of
block L) and read through the model's hook points (`probing.models.HookPoints`), which hold exactly
transformers' ``hidden_states[L]``; the forward pass stops after the deepest layer asked for, so the
blocks above it cost nothing.

The model reads each sentence's surface text (`probing.conllu_io.SurfaceText`: UD's ``# text``,
multi-word tokens as written, spaces as ``SpaceAfter`` says), tokenized as one string by the fast
tokenizer, whose character offsets map sub-words back to the text. A syntactic word's sub-words are
those whose offsets overlap the span of the surface token that carries it, and its vector is their
mean (Vulić et al. 2020). So the parts of a multi-word token (Portuguese "do" = de + o) both get
the vector of the whole token "do", all its sub-words; `probing.datasets` makes such a token one
row, never two. A sub-word that straddles two tokens (byte-level BPE may merge across a
``SpaceAfter=No`` boundary, e.g. two Chinese words) counts in both; special tokens and sub-words
that overlap no token (a lone space) count in none. Sentences longer than the model's limit are
dropped and counted.

At real-model scale (issue 10 §4): the forward pass may run in bfloat16/float16 (``compute_dtype``;
word vectors are always pooled in float32, then stored as ``dtype`` says), a checkpoint too large for
one GPU is spread over the visible GPUs with accelerate's ``device_map``, and the CPU work of the next
chunk (tokenization, alignment, padding) can run in a background thread while the current chunk's
forward pass runs (`WordActivationExtractor.extract_stream`), with bit-identical results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from probing.conllu_io import SurfaceText
from probing.models import LoadedModel
from probing.validation import at_least, one_of, reject

#: Bumped whenever what a word's vector is changes, so that stored activations are recomputed.
EXTRACTION_VERSION = 2

#: Dtypes the forward pass may run in (``ExtractionParams.compute_dtype``).
COMPUTE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
#: Dtypes word vectors may be stored in (``ExtractionParams.dtype``).
STORAGE_DTYPES: tuple[str, ...] = ("float32", "float16")


@dataclass(frozen=True)
class ExtractionParams:
    """How activations are computed (hashed into the fingerprint of their partitions).

    ``dtype`` is how vectors are stored; ``compute_dtype`` the (resolved, never "auto") dtype of the
    model's weights and forward pass, which changes the vectors and so is part of the fingerprint.
    """

    batch_tokens: int = 8192
    dtype: str = "float32"
    max_length: int | None = None
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        problems = [
            *at_least("batch_tokens", self.batch_tokens, 1),
            *at_least("max_length", self.max_length, 2),
            *one_of("compute_dtype", self.compute_dtype, COMPUTE_DTYPES),
        ]
        if self.dtype not in STORAGE_DTYPES:
            problems.append(f"dtype: expected {' or '.join(STORAGE_DTYPES)}, got {self.dtype!r}")
        reject(problems)


def storage_values(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """Float32 word vectors in a storage dtype (`STORAGE_DTYPES`), rounded to nearest even as numpy's
    ``astype`` rounds (overflow to inf), but by torch's vectorised conversion: numpy's float16 cast took
    2.5 ns per value, torch's 0.07 (3,200 × 1,024 values, 2 threads), and extraction's writer threads
    convert every stored value."""
    if dtype == "float32":
        return np.ascontiguousarray(vectors, dtype=np.float32)
    if dtype == "float16":
        return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(torch.float16).numpy()
    raise ValueError(f"storage dtype {dtype!r}: expected {' or '.join(STORAGE_DTYPES)}")


def compute_torch_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype of a compute dtype name, refusing bfloat16 on a GPU without native support
    (compute capability < 8.0 emulates it, far slower than float16 or float32)."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype {name!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    if name == "bfloat16" and device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        raise ValueError(
            f"compute dtype bfloat16: {torch.cuda.get_device_name(device)} has no native bfloat16; "
            "set extraction.compute_dtype to float16 or float32"
        )
    return COMPUTE_DTYPES[name]


@dataclass(frozen=True)
class EncodedText:
    """One tokenized sentence: its ids, and the (sub-word, word) pairs that say which sub-words
    make up each word (``subword[i]`` belongs to ``word[i]``)."""

    ids: list[int]
    subword: np.ndarray
    word: np.ndarray


def subword_word_pairs(
    offsets: np.ndarray, special: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (sub-word, word) where the sub-word's character span overlaps the word's token span.

    ``offsets`` (T, 2) are the sub-words' [start, end) offsets in the text, ``special`` (T,) marks
    special tokens, ``starts``/``ends`` (W,) the words' spans, non-decreasing. Spans [s, e) and
    [a, b) overlap when s < b and a < e; the words a sub-word overlaps are a contiguous run
    ``lo <= w < hi`` found by two binary searches.
    """
    s, e = offsets[:, 0], offsets[:, 1]
    real = (special == 0) & (e > s)
    lo = np.searchsorted(ends, s, side="right")
    hi = np.searchsorted(starts, e, side="left")
    count = np.where(real, np.maximum(hi - lo, 0), 0)
    subword = np.repeat(np.arange(len(offsets)), count)
    first = np.repeat(lo - (np.cumsum(count) - count), count)
    return subword, first + np.arange(len(subword))


def encode_text(tokenizer: object, sentences: Sequence[SurfaceText]) -> list[EncodedText]:
    """Tokenize each sentence's surface text (special tokens added) and map sub-words to its words.

    The alignment runs once over the whole batch: each sentence's character spans are shifted past the
    previous sentences' text, so one `subword_word_pairs` call aligns them all (per-sentence numpy calls
    held the GIL long enough to stall a GPU's forward pass in the other thread).
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    encodings = backend.encode_batch([s.text for s in sentences], add_special_tokens=True)
    if not encodings:
        return []
    n_tokens = np.fromiter((len(enc.ids) for enc in encodings), np.int64, len(encodings))
    n_words = np.fromiter((len(s.starts) for s in sentences), np.int64, len(sentences))
    shift = np.cumsum([0] + [len(s.text) + 1 for s in sentences[:-1]])
    token_shift = np.repeat(shift, n_tokens)
    word_shift = np.repeat(shift, n_words)
    offsets = np.fromiter((x for enc in encodings for pair in enc.offsets for x in pair), np.int64).reshape(-1, 2)
    special = np.fromiter((x for enc in encodings for x in enc.special_tokens_mask), np.int64, int(n_tokens.sum()))
    starts = np.fromiter((x for s in sentences for x in s.starts), np.int64, int(n_words.sum())) + word_shift
    ends = np.fromiter((x for s in sentences for x in s.ends), np.int64, int(n_words.sum())) + word_shift
    subword, word = subword_word_pairs(offsets + token_shift[:, None], special, starts, ends)
    token_base, word_base = np.cumsum(n_tokens) - n_tokens, np.cumsum(n_words) - n_words
    cuts = np.searchsorted(subword, np.cumsum(n_tokens)[:-1])
    return [
        EncodedText(enc.ids, sub - token_base[i], wrd - word_base[i])
        for i, (enc, sub, wrd) in enumerate(zip(encodings, np.split(subword, cuts), np.split(word, cuts), strict=True))
    ]


def pool_words(hidden: torch.Tensor, subword: torch.Tensor, word: torch.Tensor, n_words: int) -> torch.Tensor:
    """Mean of sub-word vectors per word: ``hidden`` (T, d); pair i puts row ``subword[i]`` into word
    ``word[i]`` (0..n_words-1). A word with no sub-word gets a zero vector."""
    sums = torch.zeros(n_words, hidden.shape[-1], dtype=torch.float32, device=hidden.device)
    sums.index_add_(0, word, hidden[subword].float())
    counts = torch.bincount(word, minlength=n_words).clamp(min=1).unsqueeze(1)
    return sums / counts


def token_budget_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group indices, longest first, so that each batch's padded size (rows × longest) fits the budget.

    A sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current and max(longest, lengths[i]) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


@dataclass
class BatchResult:
    """Word vectors of the kept sentences, words concatenated in input order, and the dropped ones."""

    vectors: dict[int, np.ndarray]
    kept: list[int]
    dropped: list[int]
    n_tokens: int


@dataclass
class PaddedBatch:
    """One batch ready for the forward pass: right-padded ids and mask, the (sub-word row, word) pairs
    in the flattened (rows × length) hidden states, and the row of each of its words (in batch order)
    in its chunk's output (``destination``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    subword: torch.Tensor
    word: torch.Tensor
    n_words: int
    destination: np.ndarray


@dataclass
class PreparedChunk:
    """The CPU side of a chunk (tokenized, aligned, batched, padded), before any forward pass."""

    batches: list[PaddedBatch]
    n_words: list[int]
    kept: list[int]
    dropped: list[int]
    n_tokens: int


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (rows × longest) of a batch of id lists."""
    length = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
    return input_ids, mask


def padded_batch(
    encoded: Sequence[EncodedText], n_words: Sequence[int], first_rows: Sequence[int], pad_id: int
) -> PaddedBatch:
    """The padded inputs of a batch and its sub-word → word pairs, words numbered in batch order; sentence
    ``row``'s words go to rows ``first_rows[row]``, ... of the chunk's output."""
    input_ids, mask = pad_batch([e.ids for e in encoded], pad_id)
    length = input_ids.shape[1]
    offsets = np.cumsum([0, *n_words])
    subword = torch.from_numpy(np.concatenate([e.subword + row * length for row, e in enumerate(encoded)]))
    word = torch.from_numpy(np.concatenate([e.word + offsets[row] for row, e in enumerate(encoded)]))
    destination = np.concatenate([np.arange(first, first + n) for first, n in zip(first_rows, n_words, strict=True)])
    return PaddedBatch(input_ids, mask, subword, word, int(offsets[-1]), destination)


class WordActivationExtractor:
    """Runs surface texts through a loaded model and pools one vector per syntactic word per layer."""

    def __init__(
        self, loaded: LoadedModel, layers: Sequence[int], max_length: int | None = None, batch_tokens: int = 8192
    ):
        loaded.hook_points.check_layers(layers)
        self.loaded = loaded
        self.layers = list(layers)
        self.max_length = min(max_length or loaded.max_length, loaded.max_length)
        self.batch_tokens = batch_tokens
        self.pad_id = loaded.tokenizer.pad_token_id or 0

    @torch.inference_mode()
    def run_model(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[int, torch.Tensor]:
        """The model's forward pass on a padded batch, up to the deepest layer wanted; returns the hidden
        states of the extractor's layers, by layer."""
        device = self.loaded.device
        return self.loaded.hook_points.read_layers(
            self.layers,
            lambda: self.loaded.model(
                input_ids=input_ids.to(device, non_blocking=True),
                attention_mask=attention_mask.to(device, non_blocking=True),
            ),
        )

    def forward(self, ids: Sequence[Sequence[int]]) -> dict[int, torch.Tensor]:
        """One right-padded batched forward pass of id lists (the bare pass that bench/extract.py times)."""
        return self.run_model(*pad_batch(ids, self.pad_id))

    def prepare(self, sentences: Sequence[SurfaceText]) -> PreparedChunk:
        """Tokenize and align a chunk, drop sentences over the length limit, and pad its batches."""
        encoded = encode_text(self.loaded.tokenizer, sentences)
        n_words = [len(s.starts) for s in sentences]
        kept = [i for i, e in enumerate(encoded) if len(e.ids) <= self.max_length]
        dropped = sorted(set(range(len(encoded))) - set(kept))
        first_row = dict(zip(kept, np.cumsum([0, *(n_words[i] for i in kept)])[:-1].tolist(), strict=True))
        batches = []
        for batch in token_budget_batches([len(encoded[i].ids) for i in kept], self.batch_tokens):
            members = [kept[j] for j in batch]
            batches.append(
                padded_batch(
                    [encoded[i] for i in members],
                    [n_words[i] for i in members],
                    [first_row[i] for i in members],
                    self.pad_id,
                )
            )
        return PreparedChunk(batches, n_words, kept, dropped, sum(len(encoded[i].ids) for i in kept))

    @torch.inference_mode()
    def _pool_batch(self, batch: PaddedBatch) -> dict[int, torch.Tensor]:
        """Word vectors (float32) of a padded batch per layer, words concatenated in batch order.

        Pooling runs where each layer's hidden states are (with a ``device_map``, on several GPUs).
        """
        hidden_states = self.run_model(batch.input_ids, batch.attention_mask)
        pairs: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        pooled = {}
        for layer in self.layers:
            hidden = hidden_states[layer]
            if hidden.device not in pairs:
                pairs[hidden.device] = (batch.subword.to(hidden.device), batch.word.to(hidden.device))
            subword, word = pairs[hidden.device]
            pooled[layer] = pool_words(hidden.reshape(-1, hidden.shape[-1]), subword, word, batch.n_words)
        return pooled

    def compute(self, prepared: PreparedChunk) -> BatchResult:
        """Forward passes and pooling of a prepared chunk: word vectors (float32) per layer for all
        words of the kept sentences, in input order."""
        total = sum(prepared.n_words[i] for i in prepared.kept)
        vectors = {layer: np.zeros((total, self.loaded.hidden_size), np.float32) for layer in self.layers}
        for batch in prepared.batches:
            for layer, values in self._pool_batch(batch).items():
                vectors[layer][batch.destination] = values.cpu().numpy()
        return BatchResult(vectors, prepared.kept, prepared.dropped, prepared.n_tokens)

    def extract(self, sentences: Sequence[SurfaceText]) -> BatchResult:
        """Word vectors (float32) per layer for all words of the kept sentences, in input order."""
        return self.compute(self.prepare(sentences))

    def extract_stream(
        self, chunks: Iterable[tuple[object, Sequence[SurfaceText]]], overlap: bool
    ) -> Iterator[tuple[object, Sequence[SurfaceText], BatchResult]]:
        """`extract` over a stream of (tag, sentences) chunks, yielding (tag, sentences, result) in order.

        With ``overlap`` one background thread reads and prepares chunk i+1 (tokenizer, alignment and
        padding; the Rust tokenizer and torch release the GIL) while chunk i runs forward, so that an
        accelerator does not wait on the CPU; the results are the same objects computed by the same
        functions, so bit-identical to the sequential path.
        """
        if not overlap:
            for tag, sentences in chunks:
                yield tag, sentences, self.extract(sentences)
            return
        source = iter(chunks)

        def read_and_prepare() -> tuple[object, Sequence[SurfaceText], PreparedChunk] | None:
            item = next(source, None)
            return None if item is None else (item[0], item[1], self.prepare(item[1]))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xling-prepare") as pool:
            pending = pool.submit(read_and_prepare)
            while (item := pending.result()) is not None:
                pending = pool.submit(read_and_prepare)
                yield item[0], item[1], self.compute(item[2])
