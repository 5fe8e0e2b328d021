"""Octave convolution (Chen et al. 2019, "Drop an Octave: Reducing Spatial Redundancy in Convolutional
Neural Networks with Octave Convolution", ICCV).

A feature map is split into a high-frequency part (full resolution, (1 - alpha) of the channels) and a
low-frequency part (half resolution, alpha of the channels). An octave conv has four paths:
H->H (conv), H->L (2x2 average pooling, then conv), L->H (conv, then nearest upsampling x2), L->L (conv).
Its weights are those of the vanilla conv split four ways, so an octave network keeps the parameter
count of the vanilla one. A stride-2 octave conv average-pools its inputs first and then convolves at
stride 1; its L->H path needs no upsampling (the low map is already at the new high resolution), as in
the reference implementation (d-li14/octconv.pytorch). Every block takes and returns ``(x_high, x_low)``;
``x_low`` is None for a single-frequency tensor (alpha 0).

Odd sides: the reference needs even sides everywhere (2x2 pooling floors, so x2 upsampling comes back one
short). Here a 2x2 average pool of an odd side rounds up (the last row and column average themselves
alone, as a stride-2 conv with padding rounds up), so the low frequency of an n-sided map has side
ceil(n/2), and L->H, upsampled to 2*ceil(n/2) = n + 1, is cropped at the bottom/right to n
(:func:`catalog.blocks.layers.crop_to`, as the FPN top-down path does), which equals a nearest resize.
At even sides nothing changes: the pools are valid pools and no crop layer is added. Odd sides need a
static height and width.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv2d, crop_to


def _split(channels: int, alpha: float) -> tuple[int, int]:
    low = int(alpha * channels)
    return channels - low, low


def _check_alpha(alpha, argument: str):
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
        raise ValueError(f"{argument} must be a number in [0, 1); got {alpha!r}.")


def _pool2(x, name):
    """2x2/2 average pool rounding an odd static side up (``padding="same"``: the last row and column
    average only themselves); a valid pool when the sides are even or unknown."""
    odd = any(side is not None and side % 2 for side in x.shape[1:3])
    return layers.AveragePooling2D(2, padding="same" if odd else "valid", name=name)(x)


def _half(side):
    return None if side is None else -(-side // 2)


def _conv(x, filters, kernel_size, name):
    return conv2d(filters, kernel_size, padding="same", use_bias=False, name=name)(x)


def octave_conv(x_high, x_low, filters: int, kernel_size: int = 3, alpha_in: float = 0.5,
                alpha_out: float = 0.5, stride: int = 1, *, name: str):
    """One octave convolution (no bias); returns ``(y_high, y_low)``, ``y_low`` None when alpha_out = 0.

    First layer: ``alpha_in=0`` (``x_low`` None); last layer: ``alpha_out=0``. Paths are named
    ``{name}_h2h``, ``{name}_h2l``, ``{name}_l2h``, ``{name}_l2l``. Parameters: k*k*C_in*C_out.

    Args:
        x_high: high-frequency input (N, H, W, C_in - int(alpha_in*C_in)).
        x_low: low-frequency input (N, ceil(H/2), ceil(W/2), int(alpha_in*C_in)), or None when alpha_in = 0.
        filters: output channels C_out (split into int(alpha_out*C_out) low and the rest high).
        kernel_size: kernel of all four paths.
        alpha_in: low-frequency ratio of the input.
        alpha_out: low-frequency ratio of the output.
        stride: 1 or 2.
        name: layer name prefix.
    """
    _check_alpha(alpha_in, "alpha_in")
    _check_alpha(alpha_out, "alpha_out")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2; got {stride!r}.")
    if (x_low is None) != (alpha_in == 0):
        raise ValueError("x_low must be None exactly when alpha_in is 0; "
                         f"got alpha_in={alpha_in} and x_low={'None' if x_low is None else 'a tensor'}.")
    if x_low is not None:
        want = tuple(_half(side) for side in x_high.shape[1:3])
        got = tuple(x_low.shape[1:3])
        if None not in want + got and want != got:
            raise ValueError(f"x_low must have half the height and width of x_high, rounded up, {want}; "
                             f"got {got}.")
    high_out, low_out = _split(filters, alpha_out)
    if stride == 2:
        x_high = _pool2(x_high, f"{name}_high_pool")
    y_high = _conv(x_high, high_out, kernel_size, f"{name}_h2h")
    y_low = None
    if low_out:
        h2l = _pool2(x_high, f"{name}_h2l_pool")
        y_low = _conv(h2l, low_out, kernel_size, f"{name}_h2l")
    if x_low is not None:
        l2h = _conv(x_low, high_out, kernel_size, f"{name}_l2h")
        if stride == 1:
            l2h = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_l2h_up")(l2h)
            l2h = crop_to(l2h, y_high, name=f"{name}_l2h_crop")
        y_high = layers.Add(name=f"{name}_high_add")([y_high, l2h])
        if low_out:
            if stride == 2:
                x_low = _pool2(x_low, f"{name}_low_pool")
            l2l = _conv(x_low, low_out, kernel_size, f"{name}_l2l")
            y_low = layers.Add(name=f"{name}_low_add")([y_low, l2l])
    return y_high, y_low


def octave_conv_bn_act(x_high, x_low, filters: int, kernel_size: int = 3, alpha_in: float = 0.5,
                       alpha_out: float = 0.5, stride: int = 1, activation: str | None = "relu", *,
                       zero_init: bool = False, name: str):
    """Octave conv -> BatchNorm -> activation on each frequency (``{name}_high_bn``, ``{name}_low_act``, ...).

    Args:
        x_high, x_low, filters, kernel_size, alpha_in, alpha_out, stride: as in :func:`octave_conv`.
        activation: activation name or None.
        zero_init: start both BatchNorm gammas at 0 (the unit outputs zeros).
        name: layer name prefix.
    """
    gamma = {"gamma_initializer": "zeros"} if zero_init else {}
    y_high, y_low = octave_conv(x_high, x_low, filters, kernel_size, alpha_in, alpha_out, stride,
                                name=f"{name}_conv")
    y_high = act(batch_norm(y_high, name=f"{name}_high_bn", **gamma), activation, name=f"{name}_high_act")
    if y_low is not None:
        y_low = act(batch_norm(y_low, name=f"{name}_low_bn", **gamma), activation, name=f"{name}_low_act")
    return y_high, y_low


def octave_bottleneck(x_high, x_low, filters: int, stride: int = 1, alpha_in: float = 0.5,
                      alpha: float = 0.5, alpha_out: float = 0.5, expansion: int = 4, *,
                      zero_init_residual: bool = False, name: str):
    """OctResNet bottleneck: the ResNet-50 v1.5 bottleneck with octave convs (stride on the 3x3).

    1x1 octave conv-BN-ReLU (alpha_in -> alpha) -> 3x3 octave conv-BN-ReLU (alpha -> alpha, stride) ->
    1x1 octave conv-BN (alpha -> alpha_out, 4*filters); shortcut: identity, or a 1x1 octave conv-BN
    (alpha_in -> alpha_out, stride) when the stride or the width changes; add and ReLU on each frequency.
    The first block of OctResNet has alpha_in = 0; the blocks of the last stage have alpha = alpha_out = 0
    (its first block has alpha_in = alpha of the network), as in the reference implementation.

    Args:
        x_high, x_low: the block input (``x_low`` None when alpha_in = 0).
        filters: width of the 1x1 and 3x3 convs; the output has ``expansion * filters`` channels.
        stride: stride of the 3x3 conv and the projection shortcut.
        alpha_in: low-frequency ratio of the input.
        alpha: low-frequency ratio inside the block.
        alpha_out: low-frequency ratio of the output.
        expansion: output width factor.
        zero_init_residual: start ``conv3``'s BatchNorm gammas (high and low) at 0, so the block starts as
            the identity (Goyal et al. 2017; see :mod:`catalog.blocks.residual`).
        name: layer name prefix.
    """
    out_channels = expansion * filters
    in_channels = int(x_high.shape[-1]) + (0 if x_low is None else int(x_low.shape[-1]))
    alpha_mid = alpha if alpha_out else 0.0
    h, l = octave_conv_bn_act(x_high, x_low, filters, 1, alpha_in, alpha_mid, name=f"{name}_conv1")
    h, l = octave_conv_bn_act(h, l, filters, 3, alpha_mid, alpha_mid, stride, name=f"{name}_conv2")
    h, l = octave_conv_bn_act(h, l, out_channels, 1, alpha_mid, alpha_out, activation=None,
                              zero_init=zero_init_residual, name=f"{name}_conv3")
    if stride != 1 or in_channels != out_channels or alpha_in != alpha_out:
        s_high, s_low = octave_conv_bn_act(x_high, x_low, out_channels, 1, alpha_in, alpha_out, stride,
                                           activation=None, name=f"{name}_shortcut")
    else:
        s_high, s_low = x_high, x_low
    h = act(layers.Add(name=f"{name}_high_add")([h, s_high]), "relu", name=f"{name}_high_out")
    if l is not None:
        l = act(layers.Add(name=f"{name}_low_add")([l, s_low]), "relu", name=f"{name}_low_out")
    return h, l
