"""Export a model for serving (``catalog export``) and fold its BatchNorm layers into their convolutions.

    from catalog.export import export, fold_batch_norm
    folded = fold_batch_norm(model)           # same outputs in inference mode, fewer layers and params
    report = export("runs/r20/model.keras", format="tflite", quantize="int8", calibration="shapes",
                    out="runs/r20/model_int8.tflite")
    report["max_abs_diff"], report["top1_agreement"], report["size_bytes"]

Formats: ``keras`` (a ``.keras`` file with the catalog's input record), ``savedmodel`` (Keras'
``model.export(..., format="tf_saved_model")``) and ``tflite`` (``tf.lite.TFLiteConverter`` from that
SavedModel; ``float16``, ``dynamic`` range or full-integer ``int8`` post-training quantization with a
representative dataset from any ``catalog.datasets`` spec). Every export writes ``PATH.json`` beside the
file: its size, the largest output difference from the Keras model on the same inputs, the top-1
agreement of a classifier, the BatchNorm layers folded, the quantization, the ops left in float and notes.

TensorFlow is imported inside the functions: exporting is TensorFlow's job, and ``import catalog`` stays
light.
"""

from __future__ import annotations

import json
import os
import sys
import types

import numpy as np

FORMATS = ("keras", "savedmodel", "tflite")
QUANTIZATIONS = ("float16", "dynamic", "int8")


# --------------------------------------------------------------------------------------- BatchNorm folding


def _foldable_kind(layer):
    """How ``layer``'s output channels sit in its weights, or None if a following BatchNorm cannot fold into it."""
    from keras import activations, layers

    if getattr(layer, "activation", None) not in (None, activations.linear):
        return None  # an activation inside the layer stands between its affine part and the BatchNorm
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return None
    from catalog.blocks.layers import GroupedConv2D

    # Keras' own classes only (and GroupedConv2D, Conv2D's math): a subclass may change what call() does
    # with the kernel.
    kinds = {GroupedConv2D: "conv", layers.DepthwiseConv1D: "depthwise", layers.DepthwiseConv2D: "depthwise",
             layers.SeparableConv1D: "separable", layers.SeparableConv2D: "separable",
             layers.Conv1DTranspose: "transpose", layers.Conv2DTranspose: "transpose",
             layers.Conv3DTranspose: "transpose", layers.Conv1D: "conv", layers.Conv2D: "conv",
             layers.Conv3D: "conv", layers.Dense: "dense"}
    # depthwise: kernel (..., in, multiplier), channel c * multiplier + m; separable: the pointwise kernel
    # (1, [1,] in * multiplier, out) carries the output channels; transpose: kernel (..., out, in);
    # conv: kernel (..., in / groups, out); dense: kernel (in, out).
    return kinds.get(type(layer))


def _channel_axis(layer, rank: int) -> int:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 1
    return rank - 1


def _model_nodes(model) -> list:
    """The nodes of a functional model in an order where every node comes after those it takes from."""
    return [node for depth in sorted(model._nodes_by_depth, reverse=True) for node in model._nodes_by_depth[depth]]


def _is_functional(op) -> bool:
    import keras

    return isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth") and not isinstance(op, keras.Sequential)


