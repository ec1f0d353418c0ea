"""Stage (when the config has a ``lottery`` section): lottery-ticket sub-networks by iterative magnitude
pruning (`lottery.imp`), their overlap across languages, and their transfer.

1. One Ray Tune trial per (checkpoint, task, language, seed) runs every IMP round (`LotteryTrial`). Each
   finished round stores its row in ``lottery_rounds`` and the mask IMP trains next (``masks``, kind
   resume; kind imp at a target sparsity), so a killed trial resumes after its last finished round. At
   the end the trial stores the controls of each target sparsity: the one-shot magnitude mask of θ₀ at
   the same count (kind one_shot) and a random mask of the same density per tensor (kind random).
2. One trial per (checkpoint, task, target language) fine-tunes the target's θ₀ under every source
   language's sub-network, its own random mask and none (`SubnetworkTransferTrial`; one stored score per
   unit, so resumption is per unit). Only the first seed's masks transfer.
3. ``mask_overlaps``: per pair of masks and per tensor, the counts DuckDB turns into Jaccard, agreement,
   the random-null expectation (and, stored, the hypergeometric p): every pair of IMP masks (languages and
   seeds; a language with its second seed is the noise ceiling), and each IMP mask with its one-shot and
   random controls. ``neuron_survival``: the share of each ranking's top-k neurons' writing weights a
   sub-network keeps, against all neurons (`lottery.survival`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from itertools import combinations

import numpy as np
import pyarrow.dataset as ds

from analysis.store import Store, fingerprint
from analysis.tables import rows_table
from lottery.overlap import OverlapCounts, mask_overlap_counts, overlap_p_value, summed
from lottery.packing import PackedTensor, pack_mask, unpack_mask
from lottery.prunable import PrunableWeight
from lottery.tasks import TASKS
from probing.datasets import trial_seed
from ray_jobs.common import StageResult, checkpoints, loadable_checkpoint, model_identity
from ray_jobs.config import ModelSpec, StudyConfig
from ray_jobs.context import StudyContext
from ray_jobs.extract import actor_device
from ray_jobs.stages import stage_main
from ray_jobs.trials import LotteryTrial, SubnetworkTransferTrial, mask_path

#: The kinds of mask a lottery trial stores at each target sparsity.
MASK_KINDS = ("imp", "one_shot", "random")


def applies(config: StudyConfig) -> bool:
    """The stage runs for a config with a ``lottery`` section."""
    return config.lottery is not None


def lottery_checkpoints(config: StudyConfig) -> list[tuple[ModelSpec, str]]:
    """The (model, revision)s the lottery prunes: each model's last checkpoint, or all of them."""
    return checkpoints(config, config.lottery.checkpoints)


def task_data_dir(config: StudyConfig, task: str) -> str:
    return {"ud_dir": config.ud_dir, "xnli_dir": config.lottery.xnli_dir}[TASKS[task].data_dir]


def task_languages(config: StudyConfig, task: str) -> list[str]:
    """The lottery's languages (or the study's) that have the task's data."""
    return TASKS[task].languages(task_data_dir(config, task), list(config.lottery.languages or config.languages))


def lottery_trials(config: StudyConfig, sources: dict[str, str]) -> list[LotteryTrial]:
    """Every (checkpoint, task, language, seed) of the lottery whose model is ready."""
    trials = []
    for spec, revision in lottery_checkpoints(config):
        if spec.name not in sources:
            continue
        for task in config.lottery.tasks:
            data_dir = task_data_dir(config, task)
            for language in task_languages(config, task):
                for seed in config.lottery.seeds:
                    trials.append(
                        LotteryTrial(
                            model=spec.name,
                            checkpoint=revision,
                            task=task,
                            language=language,
                            seed=seed,
                            source=sources[spec.name],
                            params=config.lottery.task_params(task, seed),
                            data=tuple(TASKS[task].data_fingerprint(data_dir, language)),
                            data_dir=data_dir,
                            model_identity=model_identity(spec, sources[spec.name], revision),
                        )
                    )
    return trials


