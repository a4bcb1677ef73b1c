"""Who may talk to a search's chief: the shared token, the chief's address, TLS, and the id patterns.

The chief of `funmatch tune` serves keras-tuner's oracle over gRPC; whoever reaches its port could take
trials and report made-up results. So:

* Chief and workers share a secret token (`resolve_token`): `--token-file PATH`, else the variable
  FUNMATCH_TUNE_TOKEN, else `SEARCH_DIR/tune-token`. A chief that finds none writes a fresh one there
  (mode 0600) and prints it once; a worker on the same folder (same machine or a shared filesystem)
  reads it from there. Every call carries the token in its gRPC metadata (`call_metadata`); the chief
  (`token_interceptor`) compares it in constant time and refuses any other call with UNAUTHENTICATED,
  logging one line per caller host and minute.
* The chief listens on 127.0.0.1 unless given a host (`listen_address`), and warns in one line when it
  listens on every interface.
* TLS where the chief is given a certificate (`--tls-cert`, `--tls-key`; workers trust it with
  `--tls-ca`, and dial the host name the certificate names). Without TLS the token crosses the network
  in clear: on a network you do not trust, use TLS, or a chief on 127.0.0.1 reached through an SSH tunnel.
* Trial and tuner ids are checked against fixed patterns on both sides (`check_trial_id`,
  `check_tuner_id`): a trial id becomes a folder name on the worker.

What the token does not settle: a token holder is trusted with the tuner id it claims (a tuner id is a
name, not a credential). Which trial each tuner holds, and whose reports are taken, is
`funmatch.tuning.distributed`'s lease table.

Importing this module imports neither gRPC nor keras-tuner.
"""

from __future__ import annotations

import hmac
import os
import pathlib
import re
import secrets
import threading
import time

from funmatch.errors import FunmatchError

TOKEN_ENV = "FUNMATCH_TUNE_TOKEN"
TOKEN_FILE = "tune-token"
TOKEN_HEADER = "funmatch-token"
TUNER_HEADER = "funmatch-tuner-id"
MIN_TOKEN_CHARS = 16
DEFAULT_CHIEF = "127.0.0.1:8000"
ALL_INTERFACES = {"0.0.0.0", "::", "[::]", "*"}

# keras-tuner's trial ids are zero-padded counters or 32 hex digits: no dot, no slash, no '..'.
TRIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Tuner ids default to worker-HOSTNAME-PID (host names have dots); never a slash.
TUNER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_trial_id(trial_id, where: str) -> str:
    """`trial_id` when it matches `TRIAL_ID`; else a FunmatchError starting with `where`."""
    if not isinstance(trial_id, str) or not TRIAL_ID.fullmatch(trial_id):
        raise FunmatchError(f"{where} {trial_id!r}: not a trial id (letters, digits, '-', '_'); refused")
    return trial_id


def check_tuner_id(tuner_id, where: str = "--tuner-id") -> str:
    if not isinstance(tuner_id, str) or not TUNER_ID.fullmatch(tuner_id):
        raise FunmatchError(f"{where} {tuner_id!r}: not a tuner id (letters, digits, '.', '-', '_'; at most 128)")
    return tuner_id


# --- The token -----------------------------------------------------------------------------------


