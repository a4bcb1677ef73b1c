"""benchmarks/accelerator.py, the device check: ready to run, and honest where there is no accelerator."""

import json

import pytest

from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def check():
    return load_script("accelerator.py", "device_check")


def test_the_peak_of_each_chip_kind(check):
    assert check.peak_tflops("NVIDIA H200") == check.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert check.peak_tflops("TPU v5 lite") == 197.0 and check.peak_tflops("TPU v5p") == 459.0
    assert check.peak_tflops("Tesla T4") == 65.0 and check.peak_tflops("cpu") is None


def test_without_an_accelerator_it_says_not_measured(check, capsys, monkeypatch):
    from funmatch import runtime

    monkeypatch.setattr(runtime, "detect_accelerator", lambda environ=None: "CPU")
    assert check.main([]) == 0
    out = capsys.readouterr().out
    assert "not measured" in out
    result = json.loads(out.splitlines()[-1][len("RESULT "):])
    assert result == {"student": "bit_r50x1", "teacher": "bit_r152x2", "resolution": 128, "measured": False}
