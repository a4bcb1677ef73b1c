"""Chief/worker search over keras-tuner's gRPC oracle, with leases so a dead worker never hangs the chief.

How keras-tuner's own chief behaves (1.4.8), and what is changed here:

* The chief serves the `Oracle` over gRPC (`OracleServicer`); workers call `CreateTrial(tuner_id)`,
  `UpdateTrial`, `EndTrial`, `GetTrial`, ... through `OracleClient`. The chief remembers which tuner
  holds which trial (`ongoing_trials`) and which tuners are alive (`tuner_ids`: added at their first
  `CreateTrial`, removed when they are told STOPPED).
* Stock `start_server` waits until some worker was told STOPPED, then until `ongoing_trials` and
  `tuner_ids` are both empty, polling every 20 s. Nothing ever removes a worker that died: a SIGKILLed
  worker keeps its trial in `ongoing_trials` and its id in `tuner_ids`, so the chief waits forever and
  the trial is never retried. `Oracle.reload` re-queues ongoing trials (`_retry_queue`) only when the
  *chief* restarts. A worker restarted with the *same* tuner id gets its old trial back (`create_trial`
  returns `ongoing_trials[tuner_id]`).
* `OracleClient` calls use `wait_for_ready=True` with a 60-minute timeout, so a worker started without
  a chief waits an hour.

Changes (`LeaseMixin` on each oracle, `serve` instead of `start_server`, `LeasedOracleClient`):

* Every call from a tuner renews its lease (`CreateTrial` carries the tuner id; `GetTrial` of its own
  trial is the heartbeat a worker sends every `heartbeat_s` seconds while its trial runs).
* The chief's loop (every `poll_s`) expires leases older than `lease_timeout_s`: the tuner is dropped
  from `tuner_ids`, its trial from `ongoing_trials`, and the trial goes to the retry queue (the lost run
  counts as one failed run against `max_retries_per_trial`; after that it is FAILED). The retry runs in
  the same trial workdir, so it resumes from the dead worker's last checkpoint when the disk is shared
  (same machine or a shared filesystem).
* A tuner is only told STOPPED when nothing is running or waiting for a retry; until then it gets
  IDLE and polls, so a trial whose worker dies late in the search still has a live worker to retry it.
  The chief exits once every tuner was told STOPPED or expired, and no trial is running or queued.
* `EndTrial` carries no tuner id, so the chief cannot tell who reports. A report for a trial nobody
  holds (its lease expired) is accepted only if it is COMPLETED and the trial still waits in the retry
  queue, and is ignored otherwise (e.g. when it already ended). A late COMPLETED report from an expired
  worker while another holds the retry is taken as the trial's result (same values, same workdir);
  the holder's own report then finds nobody holding the trial and is ignored.
* Workers check that the chief answers within `connect_timeout_s` before starting, and every later
  call has a bounded `rpc_timeout_s`: an unreachable or vanished chief is a FunmatchError, not a hang.

Who may call (the token, the address, TLS: `funmatch.tuning.auth`), and the leases that decide whose
report counts:

* Every call carries the search's token and the caller's tuner id in its metadata; the chief refuses a
  call without the token (UNAUTHENTICATED) before keras-tuner sees it.
* The chief records every tuner a trial was leased to (`CreateTrial` handing it out; kept in the
  oracle's state, so a restarted chief still knows). `UpdateTrial` and `EndTrial` are taken only from
  a tuner the trial was leased to (PERMISSION_DENIED otherwise, one log line); the values a trial ran
  with are the chief's, whatever a report says; a report on a trial that already ended changes nothing.
  `GetTrial` from another tuner answers but renews no lease; `UpdateSpace` is refused (the space is
  the chief's).
* Trial ids are checked against a fixed pattern by the chief (in every request) and by the worker (in
  every trial it receives, before anything is written); the worker also checks that the trial's folder
  resolves inside `SEARCH_DIR/trials`.

One file over 500 lines on purpose: the lease protocol, the chief's servicer and loop, and the worker's
client change together; split, each half would be read only with the other open.
"""

from __future__ import annotations

import functools
import os
import threading
import time

from funmatch.errors import FunmatchError
from funmatch.tuning import auth

DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_LEASE_TIMEOUT_S = 60.0


def _oracle_module():
    from keras_tuner.src.engine import oracle as oracle_module

    return oracle_module


class LeaseMixin:
    """Tuner leases for a keras-tuner `Oracle`: expire tuners that stopped calling, retry their trials.

    Mixed in before the concrete oracle class (`class LeasedRandomSearch(LeaseMixin, RandomSearchOracle)`).
    Thread safety: every public method is wrapped by keras-tuner's `synchronized` (one lock per oracle).
    """

    lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S

    def _lease_state(self) -> dict[str, float]:
        if not hasattr(self, "_last_seen"):
            self._last_seen = {}
        return self._last_seen

    def _touch(self, tuner_id: str) -> None:
        self._lease_state()[tuner_id] = time.monotonic()

    def _owner_of(self, trial_id: str) -> str | None:
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def create_trial(self, tuner_id):
        return _synchronized_create_trial(self, tuner_id)

    def update_trial(self, trial_id, metrics, step=0):
        return _synchronized_update_trial(self, trial_id, metrics, step)

    def get_trial(self, trial_id):
        return _synchronized_get_trial(self, trial_id)

    def end_trial(self, trial):
        return _synchronized_end_trial(self, trial)

    def expire_leases(self, now: float | None = None) -> list[str]:
        return _synchronized_expire(self, now)

    def search_finished(self) -> bool:
        """True when no trial is running or queued and every tuner was stopped or expired."""
        return _synchronized_finished(self)

    # --- Calls from the network (the chief's servicer): checked against the lease table. ---
    def _holders(self) -> dict[str, list[str]]:
        if not hasattr(self, "_trial_holders"):
            self._trial_holders = {}
        return self._trial_holders

    def update_trial_as(self, tuner_id: str, trial_id: str, metrics, step=0):
        """`update_trial` for a report from `tuner_id`: LeaseRefused unless the trial was leased to it."""
        return _synchronized_update_trial_as(self, tuner_id, trial_id, metrics, step)

    def end_trial_as(self, tuner_id: str, trial):
        """`end_trial` for a report from `tuner_id`: LeaseRefused unless the trial was leased to it."""
        return _synchronized_end_trial_as(self, tuner_id, trial)

    def get_trial_as(self, tuner_id: str, trial_id: str):
        """`get_trial`; renews the lease only when `tuner_id` holds the trial (its heartbeat)."""
        return _synchronized_get_trial_as(self, tuner_id, trial_id)

    def get_state(self):
        state = super().get_state()
        state["funmatch_leases"] = {trial_id: list(holders) for trial_id, holders in self._holders().items()}
        return state

    def set_state(self, state):
        super().set_state(state)
        self._trial_holders = {str(k): list(v) for k, v in state.get("funmatch_leases", {}).items()}


class LeaseRefused(FunmatchError):
    """A report from a tuner that the trial was never leased to."""


class UnknownTrial(LeaseRefused):
    """A call naming a trial this search does not have."""


def _synchronized(function):
    """keras-tuner's `synchronized` (one lock per oracle), applied at the first call, so that importing this
    module (for `funmatch tune --help`) does not import keras-tuner and, through it, TensorFlow.

    keras-tuner's wrapper releases its lock only on a normal return (no try/finally): an exception inside
    would leave the oracle locked and every later gRPC call hanging. So the exception is carried out of
    the lock and raised after it is released."""
    wrapped = None

    def inside(*args, **kwargs):
        try:
            return function(*args, **kwargs), None
        except Exception as error:  # noqa: BLE001  re-raised below, outside the lock
            return None, error

    @functools.wraps(function)
    def call(*args, **kwargs):
        nonlocal wrapped
        if wrapped is None:
            wrapped = _oracle_module().synchronized(inside)
        result, error = wrapped(*args, **kwargs)
        if error is not None:
            raise error
        return result

    return call


def _idle_trial(oracle):
    from keras_tuner.src.engine import trial as trial_module

    return trial_module.Trial(oracle.hyperparameters.copy(), status=trial_module.TrialStatus.IDLE)