def check_token(text: str, where: str) -> str:
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise FunmatchError(f"{where}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise FunmatchError(f"{where}: the token must be printable ASCII without spaces")
    return token


def _read_token(path: pathlib.Path, where: str) -> str:
    try:
        return check_token(path.read_text(), where)
    except (OSError, UnicodeDecodeError) as e:
        raise FunmatchError(f"{where}: cannot read the token ({getattr(e, 'strerror', None) or e})") from None


def _write_new_token(path: pathlib.Path) -> str:
    """A fresh token in `path` (0600 from its creation; written to a temporary name, then renamed)."""
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return token


def resolve_token(role: str, search_dir, token_file=None, environ=None) -> str:
    """The search's token for `role` ("chief" or "worker"); see the module docstring for the order.

    A chief with no token anywhere writes `SEARCH_DIR/tune-token` and prints the token once.
    """
    environ = os.environ if environ is None else environ
    if token_file:
        return _read_token(pathlib.Path(token_file), f"--token-file {token_file}")
    if environ.get(TOKEN_ENV):
        return check_token(environ[TOKEN_ENV], TOKEN_ENV)
    path = pathlib.Path(search_dir) / TOKEN_FILE
    if path.is_file():
        return _read_token(path, str(path))
    if role != "chief":
        raise FunmatchError(f"--token-file: a worker needs the chief's token (--token-file PATH or {TOKEN_ENV}); "
                            f"without either, the chief wrote it to its search folder ({TOKEN_FILE})")
    token = _write_new_token(path)
    print(f"funmatch tune: no token given; wrote a new one to {path} (mode 0600); give it to each worker "
          f"(--token-file, or {TOKEN_ENV}): {token}", flush=True)
    return token


def call_metadata(token: str, tuner_id: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata every worker call carries."""
    return ((TOKEN_HEADER, token), (TUNER_HEADER, tuner_id))


def token_interceptor(token: str, log=print):
    """A `grpc.ServerInterceptor` refusing calls without `token` (UNAUTHENTICATED, one log line per host and
    minute); `.refused` counts them."""
    import grpc

    expected = token.encode()

    class TokenInterceptor(grpc.ServerInterceptor):
        def __init__(self):
            self.refused = 0
            self._last_logged: dict[str, float] = {}
            self._lock = threading.Lock()

        def intercept_service(self, continuation, details):
            given = dict(details.invocation_metadata or ()).get(TOKEN_HEADER, "")
            if isinstance(given, str) and hmac.compare_digest(given.encode(), expected):
                return continuation(details)
            method = details.method.rpartition("/")[2]
            reason = "a wrong token" if given else "no token"

            def refuse(request, context):
                self._note(context.peer(), method, reason)
                context.abort(grpc.StatusCode.UNAUTHENTICATED,
                              "the chief refused the call: wrong or missing token (--token-file or " + TOKEN_ENV + ")")

            return grpc.unary_unary_rpc_method_handler(refuse)

        def _note(self, peer: str, method: str, reason: str) -> None:
            host = peer.rpartition(":")[0] or peer  # ipv4:127.0.0.1:54321 -> ipv4:127.0.0.1
            now = time.monotonic()
            with self._lock:
                self.refused += 1
                if now - self._last_logged.get(host, -1e9) < 60:
                    return
                self._last_logged[host] = now
            log(f"funmatch tune: refused {method} from {host} ({reason}); further refusals from it are counted, "
                "logged at most once a minute")

    return TokenInterceptor()


# --- Addresses and TLS ---------------------------------------------------------------------------


def listen_address(chief: str | None, *, tls: bool = False) -> tuple[str, str | None]:
    """(the chief's "host:port", a warning line or None). `PORT` or `:PORT` listens on 127.0.0.1."""
    text = (chief or DEFAULT_CHIEF).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise FunmatchError(f"--chief {chief}: expected [HOST:]PORT with a port in 1..65535")
    host = host or "127.0.0.1"
    address = f"{host}:{port}"
    warning = None
    if host in ALL_INTERFACES:
        warning = (f"funmatch tune: warning: the chief listens on every interface ({address}); any machine that "
                   "reaches the port can try the token" + ("" if tls else ", and the token crosses the network in clear "
                                                           "(--tls-cert/--tls-key)"))
    return address, warning


def server_credentials(cert_file, key_file):
    """grpc server credentials from PEM files, or None when neither is given."""
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        raise FunmatchError("--tls-cert and --tls-key: give both (the chief's certificate and its private key)")
    import grpc

    return grpc.ssl_server_credentials([(_read_pem(key_file, "--tls-key"), _read_pem(cert_file, "--tls-cert"))])


def channel(address: str, tls_ca=None):
    """A gRPC channel to the chief: TLS trusting the PEM `tls_ca` when given, plaintext otherwise."""
    import grpc

    if tls_ca:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=_read_pem(tls_ca, "--tls-ca")))
    return grpc.insecure_channel(address)


def _read_pem(path, flag: str) -> bytes:
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as e:
        raise FunmatchError(f"{flag} {path}: cannot read ({e.strerror})") from None
    if b"-----BEGIN " not in data:
        raise FunmatchError(f"{flag} {path}: not a PEM file")
    return data


__all__ = [
    "DEFAULT_CHIEF",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "call_metadata",
    "channel",
    "check_token",
    "check_trial_id",
    "check_tuner_id",
    "listen_address",
    "resolve_token",
    "server_credentials",
    "token_interceptor",
]
