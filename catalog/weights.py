"""Weight files into catalog models: the catalog's own files, keras.applications' legacy HDF5 files and
torchvision/timm checkpoints, mapped by structure, with a new head, other input channels and one log line
per decision.

Formats (:func:`file_format`):

format          files                                        how they map
"keras"         ``.keras``, Keras 3 ``.weights.h5``          by layer name (a model saved from the catalog)
"keras_legacy"  keras.applications' ``*_tf_kernels*.h5``      by structure, through the keras.applications graph
"safetensors"   timm / torchvision ``.safetensors``          by structure, through the torchvision names
"torch"         ``.pth`` / ``.pt`` / ``.bin``                 as safetensors, read with torch (when installed)

Structural mapping (keras.applications files): a legacy file stores arrays by layer, in the order of the
layers of the keras.applications model that wrote it, under names that are not stable (``conv2d_37``). So
the loader builds that keras.applications model (``weights=None``, no download), loads the file into it
with Keras' own legacy loader (exactly how keras.applications loads its files), and matches the two
functional graphs: walking back from the outputs, layers without weights are looked through, every layer
with weights must meet one of the same kind and shapes (a 1x1 convolution and a Dense layer are one kind),
the inputs of a ``Concatenate`` pair in order and those of other merges (``Add``, ``Multiply``) by the
structure above them. What the catalog's layout does not have is folded exactly: a convolution's bias
before BatchNorm into the moving mean, another BatchNorm epsilon into the moving variance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile

log = logging.getLogger("catalog.weights")

# Weighted-layer kinds whose variables correspond by name across Keras layer classes.
_MERGE_ORDERED = ("Concatenate",)


def _expand(path) -> str:
    return os.path.expanduser(os.fspath(path))


def file_format(path) -> str:
    """``"keras"``, ``"keras_legacy"``, ``"safetensors"`` or ``"torch"`` for a weights file (see module doc).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an extension or an HDF5 layout the catalog does not read, or an unreadable file.
    """
    path = _expand(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist.")
    lower = path.lower()
    if lower.endswith(".keras"):
        return "keras"
    if lower.endswith(".safetensors"):
        return "safetensors"
    if lower.endswith((".pth", ".pt", ".bin")):
        return "torch"
    if lower.endswith((".h5", ".hdf5")):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                if "layer_names" in handle.attrs or "model_weights" in handle:
                    return "keras_legacy"
                if "layers" in handle or "vars" in handle:
                    return "keras"
        except OSError as err:
            raise ValueError(f"weights file {path} could not be loaded: it is not a readable HDF5 file "
                             f"({_first_line(err)}).") from None
        raise ValueError(f"weights file {path} is an HDF5 file without Keras weights (neither a Keras "
                         f".weights.h5 nor a keras.applications legacy file).")
    raise ValueError(f"weights file {path} must end in .keras, .weights.h5, .h5 (keras.applications), "
                     f".safetensors or .pth.")


def _first_line(err) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


# ------------------------------------------------------------------------------------- graph matching


def _parents(layer) -> list:
    """The layers whose outputs ``layer`` takes, in argument order."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    return [t._keras_history.operation for t in nodes[0].input_tensors]


def _kernel_kind(layer):
    """The kind and shapes of a weighted layer: what must agree for two layers to share weights."""
    from keras import layers

    if isinstance(layer, layers.BatchNormalization):
        return ("bn", int(layer.moving_mean.shape[0]))
    if isinstance(layer, layers.DepthwiseConv2D):
        return ("dwconv", tuple(layer.kernel.shape), tuple(layer.strides))
    if isinstance(layer, layers.SeparableConv2D):
        return ("sepconv", tuple(layer.depthwise_kernel.shape), tuple(layer.pointwise_kernel.shape),
                tuple(layer.strides))
    if isinstance(layer, layers.Conv2D):
        shape = tuple(layer.kernel.shape)
        if shape[:2] == (1, 1) and tuple(layer.strides) == (1, 1):
            return ("linear", shape[2], shape[3])  # per-pixel, as a Dense layer on a feature map
        return ("conv", shape, tuple(layer.strides))
    if isinstance(layer, layers.Dense):
        return ("linear",) + tuple(layer.kernel.shape)
    return (type(layer).__name__,) + tuple(tuple(w.shape) for w in layer.weights)


