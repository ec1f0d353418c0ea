"""UD treebanks → one word-level dataset per (language, attribute), split lemma-disjointly or as UD splits.

Per language every ``*.conllu`` file in ``ud_dir/<lang>/`` is pooled (sorted by name), because
many languages here have only dev and test files and the split is redone anyway. Each dataset row
is a word that has the attribute: form, lemma, UniMorph value, sentence index and word position.
By default (``split: lemma``) train/dev/test are lemma-disjoint (no lowercased lemma in two splits),
deterministic by seed; with ``split: ud`` each word keeps the split of its file (UD's own
train/dev/test, as Antverg & Belinkov 2022), and a language without a train, dev or test file gets
empty datasets with a note in its statistics rather than a split made up of other files. Values with
fewer than ``min_examples_per_split`` examples (20, as in Stańczak et al. 2022 and Wang et al. 2024)
or fewer than ``min_types_per_value`` distinct forms (003: 100) in any split are dropped.

The model reads the surface text (`probing.conllu_io`): the sentence table keeps each sentence's
``text`` and, per syntactic word, the character span (``char_start``, ``char_end``) of the surface
token that carries it. Dataset rows are *surface tokens*, as in Wang et al.'s reference
(``preprocess_treebank.py``: a contraction replaces its parts and takes their merged features):
a single-word token is a row for each attribute it has; a multi-word token (Portuguese "do" =
de + o) is a row for an attribute that exactly one of its parts has, with that part's value,
lemma and position (so "do" is Gender=MASC, Number=SG from "o"); an attribute that two or more parts
have (POS of de + o; Number of the verb and the clitic in "dá-lo") is no row, even when the values
agree, because the token's vector cannot say which part it describes. ``form`` is the surface
token as written ("do"), the word type the model saw. So no surface token is ever two rows of one
attribute's dataset: its parts share one vector, and two rows would count one observation twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa

from probing.conllu_io import CoNLLUError, Sentence, SurfaceText, Token, read_blocks_of
from probing.unimorph import ud_to_unimorph
from probing.validation import at_least, one_of, reject

SPLITS: tuple[str, str, str] = ("train", "dev", "test")
#: Bumped whenever the way datasets are built changes, so that stored datasets are rebuilt.
DATASET_VERSION = 4  # 3: Case=Ins → INS, Definite=Cons → PSSD; 4: rows are surface tokens (multi-word tokens merged)

#: ``words``: the syntactic words' forms; ``text``: the surface text the model reads;
#: ``char_start``/``char_end``: per word, the span of its surface token in ``text``.
SENTENCE_SCHEMA = pa.schema(
    [
        ("sentence_index", pa.int32()),
        ("sentence_id", pa.string()),
        ("words", pa.list_(pa.string())),
        ("text", pa.string()),
        ("char_start", pa.list_(pa.int32())),
        ("char_end", pa.list_(pa.int32())),
    ]
)

WORD_SCHEMA = pa.schema(
    [
        ("sentence_index", pa.int32()),
        ("position", pa.int32()),
        ("form", pa.string()),
        ("lemma", pa.string()),
        ("value", pa.string()),
        ("split", pa.string()),
    ]
)


#: How words are split into train/dev/test (``DataParams.split``).
DATA_SPLITS: tuple[str, ...] = ("lemma", "ud")


@dataclass(frozen=True)
class DataParams:
    """What determines the word datasets (hashed into their fingerprint).

    ``split``: "lemma" pools a language's files and splits them lemma-disjointly by
    ``split_fractions`` (Stańczak et al. 2022, Wang et al. 2024); "ud" keeps UD's own split, read
    from each file's name (``*-train*``, ``*-dev*``, ``*-test*``; Antverg & Belinkov 2022).
    ``min_types_per_value``: a value is kept only with at least this many distinct word forms in
    every split (003's code: 100, forms as written); ``min_examples_per_split`` likewise for examples.
    """

    min_examples_per_split: int = 20
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_sentences_per_language: int | None = None
    seed: int = 0
    split: str = "lemma"
    min_types_per_value: int = 1

    def __post_init__(self) -> None:
        problems = [
            *at_least("min_examples_per_split", self.min_examples_per_split, 1),
            *at_least("max_sentences_per_language", self.max_sentences_per_language, 1),
            *at_least("seed", self.seed, 0),
            *one_of("split", self.split, DATA_SPLITS),
            *at_least("min_types_per_value", self.min_types_per_value, 1),
        ]
        fractions = self.split_fractions
        if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            problems.append(f"split_fractions: expected three positive fractions summing to 1, got {list(fractions)}")
        reject(problems)


@dataclass
class LanguageData:
    """Everything built for one language: its sentences, and a dataset per attribute."""

    language: str
    sentences: pa.Table
    datasets: dict[str, pa.Table] = field(default_factory=dict)
    stats: list[dict] = field(default_factory=list)


def treebank_files(ud_dir: Path | str, language: str) -> list[Path]:
    """The CoNLL-U files of a language, sorted; error when the folder or the files are missing, or when a
    ``*.conllu`` is a directory or a broken symbolic link."""
    folder = Path(ud_dir) / language
    if not folder.is_dir():
        raise CoNLLUError(
            folder, None, "treebank", f"a folder of CoNLL-U files for language '{language}'", "no such folder"
        )
    files = sorted(folder.glob("*.conllu"))
    if not files:
        raise CoNLLUError(folder, None, "treebank", "at least one *.conllu file", "none")
    for path in files:
        if not path.exists():
            raise CoNLLUError(path, None, "file", "a CoNLL-U file", f"a broken symbolic link to {path.readlink()}")
        if not path.is_file():
            raise CoNLLUError(path, None, "file", "a CoNLL-U file", "a directory")
    return files


def file_digest(path: Path) -> str:
    """A short hash of a file's content."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def ud_signature(ud_dir: Path | str, language: str) -> list[tuple[str, str]]:
    """Names and content hashes of a language's treebank files: what the data of a study depends on."""
    return [(p.name, file_digest(p)) for p in treebank_files(ud_dir, language)]


def stable_seed(*parts: object) -> int:
    """A 32-bit seed derived from the parts, identical across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


#: The fields of a probe trial's key that make its random draws its own: the random control's
#: permutation, a latent probe's initialisation and sampling, a linear probe's minibatch order.
TRIAL_SEED_FIELDS: tuple[str, ...] = ("model", "checkpoint", "layer", "language", "attribute")
#: Bumped when trial seeds are derived differently (2: from the seed and the trial's key; the seed alone
#: gave every language, attribute, layer and checkpoint the same "random" ranking: overlap 1 everywhere).
TRIAL_SEED_VERSION = 2


def trial_seed(seed: int, key: Mapping[str, object]) -> int:
    """The ranker seed of one probe trial: ``stable_seed`` of the study's seed and the trial's key fields.

    Every (model, checkpoint, layer, language, attribute) draws independently, so the random
    control's top-k sets of two languages overlap like independent k-subsets (mean k²/d, the
    hypergeometric null of `analysis.overlap`). The method is left out: the rankers of one
    dataset may share a seed, since their draws are never compared against each other.
    """
    missing = [f for f in TRIAL_SEED_FIELDS if f not in key]
    if missing:
        raise ValueError(f"a trial key needs {', '.join(TRIAL_SEED_FIELDS)}; missing {', '.join(missing)}")
    return stable_seed(seed, "trial", *(key[f] for f in TRIAL_SEED_FIELDS))


def lemma_disjoint_split(lemmas: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Assign each example a split so that all examples of one lemma share it.

    Lemmas are taken in an order shuffled by ``seed``, except that lemmas too frequent for the
    smallest split come first; each goes to the split furthest below its target share (relative to
    that target) among the splits it still fits in. Filling the splits one after another instead
    lets a very frequent lemma (French "le" is a fifth of all Number words) swallow a whole split.
    """
    unique, inverse, counts = np.unique(lemmas, return_inverse=True, return_counts=True)
    targets = np.asarray(fractions, dtype=float) * len(lemmas)
    order = np.random.default_rng(seed).permutation(len(unique))
    heavy = counts[order] > targets.min()
    assigned = np.zeros(len(SPLITS))
    split_of_lemma = np.empty(len(unique), dtype=np.int64)
    for lemma in np.concatenate([order[heavy], order[~heavy]]):
        remaining = targets - assigned
        room = (remaining / targets) - np.where(remaining >= counts[lemma], 0.0, np.inf)
        split = int(np.argmax(room)) if np.isfinite(room).any() else int(np.argmax(remaining / targets))
        split_of_lemma[lemma] = split
        assigned[split] += counts[lemma]
    return np.asarray(SPLITS)[split_of_lemma[inverse]]


