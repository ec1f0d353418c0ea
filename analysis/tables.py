"""The registry of the study's result tables: name, hive partition columns, Arrow schema, summary or not.

Everything that reads or writes a table takes its shape from here: `analysis.store.Store` (the
partition layout of its paths), `analysis.database` (one DuckDB view per table; the summary tables
are loaded whole for the report and the correlations) and the stages that write rows (`rows_table`
checks that the rows have exactly the table's columns). A schema lists the columns stored in the
files; the partition columns live in the paths (``model=.../checkpoint=...``) and come back as
columns when a table is read as a hive-partitioned dataset.

Adding a table = one `TableSpec` appended to `TABLES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from probing.datasets import SENTENCE_SCHEMA, SPLITS, WORD_SCHEMA


@dataclass(frozen=True)
class TableSpec:
    """One result table.

    ``schema`` is None only where the columns depend on the study (the activations' vector width and
    dtype: `activation_schema`). ``summary`` tables are small (a row per statistic, not per word or
    neuron), so the report and the correlations load them whole into memory.
    """

    name: str
    partitions: tuple[str, ...]
    schema: pa.Schema | None
    summary: bool
    doc: str


def activation_schema(hidden_size: int, dtype: str) -> pa.Schema:
    """Rows of the activations table: the word's key and its vector as a fixed-size list."""
    value_type = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema(
        [
            ("sentence_index", pa.int32()),
            ("position", pa.int32()),
            ("vector", pa.list_(value_type, hidden_size)),
        ]
    )


