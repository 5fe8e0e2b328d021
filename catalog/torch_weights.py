"""torchvision checkpoints (``.safetensors``, ``.pth``) into the catalog's Keras models, mapped by structure.

:func:`load_torchvision` is what ``create_model(name, weights="x.safetensors")`` runs for a PyTorch file
(through :func:`catalog.weights.load_foreign`). A state dict names tensors by module path
(``layer1.0.conv1.weight``); the tensors of one module (conv: weight [, bias]; BatchNorm: weight, bias,
running_mean, running_var, num_batches_tracked; Linear: weight, bias) go to one catalog layer, chosen by a
small rule per family (:data:`FAMILIES`) from the torchvision module path, the catalog's systematic layer
names (``stage1_block1_conv1_conv``) and, where torchvision numbers modules by position
(``features.7``), their order. Nothing is matched by shape alone.

Conversions (exact): conv OIHW -> HWIO (grouped convs too: Keras stores (kh, kw, in/groups, out));
depthwise (C*m, 1, kh, kw) -> (kh, kw, C, m); Linear (out, in) -> Dense (in, out), with the rows of a
first FC that follows a channels-first flatten (VGG, AlexNet, GoogLeNet's aux heads) permuted to Keras'
channels-last flatten; BatchNorm weight/bias/running stats -> gamma/beta/moving stats, torchvision's
epsilon folded into the moving variance (``var + eps_torch - eps_keras``); a conv bias before a BatchNorm
(the catalog has none there) folded into its moving mean (``mean - bias``).

Where torchvision's layout differs from a catalog default, the torchvision layout is built (one log line
on ``catalog.weights``): symmetric stride-2 padding for MobileNetV2 / EfficientNet / MobileNetV3, GoogLeNet's
``layout="torchvision"``, AlexNet's ``layout="alexnet_tv"``. A classifier with another number of classes
is skipped (``head_fc: 1000 -> 5 classes, not loaded``); with ``num_classes`` left out, the file's number
of classes is built. ``include_top=False`` / ``features_only=True`` skip what the model lacks, one line
each. RGB weights into a model with other input channels adapt the first kernel as :mod:`catalog.weights`
does. Anything else that does not fit raises ValueError naming the catalog layer and both shapes, and a
tensor left over in the file is an error too: never a silent partial load. Nothing is assigned before
every check has passed. ``docs/torchvision-weights.md`` has the families, their knobs and measured parity.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import re
from typing import Callable

import numpy as np

log = logging.getLogger("catalog.weights")

# Tensors of a module; num_batches_tracked carries no weight.
_IGNORED = ("num_batches_tracked",)


# ---------------------------------------------------------------------------------------- reading


def _first_line(err) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def read_state_dict(path, fmt: str) -> dict[str, np.ndarray]:
    """``{key: array}`` of a ``.safetensors`` file (read with numpy) or a ``.pth`` file (read with torch).

    A ``.pth`` file may hold the state dict itself or ``{"state_dict": ...}`` / ``{"model": ...}``; a
    leading ``module.`` (DataParallel) is stripped from every key.
    """
    path = os.path.expanduser(os.fspath(path))
    if fmt == "safetensors":
        from safetensors.numpy import load_file

        try:
            tensors = load_file(path)
        except Exception as err:  # safetensors raises its own error types for a truncated or corrupt file
            raise ValueError(f"weights file {path} is not a readable safetensors file ({_first_line(err)}).") \
                from None
    elif fmt == "torch":
        tensors = _read_torch(path)
    else:
        raise ValueError(f"weights file {path} has format {fmt!r}; torchvision checkpoints are .safetensors or .pth.")
    out = {}
    for key, value in tensors.items():
        out[key[len("module."):] if key.startswith("module.") else key] = value
    if not out:
        raise ValueError(f"weights file {path} holds no tensors.")
    return out


def _read_torch(path: str) -> dict:
    try:
        import torch
    except ImportError:
        raise ValueError(f"weights file {path} is a PyTorch checkpoint, which needs the package torch to read "
                         f"(pip install torch), or convert it to .safetensors.") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a truncated or non-checkpoint file
        raise ValueError(f"weights file {path} is not a readable PyTorch checkpoint ({_first_line(err)}).") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"weights file {path} holds no state dict (a dict of tensors, or one under "
                         f"'state_dict' or 'model').")
    return {k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()).cpu().numpy()
            for k, v in data.items()}


def group_modules(tensors: dict) -> dict[str, dict[str, np.ndarray]]:
    """``{module path: {parameter: array}}``: ``layer1.0.bn1.running_mean`` -> ``layer1.0.bn1``."""
    modules: dict[str, dict] = {}
    for key, value in tensors.items():
        prefix, _, param = key.rpartition(".")
        modules.setdefault(prefix, {})[param] = value
    return modules


def module_kind(params: dict) -> str:
    """"bn", "conv" or "linear" for a module's tensors, "other" for anything else."""
    if "running_mean" in params:
        return "bn"
    weight = params.get("weight")
    if weight is not None and weight.ndim == 4:
        return "conv"
    if weight is not None and weight.ndim == 2:
        return "linear"
    return "other"