def ud_file_split(path: str | Path) -> str | None:
    """The UD split a treebank file belongs to by its name (``xx_tb-ud-dev.conllu`` → dev); None if none.

    UD names its files ``<lang>_<treebank>-ud-<split>.conllu``; subsets keep the split in the name
    (``fi_tdt-ud-train_subset.conllu``).
    """
    name = Path(path).name
    found = [s for s in SPLITS if f"-{s}" in name]
    return found[0] if len(found) == 1 else None


def frequent_values(
    values: np.ndarray, splits: np.ndarray, minimum: int, forms: np.ndarray | None = None, min_types: int = 1
) -> tuple[list[str], list[str]]:
    """Values with at least ``minimum`` examples and ``min_types`` distinct ``forms`` in every split
    (kept), and the others (dropped). Distinct forms are counted as written, per split, as in
    Antverg & Belinkov's code (a value with < 100 word types in any of train/dev/test is ignored).
    """
    kept, dropped = [], []
    for value in sorted(set(values.tolist())):
        in_value = values == value
        enough = all(int(np.sum(in_value & (splits == s))) >= minimum for s in SPLITS)
        if forms is not None and min_types > 1:
            enough = enough and all(len(set(forms[in_value & (splits == s)].tolist())) >= min_types for s in SPLITS)
        (kept if enough else dropped).append(value)
    return kept, dropped