# --- masks in the store -------------------------------------------------------------------------


def mask_rows(
    packed: dict[str, PackedTensor], layers: dict[str, int], seed: int, kind: str, round_index: int, sparsity: float
) -> list[dict]:
    """One ``masks`` row per tensor."""
    return [
        {
            "seed": seed,
            "kind": kind,
            "round": round_index,
            "sparsity": sparsity,
            "tensor": name,
            "layer": layers[name],
            "shape": list(p.shape),
            "kept": p.kept,
            "bits": p.bits,
            "checksum": p.checksum,
        }
        for name, p in packed.items()
    ]


def read_packed(store: Store, path: str) -> tuple[dict[str, PackedTensor], int, dict[str, int]]:
    """A stored mask: its packed tensors (in stored order), the round it belongs to, each tensor's layer."""
    rows = store.read("masks", path=path).to_pylist()
    packed = {r["tensor"]: PackedTensor(tuple(r["shape"]), r["kept"], r["bits"], r["checksum"]) for r in rows}
    return packed, rows[0]["round"], {r["tensor"]: r["layer"] for r in rows}


def finished_rounds(store: Store, trial: LotteryTrial, rounds: int) -> int:
    """How many rounds, from round 0 on, are stored for this trial (every round's file is checked, so each
    damaged one is found and set aside)."""
    stored = [store.done(trial.round_path(store, r), trial.fingerprint) for r in range(rounds)]
    return stored.index(False) if False in stored else rounds


def lottery_done(store: Store, trial: LotteryTrial) -> bool:
    """Every round, and every mask of every target sparsity, stored with the trial's fingerprint."""
    params = trial.params
    masks = [trial.mask_path(store, kind, s) for s in params.sparsities for kind in MASK_KINDS]
    rounds = [trial.round_path(store, r) for r in range(params.rounds)]
    return all([store.done(path, trial.fingerprint) for path in rounds + masks])  # every file checked


def resume_point(store: Store, trial: LotteryTrial) -> tuple[int, dict | None]:
    """The round to start at and its mask (None: round 0's, all kept). A run resumes after its last stored
    round from the stored next mask; it starts over when that mask, or an IMP mask of a target sparsity
    that an earlier round wrote, is missing or damaged (IMP is deterministic, so the redone rounds are the
    same)."""
    params, fp = trial.params, trial.fingerprint
    start = finished_rounds(store, trial, params.rounds)
    written = [s for s, r in params.target_rounds().items() if r <= start]
    if not all([store.done(trial.mask_path(store, "imp", s), fp) for s in written]):
        return 0, None
    if start in (0, params.rounds):
        return start, None
    if store.done(trial.mask_path(store, "resume"), fp):
        packed, round_index, _ = read_packed(store, trial.mask_path(store, "resume"))
        if round_index == start:
            return start, unpack_mask(packed)
    return 0, None


# --- the trials -----------------------------------------------------------------------------------


def _device(num_gpus: float, threads: int) -> str:
    import torch

    torch.set_num_threads(max(1, threads))
    return actor_device(num_gpus, torch.cuda.is_available(), "lottery")


