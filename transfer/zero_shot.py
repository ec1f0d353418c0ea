"""Zero-shot cross-lingual transfer of one checkpoint: fine-tune on English, score every target language.

POS: train on the English ``*-train*`` files, select on English ``*-dev*`` by accuracy (which is
micro-F1 for one tag per word, the paper's POS "F1"), report accuracy and macro-F1 on each target
language's ``*-test*`` files. XNLI: train / select / test on a seeded 80/10/10 split of the English
dev file by premise (`transfer.xnli_data`), report accuracy on every language's rows parallel to
the English test part (249 rows per language with the default split), never on translations of
training or selection rows. English is always a target (the in-language reference). Every input is
read and checked (XNLI: row-parallel to English) before training starts, so a bad file fails fast.
Caps (``max_*_examples``) are seeded subsets; the XNLI test cap keeps the same rows in every language.

Result rows are plain dicts with the keys of ``ROW_KEYS``, one per (target language, metric).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from probing.datasets import stable_seed
from probing.models import model_max_length
from transfer.evaluate import evaluate_pos, evaluate_xnli
from transfer.examples import subsample
from transfer.finetune import FinetuneParams, FinetuneResult, finetune, seed_everything
from transfer.models import Head, load_for_task
from transfer.pos_data import UPOS_TAGS, encode_pos, read_tagged, split_files
from transfer.xnli_data import XNLI_LABELS, NliPair, encode_xnli, read_parallel_devs, split_english_dev

log = logging.getLogger(__name__)

SOURCE_LANGUAGE = "en"
ROW_KEYS = (
    "checkpoint",
    "task",
    "source_language",
    "target_language",
    "metric",
    "value",
    "best_step",
    "train_seconds",
    "n_examples",
)
#: The paper's POS setting: 10 epochs, evaluation every 100 steps.
POS_PARAMS = FinetuneParams()
#: The paper's XNLI setting is 5 epochs with evaluation every 500 steps over 392k training pairs
#: (~24 evaluations per epoch); here an epoch of 1,992 pairs is 63 steps, so evaluate every 25.
XNLI_PARAMS = FinetuneParams(epochs=5, eval_every=25)


def _languages(target_languages: Sequence[str]) -> list[str]:
    """English first, then the other targets once each, in the given order."""
    return list(dict.fromkeys([SOURCE_LANGUAGE, *target_languages]))


def _row(checkpoint: str, task: str, language: str, metric: str, value: float, result: FinetuneResult, n: int) -> dict:
    """One result row (keys in the order of ROW_KEYS)."""
    return {
        "checkpoint": checkpoint,
        "task": task,
        "source_language": SOURCE_LANGUAGE,
        "target_language": language,
        "metric": metric,
        "value": float(value),
        "best_step": int(result.best_step),
        "train_seconds": float(result.train_seconds),
        "n_examples": int(n),
    }


@dataclass(frozen=True)
class _Tuned:
    """A checkpoint fine-tuned on English, and how to score a target language's data with it."""

    result: FinetuneResult
    max_length: int
    score: Callable[[list], dict]


def _finetune_on_english(
    model_source: str,
    revision: str | None,
    head: Head,
    labels: Sequence[str],
    params: FinetuneParams,
    device: str,
    encode: Callable,
    evaluate: Callable,
    train: list,
    select: list,
) -> _Tuned:
    """Load the checkpoint with a task head, fine-tune on ``train``, keep the best accuracy on ``select``."""
    seed_everything(params.seed)
    model, tokenizer = load_for_task(model_source, revision, head, labels, params, device)
    max_length = min(params.max_length, model_max_length(model.config, tokenizer))
    pad = tokenizer.pad_token_id
    select_examples = encode(tokenizer, select, max_length)

    def selection_accuracy(m: torch.nn.Module) -> float:
        return evaluate(m, select_examples, pad)["accuracy"]

    result = finetune(model, encode(tokenizer, train, max_length), selection_accuracy, params, pad)
    return _Tuned(result, max_length, lambda data: evaluate(result.model, encode(tokenizer, data, max_length), pad))