# ------------------------------------------------------------------------------- family rules


class Context:
    """What a family rule sees: the catalog's weighted-layer names (in model order) and the file's modules."""

    def __init__(self, names: list[str], modules: dict[str, dict]):
        self.names = names
        self.present = set(names)
        self.kinds = {prefix: module_kind(params) for prefix, params in modules.items()}
        self._cache = {}

    def units(self, pattern: str) -> list[str]:
        """Distinct first groups of ``pattern`` over the catalog names, in model order."""
        if pattern not in self._cache:
            seen = []
            for name in self.names:
                m = re.match(pattern, name)
                if m and m.group(1) not in seen:
                    seen.append(m.group(1))
            self._cache[pattern] = seen
        return self._cache[pattern]

    def indices(self, pattern: str, kinds=None) -> list[int]:
        """Sorted distinct integers of ``pattern``'s first group over the file's module paths (of ``kinds``)."""
        key = (pattern, kinds)
        if key not in self._cache:
            found = {int(m.group(1)) for p, kind in self.kinds.items()
                     if (m := re.match(pattern, p)) and (kinds is None or kind in kinds)}
            self._cache[key] = sorted(found)
        return self._cache[key]


def _nth(items, index):
    return items[index] if 0 <= index < len(items) else None


def _rules(table):
    """A rule from ``[(regex, fn(ctx, *groups) -> catalog name)]``: the first full match wins."""
    compiled = [(re.compile(pattern + r"$"), fn) for pattern, fn in table]

    def rule(prefix: str, ctx: Context):
        for pattern, fn in compiled:
            m = pattern.match(prefix)
            if m:
                return fn(ctx, *m.groups())
        return None

    return rule


def _const(name):
    return lambda ctx, *groups: name


_SUFFIX = {"0": "conv", "1": "bn"}  # Conv2dNormActivation children


def _ordered(container: str, target: str, kinds=("conv",)):
    """The k-th module of ``container`` holding ``kinds`` -> the k-th catalog unit matching ``target``;
    a BatchNorm -> the unit of the conv just before it (VGG-BN)."""

    def fn(ctx, index):
        index = int(index)
        convs = ctx.indices(container + r"\.(\d+)", kinds)
        kind = ctx.kinds[f"{container}.{index}"]
        if kind == "bn":
            before = [i for i in convs if i < index]
            unit = _nth(ctx.units(target), len(before) - 1) if before else None
            return f"{unit}_bn" if unit else None
        unit = _nth(ctx.units(target), convs.index(index)) if index in convs else None
        return f"{unit}_conv" if unit else None

    return fn


def _head_fcs(ctx, index):
    """``classifier.{i}`` Linear layers in order -> head_fc1, head_fc2, ..., head_fc (VGG, AlexNet)."""
    linears = ctx.indices(r"classifier\.(\d+)", ("linear",))
    heads = [n for n in ctx.names if re.fullmatch(r"head_fc\d*", n)] or ["head_fc1", "head_fc2", "head_fc"]
    return _nth(heads, linears.index(int(index))) if int(index) in linears else None


