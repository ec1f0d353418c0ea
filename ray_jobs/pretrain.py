"""Stage 0: pre-train the study's own models (those with a ``pretrain`` section), as one Ray task each.

The run directory ``<output_root>/models/<name>-<hash>`` is named by a hash of the pre-training
params and the UD text it reads, so a finished run is reused and a changed config trains anew.
The loss curve goes to ``pretrain_loss`` (Parquet) and ``loss.png`` in the run directory. Under a
remote root (``s3://...``) training runs on local disk and the checkpoints are then copied there;
`ray_jobs.common.loadable_checkpoint` copies them back to a worker's disk when it loads one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.store import Store, fingerprint
from analysis.tables import rows_table
from probing.datasets import ud_signature
from ray_jobs.common import StageResult
from ray_jobs.config import ModelSpec, StudyConfig
from ray_jobs.context import StudyContext, key_label
from ray_jobs.resources import node_shapes, pretrain_request
from ray_jobs.stages import stage_main


def run_name(config: StudyConfig, spec: ModelSpec) -> str:
    """``<name>-<hash>``: the hash of the pre-training params and of the UD text they read."""
    signature = [ud_signature(config.ud_dir, lang) for lang in sorted(config.languages)]
    return f"{spec.name}-{fingerprint('pretrain', spec.pretrain, signature)[:10]}"


def pretrain_model(config: StudyConfig, store: Store, spec: ModelSpec, name: str, threads: int) -> str:
    """Read the UD text of the study's languages, pre-train (or finish) the model; return its location.

    Training writes to local disk (the run directory itself under a local root); under a remote root
    the finished checkpoints are then copied into the store.
    """
    import pyarrow.fs as pafs
    import torch

    from analysis.plots import plot_loss_curve
    from probing.datasets import language_texts
    from probing.pretrain import pretrain

    target = f"{store.base}/models/{name}"
    local = Path(target) if store.is_local else store.local_dir() / "models" / name
    torch.set_num_threads(threads)
    limit = spec.pretrain.sentences_per_language
    texts = [text for lang in sorted(config.languages) for text in language_texts(config.ud_dir, lang, limit)]
    print(f"[pretrain] {spec.name}: {len(texts)} sentences, {spec.pretrain.steps} steps -> {local}")

    def report(step: int, loss: float) -> None:
        if step % 50 == 0 or step == spec.pretrain.steps:
            print(f"[pretrain] {spec.name} step {step}/{spec.pretrain.steps} loss {loss:.3f}", flush=True)

    pretrain(texts, spec.pretrain, local, progress=report, device="cuda" if torch.cuda.is_available() else "cpu")
    log = pq.read_table(local / "loss.parquet")
    steps, loss, heldout = (log.column(c).to_numpy() for c in ("step", "loss", "heldout_loss"))
    at = ~np.isnan(heldout)
    plot_loss_curve(steps[1:], loss[1:], steps[at], heldout[at], local / "loss.png", f"pre-training of {spec.name}")
    if not store.is_local:
        pafs.copy_files(str(local), target, destination_filesystem=store.fs)
    rows = log.append_column("run", pa.array([name] * len(log))).to_pylist()
    store.write(rows_table("pretrain_loss", rows), store.path("pretrain_loss", model=spec.name), fingerprint(name))
    return store.uri(target)


def _trained_location(context: StudyContext, spec: ModelSpec) -> str | None:
    """Where a pre-trained model's checkpoints are, when its run with these params is stored; else None."""
    store, name = context.store, run_name(context.config, spec)
    if store.done(store.path("pretrain_loss", model=spec.name), fingerprint(name)):
        return store.uri(f"{store.base}/models/{name}")
    return None


def stored_sources(context: StudyContext) -> dict[str, str]:
    """Model name → where to load it from: hub ids and local paths, and the pre-trained models already stored."""
    sources = {spec.name: str(spec.id) for spec in context.config.models if spec.pretrain is None}
    for spec in (s for s in context.config.models if s.pretrain is not None):
        location = _trained_location(context, spec)
        if location is not None:
            sources[spec.name] = location
    return sources


def run(context: StudyContext) -> StageResult:
    """Pre-train the models that ask for it and are not stored yet, one Ray task each (sized to fit the largest
    node, `ray_jobs.resources.pretrain_request`); set ``context.sources`` (a model that failed is absent)."""
    import ray

    config, store, failures = context.config, context.store, context.failures_of("pretrain")
    sources = {spec.name: str(spec.id) for spec in config.models if spec.pretrain is None}
    result = StageResult()
    for spec in (s for s in config.models if s.pretrain is not None):
        try:
            name = run_name(config, spec)
            location = _trained_location(context, spec)
            if location is not None:
                print(f"[pretrain] {spec.name}: already trained in {location}")
                result.reused += 1
            else:
                cpus, gpus = pretrain_request(node_shapes())
                task = ray.remote(num_cpus=cpus, num_gpus=gpus)(pretrain_model)
                began = time.perf_counter()
                location = ray.get(task.remote(config, store, spec, name, cpus))
                result.run += 1
                result.busy_seconds += (time.perf_counter() - began) * cpus
            sources[spec.name] = location
        except Exception as err:
            failures.add(key_label(model=spec.name), err)
    context.sources = sources
    return result


main = stage_main("pretrain")

if __name__ == "__main__":
    raise SystemExit(main())
