"""The lexicon read from a language's UD files, and the category of a prediction against the gold word."""

from pathlib import Path

import pytest

from probing.lexicon import Analysis, GoldWord, Lexicon

LINES = [
    ("1", "He", "he", "PRON", "Number=Sing|Person=3|PronType=Prs"),
    ("2", "makes", "make", "VERB", "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin"),
    ("3", "made", "make", "VERB", "Mood=Ind|Tense=Past|VerbForm=Fin"),
    ("4", "make", "make", "VERB", "VerbForm=Inf"),
    ("5", "prepared", "prepare", "VERB", "Mood=Ind|Tense=Past|VerbForm=Fin"),
]


def conllu(rows: list[tuple[str, str, str, str, str]], text: str) -> str:
    body = "\n".join(f"{i}\t{form}\t{lemma}\t{upos}\t_\t{feats}\t0\t_\t_\t_" for i, form, lemma, upos, feats in rows)
    return f"# sent_id = 1\n# text = {text}\n{body}\n\n"


@pytest.fixture(scope="module")
def english(tmp_path_factory) -> Lexicon:
    folder: Path = tmp_path_factory.mktemp("ud") / "en"
    folder.mkdir()
    (folder / "en_x-ud-test.conllu").write_text(conllu(LINES, "He makes made make prepared"))
    return Lexicon.from_ud(folder.parent, "en")


MAKES = GoldWord("makes", "make", "PRS")


@pytest.mark.parametrize(
    ("prediction", "category"),
    [
        ("makes", "correct"),
        ("Makes", "correct"),  # forms are compared lowercased
        ("made", "clwv"),  # correct lemma, another Tense value
        ("make", "other_form"),  # correct lemma, but no other Tense value: not CLWV (003 §4.3)
        ("prepared", "wrong_lemma"),
        ("He", "wrong_lemma"),
        ("maked", "unknown"),  # in no treebank: kept apart
    ],
)
def test_a_prediction_is_judged_against_the_gold_word(english, prediction, category):
    assert english.categorize(prediction, MAKES, "Tense") == category


def test_each_form_keeps_its_analyses_as_unimorph_values(english):
    (made,) = english.analyses["made"]
    assert made.lemma == "make" and made.upos == "VERB"
    assert made.value("Tense") == "PST" and made.value("POS") == "V" and made.value("Number") is None
    assert "maked" not in english and "MADE" in english


def test_an_ambiguous_form_is_clwv_when_one_reading_has_the_lemma_and_another_value():
    lexicon = Lexicon(
        {"saw": frozenset({Analysis("see", "VERB", (("Tense", "PST"),)), Analysis("saw", "NOUN", (("Number", "SG"),))})}
    )
    assert lexicon.categorize("saw", GoldWord("sees", "see", "PRS"), "Tense") == "clwv"
    assert lexicon.categorize("saw", GoldWord("saws", "saw", "PL"), "Number") == "clwv"
    assert lexicon.categorize("saw", GoldWord("walks", "walk", "PRS"), "Tense") == "wrong_lemma"


def test_a_multi_word_token_has_only_the_attributes_one_of_its_parts_has(tmp_path):
    folder = tmp_path / "pt"
    folder.mkdir()
    rows = "\n".join(
        [
            "1-2\tdo\t_\t_\t_\t_\t_\t_\t_\t_",
            "1\tde\tde\tADP\t_\t_\t0\t_\t_\t_",
            "2\to\to\tDET\t_\tGender=Masc|Number=Sing\t0\t_\t_\t_",
            "3\tlivro\tlivro\tNOUN\t_\tGender=Masc|Number=Sing\t0\t_\t_\t_",
        ]
    )
    (folder / "pt_x-ud-test.conllu").write_text(f"# sent_id = 1\n# text = do livro\n{rows}\n\n")
    lexicon = Lexicon.from_ud(tmp_path, "pt")
    readings = {(a.lemma, a.value("POS"), a.value("Number")) for a in lexicon.analyses["do"]}
    assert readings == {("de", None, None), ("o", None, "SG")}  # POS is on both parts: neither keeps it
    assert "de" not in lexicon  # the parts of a multi-word token are not surface forms
