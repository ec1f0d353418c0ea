"""UD features → UniMorph attributes and values, as one documented table.

The table follows the UD→UniMorph correspondences of McCarthy et al. (2018) ("Marrying Universal
Dependencies and Universal Morphology"). Each UD feature value maps to one or more UniMorph tags;
each tag belongs to one UniMorph *dimension*, which is what this project calls an attribute
(Number, Gender, Case, ...). Rules worth knowing:

* POS comes from the UPOS column only (``AUX`` → ``V`` as in McCarthy et al.; ``PUNCT``, ``SYM``
  and ``X`` have no UniMorph POS and carry no POS value). VerbForm's ``V.PTCP``/``V.CVB``/``V.MSDR``
  tags are not turned into POS values: a participle stays ``V``.
* Finiteness comes from VerbForm: ``Fin`` → ``FIN``, ``Inf`` → ``NFIN``; other verb forms have none.
* One UD value may feed two dimensions: ``Tense=Pqp`` → ``PST`` (Tense) + ``PRF`` (Aspect);
  ``Tense=Imp`` (imperfect) → ``IPFV`` (Aspect) only.
* Several tags in one dimension form a bundle in canonical (alphabetical) order joined by ``+``:
  ``Gender=Com`` → ``FEM+MASC``; ``Case=Ine`` → ``ESS+IN``; ``Gender=Fem,Masc`` → ``FEM+MASC``.
* UD values with no UniMorph counterpart (``Number=Coll``, ``Case=Lat``, ``Mood=Des``, ...) give no value.

Where the compatibility table has been revised, this follows the UniMorph schema's tags (the
table's first version, and the schema that paper 003's code reads): ``Case=Ins`` → ``INS`` (a later
revision of the table writes ``INST``, which is no schema tag). ``Definite=Cons`` (construct state)
→ ``PSSD``, a value of the Possession dimension, so it is no Definiteness value. ``Case=Add`` →
``IN+ALL``: the table adds ``LGSPEC1``, a language-specific tag in no dimension probed here, so an
additive word has the illative's Case value, as the table's note allows ("semantically the same as
illative"). ``Tense=Pqp`` → ``PST`` (Tense) + ``PRF`` (Aspect), as the table (after Comrie 1976).
"""

from __future__ import annotations

from collections.abc import Mapping

#: UPOS → UniMorph POS.
UPOS_TO_UNIMORPH: dict[str, str] = {
    "ADJ": "ADJ",
    "ADP": "ADP",
    "ADV": "ADV",
    "AUX": "V",
    "CCONJ": "CONJ",
    "DET": "DET",
    "INTJ": "INTJ",
    "NOUN": "N",
    "NUM": "NUM",
    "PART": "PART",
    "PRON": "PRO",
    "PROPN": "PROPN",
    "SCONJ": "CONJ",
    "VERB": "V",
}

#: (UD feature, UD value) → UniMorph tags ("+"-joined when one UD value maps to several tags).
UD_FEATURE_TO_UNIMORPH: dict[tuple[str, str], str] = {
    # Number
    ("Number", "Sing"): "SG",
    ("Number", "Plur"): "PL",
    ("Number", "Dual"): "DU",
    ("Number", "Tri"): "TRI",
    ("Number", "Pauc"): "PAUC",
    ("Number", "Grpa"): "GRPA",
    ("Number", "Grpl"): "GRPL",
    ("Number", "Inv"): "INVN",
    # Gender
    ("Gender", "Masc"): "MASC",
    ("Gender", "Fem"): "FEM",
    ("Gender", "Neut"): "NEUT",
    ("Gender", "Com"): "MASC+FEM",
    # Case
    ("Case", "Nom"): "NOM",
    ("Case", "Acc"): "ACC",
    ("Case", "Abs"): "ABS",
    ("Case", "Erg"): "ERG",
    ("Case", "Dat"): "DAT",
    ("Case", "Gen"): "GEN",
    ("Case", "Voc"): "VOC",
    ("Case", "Loc"): "ESS",
    ("Case", "Par"): "PRT",
    ("Case", "Dis"): "DIST",
    ("Case", "Ess"): "FRML",
    ("Case", "Tra"): "TRANS",
    ("Case", "Com"): "COM",
    ("Case", "Abe"): "PRIV",
    ("Case", "Ine"): "IN+ESS",
    ("Case", "Ill"): "IN+ALL",
    ("Case", "Ela"): "IN+ABL",
    ("Case", "Add"): "IN+ALL",
    ("Case", "All"): "AT+ALL",
    ("Case", "Abl"): "AT+ABL",
    ("Case", "Sup"): "ON+ESS",
    ("Case", "Sub"): "ON+ALL",
    ("Case", "Ben"): "BEN",
    ("Case", "Cmp"): "COMPV",
    ("Case", "Equ"): "EQTV",
    ("Case", "Ins"): "INS",
    ("Case", "Ade"): "AT+ESS",
    # Tense (Imp and Pqp also feed Aspect)
    ("Tense", "Past"): "PST",
    ("Tense", "Pres"): "PRS",
    ("Tense", "Fut"): "FUT",
    ("Tense", "Imp"): "IPFV",
    ("Tense", "Pqp"): "PST+PRF",
    # Aspect
    ("Aspect", "Imp"): "IPFV",
    ("Aspect", "Perf"): "PFV",
    ("Aspect", "Prog"): "PROG",
    ("Aspect", "Prosp"): "PROSP",
    ("Aspect", "Hab"): "HAB",
    ("Aspect", "Iter"): "ITER",
    # Mood
    ("Mood", "Ind"): "IND",
    ("Mood", "Imp"): "IMP",
    ("Mood", "Cnd"): "COND",
    ("Mood", "Pot"): "POT",
    ("Mood", "Sub"): "SBJV",
    ("Mood", "Jus"): "IMP",
    ("Mood", "Prp"): "PURP",
    ("Mood", "Qot"): "QUOT",
    ("Mood", "Opt"): "OPT",
    ("Mood", "Adm"): "ADM",
    # Person
    ("Person", "0"): "0",
    ("Person", "1"): "1",
    ("Person", "2"): "2",
    ("Person", "3"): "3",
    ("Person", "4"): "4",
    # Definiteness
    ("Definite", "Def"): "DEF",
    ("Definite", "Ind"): "INDF",
    ("Definite", "Spec"): "SPEC",
    ("Definite", "Cons"): "PSSD",  # construct state: Possession, not Definiteness
    # Finiteness
    ("VerbForm", "Fin"): "FIN",
    ("VerbForm", "Inf"): "NFIN",
    # Voice
    ("Voice", "Act"): "ACT",
    ("Voice", "Mid"): "MID",
    ("Voice", "Pass"): "PASS",
    ("Voice", "Antip"): "ANTIP",
    ("Voice", "Dir"): "DIR",
    ("Voice", "Inv"): "INV",
    ("Voice", "Rcp"): "RECP",
    ("Voice", "Cau"): "CAUS",
    # Animacy
    ("Animacy", "Anim"): "ANIM",
    ("Animacy", "Inan"): "INAN",
    ("Animacy", "Hum"): "HUM",
    ("Animacy", "Nhum"): "NHUM",
    # Polarity
    ("Polarity", "Pos"): "POS",
    ("Polarity", "Neg"): "NEG",
}

