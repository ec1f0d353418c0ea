"""Read CoNLL-U treebanks into sentences of syntactic words and the surface text that carries them.

Parsing is done by the ``conllu`` library; before a sentence block reaches it, each line is checked
(UTF-8 without NUL bytes, 10 tab-separated columns, the syntax of ID, HEAD, DEPS and FEATS with each
feature once, UPOS one of UD's 17 tags), because ``conllu`` silently accepts short lines, malformed
FEATS and a feature given twice, and fails on a non-integer HEAD without naming file or line; IDs
must run 1, 2, ... (none repeated or skipped). Empty nodes (``5.1``) are skipped. Accepted: a UTF-8
byte-order mark at the start of a file, and ``_`` as HEAD (as UD allows for empty nodes and ranges).

Two layers are kept (UD v2 "Words, tokens and empty nodes"): *syntactic words* (integer IDs), which
carry the features, and *surface tokens*, what the running text contains: a multi-word token (a
range line ``3-4``, e.g. Portuguese "do" = de + o) or else a single word. ``Sentence.text`` is the
sentence's ``# text`` line; without one it is rebuilt from the tokens' forms and MISC spacing
(``SpaceAfter=No`` → nothing, ``SpacesAfter=`` → its decoded spaces, else one space). Every token is
located in the text (its character span), which checks the treebank against itself: a form that does
not continue the text, a space where ``SpaceAfter=No`` says none, no space where it says one, a range
that does not cover the words that follow it, all raise `CoNLLUError` naming file and line. On the 18
treebanks of this project (56,034 sentences) every ``# text`` equals the rebuilt text except where the
text has two spaces or a no-break space that MISC does not record (46 Finnish sentences, 1 English);
the ``# text`` line is what is used, so the model reads exactly UD's running text.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import conllu
from conllu.parser import parse_comment_line as parse_comment

from probing.input_error import InputError

_ID_WORD = re.compile(r"^[1-9][0-9]*$")
_ID_RANGE = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_ID_EMPTY = re.compile(r"^[0-9]+\.[1-9][0-9]*$")
_FEAT = r"[A-Za-z][A-Za-z0-9]*(\[[a-z0-9]+\])?=[A-Za-z0-9]+(,[A-Za-z0-9]+)*"
_FEATS = re.compile(rf"^{_FEAT}(\|{_FEAT})*$")
_HEAD = re.compile(r"^(0|[1-9][0-9]*|_)$")
_DEP = r"(0|[1-9][0-9]*(\.[1-9][0-9]*)?):[^|\s:][^|\s]*"
_DEPS = re.compile(rf"^(_|{_DEP}(\|{_DEP})*)$")

#: The 17 universal POS tags of UD v2, in the order of their label ids.
UPOS_TAGS: tuple[str, ...] = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)


class CoNLLUError(InputError):
    """Malformed treebank input; the message names the file, line and field and what was expected."""

    def __init__(self, path: Path | str, line: int | None, field: str, expected: str, found: str = ""):
        super().__init__(path, line, expected, found, field)


_SPACE_ESCAPES = re.compile(r"\\(s|t|r|n|p|\\|u[0-9A-Fa-f]{4})")
_SPACE_CHARS = {"s": " ", "t": "\t", "r": "\r", "n": "\n", "p": "|", "\\": "\\"}


@dataclass(frozen=True)
class Word:
    """One syntactic word of a sentence; ``token`` indexes the surface token that carries it."""

    form: str
    lemma: str
    upos: str
    feats: dict[str, str]
    token: int


@dataclass(frozen=True)
class Token:
    """One surface token: ``text[start:end] == form``; ``words`` are the syntactic words it carries
    (one, or the parts of a multi-word token)."""

    form: str
    start: int
    end: int
    words: tuple[int, ...]


@dataclass(frozen=True)
class SurfaceText:
    """What the model reads: the running text, and per syntactic word the span of its surface token
    (the parts of a multi-word token share one span)."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]


@dataclass(frozen=True)
class Sentence:
    """A sentence with its provenance (``sentence_id`` is ``<file name>#<sent_id>``), its syntactic
    words, and its surface text and tokens."""

    sentence_id: str
    path: str
    line: int
    words: tuple[Word, ...]
    text: str
    tokens: tuple[Token, ...]

    @property
    def surface(self) -> SurfaceText:
        """The text and, per word, the character span of the token that carries it."""
        spans = [(self.tokens[w.token].start, self.tokens[w.token].end) for w in self.words]
        return SurfaceText(self.text, tuple(s for s, _ in spans), tuple(e for _, e in spans))


