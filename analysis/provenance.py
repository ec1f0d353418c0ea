"""What produced a result: the run's provenance, stamped into every file the store writes and the report.

A run's provenance is built once (`Provenance.of_run`): the project's version, the git commit (and
whether the checkout had uncommitted changes to tracked files) when the code runs from a checkout,
the config's hash, and the versions of Python and of the libraries that compute the results. Versions
come from the installed packages' metadata, so building it imports none of them (no Ray here).

The store writes it into every Parquet file's key-value metadata (`PROVENANCE_KEY`, as JSON), and, for a
file of one checkpoint's partition (``model=…/checkpoint=…``) whose weights were hashed (the ``weights``
stage, `probing.weights_digest`), that checkpoint's weights digest (`CHECKPOINT_KEY`). Neither enters a
fingerprint: a file already stored keeps the provenance of the run that wrote it. The ``provenance``
view reads them back, one row per file; the report prints the run's in its footer (`provenance_line`).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROVENANCE_KEY = b"xling.provenance"
CHECKPOINT_KEY = b"xling.checkpoint_sha256"

#: The installed distribution of this project, whose version is recorded.
PROJECT = "xling-neurons"

#: The libraries whose versions are recorded.
LIBRARIES = ("torch", "transformers", "ray", "peft", "duckdb", "pyarrow")

#: The fields of a run's provenance, in the order the ``provenance`` view shows them.
RUN_FIELDS = ("project_version", "git_commit", "git_dirty", "config_hash", "python", *LIBRARIES)

#: The checkout this code runs from, when it is one.
REPOSITORY = Path(__file__).resolve().parents[1]


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state(repository: Path = REPOSITORY) -> dict[str, object]:
    """``git_commit`` and ``git_dirty`` (tracked files changed since it) of the checkout the code runs from;
    empty when it is not a checkout (an installed copy, a job's copy of the working directory) or git fails."""
    if not (repository / ".git").exists():
        return {}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repository), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {}


@dataclass(frozen=True)
class Provenance:
    """What every file a run writes is stamped with: the run's facts (``run``, by `RUN_FIELDS`, absent ones
    left out) and the weights digest of each hashed checkpoint (``checkpoints``: (model, checkpoint) →
    SHA-256)."""

    run: Mapping[str, object]
    checkpoints: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of_run(cls, config_hash: str) -> Provenance:
        """This process's provenance for a run of the config whose hash is ``config_hash``."""
        facts = {
            "project_version": installed_version(PROJECT),
            **git_state(),
            "config_hash": config_hash,
            "python": platform.python_version(),
            **{library: installed_version(library) for library in LIBRARIES},
        }
        return cls({name: facts[name] for name in RUN_FIELDS if facts.get(name) is not None})

    def with_checkpoints(self, digests: Mapping[tuple[str, str], str]) -> Provenance:
        """This provenance knowing the weights digests of more checkpoints."""
        return Provenance(self.run, {**self.checkpoints, **digests})

    def metadata(self, partition: Mapping[str, str]) -> dict[bytes, bytes]:
        """The key-value metadata of a file in a partition (hive keys → values, from its path)."""
        stamp = {PROVENANCE_KEY: json.dumps(dict(self.run), sort_keys=True).encode()}
        digest = self.checkpoints.get((partition.get("model", ""), partition.get("checkpoint", "")))
        if digest is not None:
            stamp[CHECKPOINT_KEY] = digest.encode()
        return stamp


def provenance_line(run: Mapping[str, object]) -> str:
    """A run's provenance as one line of text (the report's footer)."""
    commit = run.get("git_commit")
    code = f"{PROJECT} {run.get('project_version', '(version unknown)')}"
    if commit is not None:
        code += f" at commit {commit}" + (" with uncommitted changes" if run.get("git_dirty") else "")
    versions = ", ".join(f"{name} {run[name]}" for name in ("python", *LIBRARIES) if name in run)
    return f"Produced by {code}; config hash {run.get('config_hash', 'unknown')}; {versions}."
