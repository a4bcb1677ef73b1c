"""`DistillTuner`: a keras-tuner `BaseTuner` whose trials are real distillation (or teacher) runs.

keras-tuner's Keras `Tuner` builds a model from a hypermodel and calls `model.fit`; here `run_trial` is
overridden instead, so each trial is `funmatch.training.distill.distill` (or `train_teacher`) in its own workdir
`SEARCH_DIR/trials/<trial_id>/`, which is resumable: a retried trial continues from its own checkpoint.

Search folder layout:

    SEARCH_DIR/tune.json                  the search settings (a re-run must match them to resume)
    SEARCH_DIR/search/oracle.json         keras-tuner's oracle state (reloaded on re-run)
    SEARCH_DIR/search/trial_<id>/trial.json   keras-tuner's record of each trial (values, metrics, status)
    SEARCH_DIR/trials/<id>/               the trial's run folder (config.json, metrics.json, model, ...)
    SEARCH_DIR/summary.{csv,md,png}       written by `funmatch tune --summary`

Disk: when a trial ends, every *ended* trial outside the best `keep_best` loses everything but its small
record files (config.json, metrics.json, metrics.jsonl, log.csv); the best `keep_best` keep their model
(`student.keras` / `teacher.keras`) and lose their checkpoints. Trials still running or waiting for a
retry keep their checkpoints (the retry resumes from them).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import Any, Callable

from funmatch.configs import Config
from funmatch.errors import FunmatchError
from funmatch.tuning import distributed
from funmatch.tuning.space import trial_config

PROJECT_NAME = "search"
RECORD_FILES = ("config.json", "metrics.json", "metrics.jsonl", "log.csv", "teacher_metrics.json")
MODEL_FILES = ("student.keras", "teacher.keras")

# objective name -> (metric suffix of the validation split, direction)
OBJECTIVES = {
    "val_accuracy": ("accuracy", "max"),
    "val_agreement": ("agreement", "max"),
    "val_kl": ("kl", "min"),
}

RunFn = Callable[[Config, pathlib.Path], dict]


def trial_metrics(result: dict[str, Any], config: Config) -> dict[str, float]:
    """A run's final metrics -> the names the oracle sees (`val_*` for config.val_split, `test_*`)."""
    out: dict[str, float] = {}
    for prefix, split in (("val", config.val_split), ("test", config.test_split)):
        for name in ("accuracy", "agreement", "kl"):
            value = result.get(f"{split}_{name}")
            if isinstance(value, (int, float)):
                out[f"{prefix}_{name}"] = float(value)
    return out


def distill_run_fn(data_dir, teacher_path, targets_dir=None) -> RunFn:
    """A trial distils; with `targets_dir`, every trial the store serves (`funmatch.tuning.stored`: its views,
    teacher resolution and temperature) reads the stored targets (no teacher in its step), the others run
    online, each saying why in one line."""

    def run(config: Config, workdir: pathlib.Path) -> dict:
        from funmatch.training.distill import distill
        from funmatch.tuning.stored import stored_or_online

        targets = stored_or_online(targets_dir, config, workdir.name)
        return trial_metrics(distill(config, data_dir, teacher_path, workdir, targets=targets, progress=False), config)

    return run


def teacher_run_fn(data_dir, init) -> RunFn:
    def run(config: Config, workdir: pathlib.Path) -> dict:
        from funmatch.training.labels import train_teacher

        return trial_metrics(train_teacher(config, data_dir, workdir, init=init, progress=False), config)

    return run


