"""A Ray Tune callback that shows a progress bar of finished trials instead of Tune's status tables."""

from __future__ import annotations

import sys

from ray import tune
from tqdm import tqdm


class TrialProgress(tune.Callback):
    """Advances a bar as trials end; the bar is left out when Tune pickles its experiment state."""

    def __init__(self, total: int, desc: str) -> None:
        self.bar: tqdm | None = tqdm(total=total, unit="trial", desc=desc, file=sys.stderr, mininterval=2)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def on_experiment_end(self, trials, **info) -> None:
        if self.bar is not None:
            self.bar.close()

    def __getstate__(self) -> dict:
        return {"bar": None}