def _inverted_units(ctx, block: str, names=("expand", "dw", "se", "project")) -> list[str]:
    return [u for u in names if f"{block}_{u}_conv" in ctx.present or f"{block}_{u}_reduce" in ctx.present]


def _mbconv(block: str, ctx, m: str, child: str) -> str | None:
    """A child of torchvision's MBConv / MobileNetV3 ``block`` Sequential -> the catalog layer."""
    unit = _nth(_inverted_units(ctx, block), int(m))
    if unit is None:
        return None
    if unit == "se":
        return {"fc1": f"{block}_se_reduce", "fc2": f"{block}_se_expand"}.get(child)
    return f"{block}_{unit}_{_SUFFIX[child]}" if child in _SUFFIX else None


def _mobilenet_v2_block(ctx, k, m, child):
    """torchvision MobileNetV2 ``features.{k}.conv.{m}[.{child}]``: nested ConvBNActs, then the projection's
    conv and BatchNorm as two direct children."""
    blocks = ctx.units(r"(stage\d+_block\d+)_")
    block = _nth(blocks, int(k) - 1)
    if block is None:
        return None
    units = _inverted_units(ctx, block, ("expand", "dw"))
    m = int(m)
    if child is not None:
        unit = _nth(units, m)
        return f"{block}_{unit}_{_SUFFIX[child]}" if unit and child in _SUFFIX else None
    return {len(units): f"{block}_project_conv", len(units) + 1: f"{block}_project_bn"}.get(m)


def _features_end(ctx, index, child, blocks: int, name: str):
    """``features.{i}.{0|1}``: the stem conv-BN at 0, the last 1x1 conv-BN after the blocks."""
    index = int(index)
    if index == 0:
        return f"stem_{_SUFFIX[child]}"
    if index == blocks + 1:
        return f"{name}_{_SUFFIX[child]}"
    return None


RESNET = _rules([
    (r"conv1", _const("stem_conv")), (r"bn1", _const("stem_bn")),
    (r"layer(\d+)\.(\d+)\.conv(\d)", lambda c, s, b, i: f"stage{s}_block{int(b) + 1}_conv{i}_conv"),
    (r"layer(\d+)\.(\d+)\.bn(\d)", lambda c, s, b, i: f"stage{s}_block{int(b) + 1}_conv{i}_bn"),
    (r"layer(\d+)\.(\d+)\.downsample\.([01])",
     lambda c, s, b, i: f"stage{s}_block{int(b) + 1}_shortcut_{_SUFFIX[i]}"),
    (r"fc", _const("head_fc")),
])

# Old torchvision DenseNet files write denselayer1.norm.1 for denselayer1.norm1: both are read.
DENSENET = _rules([
    (r"features\.conv0", _const("stem_conv")), (r"features\.norm0", _const("stem_bn")),
    (r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])",
     lambda c, b, i, kind, n: f"block{b}_layer{i}_" + {("norm", "1"): "bn1", ("conv", "1"): "bottleneck_conv",
                                                       ("norm", "2"): "bottleneck_bn",
                                                       ("conv", "2"): "growth_conv"}[(kind, n)]),
    (r"features\.transition(\d+)\.norm", lambda c, t: f"transition{t}_bn"),
    (r"features\.transition(\d+)\.conv", lambda c, t: f"transition{t}_conv"),
    (r"features\.norm5", _const("final_bn")),
    (r"classifier", _const("head_fc")),
])

VGG = _rules([
    (r"features\.(\d+)", _ordered("features", r"(stage\d+_conv\d+)_conv$")),
    (r"classifier\.(\d+)", _head_fcs),
])

ALEXNET = _rules([
    (r"features\.(\d+)", _ordered("features", r"(conv\d+)_conv$")),
    (r"classifier\.(\d+)", _head_fcs),
])


def _fire(ctx, index, part):
    fires = [i for i in ctx.indices(r"features\.(\d+)\.squeeze") if i > 0]
    unit = _nth(ctx.units(r"(fire\d+)_"), fires.index(int(index))) if int(index) in fires else None
    return f"{unit}_{part}_conv" if unit else None


