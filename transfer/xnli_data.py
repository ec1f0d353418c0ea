"""XNLI: strict readers for the per-language and the official layouts, the English split, pair encoding.

Per-language layout (XTREME): ``dev-<lang>.tsv`` = premise<TAB>hypothesis<TAB>label, no header.
``test-<lang>.tsv`` has no labels, so it is never read for accuracy. Official XNLI-1.0 layout:
``xnli.dev.tsv`` / ``xnli.test.tsv`` with a header naming (among others) ``language``,
``gold_label``, ``sentence1``, ``sentence2``.

Only dev files carry labels here, so the English dev file is the training data. The dev files are
parallel: row i of every language translates English row i and has its label, and each premise
has three hypotheses. So the English rows are split by *premise* (a seeded permutation of the
premises, cut 80/10/10 into train / select (model selection) / test; every hypothesis of a premise
in one part), and every language, English included, is scored only on the rows of the test part
(the same row indices): a target row that translates a training row would measure memorised
alignment, not transfer. ``read_parallel_dev`` checks that a target file is row-parallel to
English (same number of rows, same label on every row).

Pairs are encoded with the tokenizer's pair template where it has one (BERT: [CLS] p [SEP] h [SEP],
with segment ids). Byte-level BPE tokenizers without one (BLOOM adds no special tokens) get
``p <eos> h <eos>``: EOS marks the boundary, and the closing EOS gives the causal model's
sequence classifier (which reads the last non-pad token) the same final token for every pair.
Both are truncated longest-first to ``max_length`` tokens.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probing.input_error import InputError
from transfer.examples import Encoded

XNLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
_LABEL_ID = {label: i for i, label in enumerate(XNLI_LABELS)}
_OFFICIAL_COLUMNS = ("language", "gold_label", "sentence1", "sentence2")
#: Bumped whenever the XNLI split or the rows scored change (2: split by premise, targets scored only on
#: the rows parallel to the English test part), so that stored transfer results are recomputed.
XNLI_SPLIT_VERSION = 2


class XNLIError(InputError):
    """Malformed XNLI input; the message names the file, the line and what was expected."""


@dataclass(frozen=True)
class NliPair:
    """A premise, a hypothesis and the label id of their relation (index into XNLI_LABELS)."""

    premise: str
    hypothesis: str
    label: int
    #: The 1-based line of the row in its file (0 when not read from a file); not part of equality.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class EnglishSplit:
    """Row indices (sorted) of the English dev file in each part; a target's rows at ``test`` are its test set."""

    train: tuple[int, ...]
    select: tuple[int, ...]
    test: tuple[int, ...]


