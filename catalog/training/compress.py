"""Compression of a trained functional model: magnitude pruning, structured filter pruning, low-rank layers.

- :class:`MagnitudePruning` (Zhu & Gupta 2017, "To prune, or not to prune"): a callback for ``fit`` (pass it
  in ``catalog.train(..., callbacks=[...])``) that zeroes the smallest-magnitude kernel weights, the target
  sparsity rising on the cubic schedule ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3``, by a global
  threshold over every pruned kernel or by one per layer, and keeps the pruned weights at zero through the
  rest of training (the masks are applied after every step, on TensorFlow and on JAX).
- :func:`prune_filters` (Li et al. 2017, "Pruning Filters for Efficient ConvNets"): removes the filters with
  the smallest L1 norms from every convolution whose output channels can shrink without touching another
  path (its output reaches, through BatchNorm, activations, pooling, padding, dropout or depthwise
  convolutions, only other convolutions or a pooled Dense layer; not an Add or a Concatenate), and the matching
  input channels of what follows: a physically smaller functional model, to fine-tune.
- :func:`low_rank` (Denton et al. 2014; Jaderberg et al. 2014): each Dense layer and 1x1 convolution whose
  kernel W (in x out) is replaced by two layers, in -> r -> out, from the truncated SVD of W, where that saves
  parameters; r is given, or the smallest rank keeping ``energy`` of the squared singular values.

The rebuilt models keep every other layer's name and weights; the layers' own config is copied, so they
save to ``.keras`` and fine-tune like any catalog model.
"""

from __future__ import annotations

import math

import keras
import numpy as np

PRUNABLE = ("Conv1D", "Conv2D", "GroupedConv2D", "Conv3D", "Dense")


# ------------------------------------------------------------------------------------- magnitude pruning
def polynomial_sparsity(step: int, final: float, begin_step: int, end_step: int, initial: float = 0.0,
                        power: int = 3) -> float:
    """Zhu & Gupta's schedule: ``initial`` until ``begin_step``, ``final`` from ``end_step`` on, between them
    ``final + (initial - final) * (1 - progress) ** power``."""
    if step <= begin_step:
        return initial
    if step >= end_step:
        return final
    progress = (step - begin_step) / max(end_step - begin_step, 1)
    return final + (initial - final) * (1.0 - progress) ** power


def prunable_kernels(model, min_params: int = 1000) -> list:
    """The kernels :class:`MagnitudePruning` prunes: those of every convolution and Dense layer (nested models
    included) with at least ``min_params`` weights; depthwise kernels and biases are left whole."""
    kernels = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.Model) or type(layer).__name__ not in PRUNABLE:
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and math.prod(kernel.shape) >= min_params and kernel.trainable:
            kernels.append(kernel)
    return kernels


def sparsity(model, min_params: int = 1000) -> float:
    """The share of zeros among the weights of :func:`prunable_kernels`."""
    kernels = prunable_kernels(model, min_params)
    total = sum(math.prod(k.shape) for k in kernels)
    zeros = sum(int(np.sum(np.asarray(k) == 0)) for k in kernels)
    return zeros / max(total, 1)


def magnitude_masks(kernels, target: float, scope: str = "global") -> list:
    """0/1 masks keeping the largest-magnitude weights so that ``target`` of them are zero: over all kernels
    together (``global``) or in each kernel (``layer``)."""
    values = [np.abs(np.asarray(k, np.float32)) for k in kernels]
    if target <= 0:
        return [np.ones_like(v) for v in values]
    if scope == "global":
        flat = np.concatenate([v.ravel() for v in values])
        count = int(round(target * flat.size))
        if count == 0:
            return [np.ones_like(v) for v in values]
        threshold = np.partition(flat, count - 1)[count - 1]
        return [(v > threshold).astype(np.float32) for v in values]
    masks = []
    for v in values:
        count = int(round(target * v.size))
        if count == 0:
            masks.append(np.ones_like(v))
            continue
        order = np.argsort(v, axis=None, kind="stable")
        mask = np.ones(v.size, np.float32)
        mask[order[:count]] = 0.0
        masks.append(mask.reshape(v.shape))
    return masks


