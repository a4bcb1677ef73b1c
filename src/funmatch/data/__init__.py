"""Data: pp ops, train/eval pipelines, the TFRecord format; `funmatch.data.prepare.prepare` writes it.

`prepare` (sources -> TFRecord shards + dataset card) is not re-exported here: the name is its module's,
which the CLI imports as `funmatch.data.prepare`.

Importing this subpackage imports TensorFlow (tf.data); the CLI imports it only for `prepare`.
"""

from funmatch.data.ops import get_preprocess_fn, register, registered_ops
from funmatch.data.pipeline import MASK_KEY, eval_dataset, num_examples, train_dataset
from funmatch.data.tfrecords import load_card, read_records

__all__ = [
    "MASK_KEY",
    "eval_dataset",
    "get_preprocess_fn",
    "load_card",
    "num_examples",
    "read_records",
    "register",
    "registered_ops",
    "train_dataset",
]
