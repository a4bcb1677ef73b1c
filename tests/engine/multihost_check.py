"""Run by test_multihost_safety.py on N processes (the launch flags): a checkpoint written by process 0 is
in place on every process when `Checkpointer.save` returns (process 0 writes slowly here), and
`runtime.check_same_step` refuses on every process when they restored different steps.

Prints one line `RESULT {json}`."""

import argparse
import json
import time

from funmatch import runtime
from funmatch.errors import FunmatchError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--steps", required=True, help="comma-separated: the step each process restored")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args()
    runtime.initialize(args.coordinator, args.num_processes, args.process_id)
    import keras

    from funmatch.training.checkpoints import Checkpointer, complete_steps

    index = runtime.process_info()[0]
    checkpointer = Checkpointer(args.dir)
    write = checkpointer._write

    def slow_write(*a, **k):  # the others reach the barrier long before the checkpoint is in place
        time.sleep(3)
        return write(*a, **k)

    checkpointer._write = slow_write
    checkpointer.save(7, {"w": [keras.Variable([1.0, 2.0])]})
    in_place = complete_steps(args.dir) == [7]
    try:
        runtime.check_same_step(int(args.steps.split(",")[index]), args.dir)
        verdict = "same"
    except FunmatchError as error:
        verdict = str(error)
    print("RESULT " + json.dumps({"process": index, "checkpoint_in_place": in_place, "verdict": verdict}), flush=True)


if __name__ == "__main__":
    main()