SQUEEZENET = _rules([
    (r"features\.0", _const("stem_conv")),
    (r"features\.(\d+)\.(squeeze|expand1x1|expand3x3)", _fire),
    (r"classifier\.1", _const("head_conv")),
])


def _googlenet_branch(ctx, module, branch, index, part):
    """``inception3a.branch{b}[.{i}].{conv|bn}`` -> ``inception3a_branch{b-1}_conv{i+1}_{conv|bn}``."""
    op = int(index) + 1 if index is not None else 1
    return f"{module}_branch{int(branch) - 1}_conv{op}_{part}"


GOOGLENET = _rules([
    (r"conv(\d)\.(conv|bn)", lambda c, n, part: f"conv{n}_{part}"),
    (r"(inception\d[a-e])\.branch(\d)(?:\.(\d))?\.(conv|bn)", _googlenet_branch),
    (r"(aux[12])\.conv\.(conv|bn)", lambda c, aux, part: f"{aux}_conv_{part}"),
    (r"(aux[12])\.(fc[12])", lambda c, aux, fc: f"{aux}_{fc}"),
    (r"fc", _const("head_fc")),
])


def _mobilenet_v2(prefix, ctx):
    blocks = len(ctx.indices(r"features\.(\d+)\.conv\."))
    return _rules([
        (r"features\.(\d+)\.([01])", lambda c, i, child: _features_end(c, i, child, blocks, "head_conv")),
        (r"features\.(\d+)\.conv\.(\d+)(?:\.([01]))?", _mobilenet_v2_block),
        (r"classifier\.1", _const("head_fc")),
    ])(prefix, ctx)


def _mobilenet_v3(prefix, ctx):
    blocks = len(ctx.indices(r"features\.(\d+)\.block\."))
    return _rules([
        (r"features\.(\d+)\.([01])", lambda c, i, child: _features_end(c, i, child, blocks, "head_conv")),
        (r"features\.(\d+)\.block\.(\d+)\.(0|1|fc1|fc2)", lambda c, k, m, child: _mbconv(f"block{k}", c, m, child)),
        (r"classifier\.0", _const("head_fc1")), (r"classifier\.3", _const("head_fc")),
    ])(prefix, ctx)


def _efficientnet(prefix, ctx):
    stages = len(ctx.indices(r"features\.(\d+)\.\d+\.block\."))
    return _rules([
        (r"features\.(\d+)\.([01])", lambda c, i, child: _features_end(c, i, child, stages, "head_conv")),
        (r"features\.(\d+)\.(\d+)\.block\.(\d+)\.(0|1|fc1|fc2)",
         lambda c, s, b, m, child: _mbconv(f"stage{s}_block{int(b) + 1}", c, m, child)),
        (r"classifier\.1", _const("head_fc")),
    ])(prefix, ctx)


_SHUFFLE_BRANCHES = {("1", "0"): "branch1_dw_conv", ("1", "1"): "branch1_dw_bn", ("1", "2"): "branch1_conv_conv",
                     ("1", "3"): "branch1_conv_bn", ("2", "0"): "branch2_conv1_conv", ("2", "1"): "branch2_conv1_bn",
                     ("2", "3"): "branch2_dw_conv", ("2", "4"): "branch2_dw_bn", ("2", "5"): "branch2_conv2_conv",
                     ("2", "6"): "branch2_conv2_bn"}

SHUFFLENET_V2 = _rules([
    (r"conv1\.([01])", lambda c, child: f"stem_{_SUFFIX[child]}"),
    (r"stage(\d)\.(\d+)\.branch([12])\.(\d)",
     lambda c, s, b, br, i: f"stage{s}_block{int(b) + 1}_{_SHUFFLE_BRANCHES[(br, i)]}"
     if (br, i) in _SHUFFLE_BRANCHES else None),
    (r"conv5\.([01])", lambda c, child: f"head_conv_{_SUFFIX[child]}"),
    (r"fc", _const("head_fc")),
])