def read_language(ud_dir: Path | str, language: str) -> Iterable[Sentence]:
    """Stream the pooled sentences of every treebank file of a language."""
    for block in read_blocks_of(treebank_files(ud_dir, language)):
        yield block.parse()


def language_texts(ud_dir: Path | str, language: str, limit: int | None = None) -> list[str]:
    """The surface texts of a language's pooled sentences (the first ``limit``), those of `read_language`; every
    word line is checked, but a sentence's words are parsed only where it has no ``# text`` line (pre-training
    reads every sentence of every language: the demo's 36,175 took 17.7 s to parse, 2.9 s to check)."""
    return [block.text for block in islice(read_blocks_of(treebank_files(ud_dir, language)), limit)]


def sampled_sentences(ud_dir: Path | str, language: str, params: DataParams) -> tuple[dict[int, Sentence], list[str]]:
    """The sentences a language's data is built from, by their index among its pooled sentences (at most
    ``max_sentences_per_language``, drawn by a seed of the language), and the UD split of every pooled
    sentence's file. Every word line of every file is checked; only the drawn sentences are parsed (a
    malformed sentence that is not drawn is not read further)."""
    blocks = list(read_blocks_of(treebank_files(ud_dir, language)))
    keep = np.arange(len(blocks))
    limit = params.max_sentences_per_language
    if limit is not None and limit < len(blocks):
        rng = np.random.default_rng(stable_seed(params.seed, language, "sentences"))
        keep = np.sort(rng.choice(len(blocks), size=limit, replace=False))
    split_of = {path: ud_file_split(path) for path in {b.path for b in blocks}}
    return {int(i): blocks[i].parse() for i in keep}, [split_of[b.path] for b in blocks]


def sentence_rows(sentences: list[Sentence], index: np.ndarray) -> pa.Table:
    """The sentence table: syntactic word forms, surface text and each word's token span."""
    surfaces = [s.surface for s in sentences]
    return pa.table(
        {
            "sentence_index": pa.array(index, pa.int32()),
            "sentence_id": [s.sentence_id for s in sentences],
            "words": [[w.form for w in s.words] for s in sentences],
            "text": [s.text for s in surfaces],
            "char_start": [list(s.starts) for s in surfaces],
            "char_end": [list(s.ends) for s in surfaces],
        },
        schema=SENTENCE_SCHEMA,
    )


def surface_texts(table: pa.Table | pa.RecordBatch) -> list[SurfaceText]:
    """What extraction reads, per row of a sentence table: the text and each word's token span."""
    columns = (table.column(c).to_pylist() for c in ("text", "char_start", "char_end"))
    return [SurfaceText(t, tuple(a), tuple(b)) for t, a, b in zip(*columns, strict=True)]


