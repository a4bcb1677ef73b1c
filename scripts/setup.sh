#!/usr/bin/env bash
# Create ./.venv and install funmatch (editable) with the pinned versions of constraints.txt.
#   bash scripts/setup.sh          runtime dependencies, with the CPU builds of JAX and TensorFlow (the
#                                  `cpu` extra: this script is for plain machines, not accelerator images),
#                                  and keras-hub's image models (the `hub` extra + keras-hub without its
#                                  dependencies, see below)
#   bash scripts/setup.sh --test   plus the test extras (pytest; torch/timm for the checkpoint cross-check;
#                                  tf2onnx/onnxruntime for ONNX export)
# Idempotent: a second run only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q -c constraints.txt)
.venv/bin/python -m pip install -q --upgrade pip
extras="cpu,hub"
if [ "${1:-}" = "--test" ]; then extras="cpu,hub,test,export"; fi
"${pip[@]}" -e ".[${extras}]"
# keras-hub requires tensorflow-text, which requires the full `tensorflow`: a second TensorFlow over
# `tensorflow-cpu`'s package folder. Only its text models use tensorflow-text, so keras-hub goes in without
# its dependencies; the `hub` extra above brings the ones its image models import (its pin of kagglesdk
# is older than kagglehub's own, which wins). pip's notes about the two are expected.
"${pip[@]}" --no-deps keras-hub 2>&1 | { grep -v -E "dependency resolver does not currently|requires (tensorflow-text|kagglesdk)|^keras-hub .* requires" || true; }
.venv/bin/python -c "import keras_hub" \
  || { echo "setup: keras-hub does not import in .venv" >&2; exit 1; }

if [ "${1:-}" = "--test" ]; then
  # The `crosscheck` extra (torch, torchvision, timm) runs timm on the CPU. torch's Linux wheel does not
  # import without its CUDA libraries (libtorch_cuda.so links them), and PyPI has no CPU torchvision, but
  # two of torch's requirements are never loaded on a CPU: triton (torch.compile's GPU code generator,
  # 0.9 GB) and cuda-bindings. Install the extra without those two; pip's note that they are missing is
  # expected.
  # requirements DIST EXTRA: DIST's requirements on this machine for EXTRA ('' = its plain ones), less
  # triton and cuda-bindings.
  requirements() {
    .venv/bin/python -c '
import importlib.metadata, sys
from packaging.requirements import Requirement
dist, extra = sys.argv[1:]
for requirement in map(Requirement, importlib.metadata.requires(dist) or []):
    wanted = requirement.marker.evaluate({"extra": extra}) if requirement.marker else not extra
    if wanted and requirement.name.lower().replace("_", "-") not in ("triton", "cuda-bindings"):
        requirement.marker = None
        print(requirement)
' "$1" "$2"
  }
  # Each pip call notes what it did not install; the second installs all of it but those two.
  quiet() { "$@" 2>&1 | { grep -v -E "dependency resolver does not currently|requires .*, which is not installed|^keras-hub .* requires" || true; }; }
  mapfile -t crosscheck < <(requirements funmatch crosscheck)
  quiet "${pip[@]}" --no-deps "${crosscheck[@]}"
  mapfile -t dependencies < <(for dist in torch torchvision timm; do requirements "$dist" ""; done \
                              | grep -v -E "^(torch|torchvision)\b")
  quiet "${pip[@]}" "${dependencies[@]}"
  .venv/bin/python -c "import timm, torch; torch.nn.Conv2d(3, 4, 3)(torch.zeros(1, 3, 8, 8))" \
    || { echo "setup: torch/timm do not run on the CPU in .venv" >&2; exit 1; }
fi

# tensorflow and tensorflow-cpu write the same package folder; refuse an environment with both.
if .venv/bin/python -m pip show tensorflow >/dev/null 2>&1; then
  echo "setup: both 'tensorflow' and 'tensorflow-cpu' are installed in .venv; remove one (pip uninstall tensorflow)" >&2
  exit 1
fi