def run_lottery_trial(store: Store, trial: LotteryTrial, threads: int = 1, num_gpus: float = 0.0) -> dict:
    """Every unfinished IMP round of one trial, then its controls; return the seconds spent in rounds and, for
    tracking, each round's dev metric and sparsity (``dev_metric/round-<r>``, ``sparsity/round-<r>``)."""
    from lottery.imp import one_shot_mask, prepare, run_imp
    from lottery.masks import random_mask_like
    from lottery.schedules import sparsity_after

    params, fp = trial.params, trial.fingerprint
    source, revision = loadable_checkpoint(store, trial.source, trial.checkpoint)
    run = prepare(trial.task, source, revision, trial.data_dir, trial.language, params, _device(num_gpus, threads))
    layers = {w.name: w.layer for w in run.weights}
    start, mask = resume_point(store, trial)
    targets = {r: s for s, r in params.target_rounds().items()}
    busy, rounds = 0.0, {}
    for result in run_imp(run, params, start_round=start, mask=mask):
        upcoming = result.round + 1
        packed = pack_mask(result.next_mask)
        if upcoming in targets:
            rows = mask_rows(packed, layers, trial.seed, "imp", upcoming, targets[upcoming])
            store.write(rows_table("masks", rows), trial.mask_path(store, "imp", targets[upcoming]), fp)
        if upcoming < params.rounds:
            rows = mask_rows(packed, layers, trial.seed, "resume", upcoming, sparsity_after(params.schedule, upcoming))
            store.write(rows_table("masks", rows), trial.mask_path(store, "resume"), fp)
        row = {
            "seed": trial.seed,
            "round": result.round,
            "sparsity": result.sparsity,
            "dev_metric": result.dev_metric,
            "steps": result.steps,
            "seconds": result.seconds,
        }
        store.write(rows_table("lottery_rounds", [row]), trial.round_path(store, result.round), fp)
        busy += result.seconds
        rounds |= {f"{name}/round-{result.round:03d}": float(row[name]) for name in ("dev_metric", "sparsity")}
    for target, round_index in sorted(params.target_rounds().items()):
        if all([store.done(trial.mask_path(store, kind, target), fp) for kind in MASK_KINDS]):
            continue
        imp = unpack_mask(read_packed(store, trial.mask_path(store, "imp", target))[0])
        controls = {
            "one_shot": one_shot_mask(run, sparsity_after(params.schedule, round_index)),
            "random": random_mask_like(imp, trial_seed(trial.seed, _seed_key(trial, "random-mask"))),
        }
        for kind, control in controls.items():
            rows = mask_rows(pack_mask(control), layers, trial.seed, kind, round_index, target)
            store.write(rows_table("masks", rows), trial.mask_path(store, kind, target), fp)
    return {"status": "ok", "compute_seconds": busy, **rounds}


def _seed_key(trial: LotteryTrial | SubnetworkTransferTrial, purpose: str) -> dict:
    """The fields `probing.datasets.trial_seed` draws from, so that every (checkpoint, language) draws apart."""
    language = trial.language if isinstance(trial, LotteryTrial) else trial.target
    return {
        "model": trial.model,
        "checkpoint": trial.checkpoint,
        "layer": purpose,
        "language": language,
        "attribute": trial.task,
    }


def run_transfer_trial(store: Store, trial: SubnetworkTransferTrial, threads: int = 1, num_gpus: float = 0.0) -> dict:
    """Every unfinished unit of one target's sub-network transfer; return the seconds spent fine-tuning and, for
    tracking, each unit's score (``score/<kind>/<source language>/<sparsity>``)."""
    from lottery.imp import prepare
    from lottery.masks import random_mask_like
    from lottery.transfer import subnetwork_transfer

    source, revision = loadable_checkpoint(store, trial.source, trial.checkpoint)
    pending = [u for u in trial.units() if not store.done(trial.unit_path(store, *u), trial.unit_fingerprint(*u))]
    if not pending:
        return {"status": "ok", "compute_seconds": 0.0}
    run = prepare(trial.task, source, revision, trial.data_dir, trial.target, trial.params, _device(num_gpus, threads))
    key = {"model": trial.model, "checkpoint": trial.checkpoint, "task": trial.task}
    busy, scores = 0.0, {}
    for kind, language, sparsity in pending:
        if kind == "dense":
            mask = None
        else:
            path = mask_path(store, {**key, "language": language}, trial.seed, "imp", sparsity)
            mask = unpack_mask(read_packed(store, path)[0])
            if kind == "random":
                mask = random_mask_like(mask, trial_seed(trial.seed, _seed_key(trial, "transfer-random-mask")))
        score = subnetwork_transfer(run, mask, trial.params)
        row = {
            "seed": trial.seed,
            "source_language": language,
            "kind": kind,
            "sparsity": sparsity,
            "score": score.score,
            "steps": score.steps,
            "seconds": score.seconds,
            "n_examples": score.n_examples,
        }
        path = trial.unit_path(store, kind, language, sparsity)
        store.write(rows_table("subnetwork_transfer", [row]), path, trial.unit_fingerprint(kind, language, sparsity))
        busy += score.seconds
        scores[f"score/{kind}/{language}/{sparsity:.4f}"] = float(score.score)
    return {"status": "ok", "compute_seconds": busy, **scores}


