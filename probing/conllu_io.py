"""Read CoNLL-U treebanks into sentences of syntactic words, with errors that name file and line.

Parsing is done by the ``conllu`` library; before a sentence block reaches it, each line is checked
(UTF-8, 10 tab-separated columns, ID and FEATS syntax), because ``conllu`` silently accepts short
lines and malformed FEATS. Multi-word-token ranges (``3-4``) and empty nodes (``5.1``) are skipped:
features live on syntactic words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import conllu

from probing.input_error import InputError

_ID_WORD = re.compile(r"^[1-9][0-9]*$")
_ID_RANGE = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_ID_EMPTY = re.compile(r"^[0-9]+\.[1-9][0-9]*$")
_FEAT = r"[A-Za-z][A-Za-z0-9]*(\[[a-z0-9]+\])?=[A-Za-z0-9]+(,[A-Za-z0-9]+)*"
_FEATS = re.compile(rf"^{_FEAT}(\|{_FEAT})*$")


class CoNLLUError(InputError):
    """Malformed treebank input; the message names the file, line and field and what was expected."""

    def __init__(self, path: Path | str, line: int | None, field: str, expected: str, found: str = ""):
        super().__init__(path, line, expected, found, field)


@dataclass(frozen=True)
class Word:
    """One syntactic word of a sentence."""

    form: str
    lemma: str
    upos: str
    feats: dict[str, str]


@dataclass(frozen=True)
class Sentence:
    """A sentence with its provenance (``sentence_id`` is ``<file name>#<sent_id>``) and surface text."""

    sentence_id: str
    path: str
    line: int
    words: tuple[Word, ...]
    text: str


def _decode_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CoNLLUError(path, None, "file", "an existing CoNLL-U file", "no such file") from None
    if not data.strip():
        raise CoNLLUError(path, None, "file", "at least one sentence", "an empty file")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            yield number, raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            raise CoNLLUError(
                path, number, "encoding", "UTF-8 text", f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
            ) from None


def _check_token_line(path: Path, number: int, line: str) -> bool:
    """Validate a token line; return True when it is a syntactic word (integer ID)."""
    columns = line.split("\t")
    if len(columns) != 10:
        raise CoNLLUError(path, number, "columns", "10 tab-separated columns", str(len(columns)))
    token_id, feats = columns[0], columns[5]
    is_word = bool(_ID_WORD.match(token_id))
    if not (is_word or _ID_RANGE.match(token_id) or _ID_EMPTY.match(token_id)):
        raise CoNLLUError(
            path, number, "ID", "an integer word id, a range like 3-4 or an empty node like 5.1", repr(token_id)
        )
    if feats != "_" and not _FEATS.match(feats):
        raise CoNLLUError(
            path, number, "FEATS", "'_' or Name=Value pairs joined by '|' (e.g. Number=Sing|Case=Nom)", repr(feats)
        )
    return is_word


def _to_sentence(path: Path, start: int, block: list[str], ordinal: int) -> Sentence:
    tokens = conllu.parse_token_and_metadata("\n".join(block))
    words = tuple(
        Word(
            form=tok["form"],
            lemma=tok["lemma"] if tok["lemma"] not in (None, "_") else tok["form"],
            upos=tok["upos"] or "",
            feats=dict(tok["feats"] or {}),
        )
        for tok in tokens
        if isinstance(tok["id"], int)
    )
    sent_id = tokens.metadata.get("sent_id") or str(ordinal)
    text = tokens.metadata.get("text") or " ".join(w.form for w in words)
    return Sentence(sentence_id=f"{path.name}#{sent_id}", path=str(path), line=start, words=words, text=text)


def read_conllu(path: Path | str) -> Iterator[Sentence]:
    """Yield the sentences of one CoNLL-U file, streaming; raise CoNLLUError on malformed input."""
    path = Path(path)
    block: list[str] = []
    start, n_words, ordinal = 0, 0, 0
    for number, line in _decode_lines(path):
        if not line.strip():
            if n_words:
                ordinal += 1
                yield _to_sentence(path, start, block, ordinal)
            block, n_words = [], 0
            continue
        if not block:
            start = number
        block.append(line)
        if not line.startswith("#") and _check_token_line(path, number, line):
            n_words += 1
    if n_words:
        yield _to_sentence(path, start, block, ordinal + 1)
    elif ordinal == 0:
        raise CoNLLUError(path, None, "file", "at least one sentence with word lines", "none")
