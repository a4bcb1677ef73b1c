"""Hyperparameter search with keras-tuner: search space, leased chief/worker oracle (and who may call it:
`auth`), stored targets in a search, the trial runner, summaries.

The search itself is `funmatch.tuning.search.tune` (the `funmatch tune` command is `funmatch.commands.tune`).
May import configs, data and training (each trial is a real run); never commands. Importing this
subpackage does not import keras-tuner, Keras or TensorFlow; they are imported when a search is built.
"""

from funmatch.tuning.distributed import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_LEASE_TIMEOUT_S,
    LeasedOracleClient,
    LeaseMixin,
    LeaseRefused,
    leased,
    role_from_environment,
    serve,
    wait_for_chief,
)
from funmatch.tuning.space import (
    AXIS_ALIASES,
    Axis,
    build_hyperparameters,
    canonical_name,
    default_axes,
    parse_axis,
    parse_space,
    resolve_axes,
    trial_config,
)
from funmatch.tuning.stored import check_store, online_reason
from funmatch.tuning.summary import load_trials, summarize
from funmatch.tuning.tuner import (
    MODEL_FILES,
    OBJECTIVES,
    distill_run_fn,
    make_oracle,
    prune_trial_dir,
    teacher_run_fn,
    trial_metrics,
    tuner_class,
)

__all__ = [
    "AXIS_ALIASES",
    "Axis",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_LEASE_TIMEOUT_S",
    "LeaseMixin",
    "LeaseRefused",
    "LeasedOracleClient",
    "MODEL_FILES",
    "OBJECTIVES",
    "build_hyperparameters",
    "canonical_name",
    "check_store",
    "default_axes",
    "distill_run_fn",
    "leased",
    "load_trials",
    "make_oracle",
    "online_reason",
    "parse_axis",
    "parse_space",
    "prune_trial_dir",
    "resolve_axes",
    "role_from_environment",
    "serve",
    "summarize",
    "teacher_run_fn",
    "trial_config",
    "trial_metrics",
    "tuner_class",
    "wait_for_chief",
]