def _lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-final lines of a UTF-8 file; XNLIError on bad bytes or an empty file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise XNLIError(path, None, "an existing XNLI file", "no such file") from None
    raw_lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")  # a BOM is not part of the first premise
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    if not raw_lines:
        raise XNLIError(path, None, "at least one row", "an empty file")
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append((number, raw.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as err:
            raise XNLIError(
                path, number, "UTF-8 text", f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
            ) from None
    return lines


def _pair(path: Path, number: int, premise: str, hypothesis: str, label: str) -> NliPair:
    if not premise.strip() or not hypothesis.strip():
        which = "premise" if not premise.strip() else "hypothesis"
        raise XNLIError(path, number, "a non-empty premise and hypothesis", f"an empty {which}")
    if label not in _LABEL_ID:
        raise XNLIError(path, number, f"a label in {', '.join(XNLI_LABELS)}", repr(label))
    return NliPair(premise, hypothesis, _LABEL_ID[label], number)


def read_xnli(path: Path | str) -> list[NliPair]:
    """The labelled pairs of a per-language file (``dev-<lang>.tsv``); XNLIError on any malformed row."""
    path = Path(path)
    pairs = []
    for number, line in _lines(path):
        columns = line.split("\t")
        if len(columns) != 3:
            raise XNLIError(
                path,
                number,
                "3 tab-separated columns (premise, hypothesis, label); test-<lang>.tsv has no labels, and "
                "official XNLI-1.0 files with a header are read by read_xnli_official",
                f"{len(columns)} columns",
            )
        pairs.append(_pair(path, number, *columns))
    return pairs


def read_xnli_official(path: Path | str, language: str) -> list[NliPair]:
    """The labelled pairs of one language in an official XNLI-1.0 file (``xnli.dev.tsv``, header row)."""
    path = Path(path)
    (_, header_line), *rows = _lines(path)
    header = header_line.split("\t")
    missing = [c for c in _OFFICIAL_COLUMNS if c not in header]
    if missing:
        raise XNLIError(path, 1, f"a header row with columns {', '.join(_OFFICIAL_COLUMNS)}", f"no {missing[0]}")
    at = {c: header.index(c) for c in _OFFICIAL_COLUMNS}
    pairs, languages = [], set()
    for number, line in rows:
        columns = line.split("\t")
        if len(columns) != len(header):
            raise XNLIError(path, number, f"{len(header)} tab-separated columns as in the header", str(len(columns)))
        languages.add(columns[at["language"]])
        if columns[at["language"]] == language:
            pairs.append(
                _pair(path, number, columns[at["sentence1"]], columns[at["sentence2"]], columns[at["gold_label"]])
            )
    if not pairs:
        raise XNLIError(path, None, f"rows for language '{language}'", f"only {', '.join(sorted(languages))}")
    return pairs


def xnli_dev_file(xnli_dir: Path | str, language: str) -> Path:
    """The file holding a language's labelled dev pairs: ``dev-<lang>.tsv``, else the official ``xnli.dev.tsv``."""
    folder = Path(xnli_dir)
    for path in (folder / f"dev-{language}.tsv", folder / "xnli.dev.tsv"):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder}: no dev-{language}.tsv (nor an official xnli.dev.tsv) for language '{language}'")


def read_xnli_dev(xnli_dir: Path | str, language: str) -> list[NliPair]:
    """A language's labelled dev pairs, from the file ``xnli_dev_file`` names."""
    path = xnli_dev_file(xnli_dir, language)
    return read_xnli_official(path, language) if path.name == "xnli.dev.tsv" else read_xnli(path)


def check_parallel(english: Sequence[NliPair], target: Sequence[NliPair], path: Path | str) -> None:
    """XNLIError unless ``target`` (read from ``path``) has English's number of rows and its label on every row.

    Scoring a target only on the rows parallel to the English test part is leak-free only if row i
    of the target really translates English row i; a shifted, shortened or reordered file breaks that.
    """
    if len(target) != len(english):
        raise XNLIError(path, None, f"{len(english)} rows, parallel to the English dev file", f"{len(target)} rows")
    for row, (source, pair) in enumerate(zip(english, target, strict=True), start=1):
        if pair.label != source.label:
            raise XNLIError(
                path,
                pair.line or None,
                f"label '{XNLI_LABELS[source.label]}' as on row {row} of the English dev file (files are row-parallel)",
                f"'{XNLI_LABELS[pair.label]}'",
            )


def read_parallel_dev(xnli_dir: Path | str, language: str, english: Sequence[NliPair]) -> list[NliPair]:
    """A target language's dev pairs, checked to be row-parallel to the English ones (``check_parallel``)."""
    pairs = read_xnli_dev(xnli_dir, language)
    check_parallel(english, pairs, xnli_dev_file(xnli_dir, language))
    return pairs


def read_parallel_devs(xnli_dir: Path | str, source: str, targets: Sequence[str]) -> dict[str, list[NliPair]]:
    """The dev pairs of the source language and of every target (row-parallel to the source's); XNLIError
    on the first malformed file. The study's config calls it, so a bad file stops a study before it starts."""
    english = read_xnli_dev(xnli_dir, source)
    return {lang: english if lang == source else read_parallel_dev(xnli_dir, lang, english) for lang in targets}


def split_english_dev(
    pairs: Sequence[NliPair], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> EnglishSplit:
    """Train / select / test row indices of the English dev pairs, split by premise.

    The distinct premises (in order of first appearance) are permuted with ``seed`` and cut in
    order at round(cumulative fraction × number of premises); each row goes to its premise's part.
    """
    rows_of: dict[str, list[int]] = {}
    for row, pair in enumerate(pairs):
        rows_of.setdefault(pair.premise, []).append(row)
    premises = list(rows_of)
    order = np.random.default_rng(seed).permutation(len(premises))
    cuts = [round(float(f) * len(premises)) for f in np.cumsum(fractions)[:2]]
    parts = (order[: cuts[0]], order[cuts[0] : cuts[1]], order[cuts[1] :])
    return EnglishSplit(*(tuple(sorted(row for p in part for row in rows_of[premises[p]])) for part in parts))


def _truncate_longest_first(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    cut_a = cut_b = 0
    while len(a) - cut_a + len(b) - cut_b > budget:
        if len(a) - cut_a >= len(b) - cut_b:
            cut_a += 1
        else:
            cut_b += 1
    return a[: len(a) - cut_a], b[: len(b) - cut_b]


def encode_xnli(tokenizer: object, pairs: Sequence[NliPair], max_length: int) -> list[Encoded]:
    """Pair token ids (and segment ids where the tokenizer has a pair template) with one label each."""
    premises, hypotheses = [p.premise for p in pairs], [p.hypothesis for p in pairs]
    if tokenizer.num_special_tokens_to_add(pair=True) > 0:
        enc = tokenizer(premises, hypotheses, truncation="longest_first", max_length=max_length)
        types = enc.get("token_type_ids") or [None] * len(pairs)
        return [
            Encoded(tuple(ids), p.label, None if t is None else tuple(t))
            for ids, t, p in zip(enc["input_ids"], types, pairs, strict=True)
        ]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has neither a pair template nor an EOS token to separate premise and hypothesis")
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    first = backend.encode_batch(premises, add_special_tokens=False)
    second = backend.encode_batch(hypotheses, add_special_tokens=False)
    examples = []
    for a, b, p in zip(first, second, pairs, strict=True):
        ids_a, ids_b = _truncate_longest_first(list(a.ids), list(b.ids), max_length - 2)
        examples.append(Encoded((*ids_a, eos, *ids_b, eos), p.label))
    return examples
