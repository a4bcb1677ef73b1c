#!/usr/bin/env bash
# Set up ./.venv with the test extras and run the whole test suite.
# The suite runs once on the TensorFlow backend (the CPU default, measured faster here); the tests marked
# `both_backends` run again on JAX.
# The report test opens the page in headless Chromium: installed from Debian's packages when missing
# (needs root); under CI it must be present, never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test.sh: installing Debian's chromium for the report's browser test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q "$@"
KERAS_BACKEND=jax .venv/bin/python -m pytest -q -m both_backends "$@"