def _without_input_channels(kind):
    """``kind`` with the input-channel count left out (a first layer may adapt RGB weights)."""
    if kind[0] == "conv":
        return ("conv", kind[1][:2] + ("in",) + kind[1][3:], kind[2])
    if kind[0] == "linear":
        return ("linear", "in", kind[2])
    if kind[0] == "Normalization":
        return ("Normalization", "in")
    return kind


def adapt_input_channels(array, channels: int, name: str):
    """A first layer's weights for another number of input channels (timm's rule): a kernel's RGB slices
    summed for one channel, else repeated and scaled by 3/N; a Normalization's mean and std averaged."""
    import numpy as np

    if name in ("mean", "variance"):
        values = array if name == "mean" else np.sqrt(array)
        out = np.full((channels,), values.mean(), "float32") if channels == 1 else np.resize(values, (channels,))
        return out if name == "mean" else out ** 2
    found = array.shape[-2]
    if channels == 1:
        return array.sum(axis=-2, keepdims=True)
    reps = -(-channels // found)
    return (np.concatenate([array] * reps, axis=-2)[..., :channels, :] * (found / channels)).astype(array.dtype)


class Graph:
    """A functional model seen as its weighted layers and merges; others are looked through."""

    def __init__(self, model):
        from keras import layers

        self.model = model
        self.kind, self.inputs, self.code = {}, {}, {}
        self.input_adjacent = set()  # weighted layers that see the input's channels: their count may differ
        for layer in _operations(model):
            parents = _parents(layer)
            resolved = [self.resolve(p) for p in parents]
            if isinstance(layer, layers.InputLayer) or not parents:
                kind = ("input",)
            elif getattr(layer, "weights", None):
                kind = _kernel_kind(layer)
                if all(self.kind[p.name][0] == "input" or (p.name in self.input_adjacent
                       and self.kind[p.name][0] == "Normalization") for p in resolved):
                    self.input_adjacent.add(layer.name)
                    kind = _without_input_channels(kind)
            elif len(parents) > 1:
                kind = ("concat",) if type(layer).__name__ in _MERGE_ORDERED else ("merge",)
            else:
                kind = None
            if kind is None:  # looked through: stands for what it takes
                self.code[layer.name] = self.code[resolved[0].name]
                self.inputs[layer.name] = resolved
                continue
            if kind[0] == "merge":
                resolved = sorted(resolved, key=lambda p: self.code[p.name])
            self.kind[layer.name] = kind
            self.inputs[layer.name] = resolved if kind[0] != "input" else []
            self.code[layer.name] = hash((kind, tuple(self.code[p.name] for p in self.inputs[layer.name])))
        self._through = {}

    def resolve(self, layer):
        """The nearest weighted layer, merge or input at or above ``layer``."""
        while layer.name not in self.kind:
            layer = self.inputs[layer.name][0]
        return layer

    def by_code(self) -> dict:
        table = {}
        for name, code in self.code.items():
            if name in self.kind:
                table.setdefault(code, []).append(name)
        return table


class StructureMismatch(ValueError):
    """Two graphs disagree; the message names the layers and their kinds."""


def match_graphs(source, target, starts) -> dict:
    """``{target layer name: source layer name}`` for every weighted layer reached from ``starts``.

    ``starts`` are ``(source layer, target layer)`` pairs of corresponding outputs.
    """
    pairs, mapped, work = {}, {}, [(source.resolve(s), target.resolve(t)) for s, t in starts]
    while work:
        s, t = work.pop()
        if t.name in mapped:
            if mapped[t.name] != s.name:
                raise StructureMismatch(f"layer {t.name} corresponds to both {mapped[t.name]} and {s.name} "
                                        f"of the file's model")
            continue
        ks, kt = source.kind[s.name], target.kind[t.name]
        if ks != kt:
            raise StructureMismatch(f"layer {t.name} {_describe(kt)} meets {s.name} {_describe(ks)} in the "
                                    f"file's model")
        mapped[t.name] = s.name
        if kt[0] not in ("merge", "concat", "input"):
            pairs[t.name] = s.name
        ins, int_ = source.inputs[s.name], target.inputs[t.name]
        if len(ins) != len(int_):
            raise StructureMismatch(f"layer {t.name} takes {len(int_)} inputs, {s.name} of the file's model "
                                    f"{len(ins)}")
        work.extend(zip(ins, int_))
    return pairs


def _describe(kind) -> str:
    names = {"bn": "BatchNorm over {} channels", "linear": "1x1 conv/Dense {} -> {}", "conv": "conv {} stride {}",
             "dwconv": "depthwise conv {} stride {}", "input": "(the input)", "concat": "(a concatenation)",
             "merge": "(a merge)", "sepconv": "separable conv {} {} stride {}"}
    template = names.get(kind[0])
    return f"({template.format(*kind[1:])})" if template and kind[0] not in ("input", "concat", "merge") \
        else (template or str(kind))


def _consumers(graph, layer_name) -> list[str]:
    return [n for n, ins in graph.inputs.items() if n in graph.kind and any(p.name == layer_name for p in ins)]


def transfer(source_graph, target_graph, pairs) -> list[str]:
    """Copy the weights of each ``{target: source}`` pair, folding what the target's layout lacks.

    Returns a line per adaptation and fold. Raises :class:`StructureMismatch` where a weight has no exact home.
    """
    import numpy as np
    from keras import layers

    src_layers = {layer.name: layer for layer in source_graph.model.layers}
    tgt_layers = {layer.name: layer for layer in target_graph.model.layers}
    values, folds, bias_into, adapted = {}, [], {}, {}
    for t_name, s_name in pairs.items():
        s, t = src_layers[s_name], tgt_layers[t_name]
        found = {w.name: np.asarray(w.numpy()) for w in s.weights}
        wanted = {w.name: w for w in t.weights}
        if isinstance(t, layers.BatchNormalization):
            found.setdefault("gamma", np.ones_like(found["moving_mean"]))
            found.setdefault("beta", np.zeros_like(found["moving_mean"]))
            shift = float(s.epsilon) - float(t.epsilon)
            if shift:
                found["moving_variance"] = found["moving_variance"] + shift
            for missing in set(found) - set(wanted):  # scale=False / center=False in the catalog
                neutral = 1.0 if missing == "gamma" else 0.0
                if not np.all(found[missing] == neutral):
                    raise StructureMismatch(f"layer {t_name} has no {missing}, but {s_name} of the file's model "
                                            f"holds one that is not {neutral:g}")
                del found[missing]
        if "bias" in found and "bias" not in wanted:
            bn = [n for n in _consumers(target_graph, t_name) if target_graph.kind[n][0] == "bn"]
            if len(bn) != 1:
                raise StructureMismatch(f"layer {t_name} has no bias and no BatchNorm after it to fold "
                                        f"the bias of {s_name} into")
            bias_into[bn[0]] = found.pop("bias")
            folds.append(t_name)
        if "bias" in wanted and "bias" not in found:
            found["bias"] = np.zeros(tuple(wanted["bias"].shape), "float32")
        if set(found) != set(wanted):
            raise StructureMismatch(f"layer {t_name} holds {sorted(wanted)} but {s_name} of the file's model "
                                    f"{sorted(found)}")
        if t_name in target_graph.input_adjacent:
            for key in ("kernel", "mean", "variance"):
                if key in found and found[key].shape != tuple(wanted[key].shape):
                    channels = int(wanted[key].shape[-2] if key == "kernel" else wanted[key].shape[0])
                    adapted.setdefault(t_name, (found[key].shape[-2] if key == "kernel" else found[key].shape[0],
                                                channels))
                    found[key] = adapt_input_channels(found[key], channels, key)
        values[t_name] = {k: v.reshape(tuple(wanted[k].shape)) for k, v in found.items()}
    for bn, bias in bias_into.items():
        values[bn]["moving_mean"] = values[bn]["moving_mean"] - bias.reshape(values[bn]["moving_mean"].shape)
    for t_name, arrays in values.items():
        for w in tgt_layers[t_name].weights:
            w.assign(arrays[w.name])
        if hasattr(tgt_layers[t_name], "finalize_state"):  # Normalization reads its variables once
            tgt_layers[t_name].finalize_state()
    lines = [f"{t}: weights for {found} input channels adapted to {channels} ("
             f"{'summed over the channels' if channels == 1 else f'repeated and scaled by {found}/{channels}'})"
             for t, (found, channels) in adapted.items()]
    if folds:
        lines.append(f"{len(folds)} conv biases of the file folded exactly into the moving means of the BatchNorm "
                     f"layers after them ({folds[0]}, ...): the catalog puts no bias before BatchNorm")
    return lines


# ------------------------------------------------------------------------------- the catalog's own files


def _snake(name: str) -> str:
    from keras.src.utils import naming

    return naming.to_snake_case(name)


def _h5_keys(model) -> dict[str, str]:
    """``{h5 group key: layer name}`` the way Keras keys a functional model's layers in a weights file:
    the class name in snake case, numbered by order of appearance (``conv2d``, ``conv2d_1``, ...)."""
    used, keys = {}, {}
    for layer in model.layers:
        key = _snake(layer.__class__.__name__)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[key] = layer.name
    return keys


def _read_h5(handle, model) -> dict[str, list]:
    import numpy as np

    if "layers" not in handle:
        raise ValueError("the file holds no layer weights")
    keys = _h5_keys(model)
    found = {}
    for key, group in handle["layers"].items():
        arrays = [np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))] if "vars" in group else []
        if not arrays:
            continue
        # a file saved without the top lacks the head's keys; a file with a top the model lacks has extra ones
        found[keys.get(key, f"<file layer {key}>")] = arrays
    return found


