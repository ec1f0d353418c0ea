"""A language's lexicon from all its UD files, and how a predicted word is judged against the gold word.

Paper 003 (§4.2–4.3) analyses an intervened model's predictions with spaCy's lemmatizer L and
morphological analyser A. spaCy cannot be installed offline and covers three languages, so the
lexicon here is read from the treebanks themselves: every surface token of every ``*.conllu`` file of
the language, lowercased, maps to the set of its analyses (lemma, UPOS, UniMorph features). A token's
features are what `probing.datasets.token_values` gives it (a multi-word token keeps an attribute only
when exactly one of its parts has it), so an analysis says what a dataset row of that token would say.

A prediction is put in one of five categories against the gold word (form, lemma, value of the
attribute), each analysis of the predicted form considered (a form is often ambiguous: "made" is a
past tense and a participle):

* ``correct``: the prediction is the gold form (lowercased);
* ``clwv`` (correct lemma, wrong value): an analysis has the gold lemma and a value of the attribute
  other than the gold value ("makes" → "made" for Tense);
* ``other_form``: an analysis has the gold lemma, but none has another value of the attribute
  ("makes" → "make": no Tense at all; or a spelling variant with the same value);
* ``wrong_lemma``: no analysis has the gold lemma ("makes" → "prepared");
* ``unknown``: the form is in no treebank of the language, so nothing can be said about it. It is
  counted apart and never folded into another category.

The *relevant* predictions are the known ones (every category but unknown); error rate = (relevant −
correct) / relevant and CLWV rate = clwv / relevant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from probing.conllu_io import Sentence
from probing.datasets import read_language, token_values

#: The categories of a prediction, in the order tables list their counts.
CATEGORIES: tuple[str, ...] = ("correct", "clwv", "other_form", "wrong_lemma", "unknown")
#: The categories of a prediction whose form the lexicon knows (the denominator of the rates).
KNOWN: tuple[str, ...] = CATEGORIES[:-1]


class Analysis(NamedTuple):
    """One reading of a surface form: its lemma (lowercased), UPOS and UniMorph attribute → value."""

    lemma: str
    upos: str
    features: tuple[tuple[str, str], ...]

    def value(self, attribute: str) -> str | None:
        return dict(self.features).get(attribute)


class GoldWord(NamedTuple):
    """What a prediction is judged against: the gold surface form, its lemma and its value of the attribute."""

    form: str
    lemma: str
    value: str


@dataclass(frozen=True)
class Lexicon:
    """Lowercased surface form → its analyses in the language's treebanks."""

    analyses: Mapping[str, frozenset[Analysis]]

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sentence]) -> Lexicon:
        found: dict[str, set[Analysis]] = defaultdict(set)
        for sentence in sentences:
            for token in sentence.tokens:
                values = token_values(sentence, token)
                for position in token.words:
                    word = sentence.words[position]
                    features = tuple(sorted((a, v) for a, (p, v) in values.items() if p == position))
                    found[token.form.lower()].add(Analysis(word.lemma.lower(), word.upos, features))
        return cls({form: frozenset(readings) for form, readings in found.items()})

    @classmethod
    def from_ud(cls, ud_dir: Path | str, language: str) -> Lexicon:
        """The lexicon of every ``*.conllu`` file in ``ud_dir/<language>/``."""
        return cls.from_sentences(read_language(ud_dir, language))

    def __contains__(self, form: str) -> bool:
        return form.lower() in self.analyses

    def categorize(self, prediction: str, gold: GoldWord, attribute: str) -> str:
        """The category of a predicted form against the gold word (module docstring)."""
        form = prediction.lower()
        if form == gold.form.lower():
            return "correct"
        readings = self.analyses.get(form)
        if readings is None:
            return "unknown"
        same_lemma = [r for r in readings if r.lemma == gold.lemma.lower()]
        if not same_lemma:
            return "wrong_lemma"
        other = (r.value(attribute) for r in same_lemma)
        return "clwv" if any(v is not None and v != gold.value for v in other) else "other_form"