class MagnitudePruning(keras.callbacks.Callback):
    """A ``fit`` callback pruning kernels to ``sparsity`` on Zhu & Gupta's schedule and keeping them pruned.

    Args:
        sparsity: the final share of zero weights in (0, 1).
        begin_step, end_step: the optimizer steps over which the sparsity rises (end_step None: the end of
            the first 80% of the run, from ``fit``'s epochs and steps).
        frequency: steps between mask updates (the masks are applied after every step).
        scope: ``global`` (one threshold over all pruned kernels, as the paper) or ``layer``.
        min_params: kernels smaller than this stay dense (the first convolution of most networks).
    """

    def __init__(self, sparsity, begin_step=0, end_step=None, frequency=10, scope="global", min_params=1000):
        super().__init__()
        if not 0.0 < float(sparsity) < 1.0:
            raise ValueError(f"sparsity must be in (0, 1); got {sparsity!r}.")
        if scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer'; got {scope!r}.")
        if not isinstance(frequency, int) or frequency <= 0:
            raise ValueError(f"frequency must be a positive integer; got {frequency!r}.")
        self.final, self.begin_step, self.end_step = float(sparsity), int(begin_step), end_step
        self.frequency, self.scope, self.min_params = frequency, scope, min_params
        self.kernels, self.masks, self.step, self.history = None, None, 0, []

    def on_train_begin(self, logs=None):
        self.kernels = prunable_kernels(self.model, self.min_params)
        if not self.kernels:
            raise ValueError(f"model {self.model.name!r} has no convolution or Dense kernel of {self.min_params} "
                             f"weights or more to prune; lower min_params.")
        if self.end_step is None:
            epochs, steps = self.params.get("epochs") or 1, self.params.get("steps") or 1
            self.end_step = max(self.begin_step + 1, int(0.8 * epochs * steps))
        self.step = int(np.asarray(self.model.optimizer.iterations)) if self.model.optimizer else 0

    def _jax(self):
        return getattr(self.model, "_jax_state", None) is not None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self._jax():  # JAX keeps the step's weights outside the variables until synced
            self.model.jax_state_sync()
        if self.masks is None or (self.step % self.frequency == 0 and self.step <= self.end_step + self.frequency):
            target = polynomial_sparsity(self.step, self.final, self.begin_step, self.end_step)
            self.masks = magnitude_masks(self.kernels, target, self.scope)
            self.history.append((self.step, target))
        for kernel, mask in zip(self.kernels, self.masks):
            kernel.assign(np.asarray(kernel) * mask.astype(kernel.dtype))
        if self._jax():
            self.model._jax_state_synced = True  # the next step starts from the masked variables


# ------------------------------------------------------------------------------------ rebuilding a graph
def _rebuild(model, configs=None, weights=None, replace=None):
    """A new functional model of ``model``'s graph: every layer copied with its config (``configs[name]``
    overrides) and weights (``weights[name]``: a function of the old weight list returning the new one), or,
    for ``replace[name]``, whatever that function of the call's arguments returns."""
    from keras import tree

    from catalog.export import _copy_layer, _is_functional, _model_nodes
    from catalog.saving import RECORD_ATTRIBUTE, record_of

    configs, weights, replace = configs or {}, weights or {}, replace or {}
    tensors, inputs, memo = {}, [], {}
    for t in model.inputs:
        new = keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name)
        tensors[id(t)] = new
        inputs.append(new)
    for node in _model_nodes(model):
        if node.is_input:
            continue
        op = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        if op.name in replace:
            outputs = replace[op.name](*args, **kwargs)
        else:
            if id(op) not in memo:
                if _is_functional(op) or not isinstance(op, keras.layers.Layer):
                    memo[id(op)] = op  # nested models stay shared; keras.ops calls are stateless
                else:
                    memo[id(op)] = _copy_layer(op, configs.get(op.name))
            new_op = memo[id(op)]
            outputs = new_op(*args, **kwargs)
            if new_op is not op and op.weights and not getattr(new_op, "_catalog_weights_set", False):
                values = [np.asarray(v) for v in op.weights]
                values = weights[op.name](values) if op.name in weights else values
                for variable, value in zip(new_op.weights, values):
                    variable.assign(np.asarray(value, dtype=variable.dtype))
                new_op._catalog_weights_set = True
        for old, new in zip(node.outputs, tree.flatten(outputs)):
            tensors[id(old)] = new
    outputs = tree.map_structure(lambda t: tensors[id(t)], model._outputs_struct)
    rebuilt = keras.Model(tree.pack_sequence_as(model._inputs_struct, inputs), outputs, name=model.name)
    if record_of(model) is not None:  # the compressed model takes the same inputs as the one it came from
        object.__setattr__(rebuilt, RECORD_ATTRIBUTE, record_of(model))
    return rebuilt


