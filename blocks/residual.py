"""Residual blocks: basic, bottleneck (v1 / v1.5, ResNeXt, wide), pre-activation (ResNet v2).

Every block has the signature ``block(x, filters, stride=1, ..., name=...) -> tensor``. Common options:
``drop_path_rate`` (stochastic depth, Huang et al. 2016, on the residual branch) and ``attention``, a
callable ``fn(x, name=...)`` (e.g. ``functools.partial(attention.se, ratio=16)``) applied to the residual
branch before the addition, as SENet and CBAM place it. Layer names: ``{name}_conv1_conv``,
``{name}_shortcut_conv``, ``{name}_se_reduce``, ``{name}_drop_path``, ``{name}_add``, ``{name}_out``.

``zero_init_residual=True`` makes every block start as the identity on its residual branch (Goyal et al.
2017, "Accurate, Large Minibatch SGD", torchvision's ``zero_init_residual``): the last BatchNorm of the
branch (``conv2_bn`` of :func:`basic`, ``conv3_bn`` of :func:`bottleneck`) starts with gamma 0. A
pre-activation block has no BatchNorm after its last conv, so there the last conv's kernel starts at 0
(``conv2_conv`` / ``conv3_conv``; its bias, if any, is 0 anyway), as timm's ``zero_init_last`` does for
its pre-activation ResNets. Either way the branch outputs zeros (attention of zeros is zeros), and the
zeroed weights still get gradients, since their inputs are not zero.
"""

from __future__ import annotations

import functools
from typing import Callable

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv_bn_act, drop_path

SHORTCUTS = ("projection", "zero_pad")


def _pad(stride: int) -> str:
    # PyTorch pads a strided 3x3 by 1 on every side; "same" would pad only bottom/right.
    return "same" if stride == 1 else "symmetric"


def _attention_name(fn: Callable) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", "attn").strip("_") or "attn"


def _branch_end(x, *, attention, drop_path_rate: float, name: str):
    """Attention then stochastic depth on the residual branch, before the addition."""
    if attention is not None:
        if not callable(attention):
            raise ValueError(f"attention must be None or a callable fn(x, name=...); got {attention!r}.")
        x = attention(x, name=f"{name}_{_attention_name(attention)}")
    return drop_path(x, drop_path_rate, name=f"{name}_drop_path")


def _check_shortcut_kernel(kernel_size):
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"shortcut_kernel must be a positive odd integer (1 or 3); got {kernel_size!r}.")


def _check(filters, stride, dilation=1):
    if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
        raise ValueError(f"filters must be a positive integer; got {filters!r}.")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2; got {stride!r}.")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation <= 0:
        raise ValueError(f"dilation must be a positive integer; got {dilation!r}.")
    if dilation > 1 and stride > 1:
        raise ValueError(f"dilation > 1 needs stride 1 (a dilated stage replaces its stride); got stride "
                         f"{stride} with dilation {dilation}.")


