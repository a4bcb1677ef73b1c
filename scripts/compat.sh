#!/usr/bin/env bash
# The compatibility matrix: funmatch on the software stacks its users run, CPU builds here.
#   bash scripts/compat.sh [--root DIR] [--rows a,b] [--build-only] [--no-demo]
# Each row gets its own virtual environment under DIR (default /tmp/funmatch-compat), built with pip from
# the row's own pins (not constraints.txt) plus funmatch's `cpu`, `hub` and `test` extras and keras-hub
# without its dependencies (as scripts/setup.sh installs it), funmatch installed editable from this tree,
# so a fix is tried without a rebuild. A second run reuses an environment whose
# pins are unchanged. Rows run one after another; per row:
#   tests  the tests marked `both_backends` (the notebooks' smoke runs among them) on JAX
#   demo   `funmatch demo --quick` on JAX: wall and CPU seconds, peak RSS
# and a Markdown table of the rows (with the date and the load average) closes the run. The rows (keep
# README's "Compatibility" table in step):
#   kaggle-tpu  Kaggle's TPU image: Python 3.12, tensorflow-cpu 2.20.0, jax 0.7.2 (CPU jaxlib here instead
#               of libtpu 0.0.17), keras as pip resolves it
#   kaggle-gpu  Kaggle's GPU image (Colab's GPU runtime, as googlecolab/backend-info's pip-freeze.gpu.txt
#               lists it in 2026): Python 3.12, TensorFlow 2.20 (tensorflow-cpu here), protobuf 5.29.5 (the
#               image forces it), jax 0.7.2 (CPU build here instead of CUDA 12), numpy 2.0.2
#   jax-0.5     jax 0.5.3 (the 0.5 series Colab's runtime had in 2025) with TensorFlow 2.20, on Python 3.11
#   newest      the newest releases on the registry of everything, with the newest Python found here
#   oldest      the lowest version of every requirement pyproject.toml accepts, on its lowest Python
# A row's Python comes from PATH or pyenv; a row whose Python is missing says so and is not run.
# Building takes minutes of pip per row (TensorFlow and jaxlib wheels); pip's cache is used.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
root=/tmp/funmatch-compat
rows_wanted=""
build_only=0
demo=1
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; shift 2 ;;
    --rows) rows_wanted=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --no-demo) demo=0; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compat.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# name|python|pip requirements (space-separated; funmatch's extras are added)
ROWS=(
  "kaggle-tpu|3.12|tensorflow-cpu==2.20.0 jax[cpu]==0.7.2 jaxlib==0.7.2"
  "kaggle-gpu|3.12|tensorflow-cpu==2.20.0 protobuf==5.29.5 jax[cpu]==0.7.2 jaxlib==0.7.2 numpy==2.0.2"
  "jax-0.5|3.11|tensorflow-cpu==2.20.* protobuf==5.29.5 jax[cpu]==0.5.3 jaxlib==0.5.3"
  "newest|3.13|tensorflow-cpu jax[cpu] keras"
  "oldest|3.11|tensorflow-cpu==2.18.0 jax[cpu]==0.4.30 jaxlib==0.4.30 keras==3.15.0 tensorflow-datasets==4.9.0 keras-tuner==1.4.7 matplotlib==3.9.0 numpy==1.26.0 pillow==10.0.0 tqdm==4.66.0 tensorboard==2.18.0 scikit-learn==1.3.0"
)

find_python() {  # find_python 3.12: an interpreter of that version, or nothing
  local version=$1 candidate
  for candidate in "python$version" "$(pyenv root 2>/dev/null)/versions/$version"*/bin/"python$version"; do
    if "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then command -v "$candidate"; return; fi
  done
}

build() {  # build NAME PYTHON REQUIREMENTS: the row's venv, rebuilt only when its pins changed
  local name=$1 python=$2 requirements=$3 venv=$root/$1
  local stamp="$python $requirements + cpu,hub,test extras, keras-hub"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.compat-pins" 2>/dev/null)" = "$stamp" ]; then return; fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # funmatch's own requirements (with the cpu, hub and test extras) beside the row's pins, then funmatch itself,
  # editable; one editable install at a time, since each writes the tree's egg-info.
  local needs
  needs=$(python3 -c '
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
print(" ".join(project["dependencies"] + extras["cpu"] + extras["hub"] + extras["test"]))
' "$repo/pyproject.toml")
  # shellcheck disable=SC2086  # the requirements are words
  "$venv/bin/python" -m pip install -q $requirements $needs
  # keras-hub without its dependencies, as scripts/setup.sh installs it (its tensorflow-text would bring the
  # full tensorflow beside tensorflow-cpu); the `hub` extra above is what its image models import.
  "$venv/bin/python" -m pip install -q --no-deps keras-hub
  flock "$root/.editable.lock" "$venv/bin/python" -m pip install -q --no-deps -e "$repo"
  "$venv/bin/python" -c "import funmatch, jax, keras, keras_hub, tensorflow, pytest"
  echo "$stamp" >"$venv/.compat-pins"
}

