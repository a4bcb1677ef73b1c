"""Latency measurement: sub-millisecond calls timed in groups, medians reported with their quartiles."""

import pytest

from funmatch.evaluation.cost import latency_summary, time_calls


class StepClock:
    """A clock that `work()` advances by `seconds_per_call`."""

    def __init__(self, seconds_per_call):
        self.now, self.calls, self.seconds_per_call = 0.0, 0, seconds_per_call

    def work(self):
        self.calls += 1
        self.now += self.seconds_per_call

    def __call__(self):
        return self.now


def test_short_calls_are_timed_in_groups():
    clock = StepClock(0.001)  # 1 ms per call: under the 5 ms a sample must last
    durations = time_calls(clock.work, repeats=4, warmup=2, clock=clock, min_sample_seconds=0.005)
    # 2 warm-up calls, 1 calibration call, then 4 samples of 6 calls (>= 5 ms each), divided back to per call.
    assert clock.calls == 2 + 1 + 4 * 6
    assert durations == pytest.approx([0.001] * 4)


def test_long_calls_are_timed_one_by_one():
    clock = StepClock(0.25)
    durations = time_calls(clock.work, repeats=3, warmup=1, clock=clock, min_sample_seconds=0.005)
    assert clock.calls == 1 + 3 and durations == pytest.approx([0.25] * 3)


def test_latency_summary_reports_median_and_quartiles():
    summary = latency_summary([0.005, 0.001, 0.004, 0.002, 0.003], batch_size=64)
    assert summary["median_ms"] == pytest.approx(3.0)
    assert summary["p25_ms"] == pytest.approx(2.0) and summary["p75_ms"] == pytest.approx(4.0)
    assert summary["min_ms"] == pytest.approx(1.0) and summary["repeats"] == 5
    assert summary["throughput_images_per_sec"] == pytest.approx(64 / 0.003)
    single = latency_summary([0.002], batch_size=1)
    assert single["p25_ms"] == single["p75_ms"] == single["median_ms"] == pytest.approx(2.0)
