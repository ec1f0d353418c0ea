"""UD part-of-speech data for transfer: split files, UPOS labels, and first-sub-word token labels.

Files are chosen by their UD split name inside ``ud_dir/<lang>/``: ``*-train*.conllu``,
``*-dev*.conllu``, ``*-test*.conllu`` (so ``*_subset`` files count, and every file of a split is
pooled, sorted by name; Hindi's test split is HDTB's sample plus PUD). A language with no file of
the requested split is an error naming the folder: target languages are always scored on test
files, never on a substitute split. Words are UD syntactic words (Portuguese "do" is read as "de o";
empty nodes are skipped), joined by spaces, unlike the probing stages, which read the surface text:
POS tagging labels every syntactic word and a multi-word token carries two tags that one first
sub-word cannot, and this is XTREME's convention for its POS task (Hu et al. 2020), so zero-shot
scores stay comparable with published ones.

Each word is labelled on its FIRST sub-word token; its other sub-words and special tokens get
``IGNORE_INDEX``, so a word is predicted exactly once (Devlin et al. 2019; XTREME). Words are
tokenized by `probing.models.encode_words`, with a space before every word after the first so
that byte-level BPE sub-words match running text. A sequence longer than ``max_length`` keeps its
first tokens and its trailing special tokens; words whose first sub-word is cut off are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probing.conllu_io import UPOS_TAGS, Sentence, read_blocks_of
from probing.models import encode_words
from transfer.examples import IGNORE_INDEX, Encoded, subsample

_TAG_ID = {tag: i for i, tag in enumerate(UPOS_TAGS)}


@dataclass(frozen=True)
class TaggedSentence:
    """The words of one sentence and their UPOS label ids."""

    words: tuple[str, ...]
    tags: tuple[int, ...]


def split_files(ud_dir: Path | str, language: str, split: str) -> list[Path]:
    """The ``*-<split>*.conllu`` files of a language, sorted; FileNotFoundError naming the folder if none."""
    folder = Path(ud_dir) / language
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no treebank folder for language '{language}'")
    files = sorted(folder.glob(f"*-{split}*.conllu"))
    if not files:
        present = ", ".join(sorted(p.name for p in folder.glob("*.conllu"))) or "none"
        raise FileNotFoundError(
            f"{folder}: no *-{split}*.conllu file for language '{language}' (CoNLL-U files present: {present})"
        )
    return files


def read_sentences(files: Sequence[Path], limit: int | None = None, seed: int = 0) -> list[Sentence]:
    """The sentences of the files in order, or the seeded subset of ``limit`` of them that
    `transfer.examples.subsample` draws from that list (the same sentences, in the same order).

    Every word line of every file is checked (`probing.conllu_io.read_blocks_of`, which names file and line
    of a malformed one), but only the kept sentences are parsed: parsing is most of a read, and a trial
    that keeps 320 of English's 7,123 training sentences took 3.7 s to parse them all.
    """
    return [block.parse() for block in subsample(list(read_blocks_of(files)), limit, seed)]


def read_tagged(files: Sequence[Path], limit: int | None = None, seed: int = 0) -> list[TaggedSentence]:
    """The tagged sentences of the files, all of them or a seeded subset (`read_sentences`)."""
    return [
        TaggedSentence(tuple(w.form for w in s.words), tuple(_TAG_ID[w.upos] for w in s.words))
        for s in read_sentences(files, limit, seed)
    ]


def first_subword_labels(word_ids: Sequence[int], tags: Sequence[int]) -> tuple[int, ...]:
    """Per token: the word's tag on its first sub-word, ``IGNORE_INDEX`` elsewhere (specials are -1)."""
    labels, previous = [], -1
    for w in word_ids:
        labels.append(tags[w] if w >= 0 and w != previous else IGNORE_INDEX)
        previous = w
    return tuple(labels)


def encode_pos(tokenizer: object, sentences: Sequence[TaggedSentence], max_length: int) -> list[Encoded]:
    """Token ids and first-sub-word labels per sentence, cut to ``max_length`` tokens (trailing specials kept)."""
    encoded = encode_words(tokenizer, [s.words for s in sentences])
    examples = []
    for (ids, word_ids), sentence in zip(encoded, sentences, strict=True):
        labels = first_subword_labels(word_ids, sentence.tags)
        if len(ids) > max_length:
            tail = len(word_ids) - len(_rstrip_specials(word_ids))
            keep = max_length - tail
            ids = ids[:keep] + ids[len(ids) - tail :]
            labels = labels[:keep] + labels[len(labels) - tail :]
        examples.append(Encoded(input_ids=tuple(ids), labels=labels))
    return examples


def _rstrip_specials(word_ids: Sequence[int]) -> Sequence[int]:
    end = len(word_ids)
    while end and word_ids[end - 1] < 0:
        end -= 1
    return word_ids[:end]