@_synchronized
def _synchronized_create_trial(oracle, tuner_id):
    from keras_tuner.src.engine import trial as trial_module

    oracle._touch(tuner_id)
    base = super(LeaseMixin, oracle)
    others_running = any(t != tuner_id for t in oracle.ongoing_trials)
    trial = base.create_trial(tuner_id)
    if trial.status == trial_module.TrialStatus.STOPPED and (others_running or oracle._retry_queue):
        # A running trial may still fail (or its worker die) and need this tuner to retry it.
        oracle.tuner_ids.add(tuner_id)
        return _idle_trial(oracle)
    if trial.status == trial_module.TrialStatus.STOPPED:
        oracle._lease_state().pop(tuner_id, None)
    if trial.status == trial_module.TrialStatus.RUNNING:
        holders = oracle._holders().setdefault(trial.trial_id, [])
        if tuner_id not in holders:
            holders.append(tuner_id)
    return trial


@_synchronized
def _synchronized_update_trial(oracle, trial_id, metrics, step):
    owner = oracle._owner_of(trial_id)
    if owner is not None:
        oracle._touch(owner)
    return super(LeaseMixin, oracle).update_trial(trial_id, metrics, step=step)


@_synchronized
def _synchronized_get_trial(oracle, trial_id):
    owner = oracle._owner_of(trial_id)
    if owner is not None:  # the worker's heartbeat
        oracle._touch(owner)
    return super(LeaseMixin, oracle).get_trial(trial_id)


@_synchronized
def _synchronized_end_trial(oracle, trial):
    from keras_tuner.src.engine import trial as trial_module

    owner = oracle._owner_of(trial.trial_id)
    if owner is None:
        # The reporting tuner's lease expired. Accept a result only if nobody took the trial over.
        if trial.trial_id in oracle._retry_queue and trial.status == trial_module.TrialStatus.COMPLETED:
            oracle._retry_queue.remove(trial.trial_id)
        else:
            print(f"funmatch tune: ignored a late report for trial {trial.trial_id} (its lease had expired)")
            return None
    else:
        oracle._touch(owner)
    return super(LeaseMixin, oracle).end_trial(trial)


def _check_lease(oracle, tuner_id: str, trial_id: str) -> None:
    if trial_id not in oracle.trials:
        raise UnknownTrial(f"no trial {trial_id} in this search")
    if tuner_id not in oracle._holders().get(trial_id, ()):
        holder = oracle._owner_of(trial_id)
        raise LeaseRefused(f"trial {trial_id} is not leased to tuner {tuner_id}"
                           + (f" (tuner {holder} holds it)" if holder else ""))


def _ended(oracle, trial_id: str) -> bool:
    return trial_id in oracle.end_order


@_synchronized
def _synchronized_update_trial_as(oracle, tuner_id, trial_id, metrics, step):
    _check_lease(oracle, tuner_id, trial_id)
    if _ended(oracle, trial_id):
        print(f"funmatch tune: ignored metrics from tuner {tuner_id} for trial {trial_id} (it already ended)")
        return oracle.trials[trial_id]
    return oracle.update_trial(trial_id, metrics, step=step)


@_synchronized
def _synchronized_end_trial_as(oracle, tuner_id, trial):
    _check_lease(oracle, tuner_id, trial.trial_id)
    if _ended(oracle, trial.trial_id):
        print(f"funmatch tune: ignored a report from tuner {tuner_id} for trial {trial.trial_id} (it already ended)")
        return None
    trial.hyperparameters = oracle.trials[trial.trial_id].hyperparameters  # the values it was handed out with
    return oracle.end_trial(trial)


@_synchronized
def _synchronized_get_trial_as(oracle, tuner_id, trial_id):
    if trial_id not in oracle.trials:
        raise UnknownTrial(f"no trial {trial_id} in this search")
    if oracle._owner_of(trial_id) == tuner_id:  # the worker's heartbeat
        oracle._touch(tuner_id)
    return super(LeaseMixin, oracle).get_trial(trial_id)