#: UniMorph tag → the dimension (attribute) it belongs to.
TAG_DIMENSION: dict[str, str] = {
    **{t: "Number" for t in ("SG", "PL", "DU", "TRI", "PAUC", "GRPA", "GRPL", "INVN")},
    **{t: "Gender" for t in ("MASC", "FEM", "NEUT")},
    **{
        t: "Case"
        for t in (
            "NOM",
            "ACC",
            "ABS",
            "ERG",
            "DAT",
            "GEN",
            "VOC",
            "ESS",
            "PRT",
            "DIST",
            "FRML",
            "TRANS",
            "COM",
            "PRIV",
            "IN",
            "ALL",
            "ABL",
            "AT",
            "ON",
            "BEN",
            "COMPV",
            "EQTV",
            "INS",
        )
    },
    **{t: "Tense" for t in ("PST", "PRS", "FUT")},
    **{t: "Aspect" for t in ("IPFV", "PFV", "PRF", "PROG", "PROSP", "HAB", "ITER")},
    **{t: "Mood" for t in ("IND", "IMP", "COND", "POT", "SBJV", "PURP", "QUOT", "OPT", "ADM")},
    **{t: "Person" for t in ("0", "1", "2", "3", "4")},
    **{t: "Definiteness" for t in ("DEF", "INDF", "SPEC")},
    **{t: "Finiteness" for t in ("FIN", "NFIN")},
    **{t: "Voice" for t in ("ACT", "MID", "PASS", "ANTIP", "DIR", "INV", "RECP", "CAUS")},
    **{t: "Animacy" for t in ("ANIM", "INAN", "HUM", "NHUM")},
    **{t: "Polarity" for t in ("POS", "NEG")},
    "PSSD": "Possession",
}

#: Every attribute this project can probe, POS first.
ATTRIBUTES: tuple[str, ...] = (
    "POS",
    "Number",
    "Gender",
    "Case",
    "Tense",
    "Mood",
    "Person",
    "Aspect",
    "Definiteness",
    "Finiteness",
    "Voice",
    "Animacy",
    "Polarity",
    "Possession",
)


def canonical_bundle(tags: set[str]) -> str:
    """Tags of one dimension as a canonical bundle: sorted and joined by '+'."""
    return "+".join(sorted(tags))


def ud_to_unimorph(upos: str | None, feats: Mapping[str, str] | None) -> dict[str, str]:
    """Map one UD word (UPOS + FEATS) to its UniMorph attribute → value dictionary.

    ``feats`` values may list several UD values separated by commas (``Gender=Fem,Masc``).
    """
    tags_by_dim: dict[str, set[str]] = {}
    for name, raw_value in (feats or {}).items():
        for value in raw_value.split(","):
            mapped = UD_FEATURE_TO_UNIMORPH.get((name, value))
            if not mapped:
                continue
            for tag in mapped.split("+"):
                tags_by_dim.setdefault(TAG_DIMENSION[tag], set()).add(tag)
    attributes = {dim: canonical_bundle(tags) for dim, tags in tags_by_dim.items()}
    pos = UPOS_TO_UNIMORPH.get(upos or "")
    if pos:
        attributes["POS"] = pos
    return attributes
