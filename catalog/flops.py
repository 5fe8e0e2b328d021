"""Multiply-accumulate (MAC) counter: one forward pass at batch 1, counted the way papers count.

By default only convolutions and fully connected layers count (as torchvision's published "GFLOPS",
fvcore and the papers' MAC tables do; biases are not counted):

- ``Conv1D/2D/3D``: ``k_h * k_w * C_in / groups * C_out * H_out * W_out`` (dilation changes only the
  output size, which is taken from the graph); Conv3D multiplies in the time axis too,
  ``k_t * k_h * k_w * C_in * C_out * T_out * H_out * W_out``;
- ``DepthwiseConv*``: ``k_h * k_w * C_in * depth_multiplier * H_out * W_out``;
- ``SeparableConv*``: the depthwise part plus the pointwise ``C_in * depth_multiplier * C_out * H_out * W_out``;
- ``Conv*Transpose``: ``k_h * k_w * C_in * C_out * H_in * W_in`` (every input pixel scatters a kernel);
- ``Dense``: ``C_in * C_out`` per position it is applied at.

With ``include_elementwise=True`` these count too: normalization layers 1 per output element (the
inference-time affine ``a * x + b``), average/max pooling ``pool area`` per output element, global pooling
1 per input element, merge layers (Add, Multiply, ...) ``inputs - 1`` per output element, bilinear
upsampling 4 per output element. Activations, padding, concatenation, reshapes and dropout count 0.

A custom layer declares its own count with a method ``count_macs(self, input_shapes, output_shapes)``
(lists of shapes with the batch dimension, which is 1); it is called whenever present. Nested models
(a functional or Sequential model used as a layer) are walked, and a layer called several times
(shared weights) counts once per call. Other layers without weights count 0; a layer with weights and no
rule counts 0 with a warning.
"""

from __future__ import annotations

import math
import warnings

import keras
from keras import layers

_CONVS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_NORMS = (layers.BatchNormalization, layers.LayerNormalization, layers.GroupNormalization,
          layers.Normalization, layers.Rescaling)
_POOLS = (layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D,
          layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D)
_GLOBAL_POOLS = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
                 layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D,
                 layers.GlobalMaxPooling3D)
_MERGES = (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum)
# Layers with weights whose work is elementwise (counted only with include_elementwise=True).
_ELEMENTWISE_WEIGHTED = _NORMS + (layers.PReLU, layers.Embedding)


def _spatial(shape) -> int:
    """Product of the dimensions between batch and channels (channels-last)."""
    return math.prod(int(d) for d in shape[1:-1])


def _layer_macs(layer, in_shapes, out_shapes, include_elementwise: bool) -> int:
    count = getattr(layer, "count_macs", None)
    if callable(count) and not isinstance(layer, keras.Model):
        return int(count(in_shapes, out_shapes))
    if not in_shapes or not out_shapes:
        return 0
    out, inp = out_shapes[0], in_shapes[0]
    if isinstance(layer, _TRANSPOSED):
        return math.prod(layer.kernel.shape) * _spatial(inp)
    if isinstance(layer, _SEPARABLE):
        return (math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape)) * _spatial(out)
    if isinstance(layer, _DEPTHWISE):
        return math.prod(layer.kernel.shape) * _spatial(out)
    if isinstance(layer, _CONVS):
        return math.prod(layer.kernel.shape) * _spatial(out)
    if isinstance(layer, layers.Dense):
        return math.prod(layer.kernel.shape) * math.prod(int(d) for d in out[1:-1])
    if isinstance(layer, layers.Dot):  # batched matrix product: each output element sums over one axis
        axis = layer.axes if isinstance(layer.axes, int) else layer.axes[0]
        return math.prod(int(d) for d in out[1:]) * int(inp[axis])
    if include_elementwise:
        elements = math.prod(int(d) for d in out[1:])
        if isinstance(layer, _NORMS):
            return elements
        if isinstance(layer, _POOLS):
            return math.prod(layer.pool_size) * elements
        if isinstance(layer, _GLOBAL_POOLS):
            return math.prod(int(d) for d in inp[1:])
        if isinstance(layer, _MERGES):
            return (len(in_shapes) - 1) * elements
        if isinstance(layer, layers.UpSampling2D) and layer.interpolation != "nearest":
            return 4 * elements
    if getattr(layer, "weights", None) and not isinstance(layer, _ELEMENTWISE_WEIGHTED):
        warnings.warn(f"count_macs has no rule for layer {layer.name!r} ({type(layer).__name__}), which has "
                      "weights; it counts 0. Give the layer a count_macs(input_shapes, output_shapes) method.",
                      stacklevel=4)
    return 0


