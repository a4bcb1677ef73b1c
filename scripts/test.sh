#!/usr/bin/env bash
# Set up ./.venv with the test extras and run the whole test suite; extra arguments go to pytest, which runs
# on 2 worker processes (pytest-xdist; FUNMATCH_TEST_WORKERS=N to change, 0 for one process).
# The suite runs once on the TensorFlow backend (the CPU default, measured faster here); the tests marked
# `both_backends` (the notebooks' smoke runs among them) run again on JAX. Both passes always run; the
# script fails at the end when either failed.
# Tests marked `shared_data` read ../shared/data (or $FUNMATCH_SHARED_DATA): they run when that folder
# exists; elsewhere they are left out with one line saying so. Under CI (CI set) they always run, so a
# missing folder fails, and any skipped test fails too (tests/conftest.py).
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

shared_data=${FUNMATCH_SHARED_DATA:-../shared/data}
jax_marks="both_backends"
tf_marks=()
if [ -z "${CI:-}" ] && [ ! -d "$shared_data/flowers102" ]; then
  echo "test.sh: $shared_data not found: the tests marked shared_data were not run (set FUNMATCH_SHARED_DATA to run them)"
  tf_marks=(-m "not shared_data")
  jax_marks="both_backends and not shared_data"
fi

failed=()
run() {  # run BACKEND PYTEST-ARGS...; exit status 5 (no test selected, e.g. a path without both_backends tests) passes
  local backend=$1 status=0
  shift
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -rs -n "${FUNMATCH_TEST_WORKERS:-2}" "$@" || status=$?
  if [ "$status" != 0 ] && [ "$status" != 5 ]; then failed+=("$backend"); fi
}
run tensorflow "${tf_marks[@]}" "$@"
run jax -m "$jax_marks" "$@"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED on ${failed[*]}" >&2
  exit 1
fi
echo "test.sh: passed on tensorflow and jax"
