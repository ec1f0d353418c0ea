"""Each paper's protocol as a preset of the study's choices (``protocol:`` in the study config).

A preset maps a section of the study to overrides of that section's parameters:

- ``latent``, ``gaussian``, ``linear``: fields of the ranker's hyperparameter dataclass
  (``probing.rankers``), as ``probing.params.<method>`` in the config;
- ``evaluation``: fields of ``probing.evaluation.EvaluationParams`` (``probing.evaluation`` in the config);
- ``data``: fields of ``probing.datasets.DataParams`` (``data`` in the config);
- ``probing``: fields of the study's probing section (``probing`` in the config).

``default`` is this project's own choices (each dataclass's defaults); ``wang2024`` follows the
public code of paper 002 (Wang et al. 2024, after Stańczak et al. 2022); ``antverg2022`` the public
code of paper 003 (Antverg & Belinkov 2022). An explicit setting in the config always wins over
its preset. The README's protocol table gives each difference and why the default differs.
"""

from __future__ import annotations

#: The sections a preset may set, in the order they are applied.
SECTIONS: tuple[str, ...] = ("data", "probing", "evaluation", "latent", "gaussian", "linear")

PROTOCOLS: dict[str, dict[str, dict]] = {
    "default": {},
    "wang2024": {
        # Latent probe as 002's code trains it: H(q) with weight 1 in the gradient, raw activations
        # (a masked neuron is 0), one mask per example, no score-function baseline, early stopping on
        # 10% of train held out with a patience of 50 epochs, no L1/L2.
        "latent": {
            "entropy_weight": 1.0,
            "standardise": False,
            "mask_sharing": "per_example",
            "baseline": "none",
            "early_stopping": "train_holdout",
            "patience": 50,
            "l1": 0.0,
            "l2": 0.0,
        },
        # 002 orders neurons greedily up to the largest k it evaluates, not only up to k.
        "probing": {"greedy_depth": "k_grid_max"},
        # Lemma-disjoint 80/10/10, values with >= 20 examples in every split.
        "data": {"split": "lemma", "split_fractions": (0.8, 0.1, 0.1), "min_examples_per_split": 20},
        # NMI normalised by the label entropy of the evaluated set, from the classifier's raw probabilities.
        "evaluation": {"nmi_entropy": "evaluated", "nmi_calibration": "none"},
    },
    "antverg2022": {
        # Gaussian probe with the reference's joint posterior mode over the full width.
        "gaussian": {"covariance": "map"},
        # Elastic net on raw activations: lambda1 = 1e-3, lambda2 * ||W|| (the norm, not squared).
        "linear": {"standardise": False, "l1": 1e-3, "l2": 1e-2, "l2_penalty": "norm"},
        "evaluation": {
            "linear_standardise": False,
            "linear_l1": 1e-3,
            "linear_l2": 1e-2,
            "linear_l2_penalty": "norm",
            "nmi_calibration": "none",
        },
        # UD's own train/dev/test files; values with >= 100 word types kept.
        "data": {"split": "ud", "min_types_per_value": 100},
    },
}
