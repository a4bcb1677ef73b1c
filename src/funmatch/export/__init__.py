"""Export: deployable files (keras, savedmodel, tflite, onnx) from a `.keras` model, each loaded back and
checked against the Keras model (`formats`). The last stage of the pipeline, beside reporting.

May import models and evaluation (model loading and resolution); never training, tuning or commands.
"""

from funmatch.export.formats import FORMATS, check_format_supported, export_model, input_resolution, load_exported

__all__ = ["FORMATS", "check_format_supported", "export_model", "input_resolution", "load_exported"]
