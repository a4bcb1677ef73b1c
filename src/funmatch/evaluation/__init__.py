"""Evaluation: logits on a split and the one eval pp builder (`logits`), fidelity and calibration metrics
(`metrics`), cost (`cost`) and the student-vs-teacher report of `funmatch evaluate` (`evaluate`).

May import configs, data, models and distill (the loss's `distance`); never training or above.
Importing this package imports only numpy; Keras and TensorFlow are imported by the functions that run models.
"""

from funmatch.evaluation.cache import cached_split_logits, file_sha256, model_key
from funmatch.evaluation.cost import (
    LATENCY_BATCH_SIZES,
    compiled_forward,
    device_name,
    keras_file_size,
    measure_latency,
    model_cost,
    model_resolution,
    resolve_model,
    time_calls,
)
from funmatch.evaluation.evaluate import SCHEMA, evaluate_models, format_summary, model_crop_fraction
from funmatch.evaluation.logits import DEFAULT_CROP_FRACTION, eval_pp, predict_logits, split_logits
from funmatch.evaluation.metrics import (
    ECE_BINS,
    expected_calibration_error,
    fidelity_metrics,
    per_class_accuracy,
    per_class_table,
    softmax,
    topk_accuracy,
)

__all__ = [
    "DEFAULT_CROP_FRACTION",
    "cached_split_logits",
    "file_sha256",
    "model_key",
    "ECE_BINS",
    "LATENCY_BATCH_SIZES",
    "SCHEMA",
    "compiled_forward",
    "device_name",
    "eval_pp",
    "evaluate_models",
    "model_crop_fraction",
    "expected_calibration_error",
    "fidelity_metrics",
    "format_summary",
    "keras_file_size",
    "measure_latency",
    "model_cost",
    "model_resolution",
    "per_class_accuracy",
    "per_class_table",
    "predict_logits",
    "resolve_model",
    "softmax",
    "split_logits",
    "time_calls",
    "topk_accuracy",
]
