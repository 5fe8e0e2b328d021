"""3D convolution blocks for clips (N, T, H, W, C): conv-BN-activation, the basic residual block of R3D, and
Caffe's ceil-mode max pooling.

The 3D counterparts of :func:`catalog.blocks.layers.conv_bn_act` and :func:`catalog.blocks.residual.basic`,
with the same conventions: He-normal fan-out kernels (torchvision's ``kaiming_normal_(mode="fan_out")``, whose
fan for a (kt, kh, kw, Cin, Cout) kernel is kt * kh * kw * Cout in both frameworks), no conv bias before
BatchNorm, BatchNorm settings from :func:`catalog.blocks.layers.norm_defaults`, and the layer names
``{name}_conv/_bn/_act``, ``{name}_conv1_conv``, ``{name}_shortcut_conv``, ``{name}_add``, ``{name}_out``.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv_initializer

PADDINGS = ("same", "valid", "symmetric")


def _triple(value, argument: str) -> tuple[int, int, int]:
    """An int or a (t, h, w) triple of positive ints as a triple."""
    triple = (value,) * 3 if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(triple) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in triple):
        raise ValueError(f"{argument} must be a positive integer or a (time, height, width) triple of them; "
                         f"got {value!r}.")
    return triple


def conv3d(filters: int, kernel_size=3, strides=1, *, name: str, **kwargs) -> layers.Conv3D:
    """A ``Conv3D`` layer with :func:`catalog.blocks.layers.conv_initializer` (``kwargs`` are Conv3D's; they win)."""
    return layers.Conv3D(filters, kernel_size, strides=strides, name=name,
                         **{"kernel_initializer": conv_initializer(), **kwargs})


def conv_bn_act_3d(x, filters: int, kernel_size=3, strides=1, *, name: str, padding: str = "same",
                   activation: str | None = "relu", norm: bool = True, use_bias: bool | None = None,
                   zero_init: bool = False):
    """Conv3D -> BatchNorm -> activation, named ``{name}_conv/_bn/_act`` (``{name}_pad`` for explicit padding).

    Args:
        x: input tensor (N, T, H, W, C).
        filters: output channels.
        kernel_size: int or (kt, kh, kw).
        strides: int or (st, sh, sw).
        name: prefix of the layer names.
        padding: "same", "valid", or "symmetric" (zero padding of k // 2 on both sides of each axis, as
            PyTorch pads; "same" pads a strided conv on the far side only).
        activation: an activation name of :func:`catalog.blocks.layers.act`, or None.
        norm: whether BatchNorm follows the convolution.
        use_bias: conv bias; defaults to ``not norm``.
        zero_init: start the unit at zeros: BatchNorm gamma 0, or a zero kernel with ``norm=False``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}.")
    kernel = _triple(kernel_size, "kernel_size")
    strides = _triple(strides, "strides")
    use_bias = (not norm) if use_bias is None else use_bias
    conv_padding = padding
    if padding == "symmetric":
        pad = tuple(k // 2 for k in kernel)
        if any(pad):
            x = layers.ZeroPadding3D(pad, name=f"{name}_pad")(x)
        conv_padding = "valid"
    zero_kernel = {"kernel_initializer": "zeros"} if zero_init and not norm else {}
    x = conv3d(filters, kernel, strides, padding=conv_padding, use_bias=use_bias, name=f"{name}_conv",
               **zero_kernel)(x)
    if norm:
        x = batch_norm(x, name=f"{name}_bn", **({"gamma_initializer": "zeros"} if zero_init else {}))
    return act(x, activation, name=f"{name}_act")


def max_pool3d_ceil(x, pool_size=2, strides=None, *, name: str):
    """3D max pooling with Caffe's ceil mode (C3D's pools): each axis padded on the far side by
    ``stride - 1`` zeros, then a valid pool, so a side n gives ceil((n - k) / s) + 1 (C3D's 7 -> 4 at pool5).
    Exact for non-negative inputs (after a ReLU), where the zeros never win. Names ``{name}_pad``, ``{name}``."""
    pool = _triple(pool_size, "pool_size")
    strides = pool if strides is None else _triple(strides, "strides")
    pad = tuple((0, s - 1) for s in strides)
    if any(p for _, p in pad):
        x = layers.ZeroPadding3D(pad, name=f"{name}_pad")(x)
    return layers.MaxPooling3D(pool, strides=strides, name=name)(x)


def basic_3d(x, filters: int, stride: int = 1, *, zero_init_residual: bool = False, name: str):
    """The 3D basic block of R3D (Tran et al. 2018; torchvision ``BasicBlock`` with ``Conv3DSimple``):
    3x3x3(stride)-BN-ReLU, 3x3x3-BN, + shortcut, ReLU.

    The stride applies to time, height and width alike, with PyTorch's symmetric padding of 1. The shortcut is
    the identity, or a 1x1x1 conv (stride) + BN when the shape changes. Parameters: 27*Cin*F + 27*F*F + 4F,
    plus Cin*F + 2F for a projection.

    Args:
        x: input tensor (N, T, H, W, C).
        filters: output channels F.
        stride: 1 or 2 (on the first 3x3x3 and the projection).
        zero_init_residual: start ``conv2_bn``'s gamma at 0 (the block starts as the identity).
        name: layer name prefix.
    """
    if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
        raise ValueError(f"filters must be a positive integer; got {filters!r}.")
    if stride not in (1, 2) or isinstance(stride, bool):
        raise ValueError(f"stride must be 1 or 2; got {stride!r}.")
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = conv_bn_act_3d(x, filters, 1, stride, activation=None, name=f"{name}_shortcut")
    y = conv_bn_act_3d(x, filters, 3, stride, padding="symmetric" if stride > 1 else "same", name=f"{name}_conv1")
    y = conv_bn_act_3d(y, filters, 3, activation=None, zero_init=zero_init_residual, name=f"{name}_conv2")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return act(y, "relu", name=f"{name}_out")