def _shapes(structure) -> list[tuple]:
    return [tuple(t.shape) for t in keras.tree.flatten(structure) if isinstance(t, keras.KerasTensor)]


def _walk(model, inputs, records: list, prefix: str, include_elementwise: bool):
    """Propagate batch-1 specs through ``model``'s graph, recording every call's MACs; returns the outputs."""

    def call(op, *args, **kwargs):
        name = f"{prefix}{op.name}"
        if isinstance(op, keras.Sequential) or (isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth")):
            return _walk(op, args[0], records, f"{name}/", include_elementwise)
        outputs = op.compute_output_spec(*args, **kwargs)
        macs = _layer_macs(op, _shapes((args, kwargs)), _shapes(outputs), include_elementwise)
        records.append((name, type(op).__name__, int(macs), _shapes(outputs), op))
        return outputs

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    if not hasattr(model, "_run_through_graph"):
        raise ValueError(f"count_macs walks functional and Sequential models; {model.name!r} is a subclassed "
                         f"{type(model).__name__} (give it a count_macs method or build it functionally).")
    return model._run_through_graph(inputs, operation_fn=lambda op: lambda *a, **k: call(op, *a, **k))


def _input_specs(model, input_shape):
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    if input_shape is not None:
        given = list(input_shape) if len(shapes) > 1 else [tuple(input_shape)]
        if len(given) != len(shapes) or any(len(g) != len(s) for g, s in zip(given, shapes)):
            raise ValueError(f"input_shape must give {len(shapes)} shape(s) of rank {[len(s) for s in shapes]} "
                             f"(without the batch dimension) for {model.name}; got {input_shape!r}.")
        shapes = [tuple(g) for g in given]
    for shape in shapes:
        if any(d is None for d in shape):
            raise ValueError(f"count_macs needs a fixed input size, but {model.name} takes {shape}; pass "
                             "input_shape=(height, width, channels).")
    specs = [keras.KerasTensor((1, *s), dtype=t.dtype) for s, t in zip(shapes, model.inputs)]
    return specs if len(specs) > 1 else specs[0]


def layer_macs(model, input_shape=None, include_elementwise: bool = False) -> list[tuple[str, str, int]]:
    """Per-call breakdown ``[(layer_name, layer_class, macs), ...]`` in graph order, at batch 1.

    Nested models' layers are named ``outer/inner``; a shared layer appears once per call.

    Args:
        model: a functional or Sequential Keras model.
        input_shape: input shape without the batch dimension (a list for several inputs); default: the
            model's own, which must then be fixed.
        include_elementwise: also count normalization, pooling and merge layers (see the module doc).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}.")
    records: list = []
    _walk(model, _input_specs(model, input_shape), records, "", include_elementwise)
    return [record[:3] for record in records]


def layer_table(model, input_shape=None) -> list[dict]:
    """Every call of ``model``'s graph at batch 1, in order: ``name``, ``class``, ``output_shape`` (the first
    output, without the batch), ``params`` (the layer's weights, counted at its first call), ``macs`` (conv and
    FC, as :func:`count_macs`) and ``activation_bytes`` (its outputs in float32): the numbers a per-layer
    profile starts from (``catalog info NAME --layers``)."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model; got {type(model).__name__}.")
    records: list = []
    _walk(model, _input_specs(model, input_shape), records, "", False)
    rows, counted = [], set()
    for name, kind, macs, shapes, op in records:
        params = 0
        if id(op) not in counted and isinstance(op, keras.layers.Layer):
            counted.add(id(op))
            params = int(sum(math.prod(w.shape) for w in op.weights))
        rows.append({"name": name, "class": kind, "output_shape": tuple(shapes[0][1:]) if shapes else (),
                     "params": params, "macs": int(macs),
                     "activation_bytes": 4 * sum(math.prod(int(d) for d in s[1:]) for s in shapes)})
    return rows


def count_macs(model, input_shape=None, include_elementwise: bool = False) -> int:
    """Multiply-accumulates of one forward pass of ``model`` at batch 1 (conv and FC by default).

    Args:
        model: a functional or Sequential Keras model.
        input_shape: input shape without the batch dimension; default: the model's own.
        include_elementwise: also count normalization, pooling and merge layers.
    """
    return sum(m for _, _, m in layer_macs(model, input_shape, include_elementwise))