@dataclasses.dataclass(frozen=True)
class Family:
    """How torchvision's checkpoints of one catalog family map.

    rule: ``rule(module path, Context) -> catalog layer name or None``.
    eps: torchvision's BatchNorm epsilon for the family (a state dict does not store it).
    layout: catalog options that build torchvision's layout (``fn(options) -> dict``).
    classifiers: catalog layers whose outputs are class logits (skipped on another number of classes).
    optional: module paths the catalog model may leave out on purpose, with the line that says so.
    torchvision: torchvision's builders this family covers (for the docs and messages).
    """

    rule: Callable
    eps: float
    layout: Callable = lambda options: {}
    classifiers: tuple = ("head_fc",)
    optional: tuple = ()
    torchvision: str = ""


FAMILIES = {
    "resnet": Family(RESNET, 1e-5, lambda o: {"stride_on_1x1": False},
                     torchvision="resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d, wide_resnet50_2/101_2"),
    "densenet": Family(DENSENET, 1e-5, torchvision="densenet121/169/201"),
    "vgg": Family(VGG, 1e-5, torchvision="vgg11/13/16/19 and their _bn"),
    "alexnet": Family(ALEXNET, 1e-5, lambda o: {"layout": "alexnet_tv", "groups": 1}, torchvision="alexnet"),
    "googlenet": Family(GOOGLENET, 1e-3, lambda o: {"layout": "torchvision"},
                        classifiers=("head_fc", "aux1_fc2", "aux2_fc2"),
                        optional=((r"aux[12]\.", "aux1, aux2: torchvision's auxiliary classifiers (training only), "
                                                 "not loaded; pass aux_logits=True to load them"),),
                        torchvision="googlenet"),
    "squeezenet": Family(SQUEEZENET, 1e-5, lambda o: {"bypass": False}, classifiers=("head_conv",),
                         torchvision="squeezenet1_0, squeezenet1_1"),
    "mobilenet_v2": Family(_mobilenet_v2, 1e-5, lambda o: {"padding": "symmetric"}, torchvision="mobilenet_v2"),
    "mobilenet_v3": Family(_mobilenet_v3, 1e-3, lambda o: {"padding": "symmetric"},
                           torchvision="mobilenet_v3_large, mobilenet_v3_small"),
    "shufflenet_v2": Family(SHUFFLENET_V2, 1e-5, torchvision="shufflenet_v2_x0_5/x1_0/x1_5/x2_0"),
    "efficientnet": Family(_efficientnet, 1e-5, lambda o: {"padding": "symmetric"},
                           torchvision="efficientnet_b0..b3"),
}


# ---------------------------------------------------------------------------------- conversion


def _flatten_source(layer):
    """(H, W, C) of the map a Dense layer sees flattened (through weightless rank-2 layers), else None."""
    from keras import layers

    current = layer
    for _ in range(8):
        nodes = getattr(current, "_inbound_nodes", [])
        if not nodes or len(nodes[0].input_tensors) != 1:
            return None
        parent = nodes[0].input_tensors[0]._keras_history.operation
        if isinstance(parent, layers.Flatten):
            shape = tuple(parent._inbound_nodes[0].input_tensors[0].shape[1:])
            return shape if len(shape) == 3 and None not in shape else None
        if getattr(parent, "weights", None) or len(parent._inbound_nodes[0].input_tensors[0].shape) != 2:
            return None
        current = parent
    return None


def _consumer(layer):
    """The one layer that takes ``layer``'s output, or None."""
    nodes = getattr(layer, "_outbound_nodes", [])
    return nodes[0].operation if len(nodes) == 1 else None