def lottery_trainable(config: dict) -> None:
    """A Tune trial: ``config["spec"]`` holds the store, one trial (IMP or transfer) and its resources."""
    from ray import tune

    spec = config["spec"]
    run = run_lottery_trial if isinstance(spec["trial"], LotteryTrial) else run_transfer_trial
    tune.report(run(spec["store"], spec["trial"], spec["threads"], spec["num_gpus"]))


def transfer_trials(config: StudyConfig, done: list[LotteryTrial]) -> list[SubnetworkTransferTrial]:
    """One transfer trial per (checkpoint, task, target language) over the first seed's finished sub-networks."""
    seed = config.lottery.seeds[0]
    trials = []
    for members in _first_seed_groups(config, done).values():
        masks = tuple(sorted((t.language, t.fingerprint) for t in members))
        for target in members:
            if len(members) < 2:
                continue
            trials.append(
                SubnetworkTransferTrial(
                    model=target.model,
                    checkpoint=target.checkpoint,
                    task=target.task,
                    target=target.language,
                    seed=seed,
                    source=target.source,
                    params=target.params,
                    data=target.data,
                    masks=masks,
                    sparsities=tuple(target.params.sparsities),
                    data_dir=target.data_dir,
                )
            )
    return trials


def _first_seed_groups(config: StudyConfig, trials: list[LotteryTrial]) -> dict[tuple, list[LotteryTrial]]:
    """(model, checkpoint, task) → its first-seed IMP trials, whose masks that group's sub-network transfers use."""
    groups: dict[tuple, list[LotteryTrial]] = defaultdict(list)
    for trial in trials:
        if trial.seed == config.lottery.seeds[0]:
            groups[(trial.model, trial.checkpoint, trial.task)].append(trial)
    return groups


def _group_transfers(
    config: StudyConfig, store: Store, group: list[LotteryTrial]
) -> tuple[list[SubnetworkTransferTrial], int]:
    """The transfer trials of one group's finished IMP trials that have a unit to run, and how many are stored whole."""
    trials = transfer_trials(config, [m for m in group if lottery_done(store, m)])
    to_run = [
        t for t in trials if not all([store.done(t.unit_path(store, *u), t.unit_fingerprint(*u)) for u in t.units()])
    ]
    return to_run, len(trials) - len(to_run)


# --- overlaps and survival ------------------------------------------------------------------------


def _stored_masks(store: Store, trials: list[LotteryTrial], kinds: tuple[str, ...]) -> dict[tuple, str]:
    """(model, checkpoint, task, sparsity, kind, language, seed) → path of every stored mask of those kinds."""
    found = {}
    for trial in trials:
        for sparsity in trial.params.sparsities:
            for kind in kinds:
                path = trial.mask_path(store, kind, sparsity)
                if store.done(path, trial.fingerprint):
                    found[(trial.model, trial.checkpoint, trial.task, sparsity, kind, trial.language, trial.seed)] = (
                        path
                    )
    return found


