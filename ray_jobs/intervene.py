"""Stage (when the config has an ``interventions`` section): the causal check of every ranking (paper 003 §4).

One Ray Tune trial per (checkpoint, layer, language, attribute) (`InterventionTrial`) loads the checkpoint
with its LM head once, reads the language's words, sentences and layer-L activations (the mean vectors of
translation) and the stored rankings, runs every batch once up to layer L, then edits the top-k neurons of
each ranking for every k and re-runs only the blocks after L (`probing.interventions`). Each unit (one
ranking on one split, `InterventionUnit`) is written to ``interventions`` as soon as it is done, so a killed
trial resumes after its last finished unit; a finished unit (same fingerprint) is not computed again.
With more than one β, translation runs on dev first with each β and the β chosen there
(`probing.interventions.choose_beta`) is the one reported on test.
"""

from __future__ import annotations

import time
from itertools import product

import numpy as np
import torch

from analysis.store import Store
from analysis.tables import rows_table
from probing.datasets import ud_signature
from probing.interventions import INTERVENTIONS, Counts, Edit, cache_batches, choose_beta, effect
from probing.lexicon import KNOWN
from ray_jobs.common import StageResult, checkpoints, loadable_checkpoint, model_identity
from ray_jobs.config import StudyConfig, resolve_compute_dtype, resolve_k
from ray_jobs.context import StudyContext
from ray_jobs.extract import activation_fingerprint, actor_device
from ray_jobs.prepare import DataFingerprints
from ray_jobs.stages import stage_main
from ray_jobs.trials import InterventionTrial, InterventionUnit, rankings_path

#: Bumped when what an intervention unit computes changes, so that stored units are recomputed.
INTERVENTIONS_VERSION = 1


def applies(config: StudyConfig) -> bool:
    """The stage runs for a config with an ``interventions`` section."""
    return config.interventions is not None


def intervention_trials(
    config: StudyConfig, store: Store, sources: dict[str, str], data_fps: dict[str, DataFingerprints]
) -> list[InterventionTrial]:
    """One trial per (checkpoint, layer, language, attribute) whose own rankings are stored."""
    section = config.interventions
    languages = [lang for lang in section.languages or config.languages if lang in data_fps]
    methods = tuple(dict.fromkeys([*(section.methods or config.probing.methods), "random"]))
    seed = config.probing.seeds[0]
    lexicons = {language: tuple(ud_signature(config.ud_dir, language)) for language in languages}
    dtype = resolve_compute_dtype(section.compute_dtype, section.resources.num_gpus)
    trials = []
    for (spec, revision), layer, attribute in product(
        checkpoints(config, section.checkpoints),
        section.layers or config.layers,
        section.attributes or config.attributes,
    ):
        if spec.name not in sources:
            continue
        key = {"model": spec.name, "checkpoint": revision, "layer": layer, "attribute": attribute}
        stored = {}
        for language, method in product(languages, methods):
            path = rankings_path(store, {**key, "language": language, "method": method}, seed)
            if (fp := store.stored_fingerprint(path)) is not None:
                stored[(language, method)] = fp
        for language in languages:
            own = [(language, m, fp) for (lang, m), fp in stored.items() if lang == language]
            if not own:
                continue
            cross = [(a, m, fp) for (a, m), fp in stored.items() if a != language and m != "random"]
            sentences_fp = data_fps[language].sentences
            trials.append(
                InterventionTrial(
                    **key,
                    language=language,
                    seed=seed,
                    source=sources[spec.name],
                    rankings=tuple(own + (cross if section.cross_lingual else [])),
                    interventions=tuple(section.interventions),
                    k_grid=tuple(section.k_grid),
                    betas=tuple(section.betas),
                    cross_k=section.cross_lingual_k or config.probing.k,
                    cross_k_fraction=None if section.cross_lingual_k else config.probing.k_fraction,
                    max_words=section.max_words,
                    readout=section.readout,
                    batch_tokens=section.batch_tokens,
                    compute_dtype=dtype,
                    words_fingerprint=data_fps[language].words.get(attribute, ""),
                    sentences_fingerprint=sentences_fp,
                    activation_fingerprint=activation_fingerprint(
                        config, model_identity(spec, sources[spec.name], revision), revision, layer, sentences_fp
                    ),
                    lexicon=lexicons[language],
                    versions=(INTERVENTIONS_VERSION,),
                    ud_dir=config.ud_dir,
                )
            )
    return trials


