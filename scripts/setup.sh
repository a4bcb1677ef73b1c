#!/usr/bin/env bash
# Create ./.venv and install funmatch (editable) with the pinned versions of constraints.txt.
#   bash scripts/setup.sh          runtime dependencies
#   bash scripts/setup.sh --test   plus the test extras (pytest; torch/timm for the checkpoint cross-check;
#                                  tf2onnx/onnxruntime for ONNX export)
# Idempotent: a second run only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test,crosscheck,export]"; fi
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}"
# tensorflow and tensorflow-cpu write the same package folder; refuse an environment with both.
if .venv/bin/python -m pip show tensorflow >/dev/null 2>&1; then
  echo "setup: both 'tensorflow' and 'tensorflow-cpu' are installed in .venv; remove one (pip uninstall tensorflow)" >&2
  exit 1
fi
