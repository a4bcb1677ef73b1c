"""The chief refuses callers without the search's token and reports on trials not leased to the caller; a
worker refuses trial ids that would leave its search folder. Real gRPC on 127.0.0.1, bounded timeouts.

The rogue clients are built from keras-tuner's own stubs (what anyone who reaches the port can do)."""

import shutil
import socket
import stat
import subprocess
import threading
from concurrent import futures

import pytest

from funmatch.configs import get_config
from funmatch.errors import FunmatchError
from funmatch.tuning import auth, build_hyperparameters, distributed, make_oracle, parse_space, resolve_axes

TOKEN = "s3cret-token-for-the-test-0123456789"
TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _oracle(tmp_path, max_trials=1):
    axes = resolve_axes(get_config("eurosat"), parse_space(["lr=0.001,0.003,0.01"]), only=["lr"])
    oracle = make_oracle("random", objective="val_accuracy", max_trials=max_trials,
                         hyperparameters=build_hyperparameters(axes), seed=3, max_retries=0, lease_timeout_s=60)
    oracle._set_project_dir(str(tmp_path), "search")
    return oracle


class Chief:
    """`distributed.serve` in a thread, its log lines collected."""

    def __init__(self, oracle, credentials=None):
        self.oracle = oracle
        self.address = f"127.0.0.1:{_free_port()}"
        self.log: list[str] = []
        self.error = None

        def run():
            try:
                distributed.serve(oracle, self.address, token=TOKEN, credentials=credentials, poll_s=0.1,
                                  log=self.log.append)
            except BaseException as e:  # noqa: BLE001  reported by stop()
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self):
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "the chief did not finish"
        assert self.error is None, self.error


def _client(chief, tuner_id="w1", token=TOKEN, **kwargs):
    distributed.wait_for_chief(chief.address, TIMEOUT_S, tls_ca=kwargs.get("tls_ca"))
    return distributed.LeasedOracleClient(chief.oracle, chief.address, tuner_id, token=token, rpc_timeout_s=TIMEOUT_S,
                                          **kwargs)


def _stub(address):
    import grpc
    from keras_tuner.src import protos

    channel = grpc.insecure_channel(address)
    return protos.get_service_grpc().OracleStub(channel), channel


def _code(call):
    import grpc

    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code()


def _forged_report(trial):
    """A COMPLETED trial proto as a worker would send it."""
    from keras_tuner.src.engine.trial import Trial

    report = Trial.from_proto(trial.to_proto())
    report.status = "COMPLETED"
    return report.to_proto()


def _finish(chief, client, trial, score):
    client.update_trial(trial.trial_id, {"val_accuracy": score})
    report = client.get_trial(trial.trial_id)
    report.status = "COMPLETED"
    client.end_trial(report)
    assert client.create_trial(client.tuner_id).status == "STOPPED"
    client.close()
    chief.stop()


def _history(oracle, trial_id):
    metrics = oracle.trials[trial_id].metrics
    if not metrics.exists("val_accuracy"):
        return []
    return [v for o in metrics.get_history("val_accuracy") for v in o.value]


