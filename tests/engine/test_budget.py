"""Time budgets (`max_wall_seconds` / `max_cpu_seconds`) of the training loop.

The tests drive `fit_resumable` with a fake clock that advances one second per training step
(and not during evaluation), so where a run stops is exact on any machine.
"""

import json
import types

import numpy as np
import pytest

from funmatch.training import loop
from funmatch.training.loop import budget_spent, fit_resumable


class FakeClock:
    """perf_counter / process_time / time: one "second" per training step (see `Tick`)."""

    def __init__(self):
        self.now = 0.0

    def module(self):
        return types.SimpleNamespace(perf_counter=lambda: self.now, process_time=lambda: 2 * self.now,
                                     time=lambda: 1.7e9 + self.now)


def _tiny_fit(workdir, clock, *, budget, total_steps=20, chunk=4, fail_at=None):
    import keras
    import tensorflow as tf

    class Tick(keras.callbacks.Callback):
        steps = 0  # of this process (a fresh run starts at step 0)

        def on_train_batch_begin(self, batch, logs=None):
            clock.now += 1.0

        def on_train_batch_end(self, batch, logs=None):
            Tick.steps += 1
            if fail_at is not None and Tick.steps >= fail_at:
                raise KeyboardInterrupt("killed")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")

    def make_dataset(start_step):
        return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(8)

    def evaluate(step):
        clock.now += 100.0  # evaluation time must not count
        return {"validation_accuracy": 0.5}

    def groups():
        return {"model": list(model.variables), "optimizer": list(model.optimizer.variables)}

    return fit_resumable(model, make_dataset, workdir=workdir, total_steps=total_steps, chunk_steps=chunk, groups=groups,
                         images_per_step=8, steps_per_data_epoch=8, evaluate=evaluate, eval_every=8, progress=False,
                         extra_callbacks=[Tick()], budget=budget)


def test_budget_spent_reads_either_clock():
    assert budget_spent(None, 1e9, 1e9) is None
    assert budget_spent({"max_wall_seconds": 0, "max_cpu_seconds": 0}, 1e9, 1e9) is None
    assert budget_spent({"max_wall_seconds": 10}, 9.9, 1e9) is None
    assert budget_spent({"max_wall_seconds": 10}, 10.0, 0) == "max_wall_seconds"
    assert budget_spent({"max_wall_seconds": 100, "max_cpu_seconds": 30}, 20, 31) == "max_cpu_seconds"


@pytest.mark.both_backends
@pytest.mark.parametrize("key, limit, expected_step", [("max_wall_seconds", 6.5, 7), ("max_cpu_seconds", 13.0, 7)])
def test_budget_stops_mid_chunk_and_resume_counts_time_across_runs(tmp_path, monkeypatch, key, limit, expected_step):
    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock.module())
    budget = {key: limit}
    # First process: killed at step 6, after the chunk-4 checkpoint (4 "seconds" of training saved with it).
    with pytest.raises(KeyboardInterrupt):
        _tiny_fit(tmp_path, clock, budget=budget, fail_at=6)
    # Second process: resumes at step 4 with 4 s already spent, stops once the budget is spent (step 7 of
    # 20, mid-chunk), evaluating and checkpointing there.
    result = _tiny_fit(tmp_path, clock, budget=budget)
    assert result == {"start_step": 4, "step": expected_step, "train_seconds": float(expected_step),
                      "train_cpu_seconds": 2.0 * expected_step, "stopped_by": key}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, expected_step]
    assert records[-1]["stopped_by"] == key and records[-1]["validation_accuracy"] == 0.5
    assert [r["train_seconds"] for r in records] == [4.0, float(expected_step)]  # evaluation (100 s each) excluded
    # Third run: the budget is spent, nothing more is trained.
    again = _tiny_fit(tmp_path, clock, budget=budget)
    assert again["step"] == expected_step and again["stopped_by"] == key
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_without_budget_the_run_goes_to_its_steps(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock.module())
    result = _tiny_fit(tmp_path, clock, budget={"max_wall_seconds": 0}, total_steps=8)
    assert result["step"] == 8 and result["stopped_by"] is None and result["train_seconds"] == 8.0


def test_several_processes_decide_the_budget_at_the_check_points_only(tmp_path, monkeypatch):
    """With several processes the budget is process 0's decision, broadcast only where the loop reads the
    host anyway (every CHECK_EVERY steps and at chunk ends), never after every step."""
    from funmatch import runtime

    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock.module())
    asked_at = []  # the steps (one fake second each) at which the processes agreed on the budget

    def from_process_0(value):
        asked_at.append(int(clock.now))
        return int(value)

    monkeypatch.setattr(runtime, "process_info", lambda: (0, 2))  # process 0 of two
    monkeypatch.setattr(runtime, "from_process_0", from_process_0)
    monkeypatch.setattr(runtime, "every_process", lambda value: [int(value)] * 2)
    monkeypatch.setattr(runtime, "barrier", lambda name: None)
    result = _tiny_fit(tmp_path, clock, budget={"max_wall_seconds": 6.5}, total_steps=40, chunk=4)
    assert asked_at == [4, 8]  # chunk ends (CHECK_EVERY = 10 > 4); the budget ran out at 6.5 s
    assert result["step"] == 8 and result["stopped_by"] == "max_wall_seconds"
