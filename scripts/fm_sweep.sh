#!/usr/bin/env bash
# Function matching's own sweep on stored targets: the demo's distillation (tiny_cnn @ 48 px from the shipped
# teacher's stored targets, K = 16, on eurosat_mini's 1,000 labelled + eurosat_unlabeled's 3,900 images, no
# label read), shortened to $STEPS steps of 128, with one setting changed per row, seeds $SEEDS; the choice is
# made on validation (eurosat_mini's 500 images), never on test.
#
#     bash scripts/fm_sweep.sh STORE OUT        # STORE: a demo's store (data_unlabeled/ + targets/), e.g.
#                                               # demo_out, or benchmarks/patience.py's OUT/store
#     STEPS=1000 SEEDS="0 1" ROWS="base muon_lr0.01" bash scripts/fm_sweep.sh STORE OUT
#
# Rows (the demo's settings otherwise: adam, lr 0.01, weight decay 1e-4, T = 1, warmup 100, cosine):
#     base           the demo's settings
#     muon_lr0.01    Keras' Muon (AdamW for the non-matrix variables), lr 0.01
#     muon_lr0.03    Keras' Muon, lr 0.03
#     wd1e-3         weight decay 1e-3
#     wd1e-5         weight decay 1e-5
#     T2             temperature 2
# Runs are sequential (one process at a time, nice 10) and resumable; the table at the end is rebuilt from
# whatever runs are done.
#
# Measured (STEPS=1000 SEEDS="0 1" ROWS="base muon_lr0.01", on benchmarks/patience.py's store; one run at a
# time at nice 10, on 2 CPU cores shared by eight work streams, load 13-27):
#     row           seed   validation acc / agr   test acc / agr    train CPU s
#     base          0      80.0 / 80.8 %          79.4 / 80.0 %     152
#     base          1      76.6 / 77.8 %          75.8 / 76.1 %     152
#     muon_lr0.01   0      81.2 / 81.8 %          81.2 / 82.1 %     181
#     muon_lr0.01   1      77.6 / 78.6 %          77.3 / 77.7 %     154
# Muon is ahead on validation at both seeds (+1.2, +1.0; mean 79.4 vs 78.3 %), within the ±1.8 points of
# sampling noise of 500 images per run, at about the same CPU per step (152 vs 154 CPU s at seed 1; the
# 181 of seed 0 ran at a higher load). Not yet adopted: 1,000 steps is a third of the demo's run, and the
# other rows (muon_lr0.03, wd1e-3, wd1e-5, T2) were not run for lack of CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${1:?STORE (a demo store: data_unlabeled/ + targets/)}; OUT=${2:?OUT_DIR}
PYTHON=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-1000}; SEEDS=${SEEDS:-"0 1"}; ROWS=${ROWS:-"base muon_lr0.01 wd1e-3"}
TEACHER=src/funmatch/assets/teachers/eurosat_teacher.keras
BASE="eurosat:student=tiny_cnn,student_resolution=48,teacher_resolution=112,resize_small=48,batch_size=128,total_steps=$STEPS,warmup_steps=${WARMUP:-100},learning_rate=0.01,weight_decay=1e-4,temperature=1.0,mixup_p=1.0,checkpoint_every=${CHECKPOINT:-100},eval_every=$STEPS,eval_batch_size=250,train_split=train_and_unlabeled"
declare -A CHANGE=([base]="" [muon_lr0.01]=",optimizer=muon" [muon_lr0.03]=",optimizer=muon,learning_rate=0.03"
                   [wd1e-3]=",weight_decay=1e-3" [wd1e-5]=",weight_decay=1e-5" [T2]=",temperature=2.0")
for seed in $SEEDS; do  # every row at the first seed first: a cut-short sweep still compares the rows
  for row in $ROWS; do
    nice -n 10 "$PYTHON" -m funmatch.cli distill --config "$BASE${CHANGE[$row]},seed=$seed" --data "$STORE/data_unlabeled" \
      --teacher "$TEACHER" --targets "$STORE/targets" --workdir "$OUT/${row}_s$seed" --no-progress
  done
done
"$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys
from collections import defaultdict

rows = defaultdict(list)
for path in sorted(pathlib.Path(sys.argv[1]).glob("*_s*/metrics.json")):
    metrics = json.loads(path.read_text())
    rows[path.parent.name.rsplit("_s", 1)[0]].append(metrics)
print(f"{'row':14} {'seeds':>5} {'val acc':>8} {'val agr':>8} {'test acc':>9} {'CPU s':>7}   (mean over seeds; each seed's val acc)")
for row, runs in rows.items():
    mean = lambda key: sum(m[key] for m in runs) / len(runs)
    each = " ".join(f"{100 * m['validation_accuracy']:.1f}" for m in runs)
    print(f"{row:14} {len(runs):>5} {100 * mean('validation_accuracy'):>7.1f}% {100 * mean('validation_agreement'):>7.1f}% "
          f"{100 * mean('test_accuracy'):>8.1f}% {mean('train_cpu_seconds'):>7.0f}   {each}")
PY
