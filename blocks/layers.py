"""Small shared pieces every block family uses: conv-norm-activation, activations, make_divisible, drop-path,
and ``crop_to``, which matches a map upsampled from a rounded-up size to an odd-sized one.

``conv_bn_act`` is the one place that owns padding, normalization settings and the choice of activation, so
no block or family repeats those keywords. A family whose reference uses other BatchNorm settings builds
inside ``with norm_defaults(epsilon=..., momentum=...)``.

Normalization (:data:`NORMS`): BatchNorm by default; ``norm_defaults(kind=...)`` builds every normalized
layer of a block or family with GroupNorm (Wu and He 2018: statistics per sample over the (C/G)*H*W values
of each of G groups of channels), LayerNorm (per sample over C*H*W; GroupNorm with one group), InstanceNorm
(per sample and channel over H*W; GroupNorm with one group per channel) or none. The non-batch kinds keep a
gamma and beta per channel and keep the BatchNorm layer's name (``*_bn``), so weights map and layers freeze
by one set of names whatever the normalization.

Initialization (torchvision's ``ResNet.__init__``, which most of its families copy): every convolution
kernel is He-normal with fan-out, N(0, 2 / fan_out) (``kaiming_normal_(mode="fan_out",
nonlinearity="relu")``), conv biases 0; normalization gamma 1 and beta 0 (Keras' defaults), or gamma 0
where a residual branch ends (``zero_init``). :func:`conv2d`, :func:`depthwise_conv2d` and
:func:`separable_conv2d` make every convolution of the catalog, so the rule lives here only;
``init_defaults(rule)`` selects another of :data:`INITIALIZERS`. Classifier heads follow
:mod:`catalog.models.classifier`.
"""

from __future__ import annotations

import contextlib
import functools

import keras
from keras import layers, ops

# torchvision's BatchNorm (eps 1e-5, momentum 0.1 in PyTorch's convention = 0.9 in Keras').
_NORM = {"epsilon": 1e-5, "momentum": 0.9}
NORMS = ("batch", "group", "layer", "instance", "none")
# The kind that ``norm=True`` and ``batch_norm`` build, and GroupNorm's number of groups (Wu and He 2018's 32).
_NORM_KIND = {"kind": "batch", "groups": 32}
_NORM_RECORDS: list[dict] = []  # one per open norm_defaults: the normalizations built inside it, by kind
_BATCH_ONLY = ("momentum", "moving_mean_initializer", "moving_variance_initializer", "synchronized")


def norm_kind(norm, argument: str = "norm") -> str:
    """The kind of :data:`NORMS` that ``norm`` selects: True is the current default kind (BatchNorm unless a
    ``norm_defaults(kind=...)`` is open), False and None are "none"."""
    if norm is True:
        return _NORM_KIND["kind"]
    if norm is False or norm is None:
        return "none"
    if isinstance(norm, str) and norm in NORMS:
        return norm
    raise ValueError(f"{argument} must be True, False, None or one of {', '.join(NORMS)}; got {norm!r}.")


@contextlib.contextmanager
def norm_defaults(epsilon: float | None = None, momentum: float | None = None, scale: bool | None = None,
                  kind: str | None = None, groups: int | None = None):
    """Temporarily change the normalization ``conv_bn_act`` and ``batch_norm`` build (None: unchanged).

    Args:
        epsilon: added to the variance, every kind.
        momentum: BatchNorm's moving-average momentum (Keras' convention).
        scale: whether a gamma is learned, every kind.
        kind: one of :data:`NORMS`; what ``conv_bn_act(norm=True)`` and ``batch_norm`` build.
        groups: GroupNorm's number of groups (kind "group"); it must divide every normalized layer's channels.

    Yields a dict counting, by kind, the normalizations requested inside the block (``"none"`` counts the
    layers a "none" selection left out).
    """
    if kind is not None:
        norm_kind(kind, "kind")
    if groups is not None and (isinstance(groups, bool) or not isinstance(groups, int) or groups < 1):
        raise ValueError(f"groups must be a positive integer; got {groups!r}.")
    with _scoped_defaults(_NORM_RECORDS, dict.fromkeys(NORMS, 0),
                          (_NORM, dict(epsilon=epsilon, momentum=momentum, scale=scale)),
                          (_NORM_KIND, dict(kind=kind, groups=groups))) as record:
        yield record


