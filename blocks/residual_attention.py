"""Attention Module of the Residual Attention Network (Wang et al. 2017, "Residual Attention Network for
Image Classification", CVPR), built of pre-activation bottleneck units (:func:`catalog.blocks.residual.
preact_bottleneck` without biases, as the authors' Caffe models have none).

Layout of one module on C channels (paper section 3 and Figure 2; the authors' deploy prototxt):
``p`` units, then two branches from their output. The trunk branch T is ``t`` units. The soft mask branch
M is a bottom-up, top-down hourglass of ``levels`` levels: level i max-pools (3x3, stride 2) and applies
``r`` units (the innermost level 2r); every level but the innermost also feeds a one-unit skip
connection. Going up, each level's map is upsampled to the size of the level above, added to that
level's skip, and passed through ``r`` units; the last upsampling reaches the trunk's size. The mask ends
in BN-ReLU-1x1 conv-BN-ReLU-1x1 conv-sigmoid, so M lies in (0, 1) with T's shape, and attention residual
learning gives ``(1 + M) * T`` (computed as T * M + T), followed by ``p`` units.

Pooling uses "same" padding, which is the authors' Caffe ceil-mode pooling on even sizes (56 -> 28 -> 14
-> 7 at a 224 input). Upsampling is ``UpSampling2D`` x2 (bilinear by default, half-pixel; Caffe's Interp
layer aligns corners, a numerical difference only), cropped at the bottom/right where an odd size was
rounded up. Layer names under ``name``: ``_pre{k}``, ``_trunk{k}``, ``_mask_down{i}_pool``,
``_mask_down{i}_unit{k}``, ``_mask_skip{i}``, ``_mask_up{i}_upsample`` (from level i + 1 to level i, the
trunk's size being level 0; ``_mask_up{i}_add``, ``_mask_up{i}_unit{k}`` for i >= 1), ``_mask_bn``, ``_mask_conv1``,
``_mask_conv2_conv``, ``_mask_sigmoid``, ``_attention`` (T * M), ``_fusion`` ((1 + M) * T), ``_post{k}``.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv_bn_act, crop_to
from catalog.blocks.residual import preact_bottleneck

INTERPOLATIONS = ("bilinear", "nearest")


def unit(x, channels: int, stride: int = 1, *, name: str):
    """The network's residual unit: a bias-free pre-activation bottleneck of ``channels // 4`` planes that
    outputs ``channels`` (a 1x1 projection of the pre-activated input where the shape changes)."""
    if channels % 4:
        raise ValueError(f"channels must be a multiple of 4 (a bottleneck of channels // 4 planes); got {channels}.")
    return preact_bottleneck(x, channels // 4, stride, use_bias=False, name=name)


def _units(x, n: int, name: str):
    channels = int(x.shape[-1])
    for k in range(1, n + 1):
        x = unit(x, channels, name=f"{name}{k}")
    return x


def _upsample(x, ref, interpolation: str, name: str):
    x = layers.UpSampling2D(2, interpolation=interpolation, name=f"{name}_upsample")(x)
    return crop_to(x, ref, name=f"{name}_crop")


def _check_count(value, arg: str, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{arg} must be an integer >= {minimum}; got {value!r}.")


def attention_module(x, levels: int, *, p: int = 1, t: int = 2, r: int = 1, interpolation: str = "bilinear",
                     name: str):
    """Attention Module (Wang et al. 2017): trunk T, hourglass soft mask M, output (1 + M) * T.

    Keeps the input's shape. Parameters on C channels with F = C/4 planes per unit:
    U * (2C + C*F + 9*F*F + 4F + F*C) + 2 * (C*C + 2C) for U = 2p + t + (levels + 1) * r + levels - 1 +
    (levels - 1) * r units (pre/post, trunk, mask down with 2r innermost, skips, mask up) and the mask's
    two 1x1 convs with their BatchNorms.

    Args:
        x: input tensor (NHWC) with a fixed height and width and C channels, a multiple of 4.
        levels: max-pooling levels of the mask branch (the paper: 3 at 56x56, 2 at 28x28, 1 at 14x14).
        p: residual units before the split into trunk and mask, and again after the fusion.
        t: residual units of the trunk branch.
        r: residual units between adjacent pooling / upsampling steps of the mask branch.
        interpolation: "bilinear" or "nearest" upsampling in the mask branch.
        name: layer name prefix.
    """
    _check_count(levels, "levels")
    _check_count(p, "p", 0)
    _check_count(t, "t")
    _check_count(r, "r")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.")
    if None in tuple(x.shape[1:3]):
        raise ValueError(f"attention_module needs a fixed input height and width (its mask branch upsamples "
                         f"back to the trunk's size); got {tuple(x.shape[1:3])}.")
    channels = int(x.shape[-1])
    x = _units(x, p, f"{name}_pre")
    trunk = _units(x, t, f"{name}_trunk")

    mask, skips, sizes = x, [], [x]
    for i in range(1, levels + 1):
        mask = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_mask_down{i}_pool")(mask)
        mask = _units(mask, 2 * r if i == levels else r, f"{name}_mask_down{i}_unit")
        if i < levels:
            skips.append(unit(mask, channels, name=f"{name}_mask_skip{i}"))
            sizes.append(mask)
    for i in range(levels - 1, 0, -1):
        mask = _upsample(mask, sizes[i], interpolation, f"{name}_mask_up{i}")
        mask = layers.Add(name=f"{name}_mask_up{i}_add")([mask, skips[i - 1]])
        mask = _units(mask, r, f"{name}_mask_up{i}_unit")
    mask = _upsample(mask, trunk, interpolation, f"{name}_mask_up0")
    mask = act(batch_norm(mask, name=f"{name}_mask_bn"), "relu", name=f"{name}_mask_act")
    mask = conv_bn_act(mask, channels, 1, name=f"{name}_mask_conv1")
    mask = conv_bn_act(mask, channels, 1, norm=False, use_bias=False, activation=None, name=f"{name}_mask_conv2")
    mask = act(mask, "sigmoid", name=f"{name}_mask_sigmoid")

    attended = layers.Multiply(name=f"{name}_attention")([trunk, mask])
    x = layers.Add(name=f"{name}_fusion")([trunk, attended])  # (1 + M) * T
    return _units(x, p, f"{name}_post")