def convert(layer, params: dict, eps_torch: float) -> tuple[dict, np.ndarray | None]:
    """``({variable name: array in Keras layout}, bias to fold into the next BatchNorm or None)``.

    Raises ValueError (one sentence without the file name) where the module cannot be this layer's.
    """
    from keras import layers

    weight = params.get("weight")
    bias = params.get("bias")
    if isinstance(layer, layers.BatchNormalization):
        if not {"weight", "bias", "running_mean", "running_var"} <= set(params):
            raise ValueError(f"it is a BatchNorm but the file's module holds {sorted(params)}")
        var = params["running_var"].astype("float64") + eps_torch - float(layer.epsilon)
        return {"gamma": weight, "beta": bias, "moving_mean": params["running_mean"],
                "moving_variance": var}, None
    if weight is None:
        raise ValueError("the file's module holds no weight")
    if isinstance(layer, layers.DepthwiseConv2D):
        if weight.ndim != 4 or weight.shape[1] != 1:
            raise ValueError(f"it is a depthwise conv but the file's weight has shape {tuple(weight.shape)}")
        m = int(layer.depth_multiplier)
        c = weight.shape[0] // m
        kernel = weight.reshape(c, m, *weight.shape[2:]).transpose(2, 3, 0, 1)
    elif isinstance(layer, layers.Conv2D):
        kernel = weight.transpose(2, 3, 1, 0) if weight.ndim == 4 else weight.T.reshape(1, 1, *weight.T.shape)
    elif isinstance(layer, layers.Dense):
        matrix = weight.reshape(weight.shape[0], -1) if weight.ndim == 4 and weight.shape[2:] == (1, 1) else weight
        if matrix.ndim != 2:
            raise ValueError(f"it is a Dense layer but the file's weight has shape {tuple(weight.shape)}")
        hwc = _flatten_source(layer)
        if hwc is not None and matrix.shape[1] == hwc[0] * hwc[1] * hwc[2]:  # torch flattened C, H, W
            h, w, c = hwc
            matrix = matrix.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(matrix.shape[0], -1)
        kernel = matrix.T
    else:
        raise ValueError(f"it is a {type(layer).__name__}, which no torchvision module maps to")
    wanted = {w.name for w in layer.weights}
    arrays = {"kernel": kernel}
    fold = None
    if bias is not None and "bias" not in wanted:
        fold = bias
    elif "bias" in wanted:
        arrays["bias"] = bias if bias is not None else np.zeros(tuple(layer.bias.shape), "float32")
    return arrays, fold


# ------------------------------------------------------------------------------------ loading


def _builder_default(build, key):
    try:
        parameter = inspect.signature(build).parameters.get(key)
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _weighted_names(model) -> list[str]:
    from catalog.models.classifier import PREPROCESSING_LAYER_PREFIX

    return [layer.name for layer in model.layers
            if layer.weights and not layer.name.startswith(PREPROCESSING_LAYER_PREFIX)]


def _file_classes(modules, mapping, classifier):
    for prefix, target in mapping.items():
        if target == classifier and "weight" in modules[prefix]:
            return int(modules[prefix]["weight"].shape[0])
    return None


def load_torchvision(name: str, family: str, options: dict, build, path, fmt: str):
    """Build the registered model ``name`` in torchvision's layout and load the checkpoint ``path`` into it.

    Args:
        name: the registered name.
        family: its registry family (a key of :data:`FAMILIES`).
        options: the resolved ``create_model`` keywords (``weights`` is the file).
        build: the family builder, ``build(**options) -> keras.Model``.
        path: the ``.safetensors`` / ``.pth`` file.
        fmt: "safetensors" or "torch".

    Raises:
        ValueError: a family without torchvision checkpoints, an unreadable file, or a file that does
            not fit (naming the catalog layer and the expected and found shapes).
    """
    path = os.path.expanduser(os.fspath(path))
    spec = FAMILIES.get(family)
    if spec is None:
        raise ValueError(f"weights file {path} is a PyTorch checkpoint, but {name} (family {family}) has no "
                         f"torchvision counterpart; torchvision checkpoints load into the families "
                         f"{', '.join(sorted(FAMILIES))}.")
    modules = group_modules(read_state_dict(path, fmt))
    layout = spec.layout(options)
    changed = {k: v for k, v in layout.items() if options.get(k, _builder_default(build, k)) != v}
    if changed:
        log.info(f"{name}: building torchvision's layout for {os.path.basename(path)} "
                 f"({', '.join(f'{k}={v!r}' for k, v in changed.items())}).")
    options = {**options, **layout, "weights": None}
    if family == "googlenet" and "transform_input" not in options:
        log.info(f"{name}: transform_input=False (torchvision's googlenet(weights=None)); torchvision's ImageNet "
                 f"weights expect transform_input=True: pass it to reproduce them.")
    model = build(**options)
    truncated = not options.get("include_top", True) or options.get("features_only", False)
    reference = model
    if truncated:  # the full model names what the file may hold beyond this one
        reference = build(**{**options, "include_top": True, "features_only": False, "out_indices": None,
                             "input_tensor": None, "input_shape": None, "pooling": None})
    ctx = Context(_weighted_names(reference), modules)
    mapping = {prefix: spec.rule(prefix, ctx) for prefix in modules}
    if not truncated and options.get("num_classes") is None and options.get("classes") is None:
        found = _file_classes(modules, mapping, spec.classifiers[0])
        current = int(model.outputs[0].shape[-1])
        if found is not None and found != current:
            log.info(f"{spec.classifiers[0]}: the file's classifier has {found} classes; building "
                     f"num_classes={found}.")
            options = {**options, "num_classes": found}
            model = reference = build(**options)
            ctx = Context(_weighted_names(model), modules)
            mapping = {prefix: spec.rule(prefix, ctx) for prefix in mapping}
    lines = _load(model, reference, modules, mapping, spec, path, options)
    for line in lines:
        log.info(line)
    return model


