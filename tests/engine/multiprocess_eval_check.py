"""Run by test_multiprocess_eval.py: `split_logits` on N processes, each evaluating its own share.

    python multiprocess_eval_check.py --data DIR --out PREFIX --coordinator 127.0.0.1:PORT --num-processes N
        --process-id I

Every process writes PREFIX.I.json: {"processes", "full": {logits, labels, index}, "subset": {...}} as
`split_logits` returned them (the whole split, and the max_examples=7 subset), and process 0 adds
"reference": the same model's logits on the whole split computed by process 0 alone (no distribution).
"""

import argparse
import json

PP = 'decode|resize(32)|value_range(-1, 1)|keep("image", "label", "index")'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    for flag in ("--coordinator", "--num-processes", "--process-id"):
        parser.add_argument(flag, default=None, type=str if flag == "--coordinator" else int)
    args = parser.parse_args()

    from funmatch import runtime

    runtime.launch(args, verbose=False)
    import numpy as np

    import keras
    from funmatch import models
    from funmatch.data import pipeline
    from funmatch.evaluation.logits import predict_logits, split_logits

    index, count = runtime.process_info()

    def plain(result):
        return {key: np.asarray(value).tolist() for key, value in result.items()}

    keras.utils.set_random_seed(3)
    with runtime.distribution_scope():
        model = models.create("tiny_cnn_w8", num_classes=4, resolution=32)
        rng = np.random.default_rng(0)
        for variable in model.trainable_variables:  # informative logits: a non-zero head
            variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
        out = {"processes": count, "full": plain(split_logits(model, args.data, "test", PP, 4)),
               "subset": plain(split_logits(model, args.data, "test", PP, 4, max_examples=7))}
    if index == 0:
        weights = model.get_weights()
        with runtime.local_only():
            alone = models.create("tiny_cnn_w8", num_classes=4, resolution=32)
            alone.set_weights(weights)
            dataset = pipeline.eval_dataset(args.data, "test", PP, 4, process_index=0, process_count=1)
            out["reference"] = plain(predict_logits(alone, dataset))
    with open(f"{args.out}.{index}.json", "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