def _overlap_rows(group: tuple, a: tuple, b: tuple, counts: dict[str, OverlapCounts], layers: dict) -> list[dict]:
    """Rows of one pair of masks: one per tensor, and 'all' (layer -1) for the whole mask."""
    model, checkpoint, task, sparsity = group
    per_tensor = [(name, layers[name], c) for name, c in counts.items()] + [("all", -1, summed(counts))]
    n = np.array([[c.n_total, c.n_a, c.n_b, c.n_both] for _, _, c in per_tensor], dtype=np.int64)
    pvalues = overlap_p_value(n[:, 0], n[:, 1], n[:, 2], n[:, 3])
    return [
        {
            "model": model,
            "checkpoint": checkpoint,
            "task": task,
            "sparsity": sparsity,
            "kind_a": a[0],
            "language_a": a[1],
            "seed_a": a[2],
            "kind_b": b[0],
            "language_b": b[1],
            "seed_b": b[2],
            "tensor": name,
            "layer": layer,
            "n_total": c.n_total,
            "n_a": c.n_a,
            "n_b": c.n_b,
            "n_both": c.n_both,
            "pvalue": float(p),
        }
        for (name, layer, c), p in zip(per_tensor, pvalues, strict=True)
    ]


def mask_pairs(keys: list[tuple[str, str, int]]) -> list[tuple[tuple, tuple]]:
    """The pairs of masks compared: every two IMP masks, and each IMP mask with its own controls."""
    imp = sorted(k for k in keys if k[0] == "imp")
    pairs = list(combinations(imp, 2))
    for _, language, seed in imp:
        pairs += [
            (("imp", language, seed), (kind, language, seed))
            for kind in MASK_KINDS[1:]
            if (kind, language, seed) in keys
        ]
    return pairs


def run_mask_overlaps(store: Store, trials: list[LotteryTrial]) -> bool:
    """Compute and store ``mask_overlaps`` per model; False when they were up to date (or there are no masks)."""
    paths = _stored_masks(store, trials, MASK_KINDS)
    if not paths:
        return False
    fp = fingerprint("mask_overlaps", sorted((str(k), store.stored_fingerprint(p)) for k, p in paths.items()))
    models = sorted({k[0] for k in paths})
    if all([store.done(store.path("mask_overlaps", model=m), fp) for m in models]):
        return False
    groups: dict[tuple, dict[tuple, str]] = defaultdict(dict)
    for key, path in paths.items():
        groups[key[:4]][key[4:]] = path
    rows: dict[str, list[dict]] = defaultdict(list)
    for group, members in sorted(groups.items(), key=lambda g: str(g[0])):
        packed, layers = {}, {}
        for key, path in members.items():
            packed[key], _, layers = read_packed(store, path)
        for a, b in mask_pairs(list(members)):
            rows[group[0]] += _overlap_rows(group, a, b, mask_overlap_counts(packed[a], packed[b]), layers)
    for model, model_rows in rows.items():
        store.write(
            rows_table("mask_overlaps", model_rows, drop=("model",)), store.path("mask_overlaps", model=model), fp
        )
    return True


def run_neuron_survival(config: StudyConfig, store: Store, trials: list[LotteryTrial]) -> bool:
    """Compute and store ``neuron_survival`` per model from the rankings and the first seed's IMP masks."""
    from lottery.survival import neuron_survival, top_k_survival

    seed = config.lottery.seeds[0]
    paths = {k: p for k, p in _stored_masks(store, trials, ("imp",)).items() if k[6] == seed}
    if not paths or not store.table_files("rankings"):
        return False
    checkpoints = {(k[0], k[1]) for k in paths}
    columns = ["model", "checkpoint", "layer", "language", "attribute", "method", "seed", "k", "ranking"]
    rankings = [
        r
        for r in store.read("rankings", columns=columns, filter=ds.field("direction") == "ttb").to_pylist()
        if (r["model"], r["checkpoint"]) in checkpoints and r["layer"] >= 1 and r["seed"] in config.probing.seeds
    ]
    fp = fingerprint(
        "neuron_survival",
        sorted((str(k), store.stored_fingerprint(p)) for k, p in paths.items()),
        sorted(json.dumps({c: r[c] for c in columns}, default=str) for r in rankings),
    )
    models = sorted({k[0] for k in paths})
    if all([store.done(store.path("neuron_survival", model=m), fp) for m in models]):
        return False
    survival: dict[tuple, np.ndarray] = {}
    rows: dict[str, list[dict]] = defaultdict(list)
    for key, path in sorted(paths.items(), key=lambda kp: str(kp[0])):
        model, checkpoint, task, sparsity, _, language, _ = key
        mine = [r for r in rankings if (r["model"], r["checkpoint"], r["language"]) == (model, checkpoint, language)]
        if not mine:
            continue
        packed, _, layers = read_packed(store, path)
        masks = {name: m.numpy() for name, m in unpack_mask(packed).items()}
        weights = [PrunableWeight(name, layers[name], p.shape) for name, p in packed.items()]
        for r in mine:
            d = len(r["ranking"])
            if (key, r["layer"]) not in survival:
                survival[(key, r["layer"])] = neuron_survival(masks, weights, r["layer"], d)
            per_neuron = survival[(key, r["layer"])]
            rows[model].append(
                {
                    "checkpoint": checkpoint,
                    "layer": r["layer"],
                    "language": language,
                    "attribute": r["attribute"],
                    "method": r["method"],
                    "seed": r["seed"],
                    "task": task,
                    "sparsity": sparsity,
                    "k": r["k"],
                    "top_k_survival": top_k_survival(per_neuron, r["ranking"], r["k"]),
                    "mean_survival": float(per_neuron.mean()),
                }
            )
    for model, model_rows in rows.items():
        store.write(rows_table("neuron_survival", model_rows), store.path("neuron_survival", model=model), fp)
    return bool(rows)


