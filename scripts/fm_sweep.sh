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
# Rows (the demo's settings otherwise: adam, lr 0.01, T = 1, warmup 100, cosine; weight decay 1e-4, the demo's
# until this sweep adopted 1e-3):
#     base           weight decay 1e-4
#     muon_lr0.01    Keras' Muon (AdamW for the non-matrix variables), lr 0.01
#     muon_lr0.03    Keras' Muon, lr 0.03
#     wd1e-3         weight decay 1e-3
#     wd1e-5         weight decay 1e-5
#     T2             temperature 2
# Student rows (weight decay 1e-3, the adopted setting; the teacher's stored targets are the same, only the
# student and the size its view is resized to change; each within the demo's >= 10x FLOPs bound):
#     w24_r32        tiny_cnn_w24 at 32 px: wider at a lower resolution, the same 5.8 MFLOPs as tiny_cnn at 48 px
#     w12_r64        tiny_cnn_w12 at 64 px: narrower at the images' full resolution, 5.8 MFLOPs
#     r56            tiny_cnn at 56 px, 7.9 MFLOPs (10.8x under the teacher), 11/15 of the steps
# Runs are sequential (one process at a time, nice 10) and resumable; the table at the end is rebuilt from
# whatever runs are done.
#
# Measured (STEPS=3000, the demo's run, SEEDS="0 1", all six rows, on benchmarks/patience.py's store; one run
# at a time pinned to one core of a 2-vCPU Intel Xeon VM with `taskset -c 1`, the other core running a
# patience point; load average about 2; 2026-12-07):
#     row           seeds  val acc  val agr  test acc  CPU s   val acc per seed
#     base          2      84.8 %   85.8 %   83.9 %    160     86.2 83.4
#     wd1e-3        2      86.3 %   86.4 %   84.9 %    156     87.2 85.4
#     wd1e-5        2      86.0 %   86.0 %   85.3 %    156     86.2 85.8
#     muon_lr0.01   2      85.8 %   86.3 %   85.3 %    155     85.8 85.8
#     muon_lr0.03   2      85.4 %   85.5 %   85.6 %    158     85.2 85.6
#     T2            2      85.4 %   86.4 %   84.9 %    154     85.0 85.8
# Weight decay 1e-3 is the only row ahead of base at both seeds (+1.0, +2.0 on validation), within the +-1.6
# points of sampling noise of 500 validation images each; adopted as the demo's (`demo.DEMO`). The label
# reference got the same weight-decay rows (`WD=1 scripts/label_sweep.sh`): none ahead at both seeds, it keeps 1e-4.
# The base row's test accuracy equals patience's earlier 1x points (85.1, 82.8 %), and the wd1e-3 row's its
# current ones (85.6, 84.1 %; validation 87.2, 85.4 % too): the same runs, repeated bit for bit. An earlier
# measurement at STEPS=1000 (load 13-27) had Muon at lr 0.01 ahead by 1.0-1.2 points; at 3,000 steps it is not.
# The student rows (STEPS=3000, SEEDS="0 1", ROWS="w24_r32 w12_r64 r56", on a regenerated copy of the same store,
# bitwise the same targets; pinned with `taskset -c 0`, the other core running benchmarks/targets_fidelity.sh;
# load average about 2.8; 2026-12-07), against wd1e-3 above (86.3 % validation, 156 CPU s):
#     w24_r32       2      80.9 %   81.0 %   81.8 %    130     79.4 82.4
#     w12_r64       2      81.9 %   81.9 %   80.7 %    279     81.6 82.2
#     r56           2      82.1 %   82.3 %   81.6 %    165     83.8 80.4
# None is ahead at either seed: tiny_cnn at 48 px stays. Equal FLOPs do not mean equal CPU here (w12_r64 costs
# 1.8x the CPU of tiny_cnn at 48 px: four times the activations); each row keeps the demo's learning rate.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${1:?STORE (a demo store: data_unlabeled/ + targets/)}; OUT=${2:?OUT_DIR}
PYTHON=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-1000}; SEEDS=${SEEDS:-"0 1"}; ROWS=${ROWS:-"base muon_lr0.01 wd1e-3"}
TEACHER=src/funmatch/assets/teachers/eurosat_teacher.keras
BASE="eurosat:student=tiny_cnn,student_resolution=48,teacher_resolution=112,resize_small=48,batch_size=128,total_steps=$STEPS,warmup_steps=${WARMUP:-100},learning_rate=0.01,weight_decay=1e-4,temperature=1.0,mixup_p=1.0,checkpoint_every=${CHECKPOINT:-100},eval_every=$STEPS,eval_batch_size=250,train_split=train_and_unlabeled"
declare -A CHANGE=([base]="" [muon_lr0.01]=",optimizer=muon" [muon_lr0.03]=",optimizer=muon,learning_rate=0.03"
                   [wd1e-3]=",weight_decay=1e-3" [wd1e-5]=",weight_decay=1e-5" [T2]=",temperature=2.0"
                   [w24_r32]=",weight_decay=1e-3,student=tiny_cnn_w24,student_resolution=32,resize_small=32"
                   [w12_r64]=",weight_decay=1e-3,student=tiny_cnn_w12,student_resolution=64,resize_small=64"
                   [r56]=",weight_decay=1e-3,student_resolution=56,resize_small=56,total_steps=$((STEPS * 11 / 15)),eval_every=$((STEPS * 11 / 15))")
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