def prune_trial_dir(workdir: pathlib.Path, *, keep_model: bool) -> None:
    """Delete a finished trial's checkpoints and caches; keep its records (and its model if `keep_model`)."""
    keep = set(RECORD_FILES) | (set(MODEL_FILES) | {"tensorboard"} if keep_model else set())
    for path in workdir.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def best_completed_trials(oracle, trials_dir: pathlib.Path, count: int) -> list:
    """The best `count` completed trials by the objective, with ties broken stably.

    keras-tuner orders tied scores arbitrarily; a tie must not promote a trial whose model was
    already pruned over one that still has it (the disk bound would then keep no model at all).
    Ties go to the trial that still has its model, then to the earlier trial.
    """
    if count <= 0:
        return []
    completed = [t for t in oracle.get_best_trials(10**6) if t.status == "COMPLETED" and t.score is not None]
    sign = -1.0 if getattr(oracle.objective, "direction", "max") == "max" else 1.0

    def order(trial):
        has_model = any((trials_dir / str(trial.trial_id) / name).exists() for name in MODEL_FILES)
        trial_id = str(trial.trial_id)
        return (sign * float(trial.score), not has_model, (0, int(trial_id)) if trial_id.isdigit() else (1, trial_id))

    return sorted(completed, key=order)[:count]


def _has_heavy_files(workdir: pathlib.Path, *, keep_model: bool) -> bool:
    keep = set(RECORD_FILES) | (set(MODEL_FILES) | {"tensorboard"} if keep_model else set())
    return any(p.name not in keep for p in workdir.iterdir())