@_synchronized
def _synchronized_expire(oracle, now):
    from keras_tuner.src.engine import trial as trial_module

    now = time.monotonic() if now is None else now
    seen = oracle._lease_state()
    expired = []
    for tuner_id in list(oracle.tuner_ids):
        last = seen.setdefault(tuner_id, now)  # a tuner known only from a reload starts a fresh lease
        if now - last <= oracle.lease_timeout_s:
            continue
        expired.append(tuner_id)
        oracle.tuner_ids.discard(tuner_id)
        seen.pop(tuner_id, None)
        trial = oracle.ongoing_trials.pop(tuner_id, None)
        if trial is None:
            continue
        trial.status = trial_module.TrialStatus.INVALID
        trial.message = f"tuner {tuner_id} sent nothing for {now - last:.0f} s (lease {oracle.lease_timeout_s:g} s); presumed dead"
        oracle._run_times[trial.trial_id] += 1
        if oracle._retry(trial):
            print(f"funmatch tune: {trial.message}; trial {trial.trial_id} queued for retry")
        else:
            print(f"funmatch tune: {trial.message}; trial {trial.trial_id} FAILED (no retries left)")
            oracle.end_order.append(trial.trial_id)
        oracle._save_trial(trial)
        oracle.save()
    return expired


@_synchronized
def _synchronized_finished(oracle):
    return not oracle.ongoing_trials and not oracle.tuner_ids and not oracle._retry_queue


_LEASED_CLASSES: dict[type, type] = {}


def leased(oracle_class: type) -> type:
    """`LeaseMixin` + `oracle_class` (cached, so pickled/reloaded state sees one class per oracle kind)."""
    if oracle_class not in _LEASED_CLASSES:
        _LEASED_CLASSES[oracle_class] = type(f"Leased{oracle_class.__name__}", (LeaseMixin, oracle_class), {})
    return _LEASED_CLASSES[oracle_class]


