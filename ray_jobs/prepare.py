"""Stage 1: UD treebanks → `sentences`, `words` and `dataset_stats` tables (one task per language).

``python -m ray_jobs.prepare --config C`` builds them; ``xling stats --config C`` prints the
statistics (language × attribute → examples per split and values).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from analysis.store import Store, fingerprint
from analysis.tables import rows_table
from probing.datasets import DATASET_VERSION, build_language, ud_signature
from ray_jobs.common import StageResult, config_from_args, job_arguments, ray_map, run_job
from ray_jobs.config import StudyConfig
from ray_jobs.context import StudyContext, key_label
from ray_jobs.stages import stage_main


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


def language_done(store: Store, language: str, fps: DataFingerprints) -> bool:
    """Whether a language's tables are stored, intact, with these fingerprints: its dataset statistics
    (written last), its sentences, and the words of every attribute that has any (an attribute the
    language does not annotate has no words file)."""
    words = ((store.path("words", language=language, attribute=a), fp) for a, fp in fps.words.items())
    checks = [  # every file is looked at (no short cut), so that each damaged one is found and counted
        store.done(store.path("dataset_stats", language=language), fps.stats),
        store.done(store.path("sentences", language=language), fps.sentences),
        *(not store.is_file(path) or store.done(path, fp) for path, fp in words),
    ]
    return all(checks)


def prepare_language(config: StudyConfig, store: Store, language: str) -> tuple[DataFingerprints, bool]:
    """Build and store one language's tables unless already stored; return their fingerprints and if built now."""
    fps = data_fingerprints(config, language)
    stats_path = store.path("dataset_stats", language=language)
    if language_done(store, language, fps):
        return fps, False
    data = build_language(config.ud_dir, language, config.attributes, config.data)
    store.write(data.sentences, store.path("sentences", language=language), fps.sentences)
    for attribute, table in data.datasets.items():
        store.write(table, store.path("words", language=language, attribute=attribute), fps.words[attribute])
    rows = [{**s, "n_values": len(s["values"])} for s in data.stats]
    store.write(rows_table("dataset_stats", rows), stats_path, fps.stats)  # last: marks completion
    return fps, True


def stored_data_fingerprints(context: StudyContext) -> dict[str, DataFingerprints]:
    """The fingerprints of every language whose tables are stored for this config (the others are absent)."""
    store, found = context.store, {}
    for language in context.config.languages:
        fps = data_fingerprints(context.config, language)
        if language_done(store, language, fps):
            found[language] = fps
    return found


def run(context: StudyContext, runner: Callable = ray_map) -> StageResult:
    """Prepare every language (``runner`` maps the per-language function: one Ray task each by default);
    set ``context.data_fps`` to the languages that are ready. The languages already stored are found here,
    so that what is damaged is found (and counted) by this process."""
    config, failures = context.config, context.failures_of("prepare")
    fingerprints = stored_data_fingerprints(context)
    result = StageResult(reused=len(fingerprints))
    languages = [lang for lang in config.languages if lang not in fingerprints]
    outcomes = runner(prepare_language, config, [(context.store, lang) for lang in languages])
    for language, outcome in zip(languages, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures.add(key_label(language=language), outcome)
        else:
            fingerprints[language], built = outcome
            result.run += built
            result.reused += not built
    context.data_fps = fingerprints
    return result


def serial_map(function: Callable, config: StudyConfig, items: list[tuple]) -> list:
    """`ray_jobs.common.ray_map` in this process: ``function(config, *item)`` per item, exceptions returned."""
    outcomes = []
    for item in items:
        try:
            outcomes.append(function(config, *item))
        except Exception as err:  # recorded as a failure; the other languages go on
            outcomes.append(err)
    return outcomes


def stats_table(context: StudyContext) -> pa.Table:
    """The stored dataset statistics of the study's prepared languages."""
    store = context.store
    tables = [store.read("dataset_stats", path=store.path("dataset_stats", language=lang)) for lang in context.data_fps]
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


main = stage_main("prepare")


def stats_main(argv: list[str] | None = None) -> int:
    """``xling stats``: prepare the study's languages in this process and print their statistics."""
    args = job_arguments("Build the word datasets of a study and print their statistics.").parse_args(argv)
    context = StudyContext.open(config_from_args(args), verify=args.verify)

    def prepare_and_print() -> int:
        run(context, runner=serial_map)
        context.failures_of("prepare").write(context.store)
        if context.data_fps:
            print(format_stats(stats_table(context)))
        return 1 if context.failure_rows() else 0

    return run_job(context, args, prepare_and_print, uses_ray=False)


if __name__ == "__main__":
    sys.exit(main())
