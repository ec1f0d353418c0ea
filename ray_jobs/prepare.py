"""Stage 1: UD treebanks → `sentences`, `words` and `dataset_stats` tables (one task per language).

``python -m ray_jobs.prepare --config C`` builds them; ``xling stats --config C`` prints the
statistics (language × attribute → examples per split and values).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

import pyarrow as pa

from analysis.store import Store, fingerprint
from probing.datasets import DATASET_VERSION, SPLITS, build_language
from ray_jobs.common import Failures, StageResult, config_from_args, job_arguments, ud_signature
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


def data_fingerprint(config: StudyConfig, language: str) -> str:
    """What a language's tables depend on: data params, attributes and the treebank files' contents."""
    signature = ud_signature(config.ud_dir, language)
    return fingerprint("data", DATASET_VERSION, config.data, sorted(config.attributes), signature)


def prepare_language(config: StudyConfig, language: str) -> tuple[str, bool]:
    """Build and store one language's tables unless already stored; return their fingerprint and if built now."""
    store = Store(config.output_root)
    fp = data_fingerprint(config, language)
    stats_path = store.path("dataset_stats", language=language)
    if store.done(stats_path, fp):
        return fp, False
    data = build_language(config.ud_dir, language, config.attributes, config.data)
    store.write(data.sentences, store.path("sentences", language=language), fp)
    for attribute, table in data.datasets.items():
        store.write(table, store.path("words", language=language, attribute=attribute), fp)
    rows = [{**s, "n_values": len(s["values"])} for s in data.stats]
    store.write(pa.Table.from_pylist(rows, schema=STATS_SCHEMA), stats_path, fp)  # written last: marks completion
    return fp, True


def run_prepare(
    config: StudyConfig, failures: Failures, runner: Callable | None = None
) -> tuple[dict[str, str], StageResult]:
    """Prepare every language (``runner`` maps the per-language function, e.g. over Ray tasks).

    Returns the data fingerprint of each language that is ready, and what was done.
    """
    fingerprints: dict[str, str] = {}
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
