#!/usr/bin/env bash
# Set up ./.venv with the test extras and run the whole test suite.
# The suite runs once on the JAX backend; the tests marked `both_backends` run again on TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2
KERAS_BACKEND=jax .venv/bin/python -m pytest -q "$@"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -m both_backends "$@"
