"""Stage 5: overlap statistics from the stored rankings, their correlation with transfer, and the cards of the
neurons that languages share.

The overlap tables carry the fingerprint of the rankings they were computed from, the correlations that
of the points they correlate, and the neuron cards that of the rankings and of the stored files they read,
so a rerun over unchanged results does no work.
"""

from __future__ import annotations

import hashlib

import pyarrow.dataset as ds

from analysis.attribute_overlap import N_PERMUTATIONS
from analysis.correlation import correlation_rows
from analysis.database import open_results
from analysis.findings import benjamini_hochberg, pooled_trend_rows, trend_rows
from analysis.findings_scale import SCALE_CONTROL
from analysis.neuron_card_store import model_cards, without_controls
from analysis.neuron_cards import CONTEXT_WORDS, CONTROL_METHODS, TOP_WORDS, carded_neurons
from analysis.overlap_tables import attribute_contrast_rows, cross_lingual_rows, method_overlap_rows
from analysis.store import Store, fingerprint
from analysis.tables import rows_table
from ray_jobs.common import StageResult, checkpoints
from ray_jobs.config import StudyConfig, model_revisions
from ray_jobs.context import StudyContext
from ray_jobs.stages import stage_main

OVERLAP_TABLES = (
    "overlap_pairs",
    "overlap_summary",
    "method_overlaps",
    "overlap_trends",
    "pooled_trends",
    "attribute_contrasts",
)


def read_rankings(config: StudyConfig, store: Store) -> list[dict]:
    """Top-to-bottom rankings of this study's models, checkpoints, layers, languages, attributes and seeds."""
    if not store.table_files("rankings"):
        return []
    columns = ["model", "checkpoint", "layer", "language", "attribute", "method", "seed", "k", "ranking"]
    keys = {(spec.name, revision) for spec, revision in checkpoints(config)}
    table = store.read("rankings", columns=columns, filter=ds.field("direction") == "ttb")
    records = sorted(table.to_pylist(), key=lambda r: tuple(str(r[c]) for c in columns[:-1]))
    return [
        r
        for r in records
        if (r["model"], r["checkpoint"]) in keys
        and r["layer"] in config.layers
        and r["language"] in config.languages
        and r["attribute"] in config.attributes
        and r["method"] in config.probing.methods
        and r["seed"] in config.probing.seeds
    ]


def rankings_fingerprint(records: list[dict]) -> str:
    """A hash of every ranking's key, its k (the trial's, per model) and neuron order."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(
            repr(
                (
                    r["model"],
                    r["checkpoint"],
                    r["layer"],
                    r["language"],
                    r["attribute"],
                    r["method"],
                    r["seed"],
                    r["k"],
                    r["ranking"],
                )
            ).encode()
        )
    return digest.hexdigest()[:16]


def with_bh(rows: list[dict], methods: tuple[str, ...] = ("bh",)) -> list[dict]:
    """``rows`` with ``pvalue_<method>`` per method ("bh": Benjamini–Hochberg, "by": Benjamini–Yekutieli) over
    all of them: every model, checkpoint, layer, attribute, method and seed of the study."""
    pvalues = [r["pvalue"] for r in rows]
    for method in methods:
        for row, adjusted in zip(rows, benjamini_hochberg(pvalues, method), strict=True):
            row[f"pvalue_{method}"] = float(adjusted)
    return rows


def with_study_wide_bh(pairs: list[dict]) -> list[dict]:
    """Overlap ``pairs`` with ``pvalue_bh`` and ``pvalue_by`` over every overlap test of the study, next to
    Holm's per-matrix correction."""
    return with_bh(pairs, ("bh", "by"))


def run_overlaps(config: StudyConfig, store: Store) -> bool:
    """Compute and store the overlap tables per model; return False when they were already up to date."""
    records = read_rankings(config, store)
    if not records:
        print("[analyse] no rankings stored yet; nothing to analyse")
        return False
    contrast = {"permutations": N_PERMUTATIONS, "beyond": SCALE_CONTROL}
    fp = fingerprint("overlaps", rankings_fingerprint(records), contrast)
    models = sorted({r["model"] for r in records})
    if all([store.done(store.path(t, model=m), fp) for t in OVERLAP_TABLES for m in models]):  # each looked at
        print("[analyse] overlap tables are up to date")
        return False
    order = {(spec.name, rev): i for spec in config.models for i, rev in enumerate(model_revisions(spec))}
    pairs, summaries = cross_lingual_rows(records, order)
    tables = {
        "overlap_pairs": with_study_wide_bh(pairs),
        "overlap_summary": summaries,
        "method_overlaps": method_overlap_rows(records),
        "overlap_trends": trend_rows(summaries),
        "pooled_trends": pooled_trend_rows(summaries),
        "attribute_contrasts": with_bh(attribute_contrast_rows(records, order, SCALE_CONTROL)),
    }
    for model in models:  # every table, empty ones too, so that an unchanged rerun finds each one done
        for table, all_rows in tables.items():
            rows = [r for r in all_rows if r["model"] == model]
            store.write(rows_table(table, rows, drop=("model",)), store.path(table, model=model), fp)
    return True