def foldable_pairs(model) -> dict:
    """``{BatchNorm layer name: the layer it folds into}`` for the top level of the functional ``model``.

    A BatchNorm folds into the convolution, depthwise or separable convolution, transposed convolution or
    Dense layer it directly follows when that layer has no activation of its own, normalizes along that
    layer's output channels, and is the only consumer of that layer's output at every call (a shared pair
    folds once, as it is called together).
    """
    from keras import layers

    nodes = [n for n in _model_nodes(model) if not n.is_input]
    node_ids = {id(n) for n in nodes}
    producer = {id(t): n for n in nodes for t in n.outputs}
    consumers = {}
    for node in nodes:
        for t in node.input_tensors:
            consumers.setdefault(id(t), []).append(node)
    outputs = {id(t) for t in model.outputs}
    by_op = {}
    for node in nodes:
        by_op.setdefault(id(node.operation), []).append(node)
    pairs = {}
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, layers.BatchNormalization) or bn.name in pairs:
            continue
        partners = set()
        for bn_node in by_op[id(bn)]:
            inputs = bn_node.input_tensors
            source = producer.get(id(inputs[0])) if len(inputs) == 1 else None
            partners.add(id(source.operation) if source is not None else None)
        if len(partners) != 1 or None in partners:
            continue
        source_node = producer[id(node.input_tensors[0])]
        layer = source_node.operation
        kind = _foldable_kind(layer)
        if kind is None:
            continue
        rank = len(node.input_tensors[0].shape)
        axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
        if axis is None or axis % rank != (rank - 1 if kind == "dense" else _channel_axis(layer, rank)):
            continue
        layer_nodes = by_op[id(layer)]
        if len(layer_nodes) != len(by_op[id(bn)]):
            continue
        if any(id(n) not in node_ids for n in (*layer._inbound_nodes, *bn._inbound_nodes)):
            continue  # also called outside this model: folding here would change it there
        if any(len(n.outputs) != 1 or id(n.outputs[0]) in outputs
               or [c.operation for c in consumers.get(id(n.outputs[0]), [])] != [bn] for n in layer_nodes):
            continue
        pairs[bn.name] = layer
    return pairs


def _folded_weights(layer, bn, kind):
    """The (kernel name, kernel, bias) of ``layer`` with ``bn`` (inference form) folded in, in float64."""
    eps = float(bn.epsilon)
    variance = np.asarray(bn.moving_variance.numpy(), np.float64)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.gamma is not None else np.ones_like(mean)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.beta is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + eps)
    name = "pointwise_kernel" if kind == "separable" else "kernel"
    kernel = np.asarray(getattr(layer, name).numpy(), np.float64)
    bias = np.asarray(layer.bias.numpy(), np.float64) if layer.bias is not None else np.zeros_like(mean)
    if kind == "depthwise":
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    elif kind == "transpose":
        kernel = kernel * scale[:, None]
    else:
        kernel = kernel * scale
    return name, kernel, (bias - mean) * scale + beta


def _copy_layer(layer, config=None):
    """A new layer of ``layer``'s class and config (``config`` overrides), or ``layer`` itself if its class
    cannot rebuild it from its config."""
    try:
        return type(layer).from_config({**layer.get_config(), **(config or {})})
    except Exception:  # noqa: BLE001 - a layer that cannot be rebuilt is shared instead (exact, not a copy)
        if config:
            raise
        return layer


def fold_batch_norm(model):
    """An equivalent functional model, in inference form, with every BatchNorm that directly follows a
    convolution (plain, grouped, depthwise, separable: its pointwise part, transposed) or a Dense layer
    folded into that layer's kernel and bias.

    The folded layer keeps its name and gains ``use_bias=True``; the BatchNorm disappears. Everything else
    is copied with its weights (nested functional models, such as a task model's ``features_only``
    backbone, are folded the same way; shared layers stay shared). The names of the folded BatchNorm
    layers, ``backbone/stage1_block1_bn1`` for a nested model's, are in ``folded.catalog_folded_bn``.
    Outputs agree with ``model(x, training=False)`` to float32 rounding.

    Args:
        model: a functional ``keras.Model`` (a Sequential model is taken as its functional form).
    """
    import keras

    if isinstance(model, keras.Sequential):
        model = model._functional if getattr(model, "_functional", None) is not None else model
    if not _is_functional(model):
        raise ValueError(f"model must be a functional keras.Model; got {type(model).__name__}.")
    return _fold(model, memo={})