@dataclass
class _RawToken:
    """A surface token while a sentence is read: form, spacing after it, its words, its line."""

    form: str
    space_after: str
    line: int
    words: list[int]


def _decode_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines, numbered from 1; a leading byte-order mark is dropped (accepted, as UTF-8 allows)."""
    if path.is_dir():
        raise CoNLLUError(path, None, "file", "a CoNLL-U file", "a directory")
    try:
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    except FileNotFoundError:
        raise CoNLLUError(path, None, "file", "an existing CoNLL-U file", "no such file") from None
    if not data.strip():
        raise CoNLLUError(path, None, "file", "at least one sentence", "an empty file")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if b"\0" in raw:
            raise CoNLLUError(path, number, "encoding", "text without NUL bytes", f"one at column {raw.index(0) + 1}")
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
    token_id, upos, feats, head, deps = columns[0], columns[3], columns[5], columns[6], columns[8]
    is_word = bool(_ID_WORD.match(token_id))
    if not (is_word or _ID_RANGE.match(token_id) or _ID_EMPTY.match(token_id)):
        raise CoNLLUError(
            path, number, "ID", "an integer word id, a range like 3-4 or an empty node like 5.1", repr(token_id)
        )
    if upos not in UPOS_TAGS and not (upos == "_" and not is_word):
        raise CoNLLUError(path, number, "UPOS", f"one of the 17 UD tags ({', '.join(UPOS_TAGS)})", repr(upos))
    if feats != "_" and not _FEATS.match(feats):
        raise CoNLLUError(
            path, number, "FEATS", "'_' or Name=Value pairs joined by '|' (e.g. Number=Sing|Case=Nom)", repr(feats)
        )
    names = [pair.split("=", 1)[0] for pair in feats.split("|")]
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise CoNLLUError(path, number, "FEATS", "each feature once", f"{twice} twice in {feats!r}")
    if not _HEAD.match(head):
        raise CoNLLUError(path, number, "HEAD", "the integer id of the head word (0: the root) or '_'", repr(head))
    if not _DEPS.match(deps):
        raise CoNLLUError(path, number, "DEPS", "'_' or head:relation pairs joined by '|' (e.g. 2:nsubj)", repr(deps))
    return is_word


def _space_after(misc: dict | None) -> str:
    """The text between a token and the next one, as MISC records it (UD: SpaceAfter, SpacesAfter)."""
    misc = misc or {}
    if misc.get("SpacesAfter"):
        return _SPACE_ESCAPES.sub(
            lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "u" else _SPACE_CHARS[m.group(1)],
            misc["SpacesAfter"],
        )
    return "" if misc.get("SpaceAfter") == "No" else " "


def _surface_tokens(path: Path, tokens: conllu.TokenList, lines: list[int]) -> tuple[list[_RawToken], list[Word]]:
    """Group the syntactic words under their surface tokens, checking that IDs run 1, 2, ... and that
    each range ``a-b`` starts at the next word and is followed by exactly its words a..b."""
    raw: list[_RawToken] = []
    words: list[Word] = []
    open_range: tuple[int, int] | None = None  # (last word id of the range, its line)
    for tok, line in zip(tokens, lines, strict=True):
        token_id = tok["id"]
        expected = len(words) + 1
        if isinstance(token_id, tuple) and token_id[1] == ".":
            continue
        if isinstance(token_id, tuple):
            first, _, last = token_id
            if open_range is not None or first != expected or last <= first:
                raise CoNLLUError(
                    path,
                    line,
                    "ID",
                    f"a multi-word range {expected}-N (N > {expected}) covering the next words",
                    f"{first}-{last}" + (f" inside range ending at word {open_range[0]}" if open_range else ""),
                )
            open_range = (last, line)
            raw.append(_RawToken(tok["form"], _space_after(tok["misc"]), line, []))
            continue
        if token_id != expected:
            raise CoNLLUError(path, line, "ID", f"word id {expected} (ids run 1, 2, ... after ranges)", str(token_id))
        if open_range is None:
            raw.append(_RawToken(tok["form"], _space_after(tok["misc"]), line, []))
        raw[-1].words.append(len(words))
        words.append(
            Word(
                form=tok["form"],
                lemma=tok["lemma"] if tok["lemma"] not in (None, "_") else tok["form"],
                upos=tok["upos"] or "",
                feats=dict(tok["feats"] or {}),
                token=len(raw) - 1,
            )
        )
        if open_range is not None and token_id == open_range[0]:
            open_range = None
    if open_range is not None:
        raise CoNLLUError(
            path,
            open_range[1],
            "ID",
            f"a range whose words 1..{open_range[0]} all follow it",
            f"the sentence ends at word {len(words)}",
        )
    return raw, words


def _locate(path: Path, line: int, text: str, raw: list[_RawToken]) -> list[Token]:
    """Each token's character span in ``text``; CoNLLUError where form or spacing disagrees with it."""
    located: list[Token] = []
    cursor = 0
    for index, tok in enumerate(raw):
        start = cursor
        while start < len(text) and text[start].isspace():
            start += 1
        if index:
            previous = raw[index - 1]
            if previous.space_after == "" and start > cursor:
                raise CoNLLUError(
                    path,
                    previous.line,
                    "MISC",
                    "no space after a token marked SpaceAfter=No, as in '# text'",
                    f"{text[cursor:start]!r} before {tok.form!r}",
                )
            if previous.space_after and start == cursor:
                raise CoNLLUError(
                    path,
                    previous.line,
                    "MISC",
                    f"SpaceAfter=No: '# text' has no space between {previous.form!r} and {tok.form!r}",
                    "no SpaceAfter=No",
                )
        if not text.startswith(tok.form, start):
            raise CoNLLUError(
                path,
                tok.line,
                "FORM",
                f"the form to continue the sentence text at character {start} "
                f"({text[start : start + len(tok.form) + 8]!r})",
                repr(tok.form),
            )
        cursor = start + len(tok.form)
        located.append(Token(tok.form, start, cursor, tuple(tok.words)))
    if text[cursor:].strip():
        raise CoNLLUError(path, line, "# text", "the text to end with the last token", f"{text[cursor:]!r} left over")
    return located