def _shortcut(x, out_channels: int, stride: int, kind: str, name: str, bias: bool = False, norm: bool = True,
              kernel_size: int = 1):
    """Identity when the shape is kept; otherwise option B (1x1 conv, + BN if ``norm``) or option A.

    Option A (He et al. 2016, CIFAR): subsample by taking every ``stride``-th pixel (a 1x1 max pooling)
    and zero-pad the new channels, half before and half after; no parameters. A ``kernel_size`` > 1
    projection (SENet-154's 3x3) pads k//2 on every side, as PyTorch does.
    """
    in_channels = int(x.shape[-1])
    if stride == 1 and in_channels == out_channels:
        return x
    if kind == "projection":
        return conv_bn_act(x, out_channels, kernel_size, stride, norm=norm, use_bias=bias, activation=None,
                           padding="same" if kernel_size == 1 else "symmetric", name=f"{name}_shortcut")
    if kind != "zero_pad":
        raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}; got {kind!r}.")
    if out_channels < in_channels:
        raise ValueError(f"shortcut='zero_pad' needs filters >= input channels; got {out_channels} < "
                         f"{in_channels}.")
    if stride > 1:
        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_shortcut_pool")(x)
    extra = out_channels - in_channels
    if extra:
        # Channel padding with standard layers: move channels to a spatial axis, pad, move back.
        x = layers.Permute((3, 1, 2), name=f"{name}_shortcut_to_cfirst")(x)
        x = layers.ZeroPadding2D(((extra // 2, extra - extra // 2), (0, 0)), name=f"{name}_shortcut_pad")(x)
        x = layers.Permute((2, 3, 1), name=f"{name}_shortcut_to_clast")(x)
    return x


def basic(x, filters: int, stride: int = 1, *, dilation: int = 1, shortcut: str = "projection",
          drop_path_rate: float = 0.0, attention: Callable | None = None, zero_init_residual: bool = False,
          shortcut_kernel: int = 1, name: str):
    """Basic block of ResNet-18/34 (He et al. 2016): 3x3(stride)-BN-ReLU, 3x3-BN, + shortcut, ReLU.

    Parameters: 9*Cin*F + 9*F*F + 4F, plus k*k*Cin*F + 2F for a projection shortcut of kernel k.

    Args:
        x: input tensor (NHWC).
        filters: output channels F.
        stride: 1 or 2 (on the first 3x3).
        dilation: dilation of both 3x3 convs (stride 1 only; DeepLab's dilated stages).
        shortcut: "projection" (option B: 1x1 conv + BN when the shape changes) or "zero_pad" (option A).
        drop_path_rate: stochastic-depth rate of the residual branch.
        attention: ``fn(x, name=...)`` applied to the residual branch before the addition, or None.
        zero_init_residual: start ``conv2_bn``'s gamma at 0 (the block starts as the identity).
        shortcut_kernel: kernel size of a projection shortcut (1; SENet-154 uses 3 on its strided blocks).
        name: layer name prefix.
    """
    _check(filters, stride, dilation)
    _check_shortcut_kernel(shortcut_kernel)
    sc = _shortcut(x, filters, stride, shortcut, name, kernel_size=shortcut_kernel)
    y = conv_bn_act(x, filters, 3, stride, padding=_pad(stride), dilation=dilation, name=f"{name}_conv1")
    y = conv_bn_act(y, filters, 3, activation=None, dilation=dilation, zero_init=zero_init_residual,
                    name=f"{name}_conv2")
    y = _branch_end(y, attention=attention, drop_path_rate=drop_path_rate, name=name)
    y = layers.Add(name=f"{name}_add")([sc, y])
    return act(y, "relu", name=f"{name}_out")


def bottleneck(x, filters: int, stride: int = 1, *, groups: int = 1, base_width: int = 64,
               expansion: int = 4, stride_on_1x1: bool = False, dilation: int = 1, shortcut: str = "projection",
               drop_path_rate: float = 0.0, attention: Callable | None = None, zero_init_residual: bool = False,
               reduce_first: int = 1, shortcut_kernel: int = 1, name: str):
    """Bottleneck block: 1x1-BN-ReLU, 3x3(groups)-BN-ReLU, 1x1(expansion*F)-BN, + shortcut, ReLU.

    The stride sits on the 3x3 (torchvision "ResNet v1.5"); ``stride_on_1x1=True`` puts it on the first
    1x1 as in He et al. 2016 (same parameter count). Width w = int(F * base_width / 64) * groups:
    ResNeXt (Xie et al. 2017) is ``groups=32, base_width=4``; Wide ResNet-50-2 (Zagoruyko & Komodakis 2016,
    torchvision layout) is ``base_width=128``. Parameters: Cin*w + 9*(w/groups)*w + w*E*F + 4w + 2*E*F,
    plus k*k*Cin*E*F + 2*E*F for a projection shortcut of kernel k. With ``reduce_first`` r the first 1x1
    has w/r channels (SENet-154: r = 2, 64 groups): Cin*w/r + 9*(w/r/groups)*w + w*E*F + 2w/r + 2w + 2*E*F.

    Args:
        x: input tensor (NHWC).
        filters: bottleneck planes F; the block outputs ``expansion * F`` channels.
        stride: 1 or 2.
        groups: cardinality of the grouped 3x3.
        base_width: width per group at F = 64.
        expansion: output channels over F.
        stride_on_1x1: stride on the first 1x1 (original paper) instead of the 3x3 (v1.5).
        dilation: dilation of the 3x3 (stride 1 only; DeepLab's dilated stages, torchvision's
            ``replace_stride_with_dilation``).
        shortcut: "projection" or "zero_pad" (see :func:`basic`).
        drop_path_rate: stochastic-depth rate of the residual branch.
        attention: ``fn(x, name=...)`` applied to the residual branch before the addition, or None.
        zero_init_residual: start ``conv3_bn``'s gamma at 0 (the block starts as the identity).
        reduce_first: the first 1x1 outputs ``width // reduce_first`` channels (SENet-154's bottleneck: 2).
        shortcut_kernel: kernel size of a projection shortcut (1; SENet-154 uses 3 on its strided blocks).
        name: layer name prefix.
    """
    _check(filters, stride, dilation)
    _check_shortcut_kernel(shortcut_kernel)
    for arg, value in (("groups", groups), ("base_width", base_width), ("expansion", expansion),
                       ("reduce_first", reduce_first)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{arg} must be a positive integer; got {value!r}.")
    width = int(filters * base_width / 64) * groups
    if width == 0:
        raise ValueError(f"base_width={base_width} with filters={filters} gives a zero-width bottleneck; "
                         "increase base_width.")
    first = width // reduce_first
    if first == 0 or first % groups:
        raise ValueError(f"reduce_first={reduce_first} leaves {first} channels on the first 1x1 of a {width}-wide "
                         f"bottleneck; they must be a positive multiple of groups={groups}.")
    out = filters * expansion
    sc = _shortcut(x, out, stride, shortcut, name, kernel_size=shortcut_kernel)
    s1, s3 = (stride, 1) if stride_on_1x1 else (1, stride)
    y = conv_bn_act(x, first, 1, s1, name=f"{name}_conv1")
    y = conv_bn_act(y, width, 3, s3, groups=groups, padding=_pad(s3), dilation=dilation, name=f"{name}_conv2")
    y = conv_bn_act(y, out, 1, activation=None, zero_init=zero_init_residual, name=f"{name}_conv3")
    y = _branch_end(y, attention=attention, drop_path_rate=drop_path_rate, name=name)
    y = layers.Add(name=f"{name}_add")([sc, y])
    return act(y, "relu", name=f"{name}_out")


def grouped_bottleneck(x, filters: int, stride: int = 1, *, cardinality: int = 32, base_width: int = 4,
                       name: str, **kwargs):
    """ResNeXt bottleneck (Xie et al. 2017): :func:`bottleneck` with ``groups=cardinality``.

    Width = int(F * base_width / 64) * cardinality (ResNeXt-50 32x4d: 128 at F = 64). ``kwargs`` are
    :func:`bottleneck`'s (``zero_init_residual``, ``attention``, ...).
    """
    return bottleneck(x, filters, stride, groups=cardinality, base_width=base_width, name=name, **kwargs)


def wide_bottleneck(x, filters: int, stride: int = 1, *, width_factor: int = 2, name: str, **kwargs):
    """Wide bottleneck (Zagoruyko & Komodakis 2016, torchvision wide_resnet50_2): the 1x1/3x3 widened by
    ``width_factor`` (:func:`bottleneck` with ``base_width=64*width_factor``), output still 4F. ``kwargs``
    are :func:`bottleneck`'s (``zero_init_residual``, ``attention``, ...)."""
    return bottleneck(x, filters, stride, base_width=64 * width_factor, name=name, **kwargs)


def _preact(x, name):
    return act(batch_norm(x, name=f"{name}_preact_bn"), "relu", name=f"{name}_preact_act")


def preact_basic(x, filters: int, stride: int = 1, *, use_bias: bool = False, dropout: float = 0.0,
                 drop_path_rate: float = 0.0, attention: Callable | None = None, zero_init_residual: bool = False,
                 name: str):
    """Pre-activation basic block (He et al. 2016, "Identity Mappings"; Wide ResNet's block).

    BN-ReLU, then 3x3(stride)-BN-ReLU-[dropout]-3x3 on the residual branch; a 1x1 projection of the
    pre-activated input when the shape changes, else the identity (no activation after the addition).
    Parameters: 2*Cin + 9*Cin*F + 2F + 9*F*F, plus Cin*F for a projection (and F per conv with
    ``use_bias``). ``dropout`` is Wide ResNet's dropout between the convolutions.

    Args:
        x: input tensor (NHWC).
        filters: output channels F.
        stride: 1 or 2 (on the first 3x3 and the projection).
        use_bias: biases on the convs that no BatchNorm follows (the second 3x3 and the projection).
        dropout: dropout rate between the two 3x3 convs.
        drop_path_rate: stochastic-depth rate of the residual branch.
        attention: ``fn(x, name=...)`` applied to the residual branch before the addition, or None.
        zero_init_residual: start ``conv2_conv``'s kernel at 0 (no BatchNorm follows it).
        name: layer name prefix.
    """
    _check(filters, stride)
    pre = _preact(x, name)
    if stride == 1 and int(x.shape[-1]) == filters:
        sc = x
    else:
        sc = _shortcut(pre, filters, stride, "projection", name, bias=use_bias, norm=False)
    y = conv_bn_act(pre, filters, 3, stride, padding=_pad(stride), name=f"{name}_conv1")
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = conv_bn_act(y, filters, 3, norm=False, activation=None, use_bias=use_bias, zero_init=zero_init_residual,
                    name=f"{name}_conv2")
    y = _branch_end(y, attention=attention, drop_path_rate=drop_path_rate, name=name)
    return layers.Add(name=f"{name}_add")([sc, y])


def preact_bottleneck(x, filters: int, stride: int = 1, *, expansion: int = 4, use_bias: bool = True,
                      dilation: int = 1, drop_path_rate: float = 0.0, attention: Callable | None = None,
                      zero_init_residual: bool = False, name: str):
    """Pre-activation bottleneck (He et al. 2016, "Identity Mappings"), keras.applications ResNetV2 layout.

    BN-ReLU, then 1x1-BN-ReLU, 3x3(stride, zero padding 1)-BN-ReLU, 1x1(E*F) on the residual branch. The
    shortcut is a 1x1 projection of the pre-activated input when the channels change; otherwise the
    identity, subsampled by a 1x1 max pooling when strided. With ``use_bias`` (keras.applications) the
    projection and the last 1x1, which no BatchNorm follows, have biases. Parameters:
    2*Cin + Cin*F + 9*F*F + 4F + F*E*F (+ E*F bias), plus Cin*E*F (+ E*F bias) for a projection.

    Args:
        x: input tensor (NHWC).
        filters: bottleneck planes F; the block outputs ``expansion * F`` channels.
        stride: 1 or 2 (on the 3x3, as keras.applications places it).
        expansion: output channels over F.
        use_bias: biases on the convs that no BatchNorm follows.
        dilation: dilation of the 3x3 (stride 1 only; zero padding grows to the dilation).
        drop_path_rate: stochastic-depth rate of the residual branch.
        attention: ``fn(x, name=...)`` applied to the residual branch before the addition, or None.
        zero_init_residual: start ``conv3_conv``'s kernel at 0 (no BatchNorm follows it).
        name: layer name prefix.
    """
    _check(filters, stride, dilation)
    out = filters * expansion
    pre = _preact(x, name)
    if int(x.shape[-1]) == out:
        sc = layers.MaxPooling2D(1, strides=stride, name=f"{name}_shortcut_pool")(x) if stride > 1 else x
    else:
        sc = _shortcut(pre, out, stride, "projection", name, bias=use_bias, norm=False)
    y = conv_bn_act(pre, filters, 1, name=f"{name}_conv1")
    y = conv_bn_act(y, filters, 3, stride, padding="symmetric", dilation=dilation, name=f"{name}_conv2")
    y = conv_bn_act(y, out, 1, norm=False, activation=None, use_bias=use_bias, zero_init=zero_init_residual,
                    name=f"{name}_conv3")
    y = _branch_end(y, attention=attention, drop_path_rate=drop_path_rate, name=name)
    return layers.Add(name=f"{name}_add")([sc, y])


BLOCKS = {"basic": basic, "bottleneck": bottleneck, "preact_basic": preact_basic,
          "preact_bottleneck": preact_bottleneck}
