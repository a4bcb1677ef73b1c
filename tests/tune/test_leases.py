"""The chief's oracle leases: a silent tuner is expired, its trial retried by another; no early STOPPED."""

import time

from funmatch.configs import get_config
from funmatch.tuning import build_hyperparameters, make_oracle, parse_space, resolve_axes


def _oracle(tmp_path, max_trials=2, max_retries=1):
    axes = resolve_axes(get_config("eurosat"), parse_space(["lr=0.001,0.003,0.01"]), only=["lr"])
    oracle = make_oracle("random", objective="val_accuracy", max_trials=max_trials,
                         hyperparameters=build_hyperparameters(axes), seed=3, max_retries=max_retries, lease_timeout_s=10)
    oracle._set_project_dir(str(tmp_path), "search")
    return oracle


def test_dead_tuner_is_expired_and_its_trial_retried(tmp_path):
    oracle = _oracle(tmp_path)
    trial_a = oracle.create_trial("worker-a")
    trial_b = oracle.create_trial("worker-b")
    assert trial_a.status == trial_b.status == "RUNNING" and trial_a.trial_id != trial_b.trial_id
    # worker-b keeps beating (GetTrial of its own trial); worker-a goes silent.
    now = time.monotonic()
    oracle.get_trial(trial_b.trial_id)
    assert oracle.expire_leases(now + 5) == []
    oracle._last_seen["worker-b"] = now + 8
    assert oracle.expire_leases(now + 12) == ["worker-a"]
    assert "worker-a" not in oracle.tuner_ids and "worker-a" not in oracle.ongoing_trials
    assert oracle._retry_queue == [trial_a.trial_id]
    assert oracle.trials[trial_a.trial_id].status == "INVALID"
    # max_trials (2) is reached, but a running trial may still need a retry: a free tuner waits (IDLE).
    oracle.end_trial(_completed(oracle, trial_b, 0.5))
    retry = oracle.create_trial("worker-b")
    assert (retry.trial_id, retry.status) == (trial_a.trial_id, "RUNNING")
    assert oracle.create_trial("worker-c").status == "IDLE"
    assert not oracle.search_finished()
    # A late result from the expired worker-a is still a valid result of this trial (same values, same
    # workdir): it is accepted, and worker-b's later report of the same trial is ignored.
    oracle.end_trial(_completed(oracle, trial_a, 0.9))
    assert oracle.trials[trial_a.trial_id].status == "COMPLETED"
    oracle.end_trial(_completed(oracle, retry, 0.7))
    assert oracle.trials[trial_a.trial_id].score == 0.9
    assert oracle.end_order.count(trial_a.trial_id) == 1
    for tuner_id in ("worker-b", "worker-c"):
        assert oracle.create_trial(tuner_id).status == "STOPPED"
    assert oracle.search_finished()
    assert [t.score for t in oracle.get_best_trials(2)] == [0.9, 0.5]


def test_lost_trial_fails_after_its_retries(tmp_path):
    oracle = _oracle(tmp_path, max_trials=1, max_retries=0)
    trial = oracle.create_trial("worker-a")
    oracle.expire_leases(time.monotonic() + 60)
    assert oracle.trials[trial.trial_id].status == "FAILED" and not oracle._retry_queue
    assert oracle.create_trial("worker-b").status == "STOPPED"
    assert oracle.search_finished()


def _completed(oracle, trial, score):
    """A worker's report as the chief receives it: a copy of the trial (through its proto, as over gRPC)."""
    from keras_tuner.src.engine.trial import Trial

    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    report = Trial.from_proto(trial.to_proto())
    report.status = "COMPLETED"
    return report


def test_ties_prefer_the_trial_that_still_has_its_model(tmp_path):
    """A tie must not promote a trial whose model was pruned (the bound would keep no model)."""
    from types import SimpleNamespace

    from funmatch.tuning.tuner import best_completed_trials

    trials = [SimpleNamespace(trial_id=str(i), status="COMPLETED", score=0.5) for i in range(3)]
    trials.append(SimpleNamespace(trial_id="3", status="COMPLETED", score=0.4))
    oracle = SimpleNamespace(objective=SimpleNamespace(direction="max"), get_best_trials=lambda n: list(reversed(trials))[:n])
    for i in range(4):
        (tmp_path / str(i)).mkdir()
    (tmp_path / "1" / "student.keras").write_bytes(b"model")
    assert [t.trial_id for t in best_completed_trials(oracle, tmp_path, 1)] == ["1"]
    assert [t.trial_id for t in best_completed_trials(oracle, tmp_path, 3)] == ["1", "0", "2"]
    oracle.objective.direction = "min"
    assert [t.trial_id for t in best_completed_trials(oracle, tmp_path, 1)] == ["3"]


def test_max_trials_bounds_hyperband_too(tmp_path):
    """keras-tuner's Hyperband has no max_trials; --max-trials must still bound the search."""
    axes = resolve_axes(get_config("eurosat"), parse_space(["lr=0.001,0.003,0.01"]), only=["lr"])
    oracle = make_oracle("hyperband", objective="val_accuracy", max_trials=2,
                         hyperparameters=build_hyperparameters(axes), seed=3, max_retries=0, lease_timeout_s=10)
    oracle._set_project_dir(str(tmp_path), "search")
    created = [oracle.create_trial(f"w{i}") for i in range(3)]
    # No third trial starts (IDLE while the two run: a retry may still need a worker; then STOPPED).
    assert [t.status for t in created[:2]] == ["RUNNING", "RUNNING"] and created[2].status in ("IDLE", "STOPPED")
