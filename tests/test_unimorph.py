"""UD → UniMorph mapping: known pairs from McCarthy et al. (2018) and the bundle rules."""

import pytest

from probing.unimorph import ATTRIBUTES, TAG_DIMENSION, UD_FEATURE_TO_UNIMORPH, ud_to_unimorph


@pytest.mark.parametrize(
    ("upos", "feats", "expected"),
    [
        ("NOUN", {"Number": "Plur", "Gender": "Fem"}, {"POS": "N", "Number": "PL", "Gender": "FEM"}),
        (
            "VERB",
            {"Tense": "Past", "VerbForm": "Fin", "Mood": "Ind", "Person": "3"},
            {"POS": "V", "Tense": "PST", "Finiteness": "FIN", "Mood": "IND", "Person": "3"},
        ),
        ("AUX", {"VerbForm": "Inf"}, {"POS": "V", "Finiteness": "NFIN"}),
        ("DET", {"Definite": "Ind", "PronType": "Art"}, {"POS": "DET", "Definiteness": "INDF"}),
        ("NOUN", {"Case": "Loc", "Animacy": "Inan"}, {"POS": "N", "Case": "ESS", "Animacy": "INAN"}),
        ("NOUN", {"Case": "Ine"}, {"POS": "N", "Case": "ESS+IN"}),
        ("PRON", {"Gender": "Com"}, {"POS": "PRO", "Gender": "FEM+MASC"}),
        ("ADJ", {"Gender": "Masc,Fem"}, {"POS": "ADJ", "Gender": "FEM+MASC"}),
        ("VERB", {"Tense": "Pqp"}, {"POS": "V", "Tense": "PST", "Aspect": "PRF"}),
        ("VERB", {"Tense": "Imp", "Aspect": "Imp"}, {"POS": "V", "Aspect": "IPFV"}),
        (
            "VERB",
            {"Voice": "Pass", "Polarity": "Neg", "Aspect": "Perf"},
            {"POS": "V", "Voice": "PASS", "Polarity": "NEG", "Aspect": "PFV"},
        ),
        ("CCONJ", None, {"POS": "CONJ"}),
        ("SCONJ", {}, {"POS": "CONJ"}),
        ("PUNCT", {"PunctType": "Peri"}, {}),
        ("NOUN", {"Number": "Coll"}, {"POS": "N"}),
        ("VERB", {"VerbForm": "Part"}, {"POS": "V"}),
        # the points where the compatibility table was revised or adds a tag outside the probed dimensions
        ("NOUN", {"Case": "Ins", "Number": "Sing"}, {"POS": "N", "Case": "INS", "Number": "SG"}),
        ("NOUN", {"Case": "Add"}, {"POS": "N", "Case": "ALL+IN"}),
        ("NOUN", {"Definite": "Cons"}, {"POS": "N", "Possession": "PSSD"}),
        ("NOUN", {"Definite": "Def"}, {"POS": "N", "Definiteness": "DEF"}),
    ],
)
def test_known_pairs(upos, feats, expected):
    assert ud_to_unimorph(upos, feats) == expected


def test_every_mapped_tag_has_a_dimension_that_is_a_known_attribute():
    for tags in UD_FEATURE_TO_UNIMORPH.values():
        for tag in tags.split("+"):
            assert TAG_DIMENSION[tag] in ATTRIBUTES


def test_bundle_order_is_canonical_whatever_the_ud_order():
    assert ud_to_unimorph("ADJ", {"Gender": "Fem,Masc"}) == ud_to_unimorph("ADJ", {"Gender": "Masc,Fem"})


def test_additive_shares_the_illatives_case_value_as_the_table_allows():
    assert ud_to_unimorph("NOUN", {"Case": "Add"})["Case"] == ud_to_unimorph("NOUN", {"Case": "Ill"})["Case"]