def read_weights_by_layer(path, model) -> dict[str, list]:
    """``{layer name: [arrays in the layer's weight order]}`` of a ``.weights.h5`` or ``.keras`` file.

    A ``.keras`` file is loaded (``safe_mode=True``) and read by its own layer names. A ``.weights.h5``
    file stores no layer names (Keras keys its groups by class and order: ``conv2d_3``), so each key is
    mapped to the name of the layer of ``model`` with that key; that holds for a file saved from the same
    architecture (with or without the top, with any number of classes), and every shape is checked after.
    """
    import h5py
    import keras

    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist.")
    try:
        if path.endswith(".keras"):
            saved = keras.saving.load_model(path, compile=False, safe_mode=True)
            return {layer.name: [keras.ops.convert_to_numpy(w) for w in layer.weights]
                    for layer in saved.layers if layer.weights}
        if path.endswith(".h5"):
            with h5py.File(path, "r") as handle:
                return _read_h5(handle, model)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"weights file {path} could not be read: {first[:200]}.") from None
    raise ValueError(f"weights file must end in .weights.h5 or .keras; got {path!r}.")


def load_matching_weights(model, path) -> list[str]:
    """Load the weights of ``path`` into ``model`` layer by layer by name; return one line per skipped layer.

    ``path`` is a ``.weights.h5`` or ``.keras`` file saved from the same architecture with another number
    of classes, or without the top. Only head layers (those after the last stage, see the module
    docstring) may be skipped: one whose shapes no longer fit (``head_fc: 1000 -> 5 classes, not loaded``)
    or one the file lacks (``head_fc: not in the file, not loaded``); each line is also logged on the
    ``catalog.finetune`` logger. Anything else that does not fit raises.

    Raises:
        ValueError: a layer outside the head is missing from the file or has other shapes (naming the
            layer, the expected and the found shapes), or the file cannot be read.
    """
    path = os.path.expanduser(os.fspath(path))
    found = read_weights_by_layer(path, model)
    in_head = head_test(model)
    first_layers = Graph(model).input_adjacent
    skipped, plan = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        if layer.name not in found:
            if in_head(layer.name):
                skipped.append(f"{layer.name}: not in the file, not loaded")
                continue
            raise ValueError(f"weights file {path} does not fit {model.name}: the file has no layer {layer.name} "
                             f"(expected shapes {expected}); it was saved from another architecture or with other "
                             f"options.")
        arrays = list(found[layer.name])
        shapes = [tuple(a.shape) for a in arrays]
        if shapes != expected and layer.name in first_layers and _only_input_channels_differ(shapes, expected):
            if shapes[0][-2] != 3:
                raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer.name} expects shapes "
                                 f"{expected}, the file holds {shapes}; the file was saved from a model with "
                                 f"{shapes[0][-2]} input channels (only RGB weights adapt to other channels).")
            arrays[0] = adapt_input_channels(arrays[0], expected[0][-2], "kernel")
            skipped.append(f"{layer.name}: weights for 3 input channels adapted to {expected[0][-2]}")
        elif shapes != expected:
            if in_head(layer.name) and len(shapes) == len(expected):
                skipped.append(f"{layer.name}: {_change(shapes, expected)}, not loaded")
                continue
            raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer.name} expects shapes "
                             f"{expected}, the file holds {shapes}; only head layers may differ, so the file was "
                             f"saved from another architecture or width.")
        plan.append((layer, arrays))
    for layer, arrays in plan:  # nothing is assigned unless everything outside the head fits
        for variable, array in zip(layer.weights, arrays):
            variable.assign(array)
    for line in skipped:
        log.info(line)
    return skipped