@contextlib.contextmanager
def _scoped_defaults(records: list, record: dict, *changes):
    """Inside the block, each ``(table, updates)`` of ``changes`` holds its updates that are not None and
    ``record`` is in ``records`` (the open blocks' counters); both are undone on exit."""
    saved = [(table, dict(table)) for table, _ in changes]
    for table, updates in changes:
        table.update({key: value for key, value in updates.items() if value is not None})
    records.append(record)
    try:
        yield record
    finally:
        records[:] = [r for r in records if r is not record]  # by identity: equal counts are common
        for table, values in saved:
            table.clear()
            table.update(values)


# Convolution initialization rules: (variance scale, fan as PyTorch computes it, distribution). Normal rules are
# untruncated, as PyTorch's kaiming_normal_/xavier_normal_ (Keras' glorot_normal and lecun_normal truncate at 2
# sigma and rescale); the std is sqrt(scale / fan), a uniform's limit sqrt(3 * scale / fan).
_INIT_RULES = {
    "he_normal_fan_out": (2.0, "fan_out", "untruncated_normal"),
    "he_normal_fan_in": (2.0, "fan_in", "untruncated_normal"),
    "he_uniform_fan_in": (2.0, "fan_in", "uniform"),
    "he_uniform_fan_out": (2.0, "fan_out", "uniform"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "untruncated_normal"),
    "lecun_normal": (1.0, "fan_in", "untruncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}
INITIALIZERS = tuple(_INIT_RULES)
_INIT = {"rule": "he_normal_fan_out"}
_INIT_RECORDS: list[dict] = []  # one per open init_defaults: how many kernels took the rule inside it


def _init_rule(rule: str | None) -> tuple:
    if rule is None:
        for record in _INIT_RECORDS:
            record["kernels"] += 1
        rule = _INIT["rule"]
    if rule not in _INIT_RULES:
        raise ValueError(f"initializer must be one of {', '.join(INITIALIZERS)}; got {rule!r}.")
    return _INIT_RULES[rule]


@contextlib.contextmanager
def init_defaults(rule: str | None = None):
    """Temporarily make every convolution kernel of :func:`conv2d`, :func:`depthwise_conv2d` and
    :func:`separable_conv2d` with ``rule``, one of :data:`INITIALIZERS` (None: unchanged).

    Yields a dict whose ``"kernels"`` counts the kernels that took the rule inside the block.
    """
    if rule is not None:
        _init_rule(rule)
    record = {"rule": rule or _INIT["rule"], "kernels": 0}
    with _scoped_defaults(_INIT_RECORDS, record, (_INIT, {"rule": rule})):
        yield record


def positive_int(value, arg: str) -> None:
    """Raise a one-sentence ValueError naming ``arg`` unless ``value`` is a positive int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{arg} must be a positive integer; got {value!r}.")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90% of it (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def conv_initializer(rule: str | None = None) -> keras.initializers.Initializer:
    """The kernel initializer of a regular or grouped convolution: ``rule`` (one of :data:`INITIALIZERS`),
    by default the one ``init_defaults`` selects, He-normal with fan-out (torchvision's
    ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``).

    std = sqrt(2 / fan_out), fan_out = kh * kw * out_channels for a Keras kernel (kh, kw, in/groups, out),
    as PyTorch's for its (out, in/groups, kh, kw): the two frameworks' fans agree for regular and grouped
    convolutions, so every rule is PyTorch's.
    A new instance per layer: a Keras initializer keeps the seed it was made with, so one shared instance
    would give every kernel of the same shape the same values.
    """
    scale, mode, distribution = _init_rule(rule)
    return keras.initializers.VarianceScaling(scale, mode, distribution)


def depthwise_initializer(depth_multiplier: int = 1, rule: str | None = None) -> keras.initializers.Initializer:
    """A depthwise kernel's initializer with PyTorch's fans (``rule`` as :func:`conv_initializer`'s).

    PyTorch stores a depthwise conv (groups = C, multiplier m) as (C*m, 1, kh, kw), and its fan ignores
    groups, so fan_out = C*m*kh*kw and fan_in = kh*kw. Keras stores the kernel as (kh, kw, C, m) and computes
    fan_in = kh*kw*C, fan_out = kh*kw*m: "fan_out" would give sqrt(2 / (kh*kw*m)), sqrt(C) times torch's
    std. "fan_in" with scale 2/m gives exactly torch's: 2/m / (kh*kw*C) = 2 / (C*m*kh*kw); torch's fan_in
    is Keras' fan_out with scale 2*m. The average, kh*kw*(1 + C*m)/2 in PyTorch, is Keras' kh*kw*(C + m)/2:
    equal for m = 1; the glorot rules use Keras' for m > 1.
    """
    scale, mode, distribution = _init_rule(rule)
    if mode == "fan_out":
        scale, mode = scale / depth_multiplier, "fan_in"
    elif mode == "fan_in":
        scale, mode = scale * depth_multiplier, "fan_out"
    return keras.initializers.VarianceScaling(scale, mode, distribution)


@functools.lru_cache(maxsize=1)
def _has_accelerator() -> bool:
    """Whether the backend sees a GPU or TPU (``keras.distribution.list_devices`` lists CPUs only without)."""
    return any(not device.lower().startswith("cpu") for device in keras.distribution.list_devices())


@keras.saving.register_keras_serializable(package="catalog")
class GroupedConv2D(layers.Conv2D):
    """``Conv2D`` with 1 < ``groups`` < input channels: the same kernel (kh, kw, in/groups, out), weights and
    output, but on a machine without a GPU or TPU it runs as one convolution per group, concatenated.

    The CPU kernels of TensorFlow and of XLA (so JAX's too) compute a grouped convolution's gradient 10x to
    250x slower than the per-group convolutions do; a ResNeXt trained 13x slower than a ResNet of the same
    MACs (benchmarks/grouped_conv.py, docs/performance.md). On an accelerator, and for a depthwise count
    (groups = input channels), which both backends run fast, it is Keras' grouped convolution.
    """

    def convolution_op(self, inputs, kernel):
        axis = -1 if self.data_format == "channels_last" else 1
        if self.groups in (1, inputs.shape[axis]) or _has_accelerator():
            return super().convolution_op(inputs, kernel)
        pieces = zip(ops.split(inputs, self.groups, axis=axis), ops.split(kernel, self.groups, axis=-1))
        return ops.concatenate([ops.conv(x, k, strides=list(self.strides), padding=self.padding,
                                         dilation_rate=self.dilation_rate, data_format=self.data_format)
                                for x, k in pieces], axis=axis)


def conv2d(filters: int, kernel_size=1, strides=1, *, name: str, **kwargs) -> layers.Conv2D:
    """A ``Conv2D`` layer with :func:`conv_initializer` (``kwargs`` are Conv2D's; they win); a
    :class:`GroupedConv2D` where ``groups`` > 1."""
    kind = GroupedConv2D if kwargs.get("groups", 1) > 1 else layers.Conv2D
    return kind(filters, kernel_size, strides=strides, name=name,
                **{"kernel_initializer": conv_initializer(), **kwargs})


def depthwise_conv2d(kernel_size=3, strides=1, *, name: str, depth_multiplier: int = 1,
                     **kwargs) -> layers.DepthwiseConv2D:
    """A ``DepthwiseConv2D`` layer with :func:`depthwise_initializer` (``kwargs`` win)."""
    return layers.DepthwiseConv2D(kernel_size, strides=strides, depth_multiplier=depth_multiplier, name=name,
                                  **{"depthwise_initializer": depthwise_initializer(depth_multiplier), **kwargs})


def separable_conv2d(filters: int, kernel_size=3, strides=1, *, name: str, depth_multiplier: int = 1,
                     **kwargs) -> layers.SeparableConv2D:
    """A ``SeparableConv2D`` layer: the depthwise kernel as :func:`depthwise_conv2d`'s, the pointwise one
    as :func:`conv2d`'s (a 1x1 conv to ``filters``, fan_out = filters in both frameworks)."""
    return layers.SeparableConv2D(filters, kernel_size, strides=strides, depth_multiplier=depth_multiplier,
                                  name=name, **{"depthwise_initializer": depthwise_initializer(depth_multiplier),
                                                "pointwise_initializer": conv_initializer(), **kwargs})


def normalization(x, name: str, kind: str | None = None, **overrides):
    """Normalize ``x`` over its channel axis with ``kind`` (one of :data:`NORMS`; default the one
    ``norm_defaults`` selects) and the current ``norm_defaults`` settings (``overrides`` win).

    BatchNorm is ``BatchNormalization``; the others are ``GroupNormalization`` with ``groups`` groups
    (GroupNorm), one group (LayerNorm over H, W and C, with a gamma and beta per channel as in Wu and He 2018,
    not ``LayerNormalization(axis=(1, 2, 3))``'s per position, which would tie the weights to one input size)
    or one group per channel (InstanceNorm). "none" returns ``x`` (no layer).
    """
    kind = norm_kind(_NORM_KIND["kind"] if kind is None else kind)
    for record in _NORM_RECORDS:
        record[kind] += 1
    if kind == "none":
        return x
    settings = {**_NORM, **overrides}
    if kind == "batch":
        return layers.BatchNormalization(axis=-1, name=name, **settings)(x)
    channels = x.shape[-1]
    groups = {"group": _NORM_KIND["groups"], "layer": 1, "instance": channels}[kind]
    if channels % groups:
        raise ValueError(f"GroupNorm layer {name!r} normalizes {channels} channels, which {groups} groups do "
                         f"not divide; choose a group count (create_model's norm_groups) dividing every "
                         f"normalized layer's channels.")
    settings = {k: v for k, v in settings.items() if k not in _BATCH_ONLY}
    return layers.GroupNormalization(groups=groups, axis=-1, name=name, **settings)(x)


def batch_norm(x, name: str, **overrides):
    """The normalization ``norm_defaults`` selects (BatchNorm unless a family or ``create_model`` chose
    another) over the channel axis, with its current settings (``overrides`` win); see :func:`normalization`."""
    return normalization(x, name, **overrides)


@keras.saving.register_keras_serializable(package="catalog")
def scaled_tanh(x):
    """LeCun et al. 1998's squashing function, 1.7159 * tanh(2x/3): f(1) = 1 and f(-1) = -1, gain about 1 near 0."""
    return 1.7159 * ops.tanh(x * (2.0 / 3.0))


_ACTIVATIONS = {
    "relu": lambda name: layers.ReLU(name=name),
    "relu6": lambda name: layers.ReLU(max_value=6.0, name=name),
    "leaky_relu": lambda name: layers.LeakyReLU(negative_slope=0.1, name=name),
    "swish": lambda name: layers.Activation("silu", name=name),
    "silu": lambda name: layers.Activation("silu", name=name),
    "hard_swish": lambda name: layers.Activation("hard_swish", name=name),
    "hard_sigmoid": lambda name: layers.Activation("hard_sigmoid", name=name),
    "sigmoid": lambda name: layers.Activation("sigmoid", name=name),
    "tanh": lambda name: layers.Activation("tanh", name=name),
    "scaled_tanh": lambda name: layers.Activation(scaled_tanh, name=name),
    "gelu": lambda name: layers.Activation("gelu", name=name),
    "elu": lambda name: layers.Activation("elu", name=name),
}

ACTIVATIONS = tuple(sorted((*_ACTIVATIONS, "prelu")))


def act(x, kind: str | None, name: str):
    """Apply the activation ``kind``: one of ``ACTIVATIONS``, ``"leaky_relu_<slope>"`` (``"leaky_relu_0.2"``;
    plain ``"leaky_relu"`` has slope 0.1), or None for the identity.

    ``"prelu"`` is He et al. 2015's channel-wise PReLU: one learned slope per channel, shared over the
    other axes, initialized to 0.25 (C parameters). ``"scaled_tanh"`` is LeNet-5's 1.7159 * tanh(2x/3)
    (:func:`scaled_tanh`).
    """
    if kind is None:
        return x
    if kind == "prelu":
        return layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                            shared_axes=list(range(1, len(x.shape) - 1)) or None, name=name)(x)
    if isinstance(kind, str) and kind.startswith("leaky_relu_"):
        try:
            slope = float(kind[len("leaky_relu_"):])
        except ValueError:
            raise ValueError(f"a leaky_relu slope must be a number, as 'leaky_relu_0.2'; got {kind!r}.") from None
        return layers.LeakyReLU(negative_slope=slope, name=name)(x)
    if kind not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or None; got {kind!r}.")
    return _ACTIVATIONS[kind](name)(x)


def pad_symmetric(x, kernel_size: int, dilation: int = 1, name: str | None = None):
    """Zero-pad by ``dilation * (kernel_size - 1) // 2`` on every side (PyTorch's ``padding=k//2``)."""
    pad = dilation * (kernel_size - 1) // 2
    return layers.ZeroPadding2D(pad, name=name)(x) if pad else x


def crop_to(x, ref, name: str, mismatch: str = "a map must be at least as large as the map it is cropped to"):
    """Crop the bottom/right of ``x`` to the static height and width of ``ref`` (no layer if they agree).

    Where a map upsampled x2 from a side rounded up (n -> ceil(n/2) -> 2*ceil(n/2) = n + 1 for odd n)
    meets a map of side n, this drops the extra bottom row and right column, which equals a nearest
    resize to size n (PyTorch's ``interpolate(size=n)``). Needs static sizes: with a None height or
    width nothing is cropped. Raises ValueError (``mismatch``, then both sizes) when ``x`` is smaller.
    """
    (h, w), (rh, rw) = x.shape[1:3], ref.shape[1:3]
    if None in (h, w, rh, rw) or (h, w) == (rh, rw):
        return x
    if h < rh or w < rw:
        raise ValueError(f"{mismatch}; got {(rh, rw)} next to a map of {(h, w)}.")
    return layers.Cropping2D(((0, h - rh), (0, w - rw)), name=name)(x)


def max_pool_ceil(x, name: str, pool_size: int = 3, strides: int = 2):
    """Max pooling with Caffe/PyTorch ``ceil_mode``: a zero row and column on the bottom/right, then a
    valid pool. Exact for non-negative inputs (after a ReLU), where the zeros never win."""
    x = layers.ZeroPadding2D(((0, strides - 1), (0, strides - 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=strides, name=name)(x)


def conv_bn_act(x, filters: int, kernel_size=3, strides=1, *, name: str, groups: int = 1,
                dilation: int = 1, padding: str = "same", activation: str | None = "relu",
                norm: bool | str | None = True, use_bias: bool | None = None, depthwise: bool = False,
                zero_init: bool = False):
    """Conv2D (or DepthwiseConv2D) -> normalization -> activation, named ``{name}_conv/_bn/_act``.

    Args:
        x: input tensor (NHWC).
        filters: output channels (ignored for ``depthwise=True``, which keeps the channel count).
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        name: prefix of the layer names.
        groups: convolution groups (ResNeXt, ShuffleNet, AlexNet towers).
        dilation: dilation rate.
        padding: "same", "valid", or "symmetric" (explicit zero padding of k//2, as PyTorch pads).
        activation: a name from ``ACTIVATIONS`` or None.
        norm: the normalization after the convolution: True (the kind ``norm_defaults`` selects, BatchNorm
            by default), one of :data:`NORMS`, or False/None (none).
        use_bias: conv bias; defaults to True without normalization only (no bias before a normalization).
        depthwise: use a depthwise convolution.
        zero_init: the unit starts by outputting zeros: the normalization's gamma 0 (the last BN of a
            residual branch, Goyal et al. 2017), or, without normalization, a zero conv kernel (timm's
            ``zero_init_last`` for pre-activation blocks, whose branch ends in a conv).
    """
    if padding not in ("same", "valid", "symmetric"):
        raise ValueError(f"padding must be 'same', 'valid' or 'symmetric'; got {padding!r}.")
    kind = norm_kind(norm)
    use_bias = (kind == "none") if use_bias is None else use_bias
    conv_padding = padding
    if padding == "symmetric":
        k = kernel_size if isinstance(kernel_size, int) else max(kernel_size)
        x = pad_symmetric(x, k, dilation, name=f"{name}_pad")
        conv_padding = "valid"
    kernel = "depthwise_initializer" if depthwise else "kernel_initializer"
    zero_kernel = {kernel: "zeros"} if zero_init and kind == "none" else {}
    if depthwise:
        x = depthwise_conv2d(kernel_size, strides, padding=conv_padding, dilation_rate=dilation,
                             use_bias=use_bias, name=f"{name}_conv", **zero_kernel)(x)
    else:
        x = conv2d(filters, kernel_size, strides, padding=conv_padding, groups=groups, dilation_rate=dilation,
                   use_bias=use_bias, name=f"{name}_conv", **zero_kernel)(x)
    if kind != "none" or norm is True:  # a "none" that norm_defaults selected is counted there
        x = normalization(x, name=f"{name}_bn", kind=kind, **({"gamma_initializer": "zeros"} if zero_init else {}))
    return act(x, activation, name=f"{name}_act")


@keras.saving.register_keras_serializable(package="catalog")
class DropPath(layers.Layer):
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample with probability ``rate``.

    Kept samples are scaled by 1/(1-rate) in training; the identity at inference.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1); got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def drop_path(x, rate: float, name: str):
    """Apply ``DropPath(rate)`` when rate > 0; the identity otherwise (no layer is added)."""
    return DropPath(rate, name=name)(x) if rate > 0 else x
