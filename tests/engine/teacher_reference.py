"""Run by test_multiprocess_teacher.py: `funmatch teacher` on one process, fed the global batches of N processes.

    python teacher_reference.py --processes N -- teacher --config ... --data ... --workdir ...

Every training batch is the concatenation, in process order, of the batches the N processes read from their
own shards (global batch / N rows each): the global batch `keras.distribution.DataParallel` assembles when
N processes run the same command. Everything else is the command as users run it.
"""

import sys


def main() -> int:
    count = int(sys.argv[sys.argv.index("--processes") + 1])
    argv = sys.argv[sys.argv.index("--") + 1:]
    import tensorflow as tf

    from funmatch import cli
    from funmatch.data import pipeline

    one_process = pipeline.train_dataset

    def global_batches(data_dir, split, pp_spec, batch_size, *, process_index=None, process_count=None, **kwargs):
        assert (process_index, process_count) == (0, 1), (process_index, process_count)
        shards = [one_process(data_dir, split, pp_spec, batch_size // count, process_index=index,
                              process_count=count, **kwargs) for index in range(count)]
        return tf.data.Dataset.zip(tuple(shards)).map(
            lambda *parts: {key: tf.concat([part[key] for part in parts], 0) for key in parts[0]})

    pipeline.train_dataset = global_batches
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
