"""The search of `funmatch tune`: hyperparameter search with keras-tuner; every trial is a real, resumable run.

    # one process; re-running the same command resumes the search (and an interrupted trial resumes
    # from its own checkpoint)
    funmatch tune --config eurosat --data data/eurosat --teacher teacher.keras --dir runs/tune \
        --search random --max-trials 20 --space "lr=0.001,0.003;T=1,2" --keep-best 3
    funmatch tune --summary runs/tune          # table (stdout + CSV + markdown) and a PNG plot

    # distributed, one machine (or a shared filesystem): the chief listens on 127.0.0.1:8000 and writes
    # a token to runs/tune/tune-token (mode 0600), which workers on the same --dir read
    funmatch tune ... --dir runs/tune --role chief  --chief 8000
    funmatch tune ... --dir runs/tune --role worker --chief 127.0.0.1:8000 [--tuner-id worker-a]

    # distributed over a network: a shared secret, TLS, and the chief listening on its network address
    python -c "import secrets; print(secrets.token_urlsafe(32))" > tune.token; chmod 600 tune.token
    funmatch tune ... --role chief  --chief chief-host:8000 --token-file tune.token \
        --tls-cert chief.pem --tls-key chief.key
    funmatch tune ... --role worker --chief chief-host:8000 --token-file tune.token --tls-ca chief.pem
    # (the token may come from FUNMATCH_TUNE_TOKEN instead; the role and address from keras-tuner's
    # KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT variables)

    # the teacher's fine-tuning learning rate
    funmatch tune --target teacher --config flowers102 --data data/flowers --init BiT-M-R152x2.npz --dir runs/tt

Default axes (the paper's sweep): lr {0.001, 0.003, 0.01}, weight decay log-uniform 1e-5..1e-3,
temperature {1, 2, 5, 10}, mixup p {0, 0.1, 0.5, 1} (only for function matching), crop mode
{function_matching (consistent teaching), fixed_teacher}, and the schedule length {1/3, 1, 3} × the
recipe's epochs (or steps). `--space` replaces axes, `--axes` picks which ones are searched. The syntax
is in `funmatch.tuning.space`; the chief/worker protocol (leases, retries) in `funmatch.tuning.distributed`;
who may call the chief (token, address, TLS) in `funmatch.tuning.auth`; the folder layout and the disk bound
in `funmatch.tuning.tuner`; what `--targets` must match in `funmatch.tuning.stored`.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
from typing import Any

from funmatch.errors import FunmatchError
from funmatch.tuning import auth, distributed, stored
from funmatch.tuning.space import parse_space, resolve_axes

# Settings that define a search: a re-run with other values is an error (it would mix two searches).
# The data and teacher paths are recorded but not compared (workers on other machines see other paths;
# a trial's own config.json still refuses to resume with another data folder or teacher).
FIXED_SETTINGS = ("target", "config", "search", "objective", "axes", "seed", "hyperband_max_epochs", "hyperband_factor")


def _check_settings(search_dir: pathlib.Path, settings: dict[str, Any], *, write: bool) -> None:
    from funmatch.training.checkpoints import atomic_write_text

    path = search_dir / "tune.json"
    if path.exists():
        previous = json.loads(path.read_text())
        differing = [k for k in FIXED_SETTINGS if previous.get(k) != settings.get(k)]
        if differing:
            details = "; ".join(f"{k}: {previous.get(k)!r} -> {settings.get(k)!r}" for k in differing[:4])
            raise FunmatchError(
                f"--dir {search_dir} holds a search with other settings ({details}); use a new --dir, "
                "or re-run with the same settings to resume (--max-trials may grow)"
            )
    if write:
        search_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True))


def _default_tuner_id() -> str:
    return f"worker-{socket.gethostname()}-{os.getpid()}"


def tune(
    config: str,
    data_dir,
    search_dir,
    *,
    teacher_path=None,
    targets_dir=None,
    target: str = "student",
    init: str | None = None,
    search: str = "random",
    max_trials: int = 10,
    objective: str = "val_accuracy",
    space: list[str] | None = None,
    axes: list[str] | None = None,
    keep_best: int = 3,
    seed: int = 1,
    max_retries: int = 2,
    role: str | None = None,
    chief: str | None = None,
    tuner_id: str | None = None,
    connect_timeout_s: float = 30.0,
    heartbeat_s: float = distributed.DEFAULT_HEARTBEAT_S,
    lease_timeout_s: float = distributed.DEFAULT_LEASE_TIMEOUT_S,
    rpc_timeout_s: float = 120.0,
    token_file=None,
    tls_cert=None,
    tls_key=None,
    tls_ca=None,
    hyperband_max_epochs: int = 9,
    hyperband_factor: int = 3,
    run_fn=None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run (or resume, or join) a search; returns {"best": {trial_id, score, values} or None, "trials": n}.

    Args:
      config: the recipe `RECIPE[:key=value,...]`; tuned fields are replaced per trial.
      data_dir: a folder written by `funmatch prepare`. teacher_path: the frozen teacher (.keras),
        required for target "student". init: the teacher's starting checkpoint for target "teacher".
      targets_dir: stored teacher targets (`funmatch targets`), checked before the first trial; trials the
        store serves (views, teacher resolution, temperature: `funmatch.tuning.stored`) read them and run no
        teacher, the others run online and say so in one line.
      search_dir: the search folder (trials in `search_dir/trials/<id>/`).
      role: None (one process), "chief" (serves the oracle at `chief`, "[host:]port", default
        127.0.0.1:8000; runs no trial) or "worker" (connects to `chief` "host:port"). When None, the
        KERASTUNER_* variables are honoured.
      token_file: the file holding the search's shared token (else FUNMATCH_TUNE_TOKEN, else
        SEARCH_DIR/tune-token, which a chief writes when absent; `funmatch.tuning.auth`).
      tls_cert, tls_key: the chief's certificate and key (PEM): TLS. tls_ca: the certificate a worker trusts.
      run_fn: `(config, workdir) -> metrics` instead of the real run (for embedding; default: distill
        or train_teacher).
    """
    from funmatch.configs import get_config
    from funmatch.data import tfrecords
    from funmatch.tuning.space import build_hyperparameters
    from funmatch.tuning.tuner import (OBJECTIVES, best_completed_trials, distill_run_fn, make_oracle, teacher_run_fn,
                                       tuner_class)

    # --- Inputs: all checked before any search state is written. ---
    if target not in ("student", "teacher"):
        raise FunmatchError(f"--target: unknown target {target!r}; choose student or teacher")
    if objective not in OBJECTIVES:
        raise FunmatchError(f"--objective: unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if target == "teacher" and objective != "val_accuracy":
        raise FunmatchError("--objective: a teacher search optimises val_accuracy (no teacher to agree with)")
    if search != "hyperband" and max_trials < 1:
        raise FunmatchError(f"--max-trials must be >= 1, got {max_trials}")
    if keep_best < 0:
        raise FunmatchError(f"--keep-best must be >= 0, got {keep_best}")
    base_config = get_config(config)
    axes_map = resolve_axes(base_config, parse_space(space), target=target, only=axes, hyperband=search == "hyperband")
    if role is None:
        role, env_address, env_tuner_id = distributed.role_from_environment()
        chief = chief or env_address
        tuner_id = tuner_id or env_tuner_id
    if role not in (None, "chief", "worker"):
        raise FunmatchError(f"--role: unknown role {role!r}; choose chief or worker")
    tls_credentials, bind_warning = None, None
    if role == "chief":
        tls_credentials = auth.server_credentials(tls_cert, tls_key)
        chief, bind_warning = auth.listen_address(chief, tls=tls_credentials is not None)
        tuner_id = "chief"
    elif role == "worker":
        if not chief or ":" not in chief:
            raise FunmatchError(f"--chief: a worker needs the chief's HOST:PORT, got {chief!r}")
        tuner_id = auth.check_tuner_id(tuner_id or _default_tuner_id())
        if "chief" in tuner_id:
            raise FunmatchError(f"--tuner-id {tuner_id!r}: a worker's id must not contain 'chief' (keras-tuner's rule)")
    elif token_file or tls_cert or tls_key or tls_ca:
        raise FunmatchError("--token-file/--tls-*: only for a distributed search (--role chief or worker)")
    if role != "chief":  # the chief runs no trial: it needs no data or teacher
        card = tfrecords.load_card(data_dir)
        for split in (base_config.train_split, base_config.val_split):
            if split not in card["splits"]:
                raise FunmatchError(f"--data {data_dir}: no split {split!r} in dataset.json")
        if target == "student":
            if not teacher_path:
                raise FunmatchError("--teacher: required to tune distillation (or use --target teacher)")
            if not pathlib.Path(teacher_path).exists():
                raise FunmatchError(f"--teacher {teacher_path}: no such file")
        if targets_dir is not None:  # stored teacher targets: the trials whose views they hold read them
            if target != "student":
                raise FunmatchError("--targets: stored teacher targets serve distillation (--target student)")
            stored.check_store(targets_dir, base_config, axes_map, teacher_path=teacher_path, data_dir=data_dir)
    token = None
    if role == "worker":
        distributed.wait_for_chief(chief, connect_timeout_s, tls_ca=tls_ca)
        token = auth.resolve_token("worker", search_dir, token_file)  # after the chief answered: it wrote it

    search_dir = pathlib.Path(search_dir)
    settings = {
        "target": target, "config": config, "data": str(pathlib.Path(data_dir).resolve()) if data_dir else None,
        "teacher": str(pathlib.Path(teacher_path).resolve()) if teacher_path else None, "init": init,
        "targets": str(pathlib.Path(targets_dir).resolve()) if targets_dir else None,
        "search": search, "objective": objective, "axes": [a.describe() for a in axes_map.values()], "seed": seed,
        "hyperband_max_epochs": hyperband_max_epochs if search == "hyperband" else None,
        "hyperband_factor": hyperband_factor if search == "hyperband" else None,
        "max_trials": max_trials, "keep_best": keep_best,
    }
    if role != "worker":  # one search per folder at a time (workers share the chief's folder)
        from funmatch.training.checkpoints import lock_workdir

        search_dir.mkdir(parents=True, exist_ok=True)
        lock_workdir(search_dir)
    if role == "chief":
        token = auth.resolve_token("chief", search_dir, token_file)
        if bind_warning:
            print(bind_warning, flush=True)
    # The chief owns tune.json; a worker writes it only when its search folder is its own (another machine).
    _check_settings(search_dir, settings, write=role != "worker" or not (search_dir / "tune.json").exists())

    oracle = make_oracle(search, objective=objective, max_trials=max_trials,
                         hyperparameters=build_hyperparameters(axes_map), seed=seed, max_retries=max_retries,
                         lease_timeout_s=lease_timeout_s, hyperband_max_epochs=hyperband_max_epochs,
                         hyperband_factor=hyperband_factor)
    if run_fn is None:
        run_fn = distill_run_fn(data_dir, teacher_path, targets_dir) if target == "student" else teacher_run_fn(data_dir, init)
    tuner = tuner_class()(
        oracle, base_config=base_config, search_dir=search_dir, run_fn=run_fn, keep_best=keep_best, role=role,
        address=chief, tuner_id=tuner_id, heartbeat_s=heartbeat_s, rpc_timeout_s=rpc_timeout_s,
        hyperband_max_epochs=hyperband_max_epochs if search == "hyperband" else None, verbose=verbose,
        token=token, tls_credentials=tls_credentials, tls_ca=tls_ca,
    )
    if role is None and oracle.max_trials and len(oracle.trials) < max_trials:
        oracle.max_trials = max_trials  # a resumed search may be extended
    elif role == "chief":
        oracle.max_trials = max_trials if search != "hyperband" else None
    try:
        tuner.search()
    finally:
        if role == "worker":
            tuner.oracle.close()
    if role == "worker":
        return {"best": None, "trials": None}
    best = best_completed_trials(oracle, pathlib.Path(search_dir) / "trials", 1)
    result = {"trials": len(oracle.trials), "best": None}
    if best:
        result["best"] = {"trial_id": best[0].trial_id, "score": float(best[0].score),
                          "values": {k: v for k, v in best[0].hyperparameters.values.items() if not k.startswith("tuner/")}}
    if verbose:
        shown = f"best trial {result['best']['trial_id']}: {objective}={result['best']['score']:.4f} {result['best']['values']}" \
            if result["best"] else "no completed trial"
        print(f"funmatch tune: {result['trials']} trials in {search_dir}; {shown}")
    return result