def _functional(model):
    from catalog.export import _is_functional

    if not _is_functional(model):
        raise ValueError(f"model must be a functional keras.Model; got {type(model).__name__}.")


# ------------------------------------------------------------------------------------------- low rank
def low_rank(model, rank: int | None = None, energy: float | None = None, min_params: int = 1000):
    """``model`` with each Dense layer and 1x1 convolution (ungrouped) of ``min_params`` weights or more
    factored by truncated SVD into ``NAME_svd`` (in -> r, no bias, no activation) and ``NAME`` (r -> out,
    the layer's bias and activation), where r (in + out) < in * out. Give ``rank`` or ``energy`` (the share
    of the squared singular values kept, in (0, 1]). Returns (model, {layer: rank})."""
    _functional(model)
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank (a positive integer) and energy (in (0, 1]).")
    if rank is not None and (not isinstance(rank, int) or rank <= 0):
        raise ValueError(f"rank must be a positive integer; got {rank!r}.")
    if energy is not None and not 0.0 < float(energy) <= 1.0:
        raise ValueError(f"energy must be in (0, 1]; got {energy!r}.")
    replace, ranks = {}, {}
    for layer in model.layers:
        kind = type(layer).__name__
        pointwise = kind == "Conv2D" and tuple(layer.kernel_size) == (1, 1) and layer.groups == 1 \
            and tuple(layer.dilation_rate) == (1, 1)
        if not (kind == "Dense" or pointwise) or math.prod(layer.kernel.shape) < min_params:
            continue
        kernel = np.asarray(layer.kernel, np.float64)
        matrix = kernel.reshape(-1, kernel.shape[-1])
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        if rank is not None:
            r = min(rank, len(s))
        else:
            kept = np.cumsum(s ** 2) / max(np.sum(s ** 2), 1e-30)
            r = int(np.searchsorted(kept, float(energy) - 1e-9) + 1)
        n_in, n_out = matrix.shape
        if r * (n_in + n_out) >= n_in * n_out:
            continue
        root = np.sqrt(s[:r])
        first, second = u[:, :r] * root, (vt[:r].T * root).T
        ranks[layer.name] = r
        replace[layer.name] = _factored(layer, first, second, r, pointwise)
    if not replace:
        raise ValueError(f"no Dense layer or 1x1 convolution of {model.name!r} gets smaller at this rank/energy; "
                         f"lower rank or energy, or min_params.")
    return _rebuild(model, replace=replace), ranks


def _factored(layer, first, second, r, pointwise):
    config = layer.get_config()

    def call(x, **kwargs):
        if pointwise:
            a = keras.layers.Conv2D(r, 1, strides=config["strides"], padding=config["padding"], use_bias=False,
                                    name=f"{layer.name}_svd")
            b = keras.layers.Conv2D(config["filters"], 1, use_bias=config["use_bias"],
                                    activation=config["activation"], name=layer.name)
            shapes = ((1, 1, *first.shape), (1, 1, *second.shape))
        else:
            a = keras.layers.Dense(r, use_bias=False, name=f"{layer.name}_svd")
            b = keras.layers.Dense(config["units"], use_bias=config["use_bias"], activation=config["activation"],
                                   name=layer.name)
            shapes = (first.shape, second.shape)
        y = b(a(x))
        a.kernel.assign(first.reshape(shapes[0]).astype("float32"))
        b.kernel.assign(second.reshape(shapes[1]).astype("float32"))
        if config["use_bias"]:
            b.bias.assign(np.asarray(layer.bias))
        return y

    return call


# ------------------------------------------------------------------------------------ filter pruning
_PASS_THROUGH = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Dropout",
                 "SpatialDropout2D", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "DepthwiseConv2D")


def _consumers(model, tensor):
    """(layer, node) pairs of ``model``'s top level that take ``tensor``; None if a model output is it."""
    if any(tensor is t for t in model.outputs):
        return None
    found = []
    for node in (n for depth in model._nodes_by_depth.values() for n in depth):
        if not node.is_input and any(t is tensor for t in node.input_tensors):
            found.append((node.operation, node))
    return found


