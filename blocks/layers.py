"""Small shared pieces every block family uses: conv-norm-activation, activations, make_divisible, drop-path.

``conv_bn_act`` is the one place that owns padding, BatchNorm epsilon/momentum and the choice of
activation, so no block or family repeats those keywords. A family whose reference uses other BatchNorm
settings builds inside ``with norm_defaults(epsilon=..., momentum=...)``.
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

ACTIVATIONS = tuple(sorted(_ACTIVATIONS))


def act(x, kind: str | None, name: str):
    """Apply the activation ``kind`` (one of ``ACTIVATIONS``, or None for the identity)."""
    if kind is None:
        return x
    if kind not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or None; got {kind!r}.")
    return _ACTIVATIONS[kind](name)(x)


def pad_symmetric(x, kernel_size: int, dilation: int = 1, name: str | None = None):
    """Zero-pad by ``dilation * (kernel_size - 1) // 2`` on every side (PyTorch's ``padding=k//2``)."""
    pad = dilation * (kernel_size - 1) // 2
    return layers.ZeroPadding2D(pad, name=name)(x) if pad else x


def max_pool_ceil(x, name: str, pool_size: int = 3, strides: int = 2):
    """Max pooling with Caffe/PyTorch ``ceil_mode``: a zero row and column on the bottom/right, then a
    valid pool. Exact for non-negative inputs (after a ReLU), where the zeros never win."""
    x = layers.ZeroPadding2D(((0, strides - 1), (0, strides - 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=strides, name=name)(x)


def conv_bn_act(x, filters: int, kernel_size=3, strides=1, *, name: str, groups: int = 1,
                dilation: int = 1, padding: str = "same", activation: str | None = "relu",
                norm: bool = True, use_bias: bool | None = None, depthwise: bool = False):
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
    """
    if padding not in ("same", "valid", "symmetric"):
        raise ValueError(f"padding must be 'same', 'valid' or 'symmetric'; got {padding!r}.")
    use_bias = (not norm) if use_bias is None else use_bias
    conv_padding = padding
    if padding == "symmetric":
        k = kernel_size if isinstance(kernel_size, int) else max(kernel_size)
        x = pad_symmetric(x, k, dilation, name=f"{name}_pad")
        conv_padding = "valid"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding=conv_padding,
                                   dilation_rate=dilation, use_bias=use_bias, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding=conv_padding, groups=groups,
                          dilation_rate=dilation, use_bias=use_bias, name=f"{name}_conv")(x)
    if norm:
        x = batch_norm(x, name=f"{name}_bn")
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