def token_values(sentence: Sentence, token: Token) -> dict[str, tuple[int, str]]:
    """UniMorph values of one surface token: attribute → (position of the word carrying it, value).

    A multi-word token merges its parts as Wang et al.'s reference does (``merge_attributes``): an
    attribute is kept only when exactly one part has it.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    for position in token.words:
        word = sentence.words[position]
        for attribute, value in ud_to_unimorph(word.upos, word.feats).items():
            found.setdefault(attribute, []).append((position, value))
    return {attribute: carriers[0] for attribute, carriers in found.items() if len(carriers) == 1}


def build_language(ud_dir: Path | str, language: str, attributes: Iterable[str], params: DataParams) -> LanguageData:
    """Read a language's treebanks and build its sentence table and per-attribute datasets."""
    sentences, splits_of_files = sampled_sentences(ud_dir, language, params)
    keep = np.fromiter(sentences, dtype=np.int64, count=len(sentences))
    sentence_table = sentence_rows(list(sentences.values()), keep)
    rows: dict[str, dict[str, list]] = {
        a: {k: [] for k in ("sentence_index", "position", "form", "lemma", "value")} for a in attributes
    }
    for index in keep:
        sentence = sentences[index]
        for token in sentence.tokens:
            for attribute, (position, value) in token_values(sentence, token).items():
                if attribute in rows:
                    columns = rows[attribute]
                    columns["sentence_index"].append(int(index))
                    columns["position"].append(position)
                    columns["form"].append(token.form)
                    columns["lemma"].append(sentence.words[position].lemma.lower())
                    columns["value"].append(value)

    data = LanguageData(language=language, sentences=sentence_table)
    file_splits = np.asarray(splits_of_files, dtype=object)
    for attribute, columns in rows.items():
        table, stats = _split_and_filter(language, attribute, columns, params, file_splits)
        data.stats.append(stats)
        if table is not None:
            data.datasets[attribute] = table
    return data


def assign_splits(
    language: str, attribute: str, columns: dict[str, list], params: DataParams, file_splits: np.ndarray
) -> np.ndarray:
    """The split of each word: lemma-disjoint (seeded by language and attribute), or its file's UD split.

    ``file_splits[i]`` is the UD split of sentence i's file; under ``split: ud`` a word of a file whose
    name names no split gets "" and is left out of every split.
    """
    if params.split == "ud":
        of_word = file_splits[np.asarray(columns["sentence_index"], dtype=np.int64)]
        return np.asarray([s or "" for s in of_word], dtype=object).astype(str)
    lemmas = np.asarray(columns["lemma"], dtype=object).astype(str)
    return lemma_disjoint_split(lemmas, params.split_fractions, stable_seed(params.seed, language, attribute))


def _missing_ud_splits(file_splits: np.ndarray) -> list[str]:
    """The UD splits that no file of the language provides."""
    return [s for s in SPLITS if s not in set(file_splits.tolist())]


def _split_and_filter(
    language: str, attribute: str, columns: dict[str, list], params: DataParams, file_splits: np.ndarray
) -> tuple[pa.Table | None, dict]:
    lemmas = np.asarray(columns["lemma"], dtype=object)
    values = np.asarray(columns["value"], dtype=object)
    stats = {
        "language": language,
        "attribute": attribute,
        "values": [],
        "dropped_values": [],
        **{f"n_{s}": 0 for s in SPLITS},
    }
    if len(values) == 0:
        stats["note"] = "attribute not annotated in this language"
        return None, stats
    splits = assign_splits(language, attribute, columns, params, file_splits)
    forms = np.asarray(columns["form"], dtype=object)
    kept, dropped = frequent_values(values, splits, params.min_examples_per_split, forms, params.min_types_per_value)
    stats["dropped_values"] = dropped
    stats["values"] = kept
    mask = np.isin(values, kept)
    for s in SPLITS:
        stats[f"n_{s}"] = int(np.sum(mask & (splits == s)))
    missing = _missing_ud_splits(file_splits) if params.split == "ud" else []
    if missing:
        stats["note"] = f"split=ud: no UD {'/'.join(missing)} file (*-{missing[0]}*.conllu) for this language"
    elif len(kept) < 2:
        types = f" and >= {params.min_types_per_value} word types" if params.min_types_per_value > 1 else ""
        stats["note"] = f"fewer than 2 values with >= {params.min_examples_per_split} examples{types} in every split"
    else:
        stats["note"] = ""
    idx = np.flatnonzero(mask)
    table = pa.table(
        {
            "sentence_index": pa.array(np.asarray(columns["sentence_index"])[idx], pa.int32()),
            "position": pa.array(np.asarray(columns["position"])[idx], pa.int32()),
            "form": pa.array([columns["form"][i] for i in idx], pa.string()),
            "lemma": pa.array(lemmas[idx].tolist(), pa.string()),
            "value": pa.array(values[idx].tolist(), pa.string()),
            "split": pa.array(splits[idx].tolist(), pa.string()),
        },
        schema=WORD_SCHEMA,
    )
    return table, stats