def run(context: StudyContext) -> StageResult:
    """IMP trials and sub-network transfer trials in one Tune sweep, then the mask overlaps and neuron survival.

    A (checkpoint, task)'s transfer trials are released into the sweep when its first-seed IMP trials have
    all ended (`ray_jobs.sweep.FollowUpSearcher`), so they run on actors that have already imported the
    libraries, next to the IMP trials still running; a language whose IMP trial failed is left out of them.
    """
    from ray_jobs.sweep import run_trials
    from ray_jobs.tracking import tracking_callbacks

    config, store, failures = context.config, context.store, context.failures_of("lottery")
    trials = lottery_trials(config, context.sources)
    pending = [t for t in trials if not lottery_done(store, t)]
    groups = _first_seed_groups(config, trials) if config.lottery.transfer else {}
    waiting = {key: {t for t in group if t in pending} for key, group in groups.items()}
    transfers = {"run": 0, "stored": 0}

    def release(key: tuple) -> list[SubnetworkTransferTrial]:
        to_run, stored = _group_transfers(config, store, groups[key])
        transfers["run"] += len(to_run)
        transfers["stored"] += stored
        return to_run

    def follow_up(ended: LotteryTrial | SubnetworkTransferTrial) -> list[SubnetworkTransferTrial]:
        key = (ended.model, ended.checkpoint, ended.task)
        if not isinstance(ended, LotteryTrial) or ended not in waiting.get(key, ()):
            return []
        waiting[key].discard(ended)
        return [] if waiting[key] else release(key)

    ready = [t for key in groups if not waiting[key] for t in release(key)]
    planned = len(transfer_trials(config, trials)) if config.lottery.transfer else 0
    print(
        f"[lottery] {len(trials)} IMP trials, {len(trials) - len(pending)} already stored, {len(pending)} to run; "
        f"{planned} sub-network transfer trials, {len(ready)} ready to run, the rest once their IMP trials end"
    )
    began = time.perf_counter()
    resources, callbacks = config.lottery.resources, tracking_callbacks(config, "lottery")
    finished, busy = run_trials(
        "lottery", lottery_trainable, pending + ready, resources, store, failures, callbacks, follow_up
    )
    analysed = [run_mask_overlaps(store, trials), run_neuron_survival(config, store, trials)]
    ran = finished + sum(analysed)
    reused = len(trials) - len(pending) + transfers["stored"] + len(analysed) - sum(analysed)
    print(f"[lottery] {time.perf_counter() - began:.0f} s ({transfers['run']} sub-network transfer trials run)")
    return StageResult(ran, reused, busy_seconds=busy)


main = stage_main("lottery")

if __name__ == "__main__":
    raise SystemExit(main())