_CHECKPOINT = ("model", "checkpoint")
_RANKING_KEY = (*_CHECKPOINT, "layer", "language", "attribute", "method")
_LOTTERY_KEY = (*_CHECKPOINT, "task", "language")

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("sentences", ("language",), SENTENCE_SCHEMA, False, "the sentences of each language, as read"),
        TableSpec("words", ("language", "attribute"), WORD_SCHEMA, False, "UniMorph-labelled words and their split"),
        TableSpec(
            "dataset_stats",
            ("language",),
            pa.schema(
                [
                    ("language", pa.string()),
                    ("attribute", pa.string()),
                    *[(f"n_{s}", pa.int64()) for s in SPLITS],
                    ("n_values", pa.int64()),
                    ("values", pa.list_(pa.string())),
                    ("dropped_values", pa.list_(pa.string())),
                    ("note", pa.string()),
                ]
            ),
            True,
            "examples per split and values per (language, attribute)",
        ),
        TableSpec(
            "checkpoint_weights",
            _CHECKPOINT,
            pa.schema(
                [
                    ("step", pa.int64()),
                    ("weights_sha256", pa.string()),
                    ("format", pa.string()),
                    ("files", pa.int64()),
                    ("tensors", pa.int64()),
                    ("size_bytes", pa.int64()),
                ]
            ),
            True,
            "each checkpoint's weights digest (probing.weights_digest); the checkpoints view flags duplicates",
        ),
        TableSpec(
            "activations",
            (*_CHECKPOINT, "layer", "language"),
            None,
            False,
            "one vector per word and layer (schema: activation_schema(width, dtype))",
        ),
        TableSpec(
            "extraction_stats",
            (*_CHECKPOINT, "language"),
            pa.schema(
                [
                    ("sentences", pa.int64()),
                    ("dropped_sentences", pa.int64()),
                    ("words", pa.int64()),
                    ("dropped_words", pa.int64()),
                    ("tokens", pa.int64()),
                    ("seconds", pa.float64()),
                    ("hidden_size", pa.int64()),
                    ("max_length", pa.int64()),
                ]
            ),
            True,
            "sentences, words and tokens extracted per (checkpoint, language)",
        ),
        TableSpec(
            "pretrain_loss",
            ("model",),
            pa.schema(
                [
                    ("step", pa.int64()),
                    ("loss", pa.float64()),
                    ("heldout_loss", pa.float64()),
                    ("lr", pa.float64()),
                    ("tokens", pa.int64()),
                    ("seconds", pa.float64()),
                    ("run", pa.string()),
                ]
            ),
            True,
            "the training and held-out loss of the study's own pre-training",
        ),
        TableSpec(
            "rankings",
            _RANKING_KEY,
            pa.schema(
                [
                    ("seed", pa.int64()),
                    ("direction", pa.string()),
                    ("ranking", pa.list_(pa.int32())),
                    ("scores", pa.list_(pa.float64())),
                    ("k", pa.int64()),
                    ("n_greedy", pa.int64()),
                    ("d", pa.int64()),
                    ("params", pa.string()),
                    ("values", pa.list_(pa.string())),
                    ("n_train", pa.int64()),
                    ("n_dev", pa.int64()),
                    ("n_test", pa.int64()),
                    ("seconds", pa.float64()),
                ]
            ),
            False,
            "neuron orders: top-to-bottom and its reverse",
        ),
        TableSpec(
            "probe_metrics",
            _RANKING_KEY,
            pa.schema(
                [
                    ("seed", pa.int64()),
                    ("direction", pa.string()),
                    ("classifier", pa.string()),
                    ("k", pa.int64()),
                    ("accuracy", pa.float64()),
                    ("nmi", pa.float64()),
                    ("nmi_beta", pa.float64()),
                    ("accuracy_control_split", pa.float64()),
                    ("control_accuracy", pa.float64()),
                    ("selectivity", pa.float64()),
                    ("majority", pa.float64()),
                ]
            ),
            True,
            "probing accuracy, NMI and selectivity of each ranking's top k, per classifier and k",
        ),
        TableSpec(
            "overlap_pairs",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("layer", pa.int64()),
                    ("attribute", pa.string()),
                    ("method", pa.string()),
                    ("seed", pa.int64()),
                    ("checkpoint_index", pa.int64()),
                    ("language_a", pa.string()),
                    ("language_b", pa.string()),
                    ("k", pa.int64()),
                    ("d", pa.int64()),
                    ("overlap", pa.int64()),
                    ("rate", pa.float64()),
                    ("expected", pa.float64()),
                    ("pvalue", pa.float64()),
                    ("pvalue_holm", pa.float64()),
                    ("significant", pa.bool_()),
                    ("pvalue_bh", pa.float64()),
                    ("pvalue_by", pa.float64()),
                ]
            ),
            True,
            "top-k overlap of every pair of languages, its hypergeometric p, Holm, and study-wide BH and BY",
        ),
        TableSpec(
            "overlap_summary",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("layer", pa.int64()),
                    ("attribute", pa.string()),
                    ("method", pa.string()),
                    ("seed", pa.int64()),
                    ("checkpoint_index", pa.int64()),
                    ("k", pa.int64()),
                    ("d", pa.int64()),
                    ("n_languages", pa.int64()),
                    ("languages", pa.list_(pa.string())),
                    ("n_pairs", pa.int64()),
                    ("average_overlap", pa.float64()),
                    ("average_rate", pa.float64()),
                    ("expected_rate", pa.float64()),
                    ("n_significant", pa.int64()),
                    ("common_overlap", pa.int64()),
                    ("common_expected", pa.float64()),
                    ("common_pvalue", pa.float64()),
                ]
            ),
            True,
            "per overlap matrix: average rate, chance, neurons common to all languages",
        ),
        TableSpec(
            "method_overlaps",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("layer", pa.int64()),
                    ("language", pa.string()),
                    ("attribute", pa.string()),
                    ("seed", pa.int64()),
                    ("method_a", pa.string()),
                    ("method_b", pa.string()),
                    ("k", pa.int64()),
                    ("d", pa.int64()),
                    ("overlap", pa.int64()),
                    ("expected", pa.float64()),
                    ("pvalue", pa.float64()),
                ]
            ),
            True,
            "top-k overlap between the rankings of two methods in one language",
        ),
        TableSpec(
            "overlap_trends",
            ("model",),
            pa.schema(
                [
                    ("layer", pa.int64()),
                    ("attribute", pa.string()),
                    ("method", pa.string()),
                    ("seed", pa.int64()),
                    ("n_checkpoints", pa.int64()),
                    ("first_rate", pa.float64()),
                    ("last_rate", pa.float64()),
                    ("expected_rate", pa.float64()),
                    ("spearman_rho", pa.float64()),
                    ("pvalue", pa.float64()),
                    ("pvalue_bh", pa.float64()),
                ]
            ),
            True,
            "Spearman trend of the average overlap over checkpoints, exact p and BH",
        ),
        TableSpec(
            "pooled_trends",
            ("model",),
            pa.schema(
                [
                    ("method", pa.string()),
                    ("seed", pa.int64()),
                    ("n_series", pa.int64()),
                    ("n_checkpoints", pa.int64()),
                    ("first_rate", pa.float64()),
                    ("last_rate", pa.float64()),
                    ("mean_rho", pa.float64()),
                    ("pvalue_rises", pa.float64()),
                    ("pvalue", pa.float64()),
                    ("pvalue_rises_bh", pa.float64()),
                ]
            ),
            True,
            "per method: the overlap trend pooled over layers and attributes, joint permutation p, BH",
        ),
        TableSpec(
            "attribute_contrasts",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("layer", pa.int64()),
                    ("method", pa.string()),
                    ("seed", pa.int64()),
                    ("checkpoint_index", pa.int64()),
                    ("k", pa.int64()),
                    ("d", pa.int64()),
                    ("scale_removed", pa.int64()),
                    ("n_languages", pa.int64()),
                    ("attributes", pa.list_(pa.string())),
                    ("n_sets", pa.int64()),
                    ("n_same_pairs", pa.int64()),
                    ("n_cross_pairs", pa.int64()),
                    ("same_rate", pa.float64()),
                    ("cross_rate", pa.float64()),
                    ("excess", pa.float64()),
                    ("n_permutations", pa.int64()),
                    ("pvalue", pa.float64()),
                    ("pvalue_bh", pa.float64()),
                ]
            ),
            True,
            "per (checkpoint, layer, method): same- minus cross-attribute overlap beyond scale, permutation p, BH",
        ),
        TableSpec(
            "transfer",
            (*_CHECKPOINT, "task"),
            pa.schema(
                [
                    ("source_language", pa.string()),
                    ("target_language", pa.string()),
                    ("metric", pa.string()),
                    ("value", pa.float64()),
                    ("best_step", pa.int64()),
                    ("train_seconds", pa.float64()),
                    ("n_examples", pa.int64()),
                ]
            ),
            True,
            "zero-shot transfer: fine-tuned on the source language, scored per target language",
        ),
        TableSpec(
            "lottery_rounds",
            _LOTTERY_KEY,
            pa.schema(
                [
                    ("seed", pa.int64()),
                    ("round", pa.int64()),
                    ("sparsity", pa.float64()),
                    ("dev_metric", pa.float64()),
                    ("steps", pa.int64()),
                    ("seconds", pa.float64()),
                ]
            ),
            True,
            "one row per finished IMP round: the sparsity it trained at and its dev score",
        ),
        TableSpec(
            "masks",
            _LOTTERY_KEY,
            pa.schema(
                [
                    ("seed", pa.int64()),
                    ("kind", pa.string()),
                    ("round", pa.int64()),
                    ("sparsity", pa.float64()),
                    ("tensor", pa.string()),
                    ("layer", pa.int64()),
                    ("shape", pa.list_(pa.int64())),
                    ("kept", pa.int64()),
                    ("bits", pa.binary()),
                    ("checksum", pa.string()),
                ]
            ),
            False,
            "sub-network masks per tensor, bit-packed (kind imp, one_shot, random; resume = IMP's next mask)",
        ),
        TableSpec(
            "mask_overlaps",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("task", pa.string()),
                    ("sparsity", pa.float64()),
                    ("kind_a", pa.string()),
                    ("language_a", pa.string()),
                    ("seed_a", pa.int64()),
                    ("kind_b", pa.string()),
                    ("language_b", pa.string()),
                    ("seed_b", pa.int64()),
                    ("tensor", pa.string()),
                    ("layer", pa.int64()),
                    ("n_total", pa.int64()),
                    ("n_a", pa.int64()),
                    ("n_b", pa.int64()),
                    ("n_both", pa.int64()),
                    ("pvalue", pa.float64()),
                ]
            ),
            True,
            "kept-weight overlap of two masks per tensor (tensor 'all': the whole mask), hypergeometric p",
        ),
        TableSpec(
            "subnetwork_transfer",
            (*_CHECKPOINT, "task", "target_language"),
            pa.schema(
                [
                    ("seed", pa.int64()),
                    ("source_language", pa.string()),
                    ("kind", pa.string()),
                    ("sparsity", pa.float64()),
                    ("score", pa.float64()),
                    ("steps", pa.int64()),
                    ("seconds", pa.float64()),
                    ("n_examples", pa.int64()),
                ]
            ),
            True,
            "the target's test score after fine-tuning theta0 masked by the source's sub-network (or dense, random)",
        ),
        TableSpec(
            "neuron_survival",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("layer", pa.int64()),
                    ("language", pa.string()),
                    ("attribute", pa.string()),
                    ("method", pa.string()),
                    ("seed", pa.int64()),
                    ("task", pa.string()),
                    ("sparsity", pa.float64()),
                    ("k", pa.int64()),
                    ("top_k_survival", pa.float64()),
                    ("mean_survival", pa.float64()),
                ]
            ),
            True,
            "share of a ranking's top-k neurons' writing weights kept by the language's sub-network, vs all neurons",
        ),
        TableSpec(
            "interventions",
            (*_CHECKPOINT, "layer", "language", "attribute"),
            pa.schema(
                [
                    ("source_language", pa.string()),
                    ("method", pa.string()),
                    ("direction", pa.string()),
                    ("seed", pa.int64()),
                    ("split", pa.string()),
                    ("intervention", pa.string()),
                    ("beta", pa.float64()),
                    ("readout", pa.string()),
                    ("k", pa.int64()),
                    ("d", pa.int64()),
                    ("n_words", pa.int64()),
                    ("n_correct", pa.int64()),
                    ("n_clwv", pa.int64()),
                    ("n_other_form", pa.int64()),
                    ("n_wrong_lemma", pa.int64()),
                    ("n_unknown", pa.int64()),
                    ("n_unannotated", pa.int64()),
                    ("flips", pa.int64()),
                    ("mean_delta_logp", pa.float64()),
                ]
            ),
            True,
            "edits of a ranking's top-k neurons (source_language's ranking on language's words; beta 0 for "
            "ablation): predictions per category, flips and mean change in log p of the gold word, per k",
        ),
        TableSpec(
            "neuron_cards",
            ("model",),
            pa.schema(
                [
                    ("checkpoint", pa.string()),
                    ("layer", pa.int64()),
                    ("attribute", pa.string()),
                    ("seed", pa.int64()),
                    ("neuron", pa.int64()),
                    ("d", pa.int64()),
                    ("language", pa.string()),
                    ("shared_methods", pa.list_(pa.string())),
                    ("shared_since", pa.list_(pa.struct([("method", pa.string()), ("checkpoint", pa.string())]))),
                    ("top_k_methods", pa.list_(pa.string())),
                    (
                        "top_words",
                        pa.list_(
                            pa.struct(
                                [
                                    ("activation", pa.float64()),
                                    ("form", pa.string()),
                                    ("value", pa.string()),
                                    ("split", pa.string()),
                                    ("sentence_index", pa.int64()),
                                    ("position", pa.int64()),
                                    ("left", pa.string()),
                                    ("word", pa.string()),
                                    ("right", pa.string()),
                                ]
                            )
                        ),
                    ),
                    (
                        "value_means",
                        pa.list_(pa.struct([("value", pa.string()), ("mean", pa.float64()), ("n", pa.int64())])),
                    ),
                    (
                        "ranks",
                        pa.list_(
                            pa.struct(
                                [
                                    ("method", pa.string()),
                                    ("checkpoint", pa.string()),
                                    ("checkpoint_index", pa.int64()),
                                    ("rank", pa.int64()),
                                    ("k", pa.int64()),
                                ]
                            )
                        ),
                    ),
                ]
            ),
            True,
            "neurons in the top-k of >= 2 languages at the last checkpoint (analysis/neuron_cards.py), one row "
            "per language: top-activating words in context, mean activation per value, 1-based rank per method "
            "and checkpoint",
        ),
        TableSpec(
            "correlations",
            ("model",),
            pa.schema(
                [
                    ("task", pa.string()),
                    ("metric", pa.string()),
                    ("method", pa.string()),
                    ("kind", pa.string()),
                    ("n", pa.int64()),
                    ("pearson_r", pa.float64()),
                    ("pearson_p", pa.float64()),
                    ("spearman_rho", pa.float64()),
                    ("spearman_p", pa.float64()),
                ]
            ),
            True,
            "overlap against transfer across checkpoints (average) and language pairs (pairwise)",
        ),
        TableSpec(
            "failures",
            ("stage",),
            pa.schema(
                [
                    ("stage", pa.string()),
                    ("key", pa.string()),
                    ("error", pa.string()),
                    ("detail", pa.string()),
                    ("time", pa.float64()),
                ]
            ),
            True,
            "what failed, or had no data, in each stage, with its error",
        ),
    )
}