class TrialRun:
    """What one trial computes on: the model, the language's mean-vector shifts and lexicon, the rankings, and
    each split's batches cached at layer L (built when a split is first asked for)."""

    def __init__(self, store: Store, trial: InterventionTrial, device: str) -> None:
        from probing.extraction import COMPUTE_DTYPES
        from probing.lexicon import Lexicon
        from probing.probe_data import ActivationIndex, build_probe_data
        from probing.readout import load_language_model
        from probing.translation import default_k_grid, translation_shifts, value_means

        self.trial = trial
        source, revision = loadable_checkpoint(store, trial.source, trial.checkpoint)
        self.lm = load_language_model(source, revision, trial.readout, device, COMPUTE_DTYPES[trial.compute_dtype])
        key = {"language": trial.language, "attribute": trial.attribute}
        self.words = store.read("words", path=store.path("words", **key))
        self.sentences = store.read("sentences", path=store.path("sentences", language=trial.language))
        activations = store.read("activations", path=trial.activation_path(store))
        data, self.values = build_probe_data(
            self.words, ActivationIndex.from_table(activations), trial.language, trial.attribute, None, trial.seed
        )
        means = value_means(data.X_train, data.y_train, len(self.values))
        self.shifts = torch.from_numpy(translation_shifts(means, self.values))
        self.lexicon = Lexicon.from_ud(trial.ud_dir, trial.language)
        self.orders = {
            (language, method, row["direction"]): np.asarray(row["ranking"])
            for language, method, _ in trial.rankings
            for row in store.read("rankings", path=trial.ranking_path(store, language, method)).to_pylist()
        }
        self.d = len(next(iter(self.orders.values())))
        self.k_grid = sorted(set(trial.k_grid or default_k_grid(self.d)))
        self.cross_k = resolve_k(trial.cross_k, trial.cross_k_fraction, self.d)
        self.cached: dict[str, tuple] = {}

    def split(self, split: str) -> tuple:
        """The (LayerCache, cached batches) of a split."""
        from probing.intervention_data import intervention_batches

        if split not in self.cached:
            trial = self.trial
            batches = intervention_batches(
                self.lm,
                self.sentences,
                self.words,
                split,
                self.values,
                trial.max_words,
                (trial.seed, "interventions", trial.language, trial.attribute),
                trial.batch_tokens,
            )
            self.cached[split] = cache_batches(self.lm, trial.layer, batches)
        return self.cached[split]

    def counts(self, split: str, order: np.ndarray, intervention: str, beta: float, k: int) -> Counts:
        cache, cached = self.split(split)
        edit = Edit.top_k(intervention, order, k, beta, self.shifts)
        return effect(self.lm, cache, cached, edit, self.lexicon, self.trial.attribute)

    def rows(self, unit: InterventionUnit, beta: float) -> list[dict]:
        """The rows of one unit: dev, translation at every β; own test rankings over 0 and the k grid (and the
        cross-lingual k); other languages' rankings at the cross-lingual k only."""
        order = self.orders[(unit.source_language, unit.method, unit.direction)]
        if unit.split == "dev":
            settings = [("translation", b) for b in self.trial.betas]
        else:
            settings = [
                (i, beta if i == "translation" else 0.0) for i in INTERVENTIONS if i in self.trial.interventions
            ]
        own = unit.source_language == self.trial.language
        ks = sorted({0, *self.k_grid, self.cross_k}) if own else [self.cross_k]
        return [
            {
                "source_language": unit.source_language,
                "method": unit.method,
                "direction": unit.direction,
                "seed": self.trial.seed,
                "split": unit.split,
                "intervention": intervention,
                "beta": b,
                "readout": self.lm.readout,
                "k": k,
                "d": self.d,
                **self.counts(unit.split, order, intervention, b, k).row(),
            }
            for intervention, b in settings
            for k in ks
        ]