@dataclass(frozen=True)
class SentenceBlock:
    """One sentence's lines of a CoNLL-U file, each word line checked but not parsed yet (`parse`).

    Reading a treebank is mostly parsing (the ``conllu`` parser, the surface tokens, their spans in the
    text); a caller that keeps a sample of the sentences parses only those."""

    path: Path
    start: int
    lines: tuple[str, ...]
    ordinal: int

    @property
    def text(self) -> str:
        """The sentence's text as `parse` gives it: its ``# text`` (read by the ``conllu`` library's own comment
        parser), or, where it has none, its tokens joined (its words parsed for that)."""
        metadata = {key: value for line in self.lines if line.startswith("#") for key, value in parse_comment(line)}
        return metadata.get("text") or self.parse().text

    def parse(self) -> Sentence:
        """The sentence; raise CoNLLUError (file, line, field) where it is malformed."""
        path, start = self.path, self.start
        tokens = conllu.parse_token_and_metadata("\n".join(self.lines))
        lines = [start + i for i, text in enumerate(self.lines) if not text.startswith("#")]
        raw, words = _surface_tokens(path, tokens, lines)
        sent_id = tokens.metadata.get("sent_id") or str(self.ordinal)
        text = tokens.metadata.get("text") or "".join(t.form + t.space_after for t in raw).rstrip()
        return Sentence(
            sentence_id=f"{path.name}#{sent_id}",
            path=str(path),
            line=start,
            words=tuple(words),
            text=text,
            tokens=tuple(_locate(path, start, text, raw)),
        )


def read_blocks(path: Path | str) -> Iterator[SentenceBlock]:
    """Yield the sentence blocks of one CoNLL-U file, streaming, each word line checked (`_check_token_line`);
    raise CoNLLUError on a malformed line or a file without sentences."""
    path = Path(path)
    block: list[str] = []
    start, n_words, ordinal = 0, 0, 0
    for number, line in _decode_lines(path):
        if not line.strip():
            if n_words:
                ordinal += 1
                yield SentenceBlock(path, start, tuple(block), ordinal)
            block, n_words = [], 0
            continue
        if not block:
            start = number
        block.append(line)
        if not line.startswith("#") and _check_token_line(path, number, line):
            n_words += 1
    if n_words:
        yield SentenceBlock(path, start, tuple(block), ordinal + 1)
    elif ordinal == 0:
        raise CoNLLUError(path, None, "file", "at least one sentence with word lines", "none")


def read_blocks_of(paths: Iterable[Path | str]) -> Iterator[SentenceBlock]:
    """The sentence blocks of several CoNLL-U files pooled in order, streaming (`read_blocks`)."""
    for path in paths:
        yield from read_blocks(path)


def read_conllu(path: Path | str) -> Iterator[Sentence]:
    """Yield the sentences of one CoNLL-U file, streaming; raise CoNLLUError on malformed input."""
    for block in read_blocks(path):
        yield block.parse()