def _load(model, reference, modules, mapping, spec, path, options) -> list[str]:
    """Check everything, then assign; returns the lines saying what was skipped or folded."""
    from keras import layers

    by_target = {}
    for prefix, target in mapping.items():
        if target is not None:
            if target in by_target:
                raise ValueError(f"weights file {path} does not fit {model.name}: layer {target} corresponds to "
                                 f"both {by_target[target]} and {prefix} of the file.")
            by_target[target] = prefix
    layers_by_name = {layer.name: layer for layer in model.layers}
    values, folds, lines = {}, {}, []
    first = next(iter(_weighted_names(model)), None)
    for layer_name in _weighted_names(model):
        layer = layers_by_name[layer_name]
        prefix = by_target.get(layer_name)
        if prefix is None:  # the first problem in model order is the one reported
            unused = [p for p, t in mapping.items() if t is None]
            hint = (f"; the file's first unmatched module is {unused[0]} "
                    f"{[tuple(v.shape) for k, v in modules[unused[0]].items() if k not in _IGNORED]}"
                    if unused else "")
            raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer_name} "
                             f"{[tuple(w.shape) for w in layer.weights]} has no counterpart in the file{hint}.")
        params = modules[prefix]
        try:
            arrays, fold = convert(layer, params, spec.eps)
        except ValueError as err:
            raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer_name} cannot take "
                             f"{prefix} ({err}).") from None
        arrays = _fit(layer, arrays, params, prefix, layer_name == first, spec, lines, path, model)
        if arrays is None:
            continue
        if fold is not None:
            after = _consumer(layer)
            if not isinstance(after, layers.BatchNormalization):
                raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer_name} has no bias "
                                 f"and no BatchNorm after it to fold the bias of {prefix} into.")
            folds[after.name] = (fold, layer_name)
        values[layer_name] = arrays
    for bn, (bias, conv) in folds.items():
        if bn not in values:
            raise ValueError(f"weights file {path} does not fit {model.name}: the bias of {conv} has no BatchNorm "
                             f"loaded after it to fold into.")
        values[bn]["moving_mean"] = values[bn]["moving_mean"].astype("float64") - bias
    lines += _leftovers(model, reference, modules, mapping, spec, path, options)
    if folds:
        lines.append(f"{len(folds)} conv biases of the file folded exactly into the moving means of the BatchNorm "
                     f"layers after them ({next(iter(folds.values()))[1]}, ...): the catalog puts no bias before "
                     f"BatchNorm")
    for layer_name, arrays in values.items():
        layer = layers_by_name[layer_name]
        for w in layer.weights:
            w.assign(np.asarray(arrays[w.name]).astype(w.dtype))
    return lines