def run_pos_transfer(
    model_source: str,
    revision: str | None,
    ud_dir: Path | str,
    target_languages: Sequence[str],
    params: FinetuneParams = POS_PARAMS,
    device: str = "cpu",
    checkpoint: str | None = None,
) -> list[dict]:
    """Fine-tune a token-classification head on English UD POS; accuracy and macro-F1 rows per target."""
    checkpoint = checkpoint or (f"{model_source}@{revision}" if revision else model_source)
    languages = _languages(target_languages)
    test_files = {lang: split_files(ud_dir, lang, "test") for lang in languages}
    cap = params.max_eval_examples
    train_files = split_files(ud_dir, SOURCE_LANGUAGE, "train")
    train = read_tagged(train_files, params.max_train_examples, stable_seed(params.seed, "pos", "train"))
    dev = read_tagged(split_files(ud_dir, SOURCE_LANGUAGE, "dev"), cap, stable_seed(params.seed, "pos", "dev"))
    tests = {
        lang: read_tagged(files, cap, stable_seed(params.seed, "pos", "test", lang))
        for lang, files in test_files.items()
    }
    tuned = _finetune_on_english(
        model_source, revision, "token", UPOS_TAGS, params, device, encode_pos, evaluate_pos, train, dev
    )
    rows = []
    for lang, sentences in tests.items():
        scores = tuned.score(sentences)
        unscored = sum(len(s.words) for s in sentences) - scores["n"]
        if unscored:
            log.warning("pos %s: %d words beyond %d tokens were not scored", lang, unscored, tuned.max_length)
        rows += [
            _row(checkpoint, "pos", lang, m, scores[m], tuned.result, scores["n"]) for m in ("accuracy", "macro_f1")
        ]
    return rows


@dataclass(frozen=True)
class XnliParts:
    """English training and selection pairs, and each target language's test pairs (English first)."""

    train: list[NliPair]
    select: list[NliPair]
    tests: dict[str, list[NliPair]]


def xnli_parts(xnli_dir: Path | str, target_languages: Sequence[str], params: FinetuneParams) -> XnliParts:
    """Read and check every dev file, split English by premise, and take each target's rows at the test indices.

    Every language is scored on the same row indices (the English test part, capped by one seeded
    subset), so its test pairs translate English test pairs only: none is parallel to a training or
    selection pair, and the languages are compared on the same items.
    """
    dev = read_parallel_devs(xnli_dir, SOURCE_LANGUAGE, _languages(target_languages))
    english = dev[SOURCE_LANGUAGE]
    split = split_english_dev(english, params.seed)
    cap = params.max_eval_examples
    train = [english[i] for i in split.train]
    select = [english[i] for i in split.select]
    test_rows = subsample(split.test, cap, stable_seed(params.seed, "xnli", "test"))
    return XnliParts(
        subsample(train, params.max_train_examples, stable_seed(params.seed, "xnli", "train")),
        subsample(select, cap, stable_seed(params.seed, "xnli", "select")),
        {lang: [pairs[i] for i in test_rows] for lang, pairs in dev.items()},
    )


def run_xnli_transfer(
    model_source: str,
    revision: str | None,
    xnli_dir: Path | str,
    target_languages: Sequence[str],
    params: FinetuneParams = XNLI_PARAMS,
    device: str = "cpu",
    checkpoint: str | None = None,
) -> list[dict]:
    """Fine-tune a sequence-classification head on English XNLI dev pairs; an accuracy row per target."""
    checkpoint = checkpoint or (f"{model_source}@{revision}" if revision else model_source)
    data = xnli_parts(xnli_dir, target_languages, params)
    tuned = _finetune_on_english(
        model_source,
        revision,
        "sequence",
        XNLI_LABELS,
        params,
        device,
        encode_xnli,
        evaluate_xnli,
        data.train,
        data.select,
    )
    rows = []
    for lang, pairs in data.tests.items():
        scores = tuned.score(pairs)
        log.info("xnli %s: scored on %d rows parallel to the English test part", lang, scores["n"])
        rows.append(_row(checkpoint, "xnli", lang, "accuracy", scores["accuracy"], tuned.result, scores["n"]))
    return rows