def _guarded_servicer(oracle, log=print):
    """keras-tuner's `OracleServicer` with the caller's tuner id and trial ids checked, and reports taken only
    from a tuner the trial was leased to (see the module docstring)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from keras_tuner.src.engine import trial as trial_module

    service = protos.get_service()

    def refuse(context, code, message: str, method: str):
        log(f"funmatch tune: refused {method} from {context.peer()}: {message}")
        context.abort(code, message)

    class GuardedServicer(OracleServicer):
        def _caller(self, context, method: str) -> str:
            tuner_id = dict(context.invocation_metadata()).get(auth.TUNER_HEADER, "")
            try:
                return auth.check_tuner_id(tuner_id, "the caller's tuner id")
            except FunmatchError as e:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(e), method)

        def _trial_id(self, trial_id, context, method: str) -> str:
            try:
                return auth.check_trial_id(trial_id, "trial id")
            except FunmatchError as e:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(e), method)

        def _as(self, context, method: str, call):
            try:
                return call()
            except UnknownTrial as e:
                context.abort(grpc.StatusCode.NOT_FOUND, str(e))
            except LeaseRefused as e:
                refuse(context, grpc.StatusCode.PERMISSION_DENIED, str(e), method)

        def UpdateSpace(self, request, context):
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, "the search space is the chief's", "UpdateSpace")

        def CreateTrial(self, request, context):
            caller = self._caller(context, "CreateTrial")
            if request.tuner_id != caller:
                refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                       f"CreateTrial for tuner {request.tuner_id!r} from tuner {caller!r}", "CreateTrial")
            return super().CreateTrial(request, context)

        def UpdateTrial(self, request, context):
            caller = self._caller(context, "UpdateTrial")
            trial_id = self._trial_id(request.trial_id, context, "UpdateTrial")
            trial = self._as(context, "UpdateTrial",
                             lambda: self.oracle.update_trial_as(caller, trial_id, request.metrics, step=request.step))
            return service.UpdateTrialResponse(trial=trial.to_proto())

        def EndTrial(self, request, context):
            caller = self._caller(context, "EndTrial")
            trial = trial_module.Trial.from_proto(request.trial)
            self._trial_id(trial.trial_id, context, "EndTrial")
            self._as(context, "EndTrial", lambda: self.oracle.end_trial_as(caller, trial))
            return service.EndTrialResponse()

        def GetTrial(self, request, context):
            caller = self._caller(context, "GetTrial")
            trial_id = self._trial_id(request.trial_id, context, "GetTrial")
            trial = self._as(context, "GetTrial", lambda: self.oracle.get_trial_as(caller, trial_id))
            return service.GetTrialResponse(trial=trial.to_proto())

    return GuardedServicer(oracle)


def serve(oracle, address: str, *, token: str, credentials=None, poll_s: float = 0.5, max_workers: int = 8,
          on_poll=None, log=print) -> None:
    """Serve `oracle` to workers at `address` ("host:port") until the search is finished.

    Replaces keras-tuner's `start_server` (see the module docstring): only calls carrying `token` reach
    the oracle; `credentials` (grpc server credentials) serve TLS. Leases are expired every `poll_s`
    seconds, and the loop ends when `oracle.search_finished()` after at least one tuner connected (a
    chief started alone waits for its workers).
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos

    interceptor = auth.token_interceptor(token, log=log)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=(interceptor,))
    protos.get_service_grpc().add_OracleServicer_to_server(_guarded_servicer(oracle, log=log), server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as e:
        raise FunmatchError(f"--chief {address}: cannot listen there ({e})") from None
    if port == 0:
        raise FunmatchError(f"--chief {address}: cannot listen there (in use, or not this machine's address?)")
    server.start()
    started = bool(oracle.start_order)  # a resumed search has seen tuners before
    try:
        while True:
            time.sleep(poll_s)
            oracle.expire_leases()
            if on_poll is not None:
                on_poll()
            # A trial handed out means a tuner connected, even one that finished between two polls.
            started = started or bool(oracle.tuner_ids) or bool(oracle.start_order)
            if started and oracle.search_finished():
                break
    finally:
        server.stop(grace=2.0).wait()
        if interceptor.refused:
            log(f"funmatch tune: refused {interceptor.refused} call(s) without the search's token")


def wait_for_chief(address: str, timeout_s: float, tls_ca=None) -> None:
    """Raise a FunmatchError unless a gRPC server answers at `address` within `timeout_s` seconds."""
    import grpc

    channel = auth.channel(address, tls_ca)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise FunmatchError(
            f"--chief {address}: no chief answered within {timeout_s:g} s (--connect-timeout); "
            "start `funmatch tune --role chief` first, or check the address and port"
            + (" (and that the chief serves TLS with a certificate for this host name)" if tls_ca else "")
        ) from None
    finally:
        channel.close()


class LeasedOracleClient:
    """A worker's view of the chief's oracle, with bounded timeouts, a heartbeat thread, the search's token
    on every call, and every trial id it receives checked.

    Same surface as keras-tuner's `OracleClient` (which `BaseTuner` otherwise installs), whose calls wait
    up to an hour for an absent chief.
    """

    def __init__(self, oracle, address: str, tuner_id: str, *, token: str, tls_ca=None, rpc_timeout_s: float = 120.0):
        from keras_tuner.src import protos

        self._oracle = oracle
        self._protos = protos
        self.address = address
        self.tuner_id = auth.check_tuner_id(tuner_id)
        self.rpc_timeout_s = rpc_timeout_s
        self._metadata = auth.call_metadata(token, tuner_id)
        self._channel = auth.channel(address, tls_ca)
        self.stub = protos.get_service_grpc().OracleStub(self._channel)
        self.multi_worker = False
        self.should_report = True
        self._heartbeat_stop: threading.Event | None = None

    def __getattr__(self, name):
        if name in {"objective", "max_trials", "allow_new_entries", "tune_new_entries"}:
            return getattr(self._oracle, name)
        raise AttributeError(f"LeasedOracleClient has no attribute {name!r}")

    def _call(self, method: str, request, timeout: float | None = None):
        import grpc

        try:
            return getattr(self.stub, method)(request, wait_for_ready=True, timeout=timeout or self.rpc_timeout_s,
                                              metadata=self._metadata)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise FunmatchError(f"--chief {self.address}: the chief refused this worker's token; give the worker "
                                    f"the chief's (--token-file or {auth.TOKEN_ENV})") from None
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise FunmatchError(f"--chief {self.address}: {method} refused: {e.details()}") from None
            raise FunmatchError(
                f"--chief {self.address}: {method} failed ({code}); the chief is gone or unreachable "
                f"(waited up to {timeout or self.rpc_timeout_s:g} s)"
            ) from None

    def _trial(self, proto, method: str):
        from keras_tuner.src.engine import trial as trial_module

        trial = trial_module.Trial.from_proto(proto)
        auth.check_trial_id(trial.trial_id, f"--chief {self.address}: {method} answered with trial id")
        return trial

    def get_space(self):
        from keras_tuner.src.engine import hyperparameters as hp_module

        response = self._call("GetSpace", self._protos.get_service().GetSpaceRequest())
        return hp_module.HyperParameters.from_proto(response.hyperparameters)

    def update_space(self, hyperparameters):
        self._call("UpdateSpace", self._protos.get_service().UpdateSpaceRequest(hyperparameters=hyperparameters.to_proto()))

    def create_trial(self, tuner_id):
        response = self._call("CreateTrial", self._protos.get_service().CreateTrialRequest(tuner_id=tuner_id))
        return self._trial(response.trial, "CreateTrial")

    def update_trial(self, trial_id, metrics, step=0):
        auth.check_trial_id(trial_id, "trial id")
        response = self._call(
            "UpdateTrial", self._protos.get_service().UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step)
        )
        return self._trial(response.trial, "UpdateTrial")

    def end_trial(self, trial):
        auth.check_trial_id(trial.trial_id, "trial id")
        self._call("EndTrial", self._protos.get_service().EndTrialRequest(trial=trial.to_proto()))

    def get_trial(self, trial_id, timeout: float | None = None):
        auth.check_trial_id(trial_id, "trial id")
        response = self._call("GetTrial", self._protos.get_service().GetTrialRequest(trial_id=trial_id), timeout)
        return self._trial(response.trial, "GetTrial")

    def get_best_trials(self, num_trials=1):
        response = self._call("GetBestTrials", self._protos.get_service().GetBestTrialsRequest(num_trials=num_trials))
        return [self._trial(t, "GetBestTrials") for t in response.trials]

    def start_heartbeat(self, trial_id: str, interval_s: float) -> None:
        """Renew this tuner's lease every `interval_s` seconds while `trial_id` runs (a daemon thread)."""
        self.stop_heartbeat()
        stop = threading.Event()
        self._heartbeat_stop = stop

        def beat():
            while not stop.wait(interval_s):
                try:
                    self.get_trial(trial_id, timeout=max(interval_s, 5.0))
                except FunmatchError as e:  # the trial goes on; the final report will fail loudly if the chief is gone
                    print(f"funmatch tune: heartbeat: {e}")

        threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True).start()

    def stop_heartbeat(self) -> None:
        if self._heartbeat_stop is not None:
            self._heartbeat_stop.set()
            self._heartbeat_stop = None

    def close(self) -> None:
        self.stop_heartbeat()
        self._channel.close()