def test_a_rogue_client_without_the_token_is_refused(tmp_path):
    import grpc
    from keras_tuner.src import protos

    service = protos.get_service()
    chief = Chief(_oracle(tmp_path))
    worker = _client(chief)
    trial = worker.create_trial("w1")
    assert trial.status == "RUNNING"
    stub, channel = _stub(chief.address)
    wrong = (("funmatch-token", "not-the-token-0123456789"), ("funmatch-tuner-id", "rogue"))
    calls = {
        "CreateTrial": lambda md: stub.CreateTrial(service.CreateTrialRequest(tuner_id="rogue"), timeout=TIMEOUT_S, metadata=md),
        "UpdateTrial": lambda md: stub.UpdateTrial(service.UpdateTrialRequest(
            trial_id=trial.trial_id, metrics={"val_accuracy": 0.999}), timeout=TIMEOUT_S, metadata=md),
        "EndTrial": lambda md: stub.EndTrial(service.EndTrialRequest(trial=_forged_report(trial)), timeout=TIMEOUT_S, metadata=md),
        "GetBestTrials": lambda md: stub.GetBestTrials(service.GetBestTrialsRequest(num_trials=1), timeout=TIMEOUT_S, metadata=md),
    }
    for name, call in calls.items():
        for metadata in (None, wrong):
            assert _code(lambda: call(metadata)) == grpc.StatusCode.UNAUTHENTICATED, name
    channel.close()
    # A worker given another token hears why, in one line.
    with pytest.raises(FunmatchError, match="refused this worker's token"):
        _client(chief, "w2", token="not-the-token-0123456789").create_trial("w2")

    _finish(chief, worker, trial, 0.5)
    best = chief.oracle.get_best_trials(1)
    assert [(t.trial_id, t.score) for t in best] == [(trial.trial_id, 0.5)]
    assert _history(chief.oracle, trial.trial_id) == [0.5]
    assert "rogue" not in chief.oracle.tuner_ids and "rogue" not in chief.oracle.start_order
    refusals = [line for line in chief.log if line.startswith("funmatch tune: refused") and "(no token)" in line]
    assert len(refusals) == 1, chief.log  # one line per caller host and minute, not one per call
    assert chief.log[-1] == "funmatch tune: refused 9 call(s) without the search's token"


def test_a_stolen_trial_id_is_refused_even_with_the_token(tmp_path):
    import grpc
    from keras_tuner.src import protos

    service = protos.get_service()
    chief = Chief(_oracle(tmp_path))
    worker = _client(chief)
    trial = worker.create_trial("w1")
    stub, channel = _stub(chief.address)
    rogue = (("funmatch-token", TOKEN), ("funmatch-tuner-id", "rogue"))
    update = service.UpdateTrialRequest(trial_id=trial.trial_id, metrics={"val_accuracy": 0.999})
    assert _code(lambda: stub.UpdateTrial(update, timeout=TIMEOUT_S, metadata=rogue)) == grpc.StatusCode.PERMISSION_DENIED
    end = service.EndTrialRequest(trial=_forged_report(trial))
    assert _code(lambda: stub.EndTrial(end, timeout=TIMEOUT_S, metadata=rogue)) == grpc.StatusCode.PERMISSION_DENIED
    # Claiming the holder's trial through CreateTrial under another name, or a trial id that is a path.
    as_w1 = service.CreateTrialRequest(tuner_id="w1")
    assert _code(lambda: stub.CreateTrial(as_w1, timeout=TIMEOUT_S, metadata=rogue)) == grpc.StatusCode.PERMISSION_DENIED
    bad = service.UpdateTrialRequest(trial_id="../../x", metrics={"val_accuracy": 0.999})
    assert _code(lambda: stub.UpdateTrial(bad, timeout=TIMEOUT_S, metadata=rogue)) == grpc.StatusCode.INVALID_ARGUMENT
    # The space is the chief's.
    space = service.UpdateSpaceRequest(hyperparameters=chief.oracle.get_space().to_proto())
    assert _code(lambda: stub.UpdateSpace(space, timeout=TIMEOUT_S, metadata=rogue)) == grpc.StatusCode.PERMISSION_DENIED
    assert chief.oracle.trials[trial.trial_id].status == "RUNNING" and _history(chief.oracle, trial.trial_id) == []

    _finish(chief, worker, trial, 0.5)
    # After the trial ended, a report from the rogue changes nothing either (the chief has stopped: check the oracle).
    with pytest.raises(distributed.LeaseRefused, match="not leased to tuner rogue"):
        chief.oracle.end_trial_as("rogue", chief.oracle.trials[trial.trial_id])
    channel.close()
    assert [(t.trial_id, t.score) for t in chief.oracle.get_best_trials(1)] == [(trial.trial_id, 0.5)]
    assert _history(chief.oracle, trial.trial_id) == [0.5]
    assert sum("refused UpdateTrial" in line and "not leased to tuner rogue (tuner w1 holds it)" in line
               for line in chief.log) == 1, chief.log