def _chain(model, layer):
    """What pruning ``layer``'s output channels touches: (pass-through layers, consumer convs/dense, the
    GlobalAveragePooling before a consumer Dense) or None when the channels reach anything else."""
    through, consumers = [], []
    frontier = [layer.output]
    while frontier:
        tensor = frontier.pop()
        users = _consumers(model, tensor)
        if not users:
            return None  # a model output, or nothing (a dangling feature map)
        for op, node in users:
            kind = type(op).__name__
            if len(op._inbound_nodes) != 1:
                return None  # shared layers keep their channels
            if kind in _PASS_THROUGH or kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
                if kind == "DepthwiseConv2D" and op.depth_multiplier != 1:
                    return None
                if kind.startswith("Global") and op.keepdims:
                    return None
                through.append(op)
                frontier.append(node.outputs[0])
            elif kind == "Conv2D" and op.groups == 1:
                consumers.append(op)
            elif kind == "Dense" and through and type(through[-1]).__name__.startswith("Global"):
                consumers.append(op)
            else:
                return None
    return through, consumers


def prunable_convolutions(model) -> dict:
    """``{conv name: (pass-through layers, consumers)}`` of the convolutions :func:`prune_filters` can shrink."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model) or type(layer).__name__ != "Conv2D" or layer.groups != 1:
            continue
        if len(layer._inbound_nodes) != 1:
            continue
        chain = _chain(model, layer)
        if chain is not None and chain[1]:
            found[layer.name] = chain
    return found


def filter_l1_norms(layer) -> np.ndarray:
    """Li et al.'s ranking: the sum of absolute kernel weights of each output filter."""
    kernel = np.abs(np.asarray(layer.kernel, np.float64))
    return kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)


def prune_filters(model, fraction: float = 0.5, layers=None):
    """``model`` with ``fraction`` of the filters (smallest L1 norm first) removed from each convolution of
    :func:`prunable_convolutions` (or the named ``layers`` among them), and the matching channels removed from
    the BatchNorms, activations, depthwise convolutions and consumers after it. Returns (model,
    {conv: filters kept}). Fine-tune the result: removing filters changes the outputs."""
    _functional(model)
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1) (the share of filters removed); got {fraction!r}.")
    candidates = prunable_convolutions(model)
    if layers is not None:
        unknown = sorted(set(layers) - set(candidates))
        if unknown:
            raise ValueError(f"layers {', '.join(unknown)} cannot be pruned (their output reaches an Add, a "
                             f"Concatenate or the output); prunable: {', '.join(sorted(candidates)) or 'none'}.")
        candidates = {name: candidates[name] for name in layers}
    if not candidates:
        raise ValueError(f"model {model.name!r} has no convolution whose filters can be removed alone.")
    configs, weights, kept = {}, {}, {}
    consumer_keep = {}
    for name, (through, consumers) in candidates.items():
        conv = model.get_layer(name)
        norms = filter_l1_norms(conv)
        count = max(1, int(round(len(norms) * (1.0 - float(fraction)))))
        keep = np.sort(np.argsort(-norms, kind="stable")[:count])
        kept[name] = int(count)
        configs[name] = {"filters": int(count)}
        weights[name] = lambda values, keep=keep: [v[..., keep] for v in values]
        for layer in through:
            weights[layer.name] = _channel_slicer(layer, keep)
        for layer in consumers:
            consumer_keep.setdefault(layer.name, []).append(keep)
    for name, keeps in consumer_keep.items():
        keep = keeps[0]
        previous = weights.get(name)
        weights[name] = _input_slicer(model.get_layer(name), keep, previous)
    return _rebuild(model, configs=configs, weights=weights), kept


def _channel_slicer(layer, keep):
    kind = type(layer).__name__

    def slice_channels(values):
        if kind == "DepthwiseConv2D":  # kernel (h, w, C, 1), bias (C,)
            return [values[0][:, :, keep, :], *[v[keep] for v in values[1:]]]
        return [v[..., keep] if v.ndim else v for v in values]  # BatchNorm / PReLU: per-channel vectors

    return slice_channels


def _input_slicer(layer, keep, previous=None):
    def slice_inputs(values):
        values = previous(values) if previous is not None else values
        kernel = values[0]
        kernel = kernel[keep, :] if kernel.ndim == 2 else kernel[:, :, keep, :]
        return [kernel, *values[1:]]

    return slice_inputs
