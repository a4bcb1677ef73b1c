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

One file over 400 lines on purpose: the lease protocol, the chief's loop and the worker's client change
together; split, each half would be read only with the other open.
"""

from __future__ import annotations

import functools
import os
import threading
import time

from funmatch.errors import FunmatchError

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


def _synchronized(function):
    """keras-tuner's `synchronized` (one lock per oracle), applied at the first call, so that importing this
    module (for `funmatch tune --help`) does not import keras-tuner and, through it, TensorFlow."""
    wrapped = None

    @functools.wraps(function)
    def call(*args, **kwargs):
        nonlocal wrapped
        if wrapped is None:
            wrapped = _oracle_module().synchronized(function)
        return wrapped(*args, **kwargs)

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


def serve(oracle, address: str, *, poll_s: float = 0.5, max_workers: int = 8, on_poll=None) -> None:
    """Serve `oracle` to workers at `address` ("host:port") until the search is finished.

    Replaces keras-tuner's `start_server` (see the module docstring): leases are expired every
    `poll_s` seconds, and the loop ends when `oracle.search_finished()` after at least one tuner
    connected (a chief started alone waits for its workers).
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise FunmatchError(f"--port: cannot listen on {address} ({e})") from None
    if port == 0:
        raise FunmatchError(f"--port: cannot listen on {address} (in use?)")
    server.start()
    started = bool(oracle.start_order)  # a resumed search has seen tuners before
    try:
        while True:
            time.sleep(poll_s)
            oracle.expire_leases()
            if on_poll is not None:
                on_poll()
            started = started or bool(oracle.tuner_ids)
            if started and oracle.search_finished():
                break
    finally:
        server.stop(grace=2.0).wait()


def wait_for_chief(address: str, timeout_s: float) -> None:
    """Raise a FunmatchError unless a gRPC server answers at `address` within `timeout_s` seconds."""
    import grpc

    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise FunmatchError(
            f"--chief {address}: no chief answered within {timeout_s:g} s (--connect-timeout); "
            "start `funmatch tune --role chief` first, or check the address and port"
        ) from None
    finally:
        channel.close()


class LeasedOracleClient:
    """A worker's view of the chief's oracle, with bounded timeouts and a heartbeat thread.

    Same surface as keras-tuner's `OracleClient` (which `BaseTuner` otherwise installs), whose calls wait
    up to an hour for an absent chief.
    """

    def __init__(self, oracle, address: str, tuner_id: str, *, rpc_timeout_s: float = 120.0):
        import grpc
        from keras_tuner.src import protos

        self._oracle = oracle
        self._protos = protos
        self.address = address
        self.tuner_id = tuner_id
        self.rpc_timeout_s = rpc_timeout_s
        self._channel = grpc.insecure_channel(address)
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
            return getattr(self.stub, method)(request, wait_for_ready=True, timeout=timeout or self.rpc_timeout_s)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            raise FunmatchError(
                f"--chief {self.address}: {method} failed ({code}); the chief is gone or unreachable "
                f"(waited up to {timeout or self.rpc_timeout_s:g} s)"
            ) from None

    def get_space(self):
        from keras_tuner.src.engine import hyperparameters as hp_module

        response = self._call("GetSpace", self._protos.get_service().GetSpaceRequest())
        return hp_module.HyperParameters.from_proto(response.hyperparameters)

    def update_space(self, hyperparameters):
        self._call("UpdateSpace", self._protos.get_service().UpdateSpaceRequest(hyperparameters=hyperparameters.to_proto()))

    def create_trial(self, tuner_id):
        from keras_tuner.src.engine import trial as trial_module

        response = self._call("CreateTrial", self._protos.get_service().CreateTrialRequest(tuner_id=tuner_id))
        return trial_module.Trial.from_proto(response.trial)

    def update_trial(self, trial_id, metrics, step=0):
        from keras_tuner.src.engine import trial as trial_module

        response = self._call(
            "UpdateTrial", self._protos.get_service().UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step)
        )
        return trial_module.Trial.from_proto(response.trial)

    def end_trial(self, trial):
        self._call("EndTrial", self._protos.get_service().EndTrialRequest(trial=trial.to_proto()))

    def get_trial(self, trial_id, timeout: float | None = None):
        from keras_tuner.src.engine import trial as trial_module

        response = self._call("GetTrial", self._protos.get_service().GetTrialRequest(trial_id=trial_id), timeout)
        return trial_module.Trial.from_proto(response.trial)

    def get_best_trials(self, num_trials=1):
        from keras_tuner.src.engine import trial as trial_module

        response = self._call("GetBestTrials", self._protos.get_service().GetBestTrialsRequest(num_trials=num_trials))
        return [trial_module.Trial.from_proto(t) for t in response.trials]

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
    "LeasedOracleClient",
    "leased",
    "role_from_environment",
    "serve",
    "set_keras_tuner_environment",
    "wait_for_chief",
]
