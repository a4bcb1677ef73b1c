"""Run by test_multiprocess.py: a few distillation steps on N processes, or on one with the same global batches.

    python data_parallel_check.py --data DIR --out RESULT.json --global-batch 8 --steps 6
        --coordinator 127.0.0.1:PORT --num-processes N --process-id I [--reference]

With N processes each reads its own shard of the records (`pipeline.train_dataset` with the process's index and
count) and feeds global_batch / N rows; `keras.distribution.DataParallel` assembles the global batch from them
(process 0's rows first). With --reference, process 0 then trains again on its own device alone (no
distribution), reading the N shards itself and concatenating their batches in process order: the same global
batches. Process 0 writes {"losses", "weights", "step_seconds", "reference": {...}}.
"""

import argparse
import json
import os
import time

PP = 'decode|resize(32)|value_range(-1, 1)|keep("image", "label", "index")'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--precision", default="float32")
    for flag in ("--coordinator", "--num-processes", "--process-id"):
        parser.add_argument(flag, default=None, type=str if flag == "--coordinator" else int)
    args = parser.parse_args()

    from funmatch import runtime

    runtime.launch(args, verbose=False)
    import numpy as np
    import tensorflow as tf

    import keras
    from funmatch import models
    from funmatch.data import pipeline
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer

    index, count = runtime.process_info()

    def train(dataset):
        keras.utils.set_random_seed(3)
        teacher = runtime.apply_precision(models.create("tiny_cnn_w8", num_classes=4, resolution=32))
        student = runtime.apply_precision(models.create("tiny_cnn_w8", num_classes=4, resolution=32))
        rng = np.random.default_rng(0)
        for variable in teacher.trainable_variables:  # an informative teacher: non-zero head
            variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
        distiller = Distiller(teacher, student, mode="function_matching", temperature=2.0, seed=5)
        optimizer = make_optimizer("adam", learning_rate=0.01, total_steps=args.steps, warmup_steps=1,
                                   weight_decay=1e-4, clip_norm=1.0)
        distiller.compile(optimizer=optimizer)
        losses, ends = [], []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]))
                ends.append(time.perf_counter())

        distiller.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[Record()])
        return {"losses": losses, "weights": [np.asarray(w).tolist() for w in student.get_weights()],
                "step_seconds": float(np.median(np.diff(ends))) if len(ends) > 2 else None}

    # N processes: each reads its shard and feeds global_batch / N rows of every step.
    per_process = runtime.check_batch_size(args.global_batch)
    with runtime.distribution_scope():
        result = train(pipeline.train_dataset(args.data, "train", PP, per_process, seed=7,
                                              process_index=index, process_count=count))
    result.update(processes=count, devices=runtime.replica_count() * count)
    if index == 0 and args.reference:
        # One process, one device (outside the distribution), the same global batches: the N shards' batches
        # concatenated in process order.
        per_shard = args.global_batch // count
        streams = [pipeline.train_dataset(args.data, "train", PP, per_shard, seed=7, process_index=i,
                                          process_count=count) for i in range(count)]
        dataset = tf.data.Dataset.zip(tuple(streams)).map(
            lambda *parts: {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]})
        with runtime.local_only():
            result["reference"] = train(dataset)
    if index == 0:
        with open(args.out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
