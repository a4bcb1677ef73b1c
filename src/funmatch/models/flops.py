"""Parameter and FLOP counts of Keras models.

Conventions (state them next to every figure you report):

* `count_params(model)`: every weight the model stores, trainable or not (BatchNorm moving
  statistics included), i.e. what a checkpoint holds. `trainable_only=True` counts trainable ones.
* `count_flops(model, resolution)`: FLOPs for ONE image of `resolution x resolution x 3`, where a
  multiply-add counts as 2 FLOPs, over convolutions (regular, grouped, depthwise, separable) and
  dense layers. Biases, normalisation, activations, pooling, residual additions and the
  batch-independent weight standardisation are not counted (together a few percent at most for
  these networks). This is "2 x MACs", e.g. ResNet-50 at 224 px ~ 8.2 GFLOPs (4.1 GMACs).

FLOPs are found by propagating symbolic shapes through the functional graph (nested functional
models are entered), so they can be computed at any resolution the layers accept. Layers of a subclassed
layer (keras-hub's blocks call their convolutions inside `call`) are counted as they are called while the
enclosing layer's output shape is computed.
"""

from __future__ import annotations

import contextlib
import math

import keras

from funmatch.errors import FunmatchError
from funmatch.models.layers import StandardizedConv2D


def count_params(model: keras.Model, *, trainable_only: bool = False) -> int:
    """Number of scalar weights of `model` (all weights; trainable ones with `trainable_only`)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(weight.shape) for weight in weights))


def _conv_flops(kernel_shape, output_shape) -> int:
    """2 * output positions * kernel taps * in-per-group * out, for one image.

    Keras stores a grouped conv kernel as `[kh, kw, in / groups, out]`, so this covers groups.
    """
    kernel_h, kernel_w, in_per_group, out_channels = kernel_shape
    positions = math.prod(output_shape[1:-1])
    return 2 * positions * kernel_h * kernel_w * in_per_group * out_channels


def _layer_flops(layer, inputs, outputs) -> int:
    """FLOPs of one (non-nested) layer call for batch size 1; 0 for uncounted layer types."""
    output_shape = outputs.shape
    if isinstance(layer, StandardizedConv2D):
        return _conv_flops(tuple(layer.kernel.shape), output_shape)
    if isinstance(layer, keras.layers.SeparableConv2D):
        # Depthwise (in * multiplier channels, over the input) + pointwise 1x1 (to the output).
        kernel_h, kernel_w, in_channels, multiplier = layer.depthwise_kernel.shape
        positions = math.prod(output_shape[1:-1])
        depthwise = 2 * positions * kernel_h * kernel_w * in_channels * multiplier
        pointwise = 2 * positions * in_channels * multiplier * layer.filters
        return depthwise + pointwise
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel_h, kernel_w, in_channels, multiplier = layer.kernel.shape
        return 2 * math.prod(output_shape[1:-1]) * kernel_h * kernel_w * in_channels * multiplier
    if isinstance(layer, keras.layers.Conv2D):
        return _conv_flops(tuple(layer.kernel.shape), output_shape)
    if isinstance(layer, keras.layers.Dense):
        in_features, units = layer.kernel.shape
        return 2 * math.prod(output_shape[1:-1]) * in_features * units
    return 0


def _graph_of(model):
    """The functional graph to walk for `model`, or None when it has none."""
    from funmatch.models.classifier import Classifier

    if isinstance(model, Classifier):
        return _graph_of(model.backbone)
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    if model is not None and hasattr(model, "_run_through_graph") and hasattr(model, "_nodes_by_depth"):
        return model
    return None


def _run_counting(model, inputs, totals: list) -> object:
    """Propagates symbolic `inputs` through `model`'s graph, adding FLOPs to totals[0]."""
    graph = _graph_of(model)
    if graph is None:
        raise FunmatchError(
            f"cannot count FLOPs of {getattr(model, 'name', model)!r}: it is not a functional model"
        )

    def operation_fn(operation):
        def run(*args, **kwargs):
            if isinstance(operation, keras.Model):
                return _run_counting(operation, args[0] if len(args) == 1 else list(args), totals)
            kwargs.pop("training", None)
            outputs = operation.compute_output_spec(*args, **kwargs)
            if isinstance(operation, keras.layers.Layer) and isinstance(outputs, keras.KerasTensor):
                totals[0] += _layer_flops(operation, args, outputs)
            return outputs

        return run

    return graph._run_through_graph(inputs, operation_fn=operation_fn)


@contextlib.contextmanager
def _counting_inner_calls(totals: list):
    """While active, every Layer called inside another layer's `call` (not a graph node) adds its FLOPs."""
    original = keras.layers.Layer.__call__

    def counting_call(self, *args, **kwargs):
        outputs = original(self, *args, **kwargs)
        shape = getattr(outputs, "shape", None)
        if shape is not None and not isinstance(self, keras.Model):
            totals[0] += _layer_flops(self, args, outputs)
        return outputs

    keras.layers.Layer.__call__ = counting_call
    try:
        yield
    finally:
        keras.layers.Layer.__call__ = original


def count_flops(model: keras.Model, resolution: int, *, channels: int = 3) -> int:
    """FLOPs per image of `resolution x resolution x channels` (multiply-add = 2 FLOPs; see module doc)."""
    inputs = keras.KerasTensor((1, int(resolution), int(resolution), int(channels)), dtype="float32")
    totals = [0]
    with _counting_inner_calls(totals):
        _run_counting(model, inputs, totals)
    return int(totals[0])