def chosen_beta(store: Store, trial: InterventionTrial) -> float:
    """β of the trial: its only one, or the one whose dev curves score best (`choose_beta`)."""
    if len(trial.betas) == 1:
        return trial.betas[0]
    curves: dict[float, list[list[tuple[float, float]]]] = {beta: [] for beta in trial.betas}
    for unit in (u for u in trial.units() if u.split == "dev"):
        rows = store.read("interventions", path=trial.unit_path(store, unit)).to_pylist()
        for beta in trial.betas:
            curve = sorted((r["k"], _rates(r)) for r in rows if r["beta"] == beta)
            curves[beta].append([rates for _, rates in curve])
    return choose_beta(curves)


def _rates(row: dict) -> tuple[float, float]:
    """(error rate, CLWV rate) of a stored row."""
    counts = Counts()
    counts.categories.update({c: row[f"n_{c}"] for c in KNOWN})
    return counts.rates()


def run_intervention_trial(store: Store, trial: InterventionTrial, threads: int = 1, num_gpus: float = 0.0) -> dict:
    """Every unfinished unit of one trial, dev units first; return the seconds spent."""
    torch.set_num_threads(max(1, threads))
    began = time.perf_counter()
    pending = [u for u in trial.units() if not store.done(trial.unit_path(store, u), trial.unit_fingerprint(u))]
    if not pending:
        return {"status": "ok", "compute_seconds": 0.0}
    run = TrialRun(store, trial, actor_device(num_gpus, torch.cuda.is_available(), "interventions"))
    for unit in (u for u in pending if u.split == "dev"):
        rows = run.rows(unit, 0.0)
        store.write(rows_table("interventions", rows), trial.unit_path(store, unit), trial.unit_fingerprint(unit))
    beta = chosen_beta(store, trial)
    for unit in (u for u in pending if u.split == "test"):
        rows = run.rows(unit, beta)
        store.write(rows_table("interventions", rows), trial.unit_path(store, unit), trial.unit_fingerprint(unit))
    return {"status": "ok", "compute_seconds": time.perf_counter() - began}


def intervention_trainable(config: dict) -> None:
    """A Tune trial: ``config["spec"]`` holds the store, one trial and its resources."""
    from ray import tune

    spec = config["spec"]
    tune.report(run_intervention_trial(spec["store"], spec["trial"], spec["threads"], spec["num_gpus"]))


def run(context: StudyContext) -> StageResult:
    """Every (checkpoint, layer, language, attribute) with stored rankings and an unfinished unit, as a sweep."""
    from ray_jobs.sweep import run_trials
    from ray_jobs.tracking import tracking_callbacks

    config, store, failures = context.config, context.store, context.failures_of("intervene")
    trials = intervention_trials(config, store, context.sources, context.data_fps)
    pending = [t for t in trials if not t.is_done(store)]
    print(f"[intervene] {len(trials)} trials, {len(trials) - len(pending)} already stored, {len(pending)} to run")
    if not pending:
        return StageResult(0, len(trials))
    callbacks = tracking_callbacks(config, "intervene")
    finished, busy = run_trials(
        "intervene", intervention_trainable, pending, config.interventions.resources, store, failures, callbacks
    )
    return StageResult(finished, len(trials) - len(pending), busy_seconds=busy)


main = stage_main("intervene")

if __name__ == "__main__":
    raise SystemExit(main())
