#!/usr/bin/env bash
# The demo's label-trained references (tiny_cnn @ 48 px), swept on validation as function matching's own
# settings are (`scripts/fm_sweep.sh`):
#
#     bash scripts/label_sweep.sh DATA_DIR OUT_DIR        # learning rate and mixup, on eurosat_mini's 1,000
#                                                         # labelled images (`funmatch prepare` of eurosat_mini)
#     WD=1 bash scripts/label_sweep.sh ALL_DIR OUT_DIR    # weight decay, on every image's labels: ALL_DIR is a
#                                                         # demo's (or patience.py's store's) data_all_labels
#
# Learning rate and mixup: 2,000 steps of 128 each (256 epochs), the demo's recipe otherwise. Measured (4 runs
# in parallel on 2 CPU cores shared with other jobs, load 15-20; ~235 CPU s each):
#     lr      mixup   validation (500)   test (1,000)
#     0.003   none    82.2 %             81.4 %
#     0.01    none    80.4 %             81.9 %
#     0.03    none    83.2 %             81.0 %
#     0.01    p = 1   79.2 %             83.0 %
# Chosen on validation: lr 0.03, no mixup (mixup lowered validation accuracy by 1.2 points). The spread is
# within the ±1.7 points of sampling noise of 500 validation images.
#
# Weight decay (WD=1): labels on all 4,900 images at lr 0.03, 5,300 steps (the length of the label run at
# benchmarks/patience.py's 1x point), seeds 0 and 1, weight decay 1e-3 and 1e-5 (1e-4, the current setting,
# is the 1x points' own label run). Measured 2026-12-07, a 2-vCPU Intel Xeon VM, each seed's runs pinned to
# one core with `taskset`, load 2.5-4:
#     weight decay   validation (500), seeds 0 / 1 (mean)   test (1,000), seeds 0 / 1   CPU s
#     1e-4           89.0 / 87.6 (88.3)                    87.5 / 88.1                 298-305
#     1e-3           88.4 / 88.2 (88.3)                    87.6 / 88.6                 303-311
#     1e-5           88.6 / 88.4 (88.5)                    86.7 / 86.8                 296-297
# Neither row is ahead of 1e-4 at both seeds (the rule function matching's weight decay was adopted by):
# the label runs keep 1e-4 (`demo.LABELS_WEIGHT_DECAY`).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?DATA_DIR}; OUT=${2:?OUT_DIR}
PYTHON=${PYTHON:-.venv/bin/python}
if [[ "${WD:-0}" == 1 ]]; then
  BASE="eurosat:student=tiny_cnn,student_resolution=48,resize_small=48,batch_size=128,total_steps=5300,warmup_steps=100,learning_rate=0.03,checkpoint_every=100,eval_every=5300,eval_batch_size=250,train_split=train"
  TEACHER=src/funmatch/assets/teachers/eurosat_teacher.keras
  for seed in ${SEEDS:-0 1}; do  # one process at a time; each run resumes
    for wd in 1e-3 1e-5; do
      "$PYTHON" -m funmatch.cli labels --config "$BASE,weight_decay=$wd,seed=$seed" --data "$DATA" --teacher "$TEACHER" \
        --workdir "$OUT/wd${wd}_s$seed" --no-progress
    done
  done
  exit 0
fi
BASE="eurosat:student=tiny_cnn,student_resolution=48,resize_small=48,batch_size=128,total_steps=2000,warmup_steps=100,weight_decay=1e-4,checkpoint_every=500,eval_every=1000"
run() { "$PYTHON" -m funmatch.cli labels --config "$BASE,learning_rate=$1" --data "$DATA" --workdir "$OUT/$2" --mixup "$3" --no-progress; }
run 0.003 lr0.003 0 & run 0.01 lr0.01 0 & run 0.03 lr0.03 0 & run 0.01 lr0.01_mixup 1 &
wait