#: Table name → its hive partition columns, outermost first.
LAYOUT: dict[str, tuple[str, ...]] = {name: spec.partitions for name, spec in TABLES.items()}

#: Tables small enough to load whole into memory for the report and the correlations.
SUMMARY_TABLES: tuple[str, ...] = tuple(name for name, spec in TABLES.items() if spec.summary)


def schema_of(table: str) -> pa.Schema:
    """The stored columns of a table with a fixed schema."""
    schema = TABLES[table].schema
    if schema is None:
        raise ValueError(f"table {table} has a per-study schema; build it with its schema function")
    return schema


def rows_table(table: str, rows: Iterable[Mapping[str, object]], drop: tuple[str, ...] = ()) -> pa.Table:
    """Rows as an Arrow table of ``table``'s schema; a row with a missing or unknown column is an error.

    ``drop`` names keys the rows carry that are not stored in the file (partition columns, which the
    path holds).
    """
    schema = schema_of(table)
    expected = set(schema.names)
    records = []
    for row in rows:
        record = {k: v for k, v in row.items() if k not in drop}
        if set(record) != expected:
            missing, unknown = sorted(expected - set(record)), sorted(set(record) - expected)
            raise ValueError(f"a row of table {table}: missing columns {missing}, unknown columns {unknown}")
        records.append(record)
    return pa.Table.from_pylist(records, schema=schema)
