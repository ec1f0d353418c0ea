"""What every stage of one study shares: its config, its store, and what the upstream stages resolved.

A `StudyContext` is created once per run (`StudyContext.open`), so the store is built once and passed
down. The locations of the models (``sources``) and the data fingerprints of the languages
(``data_fps``) are set by the stages that produce them (pretrain, prepare); a stage run on its own
(``xling probe``) finds them in the store instead (`ray_jobs.pretrain.stored_sources`,
`ray_jobs.prepare.stored_data_fingerprints`), without re-running those stages. The store stamps every
file it writes with the run's provenance (`analysis.provenance`) and the weights digests of the
checkpoints hashed so far (`ray_jobs.weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from analysis.provenance import Provenance
from analysis.store import Store, fingerprint
from ray_jobs.config import StudyConfig

if TYPE_CHECKING:
    from ray_jobs.common import Failures
    from ray_jobs.prepare import DataFingerprints


def key_label(**keys: object) -> str:
    """A unit of work's key as the failures table writes it: ``model=m/checkpoint=c/...``."""
    return "/".join(f"{name}={value}" for name, value in keys.items())


@dataclass
class StudyContext:
    """One study's config and store, the upstream results its stages read, and each stage's failures."""

    config: StudyConfig
    store: Store
    _sources: dict[str, str] | None = None
    _data_fps: dict[str, DataFingerprints] | None = None
    failures: dict[str, Failures] = field(default_factory=dict)
    summary: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, config: StudyConfig, sources: dict[str, str] | None = None, verify: bool = False) -> StudyContext:
        """The context of a run of ``config`` (``sources``: where to load models from, when already known;
        ``verify``: check every stored file's page checksums before taking it as done, `Store`). The config's
        hash in the provenance leaves out the output root, where the results go, not what makes them."""
        from ray_jobs.weights import stored_digests

        store = Store(config.output_root, verify=verify)
        provenance = Provenance.of_run(fingerprint(replace(config, output_root="")))
        store.provenance = provenance.with_checkpoints(stored_digests(store))
        return cls(config, store, _sources=sources)

    @property
    def sources(self) -> dict[str, str]:
        """Model name → where its checkpoints load from (models still to pre-train are absent)."""
        if self._sources is None:
            from ray_jobs.pretrain import stored_sources

            self._sources = stored_sources(self)
        return self._sources

    @sources.setter
    def sources(self, value: dict[str, str]) -> None:
        self._sources = value

    @property
    def data_fps(self) -> dict[str, DataFingerprints]:
        """Language → the fingerprints of its prepared tables (languages not prepared are absent)."""
        if self._data_fps is None:
            from ray_jobs.prepare import stored_data_fingerprints

            self._data_fps = stored_data_fingerprints(self)
        return self._data_fps

    @data_fps.setter
    def data_fps(self, value: dict[str, DataFingerprints]) -> None:
        self._data_fps = value

    def failures_of(self, stage: str) -> Failures:
        """The failures recorded by ``stage`` in this run."""
        from ray_jobs.common import Failures

        return self.failures.setdefault(stage, Failures(stage))

    def failure_rows(self) -> list[dict]:
        """Every failure recorded in this run, all stages."""
        return [row for failures in self.failures.values() for row in failures.rows]