def set_keras_tuner_environment(role: str, address: str, tuner_id: str) -> None:
    """The KERASTUNER_* variables keras-tuner's `BaseTuner` reads to pick chief/worker behaviour."""
    host, _, port = address.rpartition(":")
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = port
    os.environ["KERASTUNER_TUNER_ID"] = tuner_id


def role_from_environment() -> tuple[str | None, str | None, str | None]:
    """(role, address, tuner_id) from KERASTUNER_* variables, or (None, None, None) when unset."""
    ip = os.environ.get("KERASTUNER_ORACLE_IP")
    if not ip:
        return None, None, None
    port = os.environ.get("KERASTUNER_ORACLE_PORT")
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    if not port or not tuner_id:
        raise FunmatchError(
            "KERASTUNER_ORACLE_IP is set but KERASTUNER_ORACLE_PORT or KERASTUNER_TUNER_ID is not; set all three "
            "(or use --role/--chief/--tuner-id)"
        )
    role = "chief" if "chief" in tuner_id else "worker"
    return role, f"{ip}:{port}", tuner_id


__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_LEASE_TIMEOUT_S",
    "LeaseMixin",
    "LeaseRefused",
    "LeasedOracleClient",
    "leased",
    "role_from_environment",
    "serve",
    "set_keras_tuner_environment",
    "wait_for_chief",
]