def _fit(layer, arrays, params, prefix, first: bool, spec, lines, path, model):
    """``arrays`` checked against ``layer``'s variables: None for a classifier of another number of classes
    (a line says so), a first kernel adapted to other input channels; ValueError for anything else."""
    from keras import layers

    wanted = {w.name: tuple(w.shape) for w in layer.weights}
    kernel = arrays.get("kernel")
    if (first and kernel is not None and kernel.ndim == 4 and kernel.shape[-2] == 3 and wanted["kernel"][-2] != 3
            and wanted["kernel"][:-2] + wanted["kernel"][-1:] == kernel.shape[:-2] + kernel.shape[-1:]):
        from catalog.weights import adapt_input_channels

        channels = wanted["kernel"][-2]
        arrays["kernel"] = adapt_input_channels(kernel, channels, "kernel")
        how = "summed over the channels" if channels == 1 else f"repeated and scaled by 3/{channels}"
        lines.append(f"{layer.name}: weights for 3 input channels adapted to {channels} ({how})")
    for var, array in arrays.items():
        if var not in wanted:
            raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer.name} has no {var} for "
                             f"{prefix}.")
        if tuple(array.shape) == wanted[var]:
            continue
        if layer.name in spec.classifiers and _only_classes_differ(wanted, arrays):
            lines.append(f"{layer.name}: {arrays['kernel'].shape[-1]} -> {wanted['kernel'][-1]} classes, not loaded")
            return None
        param = "running_var" if var == "moving_variance" else _TORCH_PARAM.get(var, var)
        raw = tuple(params[param].shape) if param in params else "?"
        hwc = _flatten_source(layer) if isinstance(layer, layers.Dense) and var == "kernel" else None
        note = (f"; it takes the flattened {hwc[0]}x{hwc[1]}x{hwc[2]} map of this input size, so build at the input "
                f"size the file was trained at" if hwc else "")
        raise ValueError(f"weights file {path} does not fit {model.name}: layer {layer.name} expects {var} "
                         f"{wanted[var]} but the file holds {tuple(array.shape)} in Keras' layout ({prefix}.{param} "
                         f"{raw}){note}.")
    return arrays


_TORCH_PARAM = {"kernel": "weight", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean"}


def _only_classes_differ(wanted: dict, arrays: dict) -> bool:
    kernel, found = wanted.get("kernel"), arrays.get("kernel")
    return (kernel is not None and found is not None and tuple(found.shape[:-1]) == kernel[:-1]
            and found.shape[-1] != kernel[-1])


def _leftovers(model, reference, modules, mapping, spec, path, options) -> list[str]:
    """Lines for the file's modules this model leaves out on purpose; ValueError for any other."""
    present = set(_weighted_names(model))
    order = {name: i for i, name in enumerate(_weighted_names(reference))}
    lines, optional, deeper = [], {}, []
    reason = "include_top=False" if not options.get("include_top", True) else "features_only=True"
    for prefix, target in sorted(mapping.items(), key=lambda item: order.get(item[1], len(order))):
        if target in present:
            continue
        pattern = next((p for p, _ in spec.optional if re.match(p, prefix)), None)
        if pattern is not None and target not in order:
            optional.setdefault(pattern, []).append(prefix)
        elif target is not None and target in order and reference is not model:
            if target.startswith(("head_fc", "aux")) or target in spec.classifiers:
                lines.append(f"{target}: not loaded ({reason})")
            else:
                deeper.append(target)
        else:
            shapes = [tuple(v.shape) for k, v in modules[prefix].items() if k not in _IGNORED]
            where = f"its layer {target} is not in {model.name}" if target else f"no layer of {model.name} takes it"
            raise ValueError(f"weights file {path} does not fit {model.name}: the file's module {prefix} {shapes} "
                             f"is left over ({where}).")
    for pattern, prefixes in optional.items():
        lines.append(dict(spec.optional)[pattern])
    if deeper:
        lines.append(f"{len(deeper)} layers after the last requested feature map ({deeper[0]}, ...): not loaded "
                     f"({reason})")
    return lines
