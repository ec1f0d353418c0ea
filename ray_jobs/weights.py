"""Stage: hash every checkpoint's weights, and flag the revisions whose weights duplicate another's.

One Ray task per checkpoint not hashed yet finds its weight files on its node (`probing.models.
checkpoint_directory`: a local revision, a study's own pre-trained checkpoint, or a hub revision's
snapshot) and hashes them (`probing.weights_digest`, cached per file on the node), right before the
extract stage loads the same files. The digests go to ``checkpoint_weights`` (one file per checkpoint),
and into the store's provenance, so that every file of a checkpoint's partitions written from here on
(activations, rankings, transfer, ...) carries its checkpoint's digest (`analysis.provenance`). A
checkpoint whose digest equals another's is printed as a warning here and in the pipeline's summary,
and flagged in the ``checkpoints`` view and the report.
"""

from __future__ import annotations

from collections.abc import Callable

from analysis.database import duplicate_checkpoints
from analysis.store import Store, fingerprint
from analysis.tables import rows_table
from ray_jobs.common import StageResult, checkpoints, loadable_checkpoint, model_identity, ray_map
from ray_jobs.config import ModelSpec, StudyConfig
from ray_jobs.context import StudyContext, key_label
from ray_jobs.stages import stage_main


def weights_fingerprint(spec: ModelSpec, source: str, revision: str) -> str:
    """What a checkpoint's digest depends on: the digest's version, the model's identity and the revision."""
    from probing.weights_digest import DIGEST_VERSION

    return fingerprint("checkpoint_weights", DIGEST_VERSION, model_identity(spec, source, revision), revision)


def hash_checkpoint(config: StudyConfig, store: Store, source: str, revision: str) -> dict:
    """The ``checkpoint_weights`` row of one checkpoint (a Ray task: the files are found on its node)."""
    from probing.models import checkpoint_directory, revision_step
    from probing.weights_digest import weights_digest

    digest = weights_digest(checkpoint_directory(*loadable_checkpoint(store, source, revision)))
    return {
        "step": revision_step(revision),
        "weights_sha256": digest.sha256,
        "format": digest.format,
        "files": digest.files,
        "tensors": digest.tensors,
        "size_bytes": digest.size_bytes,
    }


def stored_digests(store: Store) -> dict[tuple[str, str], str]:
    """(model, checkpoint) → weights digest of every checkpoint hashed in the store."""
    files = store.intact_files("checkpoint_weights")
    if not files:
        return {}
    rows = store.dataset("checkpoint_weights", files).to_table(["model", "checkpoint", "weights_sha256"]).to_pylist()
    return {(str(row["model"]), str(row["checkpoint"])): row["weights_sha256"] for row in rows}


def duplicate_warning(store: Store) -> str | None:
    """A line naming every stored checkpoint whose weights are another's, or None when there is none."""
    duplicates = duplicate_checkpoints(store)
    if not duplicates:
        return None
    named = ", ".join(f"{model}@{checkpoint} = {original}" for model, checkpoint, original in duplicates)
    return (
        f"WARNING: {len(duplicates)} checkpoint(s) hold the same weights as another, so their results are no "
        f"evidence of training dynamics: {named} (SELECT * FROM checkpoints WHERE duplicate_of IS NOT NULL)"
    )


def run(context: StudyContext, runner: Callable = ray_map) -> StageResult:
    """Hash every checkpoint of the study not hashed yet (``runner``: one Ray task each by default); add every
    stored digest to the store's provenance; warn of duplicates."""
    config, store, sources = context.config, context.store, context.sources
    failures = context.failures_of("weights")
    units = [
        (
            spec,
            revision,
            store.path("checkpoint_weights", model=spec.name, checkpoint=revision),
            weights_fingerprint(spec, sources[spec.name], revision),
        )
        for spec, revision in checkpoints(config)
        if spec.name in sources
    ]
    pending = [unit for unit in units if not store.done(unit[2], unit[3])]
    items = [(store, sources[spec.name], revision) for spec, revision, *_ in pending]
    outcomes = runner(hash_checkpoint, config, items)
    hashed = []
    for unit, outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures.add(key_label(model=unit[0].name, checkpoint=unit[1]), outcome)
        else:
            hashed.append((unit, outcome))
    # the digests first, so that each checkpoint_weights file carries its own checkpoint's digest too
    new = {(spec.name, revision): row["weights_sha256"] for (spec, revision, *_), row in hashed}
    store.provenance = store.provenance.with_checkpoints({**stored_digests(store), **new})
    for (_, _, path, fp), row in hashed:
        store.write(rows_table("checkpoint_weights", [row]), path, fp)
    warning = duplicate_warning(store)
    if warning:
        print(f"[weights] {warning}")
    return StageResult(len(hashed), len(units) - len(pending))


main = stage_main("weights")

if __name__ == "__main__":
    raise SystemExit(main())