def _fold(model, memo):
    import keras
    from keras import tree

    pairs = foldable_pairs(model)
    folded_into = {id(layer): name for name, layer in pairs.items()}
    bn_ids = {id(layer) for layer in model.operations if layer.name in pairs}
    folded = [name for name in pairs]
    tensors = {}
    new_inputs = []
    for t in model.inputs:
        source = t._keras_history.operation
        new = keras.Input(batch_shape=t.shape, dtype=t.dtype, sparse=getattr(t, "sparse", False), name=source.name)
        tensors[id(t)] = new
        new_inputs.append(new)
    pending = {}  # new layer id -> (old layer, weights to set once it is built)
    for node in _model_nodes(model):
        if node.is_input:
            continue
        op = node.operation
        if id(op) in bn_ids:
            tensors[id(node.outputs[0])] = tensors[id(node.input_tensors[0])]
            continue
        if id(op) not in memo:
            if _is_functional(op):
                inner = _fold(op, memo)
                folded += [f"{op.name}/{name}" for name in inner.catalog_folded_bn]
                memo[id(op)] = inner
            elif id(op) in folded_into:
                bn = {layer.name: layer for layer in model.operations}[folded_into[id(op)]]
                memo[id(op)] = _copy_layer(op, {"use_bias": True})
                pending[id(memo[id(op)])] = ("folded", op, bn)
            elif isinstance(op, keras.layers.Layer):
                memo[id(op)] = _copy_layer(op)
                if memo[id(op)] is not op and op.weights:
                    pending[id(memo[id(op)])] = ("copy", op, None)
            else:
                memo[id(op)] = op  # a keras.ops operation (``x + 1``): stateless, called again
        new_op = memo[id(op)]
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = new_op(*args, **kwargs)
        for old, new in zip(node.outputs, tree.flatten(outputs)):
            tensors[id(old)] = new
        if id(new_op) in pending:
            how, old_layer, bn = pending.pop(id(new_op))
            if how == "folded":
                kind = _foldable_kind(old_layer)
                name, kernel, bias = _folded_weights(old_layer, bn, kind)
                for variable in old_layer.weights:
                    if not any(variable is getattr(old_layer, n, None) for n in (name, "bias")):
                        _variable(new_op, variable, old_layer).assign(variable.numpy())
                getattr(new_op, name).assign(kernel.astype(getattr(new_op, name).dtype))
                new_op.bias.assign(bias.astype(new_op.bias.dtype))
            else:
                _copy_weights(old_layer, new_op)
    outputs = tree.map_structure(lambda t: tensors[id(t)], model._outputs_struct)
    inputs = tree.pack_sequence_as(model._inputs_struct, new_inputs)
    result = keras.Model(inputs=inputs, outputs=outputs, name=model.name)
    renamed = {name: layer.name for name, layer in pairs.items()}
    stages = getattr(model, "catalog_stage_outputs", None)
    if stages:
        result.catalog_stage_outputs = [renamed.get(name, name) for name in stages]
    result.catalog_folded_bn = folded
    return result


def _variable(layer, variable, old_layer):
    """The variable of ``layer`` (a copy of ``old_layer``) that corresponds to ``old_layer``'s ``variable``."""
    index = [v is variable for v in old_layer.weights].index(True)
    return layer.weights[index]


def _copy_weights(source, target):
    values = [v.numpy() for v in source.weights]
    if len(target.weights) != len(values):
        raise ValueError(f"layer {source.name} could not be copied: its copy has {len(target.weights)} weights, "
                         f"it has {len(values)}.")
    for variable, value in zip(target.weights, values):
        variable.assign(value)