versions() {  # versions VENV: the row's Python and the versions that matter, one line
  "$1/bin/python" - <<'EOF'
import importlib.metadata as m, platform
names = ["jax", "jaxlib", "keras", "tensorflow-cpu", "protobuf", "numpy"]
print(" ".join([f"py{platform.python_version()}"] + [f"{n.replace('tensorflow-cpu', 'tf')}={m.version(n)}" for n in names]))
EOF
}

mkdir -p "$root"
# Build every wanted row's environment at once (pip mostly waits on downloads), nice'd; then run the rows
# one after another, so that their timings do not compete.
selected=()
declare -A python_of
for row in "${ROWS[@]}"; do
  IFS='|' read -r name version requirements <<<"$row"
  if [ -n "$rows_wanted" ] && [[ ",$rows_wanted," != *",$name,"* ]]; then continue; fi
  selected+=("$row")
  python_of[$name]=$(find_python "$version")
  if [ -z "${python_of[$name]}" ]; then continue; fi
  echo "== $name: $root/$name with ${python_of[$name]}, built unless its pins are unchanged (log: $root/$name.build.log)"
  (status=0
   nice -n 10 bash -c "set -e; $(declare -f build); repo='$repo' root='$root' build '$name' '${python_of[$name]}' '$requirements'" \
     >"$root/$name.build.log" 2>&1 || status=$?
   echo "$status" >"$root/$name.build.status") &
done
wait
[ "$build_only" = 1 ] && echo "compat.sh: built; see the *.build.status files under $root (0: built)"

table=()
for row in "${selected[@]}"; do
  IFS='|' read -r name version requirements <<<"$row"
  if [ -z "${python_of[$name]}" ]; then
    echo "compat.sh: $name: no Python $version here (PATH or pyenv); row not run"
    table+=("$name|python $version missing|-|-")
    continue
  fi
  if [ "$(cat "$root/$name.build.status")" != 0 ]; then
    echo "compat.sh: $name: pip failed, see $root/$name.build.log"
    table+=("$name|pip failed|-|-")
    continue
  fi
  [ "$build_only" = 1 ] && continue
  venv=$root/$name
  pins=$(versions "$venv")
  export PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=jax
  echo "== $name: $pins: tests marked both_backends on JAX"
  status=0
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${FUNMATCH_TEST_WORKERS:-2}" -m "both_backends and not shared_data" \
    -k "not timm" >"$root/$name.tests.log" 2>&1 || status=$?
  tests=$(grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed)" "$root/$name.tests.log" | tail -1 | tr -d '=' | xargs)
  [ "$status" = 0 ] || tests="$tests (exit $status, see $root/$name.tests.log)"
  echo "   $tests"
  timing="-"
  if [ "$demo" = 1 ]; then
    echo "== $name: funmatch demo --quick on JAX"
    work=$(mktemp -d "$root/$name.demo.XXXX")
    if "$venv/bin/python" - "$work" >"$root/$name.demo.log" 2>&1 <<'EOF'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run([sys.executable, "-m", "funmatch.cli", "demo", "--quick", "--out", sys.argv[1] + "/demo"], check=True)
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"DEMO wall {wall:.0f} s, CPU {usage.ru_utime + usage.ru_stime:.0f} s, peak RSS {usage.ru_maxrss / 2**20:.1f} GiB")
EOF
    then timing=$(grep -E "^DEMO" "$root/$name.demo.log" | sed 's/^DEMO //')
    else timing="failed, see $root/$name.demo.log"
    fi
    rm -rf "$work"
    echo "   $timing"
  fi
  table+=("$name|$pins|$tests|$timing")
done
[ "$build_only" = 1 ] && exit 0

# The table, in Markdown (README's "Compatibility" table takes its rows from it).
echo
echo "$(date -u +%Y-%m-%d), load average $(uptime | sed 's/.*load average: //') on $(nproc) cores:"
echo
echo "| row | versions | tests (both_backends, JAX) | demo --quick (JAX) |"
echo "|---|---|---|---|"
for line in "${table[@]}"; do
  IFS='|' read -r name pins tests timing <<<"$line"
  echo "| $name | $pins | $tests | $timing |"
done