def test_leases_survive_a_chief_restart(tmp_path):
    """Who held which trial is part of the oracle's saved state: a late report after a restart is still taken."""
    oracle = _oracle(tmp_path)
    trial = oracle.create_trial("w1")
    oracle.save()
    restarted = _oracle(tmp_path)
    restarted.reload()
    with pytest.raises(distributed.LeaseRefused):
        restarted.update_trial_as("w2", trial.trial_id, {"val_accuracy": 0.9})
    restarted.update_trial_as("w1", trial.trial_id, {"val_accuracy": 0.6})
    report = restarted.get_trial(trial.trial_id)
    report.status = "COMPLETED"
    restarted.end_trial_as("w1", report)
    assert restarted.trials[trial.trial_id].score == 0.6


class _HostileServicer:
    """A chief that hands out `trial_id` (e.g. a path) to whoever asks."""

    def __new__(cls, trial_id):
        from keras_tuner.src import protos
        from keras_tuner.src.engine import trial as trial_module

        hyperparameters = _oracle_space()
        service = protos.get_service()

        class Servicer(protos.get_service_grpc().OracleServicer):
            def CreateTrial(self, request, context):
                trial = trial_module.Trial(hyperparameters, trial_id=trial_id, status="RUNNING")
                return service.CreateTrialResponse(trial=trial.to_proto())

            def GetBestTrials(self, request, context):
                trial = trial_module.Trial(hyperparameters, trial_id=trial_id, status="COMPLETED")
                return service.GetBestTrialsResponse(trials=[trial.to_proto()])

        return Servicer()


def _oracle_space():
    axes = resolve_axes(get_config("eurosat"), parse_space(["lr=0.001,0.003"]), only=["lr"])
    return build_hyperparameters(axes)


def test_a_worker_refuses_a_trial_id_that_leaves_its_folder(tmp_path, monkeypatch):
    import grpc
    from keras_tuner.src import protos

    from funmatch.tuning import tuner_class

    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.setenv(name, "")  # restored after the test (the tuner sets them)
    address = f"127.0.0.1:{_free_port()}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    protos.get_service_grpc().add_OracleServicer_to_server(_HostileServicer("../../x"), server)
    server.add_insecure_port(address)
    server.start()
    search_dir = tmp_path / "box" / "search"
    ran = []
    try:
        tuner = tuner_class()(_oracle(tmp_path / "local"), base_config=get_config("eurosat:smoke=true"),
                              search_dir=search_dir, run_fn=lambda config, workdir: ran.append(workdir) or {},
                              role="worker", address=address, tuner_id="w1", token=TOKEN, rpc_timeout_s=TIMEOUT_S,
                              verbose=False)
        with pytest.raises(FunmatchError, match=r"CreateTrial answered with trial id '\.\./\.\./x': not a trial id"):
            tuner.search()
        with pytest.raises(FunmatchError, match="not a trial id"):
            tuner.oracle.get_best_trials(1)
        tuner.oracle.close()
    finally:
        server.stop(0).wait()
    assert ran == []
    # trials/../../x is tmp_path/box/x: nothing there, nothing new beside the search folder, no trial folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["search"]
    assert not (search_dir / "trials").exists() and not list(tmp_path.rglob("x"))