def _all_layers(model):
    """Every layer of ``model`` and of the models nested in it."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


# ------------------------------------------------------------------------------------------------- export


def export(model, format: str = "keras", out=None, *, quantize: str | None = None, calibration: str | None = None,
           num_calibration: int = 100, num_compare: int = 32, fold_bn: bool | None = None,
           weights: str | None = None, num_classes: int | None = None, split: str | None = None,
           data_dir: str | None = None, preprocessing: str | None = None, seed: int = 0,
           per_channel: bool = True, verbose: int = 1) -> dict:
    """Export ``model`` to ``out`` as ``format``; write ``out + ".json"`` beside it and return that report.

    Args:
        model: a keras.Model, a ``.keras`` file, or a registered name (built with ``weights``; without
            them its weights are random, which the report says).
        format: ``keras`` (a ``.keras`` file with the input record), ``savedmodel`` (a folder, through
            Keras' ``model.export(..., format="tf_saved_model")``) or ``tflite`` (a ``.tflite`` file).
        out: the file (folder for ``savedmodel``) to write.
        quantize: TFLite only: None (float32), ``float16`` (float16 weights), ``dynamic`` (int8 weights,
            float activations) or ``int8`` (full-integer post-training quantization calibrated on
            ``calibration``; an op the converter cannot take in int8 stays float, and the report lists them).
        calibration: a ``catalog.datasets`` spec (``shapes``, ``folder:PATH``, ...): its ``train`` split
            calibrates int8, and its held-out split (``split``) gives the images the export is compared on.
            None: the comparison uses generated uniform-noise images.
        num_calibration: images for the int8 representative dataset.
        num_compare: images the exported model and the Keras model are compared on.
        fold_bn: fold BatchNorm into the preceding convolutions (:func:`fold_batch_norm`); default True for
            ``savedmodel`` and ``tflite``, False for ``keras``.
        weights: a local weights file for a registered name.
        num_classes: classes of a registered name (default: its card's).
        split: the split of ``calibration`` to compare on (default: its evaluation split).
        data_dir: TFDS data folder for ``tfds:`` specs.
        preprocessing: pixel scaling of the data (default: the model's record, else its card's).
        seed: order of the data and of the generated images.
        per_channel: ``int8`` only: one scale per output channel of each weight (TFLite's default, the most
            accurate) or, with False, one per weight tensor: the flatbuffer then drops the per-channel scales
            (float32) and zero points (int64) of the weights and biases, 24 bytes a channel: mobilenet_v2's
            int8 file goes from 30.6% to 26.0% of the float file (docs/performance.md), at the cost of larger
            rounding errors where a layer's channels differ in range (depthwise convolutions after folding).
        verbose: 1 prints the report's main lines.

    Returns: the report (also written to ``out + ".json"``): ``path``, ``format``, ``size_bytes``,
    ``quantize``, ``max_abs_diff``, ``output_scale``, ``max_rel_diff``, ``top1_agreement`` (classifiers),
    ``compared_on``, ``bn_folded``, ``bn_folded_layers``, ``params`` (Keras, exported), ``float_ops``
    (int8), ``random_weights``, ``notes``.

    Raises:
        ValueError: a bad format, quantization, output path or model, or an export that fails (naming the
            layer where the error names one). FileNotFoundError: a missing model file.
    """
    import time

    start = time.time()
    out = check_options(format, out, quantize, calibration, num_calibration, num_compare, per_channel)
    fold_bn = format != "keras" if fold_bn is None else bool(fold_bn)

    keras_model, record, name, notes, random = _resolve(model, weights, num_classes)
    from catalog.scoring import input_settings

    preprocessing, crop_fraction, setting_notes = input_settings(
        name if name is not None and not record else keras_model, record, preprocessing)
    notes += setting_notes
    if random:
        notes.insert(0, "the model's weights are random (built without weights and not trained since): its "
                        "outputs mean nothing; the sizes and differences are still measured.")
    shape = tuple(keras_model.input_shape) if not isinstance(keras_model.input_shape, list) else None
    if shape is None or len(shape) != 4 or None in shape[1:]:
        raise ValueError(f"export needs a model with one image input of fixed size (batch, height, width, "
                         f"channels); {keras_model.name} takes {keras_model.input_shape}.")
    task = (record or {}).get("task") or _card_task(name) or "classification"

    compare, compared_on = _images(shape[1:], calibration, num_compare, split, task, preprocessing,
                                   crop_fraction, data_dir, seed, held_out=True)
    folded_names = []
    exported_model = _without_training_state(keras_model)
    if fold_bn:
        exported_model = fold_batch_norm(keras_model)
        folded_names = exported_model.catalog_folded_bn

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    float_ops = None
    if format == "keras":
        from catalog.saving import RECORD_KEYS, load_model, save_model

        kept = {k: v for k, v in (record or {}).items() if k not in RECORD_KEYS[:3] + ("channels",)}
        kept.setdefault("model_name", name)
        kept.setdefault("task", task)
        kept["bn_folded"] = len(folded_names)
        save_model(exported_model, out, preprocessing=preprocessing, crop_fraction=crop_fraction, **kept)
        reloaded = load_model(out)
        exported = _batched(lambda x: reloaded(x, training=False), compare)
    elif format == "savedmodel":
        _export_saved_model(exported_model, out)
        exported = _run_saved_model(out, compare)
    else:
        representative = None
        if quantize == "int8":
            representative, calibrated_on = _images(shape[1:], calibration, num_calibration, "train", task,
                                                    preprocessing, crop_fraction, data_dir, seed, held_out=False)
            notes.append(f"int8 calibrated on {calibrated_on}.")
        if quantize == "int8" and not per_channel:
            notes.append("int8 weights quantized per tensor (one scale per weight), not per channel.")
        content, convert_notes = _convert_tflite(exported_model, quantize, representative, per_channel)
        notes += convert_notes
        with open(out, "wb") as f:
            f.write(content)
        exported, float_ops = _run_tflite(content, compare, keras_model)
        if quantize == "int8":
            if float_ops:
                notes.append(f"{len(float_ops)} ops stayed float32 because the converter could not take them "
                             f"in int8 (float_ops lists them).")
            else:
                notes.append("every op is int8 (the float32 input is quantized on entry and the outputs "
                             "dequantized on exit).")
    reference = _batched(lambda x: keras_model(x, training=False), compare)
    report = _report(format, out, quantize, fold_bn, folded_names, keras_model, exported_model, reference, exported,
                     compared_on, task, float_ops, random, notes, name, preprocessing, time.time() - start)
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=2)
    if verbose:
        _print_report(report)
    return report


def check_options(format, out, quantize=None, calibration=None, num_calibration=100, num_compare=32,
                  per_channel=True) -> str:
    """Check :func:`export`'s settings before anything is loaded; return ``out`` expanded."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} or None; got {quantize!r}.")
    if quantize is not None and format != "tflite":
        raise ValueError(f"quantize applies to format 'tflite' only; got format {format!r} with quantize {quantize!r}.")
    if not per_channel and quantize != "int8":
        raise ValueError(f"per-tensor weights (per_channel=False, --per-tensor) apply to quantize 'int8' only; "
                         f"got quantize {quantize!r}.")
    if quantize == "int8" and calibration is None:
        raise ValueError("quantize 'int8' needs calibration: a catalog.datasets spec of images like the model's "
                         "inputs, such as 'shapes' or 'folder:PATH'.")
    for option, value in (("num_calibration", num_calibration), ("num_compare", num_compare)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{option} must be a positive integer; got {value!r}.")
    if out is None:
        raise ValueError("out must name the file (a folder for savedmodel) to write.")
    out = os.path.expanduser(os.fspath(out)).rstrip("/") or "/"
    suffix = {"keras": ".keras", "tflite": ".tflite"}.get(format)
    if suffix and not out.endswith(suffix):
        raise ValueError(f"out must end in {suffix} for format {format!r}; got {out!r}.")
    if format == "savedmodel" and os.path.isfile(out):
        raise ValueError(f"out {out} is a file; format 'savedmodel' writes a folder.")
    return out


def _without_training_state(model):
    """``model``'s graph and layers as a new, uncompiled functional model: a ``.keras`` file of it carries
    no optimizer state (a third of the file after Adam)."""
    import keras

    if not _is_functional(model) or getattr(model, "optimizer", None) is None:
        return model
    inputs = model._inputs_struct
    copy = keras.Model(inputs, model._outputs_struct, name=model.name)
    for key in ("catalog_stage_outputs",):
        if getattr(model, key, None) is not None:
            setattr(copy, key, getattr(model, key))
    return copy


def _card_task(name):
    if name is None:
        return None
    from catalog.registry import get_entry

    return get_entry(name).task


def _resolve(model, weights, num_classes):
    """(keras model, record, registered name, notes, random weights) of an ``export`` argument."""
    import keras

    from catalog.registry import create_model, has_random_weights, list_models
    from catalog.saving import load_model, read_record

    if isinstance(model, keras.Model):
        if weights is not None or num_classes is not None:
            raise ValueError("weights and num_classes apply to a registered name, not to a keras.Model.")
        return model, None, None, [], has_random_weights(model)
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a keras.Model, a .keras file or a registered name; "
                         f"got {type(model).__name__}.")
    text = os.fspath(model)
    if text.endswith(".keras") or os.sep in text or os.path.exists(os.path.expanduser(text)):
        if weights is not None or num_classes is not None:
            raise ValueError(f"weights and num_classes apply to a registered name, not to the model file {text}.")
        record = read_record(os.path.expanduser(text))
        return load_model(text), record, None, [], False
    if text not in list_models():
        raise ValueError(f"model must be a .keras file or a registered name (see `catalog list`); got {text!r}.")
    kwargs = {"weights": weights} if weights is not None else {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if weights is not None and not os.path.isfile(os.path.expanduser(os.fspath(weights))):
        raise FileNotFoundError(f"weights file {weights} does not exist.")
    return create_model(text, **kwargs), None, text, [], weights is None


def _images(image_shape, spec, count, split, task, preprocessing, crop_fraction, data_dir, seed, held_out):
    """(float32 images (count, H, W, C), what they are) from ``spec``, or generated when ``spec`` is None."""
    import tensorflow as tf

    height, width, channels = image_shape
    if spec is None:
        from catalog.datasets.transforms import normalize

        pixels = np.random.default_rng(seed).uniform(0, 255, (count, height, width, channels)).astype("float32")
        images = np.asarray(normalize(tf.constant(pixels), preprocessing), np.float32)
        return images, f"{count} generated uniform-noise images (preprocessing {preprocessing})"
    from catalog import datasets

    if held_out and split is None:
        split = datasets.evaluation_split(spec, data_dir=data_dir)
    load_task = task if task in ("classification", "detection", "segmentation") else "classification"
    options = dict(num_images=max(count, 8)) if spec.split(":")[0] == "shapes" else {}
    ds, _ = datasets.load(spec, split=split, task=load_task, image_size=(height, width), batch_size=1,
                          data_dir=data_dir, seed=seed, preprocessing=preprocessing, crop_fraction=crop_fraction,
                          shuffle=False, channels=channels, **options)
    images = [np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch["image"], np.float32)
              for batch in ds.take(count)]
    if not images:
        raise ValueError(f"calibration {spec!r} split {split!r} holds no images.")
    images = np.concatenate(images)
    return images, f"{len(images)} images of {spec} split {split}"


def _batched(fn, images, batch_size=16):
    """``fn`` over ``images`` in batches; the outputs flattened (dict outputs in key order), as numpy."""
    from keras import tree

    parts = [[np.asarray(o) for o in tree.flatten(fn(images[i:i + batch_size]))]
             for i in range(0, len(images), batch_size)]
    return [np.concatenate(p) for p in zip(*parts)]


def _export_saved_model(model, path):
    try:
        model.export(path, format="tf_saved_model", verbose=False)
    except Exception as err:  # noqa: BLE001 - said as one sentence naming the layer
        raise ValueError(_blame(model, err, "SavedModel")) from None


def _run_saved_model(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    return _batched(lambda x: loaded.serve(tf.constant(x)), images)


def _convert_tflite(model, quantize, representative, per_channel=True):
    """(flatbuffer bytes, notes) of ``model`` through a SavedModel and ``tf.lite.TFLiteConverter``."""
    import tempfile

    import tensorflow as tf

    notes = []
    with tempfile.TemporaryDirectory() as folder:
        saved = os.path.join(folder, "saved_model")
        _export_saved_model(model, saved)

        def converter(ops=None):
            c = tf.lite.TFLiteConverter.from_saved_model(saved)
            if quantize is not None:
                c.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                c.target_spec.supported_types = [tf.float16]
            if quantize == "int8":
                c.representative_dataset = lambda: ([representative[i:i + 1]] for i in range(len(representative)))
                # the converter's switch for per-tensor weights (no public spelling in TensorFlow 2.21)
                c._experimental_disable_per_channel = not per_channel
            if ops is not None:
                c.target_spec.supported_ops = ops
            return c

        try:
            if quantize == "int8":
                try:  # full integer first; float only where the converter says it must
                    return _quietly(converter([tf.lite.OpsSet.TFLITE_BUILTINS_INT8]).convert), notes
                except Exception as err:  # noqa: BLE001
                    notes.append(f"full-integer conversion failed ({_first_line(err)}); converted again with "
                                 f"float fallback for the ops the converter cannot take in int8.")
            return _quietly(converter().convert), notes
        except Exception as err:  # noqa: BLE001 - said as one sentence naming the layer
            raise ValueError(_blame(model, err, "TFLite")) from None


def _quietly(fn):
    """``fn()`` with the process's stderr closed: the converter's C++ side prints its MLIR dumps and
    progress there; its errors reach us in the exception."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        return fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _run_tflite(content, images, keras_model):
    """(outputs in Keras' flattened order, ops computed in float32 or None) of a TFLite flatbuffer."""
    interpreter = _interpreter(content)
    signatures = interpreter.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    runner = interpreter.get_signature_runner(key)
    (input_name,) = runner.get_input_details()
    # One image at a time, as a phone runs it; stderr closed for the runtime's "Created XNNPACK delegate".
    outputs = _quietly(lambda: [runner(**{input_name: images[i:i + 1]}) for i in range(len(images))])
    names = _output_order(sorted(outputs[0]), keras_model)
    flat = [np.concatenate([np.asarray(o[n]) for o in outputs]) for n in names]
    plain = _interpreter(content, delegates=False)  # XNNPACK would hide the ops inside one DELEGATE op
    plain.allocate_tensors()
    return flat, _float_ops(plain)


def _interpreter(content, delegates=True):
    """A TFLite interpreter of ``content`` (the deprecation warning of ``tf.lite.Interpreter`` silenced)."""
    import warnings

    import tensorflow as tf

    resolver = tf.lite.experimental.OpResolverType
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_content=content, experimental_op_resolver_type=(
            resolver.AUTO if delegates else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES))


def _output_order(names, keras_model):
    """The signature's output names in the order ``keras.tree.flatten`` gives the Keras model's outputs."""
    if isinstance(keras_model.output, dict):
        return sorted(names)  # the signature keeps the dict's keys; tree.flatten sorts them
    return sorted(names, key=lambda n: int(n.rsplit("_", 1)[-1]) if n.rsplit("_", 1)[-1].isdigit() else n)


def _float_ops(interpreter) -> list[str]:
    """``OP_NAME -> output tensor`` for every op of a quantized flatbuffer that computes in float32 (the
    boundary QUANTIZE/DEQUANTIZE ops excepted); [] when there are none."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outs = [tensors[i] for i in op["outputs"] if i >= 0 and i in tensors]
        if any(t["dtype"] == np.float32 for t in outs):
            found.append(f"{op['op_name']} -> {outs[0]['name']}")
    return found


def _first_line(err) -> str:
    """The converter's own complaint in ``err``: its first error line without the op's location."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line and not line.rstrip().endswith("'main':")]
    line = errors[0] if errors else (lines[0] if lines else type(err).__name__)
    while "loc(" in line:  # drop ``loc(callsite(fused[...]))``, balanced
        start = line.index("loc(")
        depth, end = 0, len(line)
        for i in range(start + 3, len(line)):
            depth += {"(": 1, ")": -1}.get(line[i], 0)
            if depth == 0:
                end = i + 1
                break
        line = line[:start] + line[end:]
    line = line.rsplit("error:", 1)[-1].strip(" :")
    return line[:300].rstrip(".")


def _blame(model, err, what) -> str:
    """One sentence: which layer of ``model`` the converter's error ``err`` names, and the error."""
    import re

    from keras import layers as keras_layers

    text = str(err)
    found = {layer.name: layer for layer in _all_layers(model) if not isinstance(layer, keras_layers.InputLayer)}
    hit = None
    # The converter locates an op by its TensorFlow name: ``model_1/layer_1/Op@function``; the deepest
    # component that is a layer name (less the ``_1`` suffix of a name scope) is the culprit.
    for path in re.findall(r'"([^"\s]+/[^"\s]+)"', text):
        named = []
        for part in path.split("@")[0].split("/"):
            name = part if part in found else re.sub(r"_\d+$", "", part)
            if name in found:
                named.append(name)
        if named:
            hit = named[-1]
            break
    if hit is None:
        hit = next((name for name in sorted(found, key=len, reverse=True)
                    if re.search(rf"(^|[/\"'\s(\[]){re.escape(name)}(_\d+)?([/\"'\s:@)\]]|$)", text)), None)
    where = (f"at layer {hit} ({type(found[hit]).__name__})" if hit is not None
             else "at a layer the converter did not name")
    return f"{what} export of {model.name} failed {where}: {_first_line(err)}."


def _size(path) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _report(format, out, quantize, fold_bn, folded, keras_model, exported_model, reference, exported, compared_on,
            task, float_ops, random, notes, name, preprocessing, seconds) -> dict:
    if len(reference) != len(exported) or any(a.shape != b.shape for a, b in zip(reference, exported)):
        raise ValueError(f"the exported model's outputs {[b.shape for b in exported]} differ in shape from the "
                         f"Keras model's {[a.shape for a in reference]}.")
    diffs = [float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
             for a, b in zip(reference, exported)]
    scale = max((float(np.max(np.abs(a))) if a.size else 0.0) for a in reference)
    top1 = None
    if task == "classification" and len(reference) == 1 and reference[0].ndim == 2 and reference[0].shape[1] > 1:
        top1 = float(np.mean(np.argmax(reference[0], -1) == np.argmax(exported[0], -1)))
    return {
        "path": os.path.abspath(out), "format": format, "size_bytes": _size(out), "quantize": quantize,
        "model": name or keras_model.name, "input_shape": list(keras_model.input_shape[1:]),
        "preprocessing": preprocessing, "compared_on": compared_on,
        "max_abs_diff": max(diffs), "output_scale": scale, "max_rel_diff": max(diffs) / scale if scale else 0.0,
        "top1_agreement": top1, "fold_bn": fold_bn, "bn_folded": len(folded), "bn_folded_layers": list(folded),
        "params": {"keras": int(keras_model.count_params()), "exported": int(exported_model.count_params())},
        "float_ops": float_ops if quantize == "int8" else None, "random_weights": bool(random),
        "notes": notes, "seconds": round(seconds, 1),
    }


def _print_report(report):
    size = report["size_bytes"]
    print(f"Exported {report['model']} to {report['path']} ({report['format']}"
          f"{', ' + report['quantize'] if report['quantize'] else ''}): {size:,} bytes ({size / 2 ** 20:.2f} MiB)")
    print(f"  max |exported - keras| = {report['max_abs_diff']:.3g} (output scale {report['output_scale']:.3g}, "
          f"relative {report['max_rel_diff']:.3g}) on {report['compared_on']}")
    if report["top1_agreement"] is not None:
        print(f"  top-1 agreement with the Keras model: {report['top1_agreement']:.3f}")
    if report["fold_bn"]:
        print(f"  BatchNorm layers folded: {report['bn_folded']} (params {report['params']['keras']:,} -> "
              f"{report['params']['exported']:,})")
    if report["float_ops"]:
        print(f"  ops left in float32: {len(report['float_ops'])} ({', '.join(report['float_ops'][:5])}"
              f"{', ...' if len(report['float_ops']) > 5 else ''})")
    for note in report["notes"]:
        print(f"  note: {note}")
    print(f"  report: {report['path']}.json")


class _CallableModule(types.ModuleType):
    """``catalog.export`` is this module (Python sets a package's attribute to its submodule on import), so
    calling the module calls :func:`export`: ``catalog.export("model.keras", format="tflite", ...)``."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
