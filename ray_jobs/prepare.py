"""Stage 1: UD treebanks → `sentences`, `words` and `dataset_stats` tables (one task per language).

``python -m ray_jobs.prepare --config C`` builds them; ``xling stats --config C`` prints the
statistics (language × attribute → examples per split and values).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from analysis.store import Store, fingerprint
from probing.datasets import DATASET_VERSION, SPLITS, build_language, ud_signature
from ray_jobs.common import Failures, StageResult, config_from_args, job_arguments
from ray_jobs.config import StudyConfig

STATS_SCHEMA = pa.schema(
    [
        ("language", pa.string()),
        ("attribute", pa.string()),
        *[(f"n_{s}", pa.int64()) for s in SPLITS],
        ("n_values", pa.int64()),
        ("values", pa.list_(pa.string())),
        ("dropped_values", pa.list_(pa.string())),
        ("note", pa.string()),
    ]
)


@dataclass(frozen=True)
class DataFingerprints:
    """What a language's tables depend on, kept apart so that a change redoes only what it affects.

    ``sentences``: the treebank files' contents, DATASET_VERSION (how text and spans are read), the
    sentence cap and the seed (activations depend on it). ``words[attribute]``: that plus the split
    parameters and the attribute (probe trials depend on it; each attribute's split is seeded by
    itself). ``stats``: all of it (the language's completion marker).
    """

    sentences: str
    words: dict[str, str]
    stats: str


def data_fingerprints(config: StudyConfig, language: str) -> DataFingerprints:
    """Fingerprints of a language's sentences, each attribute's words, and its dataset statistics."""
    data = config.data
    sentences = fingerprint(
        "sentences", DATASET_VERSION, data.max_sentences_per_language, data.seed, ud_signature(config.ud_dir, language)
    )
    words = {a: fingerprint("words", DATASET_VERSION, data, a, sentences) for a in config.attributes}
    return DataFingerprints(sentences, words, fingerprint("data", sorted(words.items())))


def prepare_language(config: StudyConfig, language: str) -> tuple[DataFingerprints, bool]:
    """Build and store one language's tables unless already stored; return their fingerprints and if built now."""
    store = Store(config.output_root)
    fps = data_fingerprints(config, language)
    stats_path = store.path("dataset_stats", language=language)
    if store.done(stats_path, fps.stats):
        return fps, False
    data = build_language(config.ud_dir, language, config.attributes, config.data)
    store.write(data.sentences, store.path("sentences", language=language), fps.sentences)
    for attribute, table in data.datasets.items():
        store.write(table, store.path("words", language=language, attribute=attribute), fps.words[attribute])
    rows = [{**s, "n_values": len(s["values"])} for s in data.stats]
    store.write(pa.Table.from_pylist(rows, schema=STATS_SCHEMA), stats_path, fps.stats)  # last: marks completion
    return fps, True


def run_prepare(
    config: StudyConfig, failures: Failures, runner: Callable | None = None
) -> tuple[dict[str, DataFingerprints], StageResult]:
    """Prepare every language (``runner`` maps the per-language function, e.g. over Ray tasks).

    Returns the data fingerprints of each language that is ready, and what was done.
    """
    fingerprints: dict[str, DataFingerprints] = {}
    result = StageResult()
    outcomes = (runner or _serial)(prepare_language, config, config.languages)
    for language, outcome in zip(config.languages, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures.add(f"language={language}", outcome)
        else:
            fingerprints[language], built = outcome
            result.run += built
            result.reused += not built
    return fingerprints, result


def _serial(function: Callable, config: StudyConfig, languages: tuple[str, ...]) -> list:
    outcomes = []
    for language in languages:
        try:
            outcomes.append(function(config, language))
        except Exception as err:  # recorded as a failure; the other languages go on
            outcomes.append(err)
    return outcomes


def stats_table(config: StudyConfig) -> pa.Table:
    """The stored dataset statistics of the study's languages."""
    store = Store(config.output_root)
    tables = [store.read("dataset_stats", path=store.path("dataset_stats", language=lang)) for lang in config.languages]
    return pa.concat_tables(tables)


def format_stats(table: pa.Table) -> str:
    """Language × attribute → examples per split and values, as an aligned text table."""
    header = ["language", "attribute", "train", "dev", "test", "values", "note"]
    rows = [
        [
            r["language"],
            r["attribute"],
            str(r["n_train"]),
            str(r["n_dev"]),
            str(r["n_test"]),
            ",".join(r["values"]) or "-",
            r["note"] or "",
        ]
        for r in table.to_pylist()
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    args = job_arguments("Build the word datasets of a study and print their statistics.").parse_args(argv)
    config = config_from_args(args)
    failures = Failures("prepare")
    run_prepare(config, failures)
    failures.write(Store(config.output_root))
    done = [lang for lang in config.languages if f"language={lang}" not in {f["key"] for f in failures.rows}]
    if done:
        print(format_stats(stats_table(dataclasses.replace(config, languages=tuple(done)))))
    return 1 if failures.rows else 0


if __name__ == "__main__":
    sys.exit(main())