def run_correlations(store: Store) -> bool:
    """Correlate overlap with transfer across checkpoints (Average and Pairwise); False when up to date or no data."""
    con = open_results(store)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    if not {"overlap_transfer_average", "overlap_transfer_pairwise"} <= views:
        return False
    columns = ("model", "checkpoint", "task", "metric", "method", "overlap_rate", "value")
    points = [
        {**dict(zip(columns, row, strict=True)), "kind": "average"}
        for row in con.execute(f"SELECT {', '.join(columns)} FROM overlap_transfer_average ORDER BY ALL").fetchall()
    ]
    points += [
        {**dict(zip(columns, row, strict=True)), "kind": "pairwise"}
        for row in con.execute(
            f"SELECT {', '.join(columns)} FROM overlap_transfer_pairwise "
            f"WHERE target_language <> source_language ORDER BY ALL"
        ).fetchall()
    ]
    fp = fingerprint("correlations", points)
    models = sorted({p["model"] for p in points})
    if all([store.done(store.path("correlations", model=m), fp) for m in models]):
        return False
    for model in models:
        rows = correlation_rows([p for p in points if p["model"] == model])
        store.write(rows_table("correlations", rows, drop=("model",)), store.path("correlations", model=model), fp)
    return True


def card_inputs(store: Store, model: str, checkpoint: str, records: list[dict]) -> list[tuple]:
    """The stored files a model's cards read at ``checkpoint`` (activations, words, sentences), each as its
    partition key and stored fingerprint (None when absent): what the cards depend on, not where it lies."""
    layers = sorted({r["layer"] for r in records})
    languages = sorted({r["language"] for r in records})
    attributes = sorted({r["attribute"] for r in records})
    keys = [("sentences", {"language": lang}) for lang in languages]
    keys += [("words", {"language": lang, "attribute": a}) for lang in languages for a in attributes]
    keys += [
        ("activations", {"model": model, "checkpoint": checkpoint, "layer": layer, "language": lang})
        for layer in layers
        for lang in languages
    ]
    return [(table, key, store.stored_fingerprint(store.path(table, **key))) for table, key in keys]


def run_neuron_cards(config: StudyConfig, store: Store) -> bool:
    """Store the cards of each model's neurons shared at its last ranked checkpoint; False when up to date."""
    changed = False
    study_records = without_controls(read_rankings(config, store))
    for spec in config.models:
        order = list(model_revisions(spec))
        records = [r for r in study_records if r["model"] == spec.name]
        ranked = [c for c in order if any(r["checkpoint"] == c for r in records)]
        if not ranked:
            continue
        checkpoint = ranked[-1]
        settings = {"top_words": TOP_WORDS, "context_words": CONTEXT_WORDS, "controls": CONTROL_METHODS}
        at_checkpoint = [r for r in records if r["checkpoint"] == checkpoint]
        inputs = card_inputs(store, spec.name, checkpoint, at_checkpoint)
        fp = fingerprint("neuron_cards", settings, order, rankings_fingerprint(records), inputs)
        path = store.path("neuron_cards", model=spec.name)
        if store.done(path, fp):
            continue
        neurons = carded_neurons(at_checkpoint, checkpoint)
        rows = model_cards(store, spec.name, order, checkpoint, records, neurons)
        store.write(rows_table("neuron_cards", rows, drop=("model",)), path, fp)
        changed = True
    return changed


def run(context: StudyContext) -> StageResult:
    """The overlap tables, the correlations, then the neuron cards; one unit each, run or already up to date."""
    changed = [
        run_overlaps(context.config, context.store),
        run_correlations(context.store),
        run_neuron_cards(context.config, context.store),
    ]
    return StageResult(sum(changed), len(changed) - sum(changed))


main = stage_main("analyse")

if __name__ == "__main__":
    raise SystemExit(main())