def test_a_trial_folder_that_resolves_outside_is_refused(tmp_path, monkeypatch):
    """The second guard: a link planted in SEARCH_DIR/trials pointing elsewhere."""
    from funmatch.tuning import tuner_class

    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)
    search_dir = tmp_path / "search"
    tuner = tuner_class()(_oracle(tmp_path / "local"), base_config=get_config("eurosat:smoke=true"),
                          search_dir=search_dir, run_fn=lambda config, workdir: {}, verbose=False)
    (search_dir / "trials").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (search_dir / "trials" / "07").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FunmatchError, match="outside the search folder"):
        tuner.trial_workdir("07")
    for bad in ("..", "a/b", ".hidden", "", "x" * 65):
        with pytest.raises(FunmatchError, match="not a trial id"):
            tuner.trial_workdir(bad)
    assert tuner.trial_workdir("08") == search_dir / "trials" / "08"


def test_the_token_is_written_once_read_by_workers_and_checked(tmp_path, capsys):
    search_dir = tmp_path / "search"
    search_dir.mkdir()
    with pytest.raises(FunmatchError, match="--token-file: a worker needs the chief's token"):
        auth.resolve_token("worker", search_dir, environ={})
    token = auth.resolve_token("chief", search_dir, environ={})
    printed = capsys.readouterr().out
    assert printed.count(token) == 1 and "mode 0600" in printed
    path = search_dir / auth.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == token
    assert auth.resolve_token("chief", search_dir, environ={}) == token  # a restarted chief: the same token, not printed
    assert auth.resolve_token("worker", search_dir, environ={}) == token
    assert capsys.readouterr().out == ""
    assert auth.resolve_token("worker", search_dir, environ={auth.TOKEN_ENV: TOKEN}) == TOKEN
    short = tmp_path / "short.token"
    short.write_text("abc\n")
    with pytest.raises(FunmatchError, match=r"--token-file .*short\.token: the token has 3 characters"):
        auth.resolve_token("worker", search_dir, short, environ={})
    with pytest.raises(FunmatchError, match=r"--token-file .*missing: cannot read the token"):
        auth.resolve_token("chief", search_dir, tmp_path / "missing", environ={})


def test_the_chief_listens_on_loopback_unless_told(tmp_path):
    assert auth.listen_address(None) == ("127.0.0.1:8000", None)
    assert auth.listen_address("9001") == ("127.0.0.1:9001", None)
    assert auth.listen_address(":9001") == ("127.0.0.1:9001", None)
    assert auth.listen_address("10.1.2.3:9001") == ("10.1.2.3:9001", None)
    address, warning = auth.listen_address("0.0.0.0:9001")
    assert address == "0.0.0.0:9001" and "every interface" in warning and "--tls-cert" in warning
    assert "in clear" not in auth.listen_address("[::]:9001", tls=True)[1]
    for bad in ("host:port", "0.0.0.0:0", "70000"):
        with pytest.raises(FunmatchError, match="--chief"):
            auth.listen_address(bad)


def test_tls_carries_the_search(tmp_path):
    """With --tls-cert/--tls-key the chief speaks TLS only: a worker trusting the certificate takes a trial,
    a plaintext client gets no answer."""
    import grpc

    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    cert, key = tmp_path / "chief.pem", tmp_path / "chief.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    chief = Chief(_oracle(tmp_path), credentials=auth.server_credentials(cert, key))
    worker = _client(chief, tls_ca=cert)
    trial = worker.create_trial("w1")
    assert trial.status == "RUNNING"
    stub, channel = _stub(chief.address)
    from keras_tuner.src import protos

    request = protos.get_service().CreateTrialRequest(tuner_id="w9")
    assert _code(lambda: stub.CreateTrial(request, timeout=3, metadata=(("funmatch-token", TOKEN), ("funmatch-tuner-id", "w9")))) \
        == grpc.StatusCode.UNAVAILABLE
    channel.close()
    _finish(chief, worker, trial, 0.7)
    with pytest.raises(FunmatchError, match="--tls-cert and --tls-key: give both"):
        auth.server_credentials(cert, None)
    with pytest.raises(FunmatchError, match="--tls-ca .*: not a PEM file"):
        auth.channel(chief.address, tmp_path / "oracle.json" if (tmp_path / "oracle.json").write_text("{}") else None)