def _only_input_channels_differ(found, expected) -> bool:
    kernel_found, kernel_expected = found[0], expected[0]
    return (len(kernel_found) == len(kernel_expected) == 4 and kernel_found[-2] != kernel_expected[-2]
            and kernel_found[:-2] + kernel_found[-1:] == kernel_expected[:-2] + kernel_expected[-1:]
            and found[1:] == expected[1:])


def _change(found, expected) -> str:
    """``1000 -> 5 classes`` when only the last axis differs (the output width), else the shapes."""
    kernel_found, kernel_expected = found[0], expected[0]
    if (len(kernel_found) == len(kernel_expected) and kernel_found[:-1] == kernel_expected[:-1]
            and all(f[-1:] == (kernel_found[-1],) for f in found[1:])):
        return f"{kernel_found[-1]} -> {kernel_expected[-1]} classes"
    return f"shapes {found} -> {expected}"


def head_test(model):
    """``is_head(layer name)``: True for the layers after the model's last stage (those a new head replaces)."""
    end = _stage_end(model)
    if end is None:  # no stage record (a model from a .keras file): the catalog's head layer names
        return lambda name: name.startswith("head") or name == "predictions"
    body = ancestors(end)
    return lambda name: name not in body


def load_catalog_file(model, path):
    """Load a ``.keras`` / ``.weights.h5`` file of the catalog into ``model``: exactly when it fits, else
    by layer name with a new head (:func:`load_matching_weights`, whose errors name layer and shapes)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns per skipped variable; one sentence is said instead
        try:
            model.load_weights(path)
            return []
        except Exception:  # noqa: BLE001 - Keras raises several types; the matching load explains
            pass
    return load_matching_weights(model, path)


@contextlib.contextmanager
def collected_lines():
    """Collect what this module logs inside the ``with`` block into a list (and still log it)."""
    lines = []

    class Collector(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collector(logging.INFO)
    previous = log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)


# ------------------------------------------------------------------------ keras.applications files

# catalog family or name: (keras.applications builder, catalog options that build the file's layout,
# keywords of the catalog model the builder takes too). The table is checked by
# tests/test_weights.py, which writes a file from every builder and compares the outputs.
KERAS_APPLICATIONS = {
    "vgg16": ("VGG16", {}, ()),
    "vgg19": ("VGG19", {}, ()),
    "resnet50": ("ResNet50", {"stride_on_1x1": True}, ()),
    "resnet101": ("ResNet101", {"stride_on_1x1": True}, ()),
    "resnet152": ("ResNet152", {"stride_on_1x1": True}, ()),
    "resnet50_v2": ("ResNet50V2", {}, ()),
    "resnet101_v2": ("ResNet101V2", {}, ()),
    "resnet152_v2": ("ResNet152V2", {}, ()),
    "inception_v3": ("InceptionV3", {}, ()),
    "inception_resnet_v2": ("InceptionResNetV2", {}, ()),
    "xception": ("Xception", {}, ()),
    "mobilenet_v1": ("MobileNet", {}, ("alpha",)),
    "mobilenet_v2": ("MobileNetV2", {}, ("alpha",)),
    "mobilenet_v3_small": ("MobileNetV3Small", {"padding": "same"}, ("alpha",)),
    "mobilenet_v3_large": ("MobileNetV3Large", {"padding": "same"}, ("alpha",)),
    "densenet121": ("DenseNet121", {}, ()),
    "densenet169": ("DenseNet169", {}, ()),
    "densenet201": ("DenseNet201", {}, ()),
    "efficientnet_b0": ("EfficientNetB0", {"include_preprocessing": True}, ()),
    "efficientnet_b1": ("EfficientNetB1", {"include_preprocessing": True}, ()),
    "efficientnet_b2": ("EfficientNetB2", {"include_preprocessing": True}, ()),
    "efficientnet_b3": ("EfficientNetB3", {"include_preprocessing": True}, ()),
}


def keras_applications_entry(name: str, family: str | None = None):
    """The :data:`KERAS_APPLICATIONS` row of a registered name, or of its family where keras.applications'
    builder takes every default of the name (MobileNet's alpha, not the Shallow MobileNet's depth), or None."""
    if name in KERAS_APPLICATIONS or family not in KERAS_APPLICATIONS:
        return KERAS_APPLICATIONS.get(name)
    from catalog.registry import get_entry

    entry = KERAS_APPLICATIONS[family]
    return entry if set(get_entry(name).defaults) <= set(entry[2]) else None


def _legacy_layers(handle):
    """``[(layer name, [arrays])]`` of a legacy file, in its order, for the layers holding weights."""
    import numpy as np

    group = handle["model_weights"] if "model_weights" in handle else handle
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
    out = []
    for name in names:
        weight_names = [w.decode() if isinstance(w, bytes) else w for w in group[name].attrs["weight_names"]]
        if weight_names:
            out.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    return out


def _first_difference(stored, reference) -> str | None:
    """The first layer, in order, where a legacy file and a keras.applications model disagree, or None."""
    weighted = [layer for layer in reference.layers if layer.weights]
    for (file_name, arrays), layer in zip(stored, weighted):
        found, expected = [tuple(a.shape) for a in arrays], [tuple(w.shape) for w in layer.weights]
        if found != expected:
            return (f"its layer {layer.name} expects shapes {expected}, the file's layer {file_name} holds "
                    f"{found}")
    if len(stored) != len(weighted):
        return f"it has {len(weighted)} layers with weights, the file {len(stored)}"
    return None


def keras_applications_model(name: str, path, options: dict, family: str | None = None):
    """The keras.applications model that wrote ``path`` (a legacy file), with the file loaded into it.

    ``options`` are the catalog model's keywords (``alpha`` reaches the builders that take it). The file's
    top is read from the file: with a classifier of its own width, or none.
    """
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    builder_name, _, passed = keras_applications_entry(name, family)
    builder = getattr(keras.applications, builder_name)
    kwargs = {k: options[k] for k in passed if options.get(k) is not None}
    if builder_name.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False  # pixels scaling has no weights; the catalog model decides
    path = _expand(path)
    try:
        with h5py.File(path, "r") as handle:
            stored = _legacy_layers(handle)
            group = handle["model_weights"] if "model_weights" in handle else handle
            classes = stored[-1][1][-1].shape[-1] if stored else 0
            errors = []
            for include_top in (True, False):
                try:
                    reference = builder(weights=None, include_top=include_top,
                                        **({"classes": int(classes)} if include_top else {}), **kwargs)
                except ValueError as err:
                    errors.append(_first_line(err))
                    continue
                difference = _first_difference(stored, reference)
                if difference:
                    errors.append(difference)
                    continue
                try:
                    legacy_h5_format.load_weights_from_hdf5_group(group, reference)
                except (ValueError, KeyError) as err:
                    errors.append(_first_line(err))
                    continue
                return reference, include_top
    except (OSError, KeyError) as err:
        raise ValueError(f"weights file {path} could not be read as a keras.applications file: "
                         f"{_first_line(err)}.") from None
    raise ValueError(f"weights file {path} is not a keras.applications {builder_name} file"
                     f"{' with ' + ', '.join(f'{k}={v}' for k, v in kwargs.items()) if kwargs else ''}: "
                     f"{errors[0] if errors else 'it holds no layers'}.")


def ancestors(layer) -> set[str]:
    """Names of ``layer`` and every layer or operation that feeds it."""
    seen, work = set(), [layer]
    while work:
        current = work.pop()
        if current.name not in seen:
            seen.add(current.name)
            work.extend(_parents(current))
    return seen


def _stage_end(model):
    stages = getattr(model, "catalog_stage_outputs", None)
    if not stages:
        return None
    return {layer.name: layer for layer in model.layers}.get(stages[-1])


def load_by_structure(model, reference, *, path, source: str) -> list[str]:
    """Load the weights of the functional model ``reference`` into ``model`` by matching their graphs.

    Layers after the last stage of ``model`` (its head) that have no counterpart are skipped, one line
    each (``head_fc: 1000 -> 5 classes, not loaded``); every other layer must find its counterpart.
    Returns the skipped and folded lines, each also logged.
    """
    src, tgt = Graph(reference), Graph(model)
    table = src.by_code()
    stage_end = _stage_end(model)
    # A layer whose code (its kind and everything above it) is one source layer's is that layer: start there.
    source_ops = {op.name: op for op in _operations(reference)}
    target_ops = {op.name: op for op in _operations(model)}
    starts = [(source_ops[table[tgt.code[name]][0]], target_ops[name]) for name in tgt.kind
              if tgt.kind[name][0] != "input" and len(table.get(tgt.code[name], ())) == 1]
    if not starts:
        first = next((n for n in (op.name for op in _operations(model)) if n in tgt.kind
                      and tgt.code[n] not in table), None)
        where = (f"layer {first} {_describe(tgt.kind[first])} is the first with no counterpart in it"
                 if first else "their outputs differ")
        raise StructureMismatch(f"weights file {path} ({source}) does not fit {model.name}: {where}")
    pairs = match_graphs(src, tgt, starts)
    lines = []
    body = ancestors(stage_end) if stage_end is not None else set(tgt.kind)
    missing = [layer for layer in model.layers if layer.weights and layer.name not in pairs]
    inside = [layer.name for layer in missing if layer.name in body]
    if inside:
        raise StructureMismatch(f"weights file {path} ({source}) does not fit {model.name}: layer {inside[0]} "
                                f"has no counterpart in the file")
    used = set(pairs.values())
    spare = [layer for layer in reference.layers if layer.weights and layer.name not in used]
    for layer in missing:
        expected = [tuple(w.shape) for w in layer.weights]
        twin = next((s for s in spare if len(s.weights) == len(layer.weights)), None)
        if twin is None:
            lines.append(f"{layer.name}: not in the file, not loaded")
            continue
        spare.remove(twin)
        found = [tuple(w.shape) for w in twin.weights]
        if found[0][:-1] == expected[0][:-1] and found[0][-1] != expected[0][-1]:
            lines.append(f"{layer.name}: {found[0][-1]} -> {expected[0][-1]} classes, not loaded")
        else:
            lines.append(f"{layer.name}: shapes {found} -> {expected}, not loaded")
    lines += transfer(src, tgt, pairs)
    for line in lines:
        log.info(line)
    return lines


def _operations(model) -> list:
    """Every layer and operation of a functional model (``x + 3`` included), inputs first."""
    return list(getattr(model, "operations", None) or model.layers)


def load_foreign(name: str, family: str, options: dict, build, fmt: str):
    """Build the registered model ``name`` for a foreign weights file and load the file into it.

    ``options`` are the resolved ``create_model`` keywords (``weights`` the file), ``build(**options)``
    builds the catalog model. The file's layout decides the options its weights need (logged in one line
    when they change the catalog's default).
    """
    path = _expand(options["weights"])
    if fmt == "keras_legacy":
        entry = keras_applications_entry(name, family)
        if entry is None:
            raise ValueError(f"weights file {path} is a keras.applications file, but keras.applications has no "
                             f"{name}; it has {', '.join(sorted(KERAS_APPLICATIONS))}.")
        builder_name, layout, _ = entry
        changed = {k: v for k, v in layout.items() if options.get(k, None) != v}
        if changed:
            log.info(f"{name}: building keras.applications' {builder_name} layout for {os.path.basename(path)} "
                     f"({', '.join(f'{k}={v!r}' for k, v in changed.items())}).")
        model = build(**{**options, **layout, "weights": None})
        reference, _ = keras_applications_model(name, path, options, family)
        try:
            load_by_structure(model, reference, path=path, source=f"keras.applications {builder_name}")
        except StructureMismatch as err:
            raise ValueError(f"{err}.") from None
        _square_stored_std(model)
        return model
    if fmt in ("safetensors", "torch"):
        from catalog.torch_weights import load_torchvision

        return load_torchvision(name, family, options, build, path, fmt)
    raise ValueError(f"weights file {path} has format {fmt!r}, which create_model does not read.")


def _square_stored_std(model):
    """keras.applications' EfficientNet files store the ImageNet *std* as the Normalization's variance;
    keras.applications compensates with an extra Rescaling only for ``weights="imagenet"``. Square it, so
    the model equals keras.applications' with its ImageNet weights."""
    import numpy as np
    from keras import layers

    from catalog.models.classifier import IMAGENET_STD

    for layer in model.layers:
        if isinstance(layer, layers.Normalization) and getattr(layer, "adapt_variance", None) is not None:
            variance = np.asarray(layer.adapt_variance.numpy())
            if variance.shape == (3,) and np.allclose(variance, IMAGENET_STD, atol=1e-6):
                layer.adapt_variance.assign(variance ** 2)
                layer.finalize_state()
                log.info(f"{layer.name}: the file stores the ImageNet std as the variance (keras.applications' "
                         f"EfficientNet files do); squared, as keras.applications corrects it for its own weights")