def _make_tuner_class():
    import keras_tuner
    from keras_tuner.src.engine import base_tuner
    from keras_tuner.src.engine import trial as trial_module

    class DistillTuner(base_tuner.BaseTuner):
        """Runs each trial through `run_fn(config, workdir)` and keeps the best `keep_best` models.

        Args:
            oracle: a leased keras-tuner oracle (see `funmatch.tuning.distributed.leased`).
            base_config: the recipe; each trial replaces the tuned fields (`trial_config`).
            search_dir: the search folder (layout in the module docstring).
            run_fn: `(config, workdir) -> {"val_accuracy": ..., ...}`, a real run.
            keep_best: how many trial models to keep on disk.
            role: None (single process), "chief" or "worker"; `address` "host:port" of the chief.
            token: the search's shared secret (`funmatch.tuning.auth`), required with a role.
            tls_credentials: the chief's grpc server credentials (TLS), or None; tls_ca: the PEM a worker trusts.
            hyperband_max_epochs: hyperband's budget R; a trial at budget r runs r/R of the recipe's length.
        """

        def __init__(self, oracle, *, base_config: Config, search_dir, run_fn: RunFn, keep_best: int = 3,
                     role: str | None = None, address: str | None = None, tuner_id: str | None = None,
                     heartbeat_s: float = distributed.DEFAULT_HEARTBEAT_S, rpc_timeout_s: float = 120.0,
                     hyperband_max_epochs: int | None = None, poll_s: float = 0.5, verbose: bool = True,
                     token: str | None = None, tls_credentials=None, tls_ca=None):
            if role is not None and not token:
                raise FunmatchError("a distributed search needs the search's token (funmatch.tuning.auth.resolve_token)")
            self.role = role
            self.token = token
            self.tls_credentials = tls_credentials
            self.address = address
            self.base_config = base_config
            self.search_dir = pathlib.Path(search_dir)
            self.trials_dir = self.search_dir / "trials"
            self.run_fn = run_fn
            self.keep_best = max(0, int(keep_best))
            self.heartbeat_s = heartbeat_s
            self.hyperband_max_epochs = hyperband_max_epochs
            self.poll_s = poll_s
            self.verbose = verbose
            if role is not None:
                distributed.set_keras_tuner_environment(role, address, tuner_id or role)
            else:
                for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
                    os.environ.pop(name, None)
            super().__init__(oracle, hypermodel=None, directory=str(self.search_dir), project_name=PROJECT_NAME,
                             overwrite=False)
            self.oracle_verbose_off()
            if role == "worker":
                local = getattr(self.oracle, "_oracle", self.oracle)
                self.oracle = distributed.LeasedOracleClient(local, address, self.tuner_id, token=token, tls_ca=tls_ca,
                                                             rpc_timeout_s=rpc_timeout_s)

        def oracle_verbose_off(self):
            if hasattr(self.oracle, "_display"):
                self.oracle.verbose = 0  # keras-tuner's display prints multi-line tables; we print one line per trial

        # --- State: the oracle's own file is the search state (a search resumes whether it ran as one process
        # or as chief + workers); workers keep no state of their own. ---
        def _get_tuner_fname(self):
            if self._is_worker():
                return os.path.join(str(self.project_dir), f".no-state-{self.tuner_id}")
            return os.path.join(str(self.project_dir), "oracle.json")

        def save(self):
            if not self._is_worker():
                self.oracle.save()

        def reload(self):
            if not self._is_worker():
                print(f"funmatch tune: resuming the search in {self.search_dir}")
                self.oracle.reload()

        # --- The search loop (BaseTuner.search, with the chief's server replaced and IDLE polling paced). ---
        def search(self):
            if self.role == "chief":
                self.save()
                print(f"funmatch tune: chief serving the oracle at {self.address}"
                      + (" (TLS)" if self.tls_credentials else ""), flush=True)
                distributed.serve(self.oracle, self.address, token=self.token, credentials=self.tls_credentials,
                                  poll_s=self.poll_s)
                self.save()
                return
            self.on_search_begin()
            while True:
                trial = self.oracle.create_trial(self.tuner_id)
                if trial.status == trial_module.TrialStatus.STOPPED:
                    break
                if trial.status == trial_module.TrialStatus.IDLE:
                    time.sleep(self.poll_s)
                    continue
                self.trial_workdir(trial.trial_id)  # refuse a trial id that would leave SEARCH_DIR/trials
                self.on_trial_begin(trial)
                self._try_run_and_update_trial(trial)
                self.on_trial_end(trial)
            self.on_search_end()

        def run_trial(self, trial, *args, **kwargs):
            values = dict(trial.hyperparameters.values)
            fraction = None
            if "tuner/epochs" in values and self.hyperband_max_epochs:
                fraction = float(values["tuner/epochs"]) / float(self.hyperband_max_epochs)
            try:
                config = trial_config(self.base_config, values, hyperband_fraction=fraction)
            except FunmatchError as e:  # an infeasible point of the space: no retry can fix it
                raise keras_tuner.errors.FailedTrialError(str(e)) from None
            workdir = self.trial_workdir(trial.trial_id)
            heartbeat = isinstance(self.oracle, distributed.LeasedOracleClient)
            if heartbeat:
                self.oracle.start_heartbeat(trial.trial_id, self.heartbeat_s)
            try:
                return self.run_fn(config, workdir)
            except FunmatchError as e:  # bad settings or a NaN loss: deterministic, so FAILED, not retried
                raise keras_tuner.errors.FailedTrialError(str(e)) from None
            finally:
                if heartbeat:
                    self.oracle.stop_heartbeat()

        def trial_workdir(self, trial_id) -> pathlib.Path:
            """SEARCH_DIR/trials/<trial_id>, refused (FunmatchError) unless the id is a plain trial id and the
            folder resolves inside SEARCH_DIR/trials (a link planted there could point elsewhere)."""
            from funmatch.tuning import auth

            where = f"--dir {self.search_dir}: trial id"
            auth.check_trial_id(trial_id, where)
            root = self.trials_dir.resolve()
            workdir = self.trials_dir / trial_id
            if workdir.resolve().parent != root:
                raise FunmatchError(f"--dir {self.search_dir}: trials/{trial_id} resolves to {workdir.resolve()}, "
                                    "outside the search folder; refused")
            return workdir

        def on_trial_begin(self, trial):
            if self.verbose:
                shown = ", ".join(f"{k}={v}" for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/"))
                print(f"funmatch tune [{self.tuner_id}]: trial {trial.trial_id} started: {shown}", flush=True)

        def on_trial_end(self, trial):
            self.oracle.end_trial(trial)
            self.save()
            if self.verbose:
                record = self.oracle.get_trial(trial.trial_id)
                print(f"funmatch tune [{self.tuner_id}]: trial {trial.trial_id} {trial.status.lower()}"
                      + (f", {self.oracle.objective.name}={record.score:.4f}" if record.score is not None else ""),
                      flush=True)
            self.prune()

        def prune(self) -> None:
            """Bound the disk: only the best `keep_best` ended trials keep a model; no ended trial keeps checkpoints."""
            if not self.trials_dir.is_dir():
                return
            best = {t.trial_id for t in best_completed_trials(self.oracle, self.trials_dir, self.keep_best)}
            for workdir in sorted(p for p in self.trials_dir.iterdir() if p.is_dir()):
                keep_model = workdir.name in best
                if not _has_heavy_files(workdir, keep_model=keep_model):
                    continue
                try:
                    status = self.oracle.get_trial(workdir.name).status
                except (KeyError, FunmatchError):
                    continue  # not a trial this oracle knows about: leave it alone
                if status in (trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.FAILED):
                    prune_trial_dir(workdir, keep_model=keep_model)

    return DistillTuner


_TUNER_CLASS = None


def tuner_class():
    """The `DistillTuner` class (built lazily so that importing this module does not import keras-tuner)."""
    global _TUNER_CLASS
    if _TUNER_CLASS is None:
        _TUNER_CLASS = _make_tuner_class()
    return _TUNER_CLASS


def make_oracle(search: str, *, objective: str, max_trials: int, hyperparameters, seed: int, max_retries: int,
                lease_timeout_s: float, hyperband_max_epochs: int = 9, hyperband_factor: int = 3):
    """A leased keras-tuner oracle for `search` in {"random", "bayesian", "hyperband"}."""
    import keras_tuner

    _, direction = OBJECTIVES[objective]
    common = dict(
        objective=keras_tuner.Objective(objective, direction), hyperparameters=hyperparameters, seed=seed,
        allow_new_entries=False, tune_new_entries=False, max_retries_per_trial=max_retries,
        # A failed trial is recorded and the search goes on (keras-tuner would raise inside the chief's gRPC handler).
        max_consecutive_failed_trials=None,
    )
    if search == "random":
        oracle_class, extra = keras_tuner.oracles.RandomSearchOracle, dict(max_trials=max_trials)
    elif search == "bayesian":
        try:
            import sklearn  # noqa: F401  keras-tuner's Gaussian process
        except ImportError:
            raise FunmatchError("--search bayesian needs scikit-learn (pip install scikit-learn)") from None
        oracle_class = keras_tuner.oracles.BayesianOptimizationOracle
        extra = dict(max_trials=max_trials, num_initial_points=min(max_trials, max(2, max_trials // 3)))
    elif search == "hyperband":
        oracle_class = keras_tuner.oracles.HyperbandOracle
        extra = dict(max_epochs=hyperband_max_epochs, factor=hyperband_factor, hyperband_iterations=1)
    else:
        raise FunmatchError(f"--search: unknown search {search!r}; choose random, bayesian or hyperband")
    oracle = distributed.leased(oracle_class)(**common, **extra)
    if search == "hyperband":
        # keras-tuner's Hyperband takes no max_trials (its brackets set the count); the base oracle's
        # cap still applies when set, so --max-trials bounds every search alike.
        oracle.max_trials = max_trials
    oracle.lease_timeout_s = float(lease_timeout_s)
    return oracle


__all__ = [
    "MODEL_FILES",
    "OBJECTIVES",
    "PROJECT_NAME",
    "RECORD_FILES",
    "distill_run_fn",
    "make_oracle",
    "prune_trial_dir",
    "teacher_run_fn",
    "trial_metrics",
    "tuner_class",
]
