"""Small shared pieces every block family uses: conv-norm-activation, activations, make_divisible, drop-path,
and ``crop_to``, which matches a map upsampled from a rounded-up size to an odd-sized one.

``conv_bn_act`` is the one place that owns padding, BatchNorm epsilon/momentum and the choice of
activation, so no block or family repeats those keywords. A family whose reference uses other BatchNorm
settings builds inside ``with norm_defaults(epsilon=..., momentum=...)``.

Initialization (torchvision's ``ResNet.__init__``, which most of its families copy): every convolution
kernel is He-normal with fan-out, N(0, 2 / fan_out) (``kaiming_normal_(mode="fan_out",
nonlinearity="relu")``), conv biases 0; BatchNorm gamma 1 and beta 0 (Keras' defaults), or gamma 0 where a
residual branch ends (``zero_init``). :func:`conv2d`, :func:`depthwise_conv2d` and :func:`separable_conv2d`
make every convolution of the catalog, so the rule lives here only. Classifier heads follow
:mod:`catalog.models.classifier`.
"""

from __future__ import annotations

import contextlib

import keras
from keras import layers, ops

# torchvision's BatchNorm (eps 1e-5, momentum 0.1 in PyTorch's convention = 0.9 in Keras').
_NORM = {"epsilon": 1e-5, "momentum": 0.9}


@contextlib.contextmanager
def norm_defaults(epsilon: float | None = None, momentum: float | None = None, scale: bool | None = None):
    """Temporarily change the BatchNorm settings ``conv_bn_act`` and ``batch_norm`` use."""
    saved = dict(_NORM)
    for key, value in (("epsilon", epsilon), ("momentum", momentum), ("scale", scale)):
        if value is not None:
            _NORM[key] = value
    try:
        yield
    finally:
        _NORM.clear()
        _NORM.update(saved)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90% of it (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def conv_initializer() -> keras.initializers.Initializer:
    """He-normal with fan-out, torchvision's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``.

    std = sqrt(2 / fan_out), fan_out = kh * kw * out_channels for a Keras kernel (kh, kw, in/groups, out),
    as PyTorch's for its (out, in/groups, kh, kw): the two agree for regular and grouped convolutions.
    A new instance per layer: a Keras initializer keeps the seed it was made with, so one shared instance
    would give every kernel of the same shape the same values.
    """
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def depthwise_initializer(depth_multiplier: int = 1) -> keras.initializers.Initializer:
    """torchvision's He-normal fan-out for a depthwise kernel: std = sqrt(2 / (kh * kw * C * m)).

    PyTorch stores a depthwise conv (groups = C, multiplier m) as (C*m, 1, kh, kw), and its fan ignores
    groups, so fan_out = C*m*kh*kw. Keras stores the kernel as (kh, kw, C, m) and computes
    fan_in = kh*kw*C, fan_out = kh*kw*m: "fan_out" would give sqrt(2 / (kh*kw*m)), sqrt(C) times torch's
    std. "fan_in" with scale 2/m gives exactly torch's: 2/m / (kh*kw*C) = 2 / (C*m*kh*kw).
    """
    return keras.initializers.VarianceScaling(2.0 / depth_multiplier, "fan_in", "untruncated_normal")


def conv2d(filters: int, kernel_size=1, strides=1, *, name: str, **kwargs) -> layers.Conv2D:
    """A ``Conv2D`` layer with :func:`conv_initializer` (``kwargs`` are Conv2D's; they win)."""
    return layers.Conv2D(filters, kernel_size, strides=strides, name=name,
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


def batch_norm(x, name: str, **overrides):
    """BatchNorm over the channel axis with the current ``norm_defaults`` (``overrides`` win)."""
    return layers.BatchNormalization(axis=-1, name=name, **{**_NORM, **overrides})(x)


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
    "gelu": lambda name: layers.Activation("gelu", name=name),
    "elu": lambda name: layers.Activation("elu", name=name),
}

ACTIVATIONS = tuple(sorted((*_ACTIVATIONS, "prelu")))


def act(x, kind: str | None, name: str):
    """Apply the activation ``kind``: one of ``ACTIVATIONS``, ``"leaky_relu_<slope>"`` (``"leaky_relu_0.2"``;
    plain ``"leaky_relu"`` has slope 0.1), or None for the identity.

    ``"prelu"`` is He et al. 2015's channel-wise PReLU: one learned slope per channel, shared over the
    other axes, initialized to 0.25 (C parameters).
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
                norm: bool = True, use_bias: bool | None = None, depthwise: bool = False,
                zero_init: bool = False):
    """Conv2D (or DepthwiseConv2D) -> BatchNorm -> activation, named ``{name}_conv/_bn/_act``.

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
        norm: whether BatchNorm follows the convolution.
        use_bias: conv bias; defaults to ``not norm`` (no bias before BatchNorm).
        depthwise: use a depthwise convolution.
        zero_init: the unit starts by outputting zeros: BatchNorm gamma 0 (the last BN of a residual
            branch, Goyal et al. 2017), or, with ``norm=False``, a zero conv kernel (timm's
            ``zero_init_last`` for pre-activation blocks, whose branch ends in a conv).
    """
    if padding not in ("same", "valid", "symmetric"):
        raise ValueError(f"padding must be 'same', 'valid' or 'symmetric'; got {padding!r}.")
    use_bias = (not norm) if use_bias is None else use_bias
    conv_padding = padding
    if padding == "symmetric":
        k = kernel_size if isinstance(kernel_size, int) else max(kernel_size)
        x = pad_symmetric(x, k, dilation, name=f"{name}_pad")
        conv_padding = "valid"
    kernel = "depthwise_initializer" if depthwise else "kernel_initializer"
    zero_kernel = {kernel: "zeros"} if zero_init and not norm else {}
    if depthwise:
        x = depthwise_conv2d(kernel_size, strides, padding=conv_padding, dilation_rate=dilation,
                             use_bias=use_bias, name=f"{name}_conv", **zero_kernel)(x)
    else:
        x = conv2d(filters, kernel_size, strides, padding=conv_padding, groups=groups, dilation_rate=dilation,
                   use_bias=use_bias, name=f"{name}_conv", **zero_kernel)(x)
    if norm:
        x = batch_norm(x, name=f"{name}_bn", **({"gamma_initializer": "zeros"} if zero_init else {}))
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
