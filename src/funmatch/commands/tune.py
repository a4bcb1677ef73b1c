"""`funmatch tune`: hyperparameter search with keras-tuner (`funmatch.tuning.search.tune`), or --summary."""

from __future__ import annotations

import argparse

from funmatch import runtime
from funmatch.commands import check_config
from funmatch.errors import FunmatchError
from funmatch.tuning import distributed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", metavar="SEARCH_DIR", default=None,
                        help="print the table of a search's trials; write summary.csv/.md/.png in SEARCH_DIR")
    parser.add_argument("--config", help="RECIPE[:key=value,...] whose fields the trials replace, e.g. eurosat")
    parser.add_argument("--data", help="a folder written by `funmatch prepare`")
    parser.add_argument("--teacher", help="the frozen teacher's .keras file (distillation target)")
    parser.add_argument("--targets", default=None, metavar="TARGETS_DIR",
                        help="stored teacher targets (`funmatch targets`): trials whose views they hold run no teacher")
    parser.add_argument("--dir", help="the search folder; re-running the same command resumes the search")
    parser.add_argument("--target", choices=("student", "teacher"), default="student",
                        help="student: tune distillation (default); teacher: tune the teacher's fine-tuning lr")
    parser.add_argument("--init", default=None, help="--target teacher: checkpoint the teacher starts from (.npz/.keras)")
    parser.add_argument("--search", choices=("random", "bayesian", "hyperband"), default="random",
                        help="the oracle: random search (default), bayesian optimisation (Gaussian process) or hyperband")
    parser.add_argument("--max-trials", type=int, default=10, help="number of trials (random, bayesian)")
    parser.add_argument("--objective", choices=("val_accuracy", "val_agreement", "val_kl"), default="val_accuracy",
                        help="student accuracy on the validation split, or its agreement with the teacher")
    parser.add_argument("--space", action="append", default=[], metavar="AXES",
                        help='replace axes: "lr=0.001,0.003;T=1,2;wd=1e-5..1e-3:log" (repeatable)')
    parser.add_argument("--axes", default=None, help="comma-separated axes to search (others stay at the recipe's values)")
    parser.add_argument("--keep-best", type=int, default=3, help="keep the models of the best K trials only (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="the oracle's random seed")
    parser.add_argument("--max-retries", type=int, default=2, help="retries of a crashed trial (or a dead worker's)")
    parser.add_argument("--hyperband-max-epochs", type=int, default=9,
                        help="hyperband budget R: a trial at budget r trains r/R of the recipe's length")
    parser.add_argument("--hyperband-factor", type=int, default=3,
                        help="hyperband: keep 1/factor of the trials at each budget step (default 3)")
    parser.add_argument("--role", choices=("chief", "worker"), default=None,
                        help="distributed search: the chief serves the oracle, workers run trials")
    parser.add_argument("--chief", default=None, metavar="HOST:PORT",
                        help="a worker: the chief's address; the chief: where to listen, [HOST:]PORT (default "
                             "127.0.0.1:8000; a bare PORT listens on 127.0.0.1 only)")
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help="the search's shared secret, checked on every call (else $FUNMATCH_TUNE_TOKEN, else "
                             "DIR/tune-token, which the chief writes with mode 0600 when absent)")
    parser.add_argument("--tls-cert", default=None, metavar="PEM", help="chief: serve TLS with this certificate")
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="chief: the certificate's private key")
    parser.add_argument("--tls-ca", default=None, metavar="PEM",
                        help="worker: the certificate to trust (the chief's, or its CA); connect over TLS")
    parser.add_argument("--tuner-id", default=None,
                        help="a worker's id (default worker-HOST-PID); restarting a worker with its id resumes its trial at once")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="seconds a worker waits for the chief")
    parser.add_argument("--heartbeat", type=float, default=distributed.DEFAULT_HEARTBEAT_S,
                        help="seconds between a worker's heartbeats")
    parser.add_argument("--lease-timeout", type=float, default=distributed.DEFAULT_LEASE_TIMEOUT_S,
                        help="chief: seconds without a heartbeat after which a worker is presumed dead")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines")
    runtime.add_precision_argument(parser)


def main(args: argparse.Namespace) -> int:
    if args.summary:
        from funmatch.tuning.summary import summarize

        summarize(args.summary)
        return 0
    missing = [flag for flag, value in (("--config", args.config), ("--dir", args.dir)) if not value]
    if args.role != "chief" and not args.data:
        missing.append("--data")
    if missing:
        raise FunmatchError(f"{', '.join(missing)}: required (or use --summary SEARCH_DIR)")
    check_config(args.config)  # the data folder is the library's to check: a chief reads none
    if args.role != "chief":  # trials run on distill's backend, devices and precision; a chief only serves
        runtime.launch(args, verbose=not args.quiet)
    from funmatch.tuning.search import tune  # the library (and Keras) after the cheap checks

    tune(
        args.config, args.data, args.dir, teacher_path=args.teacher, targets_dir=args.targets, target=args.target,
        init=args.init,
        search=args.search, max_trials=args.max_trials, objective=args.objective, space=args.space,
        axes=args.axes.split(",") if args.axes is not None else None, keep_best=args.keep_best, seed=args.seed,
        max_retries=args.max_retries, role=args.role, chief=args.chief, tuner_id=args.tuner_id,
        connect_timeout_s=args.connect_timeout, heartbeat_s=args.heartbeat, lease_timeout_s=args.lease_timeout,
        token_file=args.token_file, tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
        hyperband_max_epochs=args.hyperband_max_epochs, hyperband_factor=args.hyperband_factor,
        verbose=not args.quiet,
    )
    return 0
