"""Depthwise-separable blocks: MobileNet v1 / Xception separable conv and the inverted-residual family.

``inverted_residual`` (MobileNetV2), ``bneck`` (MobileNetV3) and ``mbconv`` (EfficientNet) are one
mechanism, :func:`_inverted`: optional 1x1 expansion -> depthwise kxk -> optional SE -> linear 1x1
projection, with an identity shortcut when the stride is 1 and the channels match.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.attention import se
from catalog.blocks.layers import conv_bn_act, drop_path, make_divisible


def separable(x, filters: int, strides=1, *, kernel_size: int = 3, activation: str | None = "relu",
              padding: str = "same", name: str):
    """Depthwise-separable conv (Howard et al. 2017, MobileNets; Chollet 2017, Xception).

    Depthwise kxk -> BN -> act -> pointwise 1x1 -> BN -> act, named ``{name}_dw_*`` and ``{name}_pw_*``.
    Parameters: k*k*C_in + 2*C_in + C_in*filters + 2*filters.

    Args:
        x: input tensor (NHWC).
        filters: output channels of the pointwise conv.
        strides: stride of the depthwise conv.
        kernel_size: depthwise kernel size.
        activation: activation after both BatchNorms ("relu"; MobileNet v1 as in keras uses "relu6").
        padding: "same" or "symmetric" (see ``conv_bn_act``).
        name: layer name prefix.
    """
    x = conv_bn_act(x, 0, kernel_size, strides, depthwise=True, activation=activation, padding=padding,
                    name=f"{name}_dw")
    return conv_bn_act(x, filters, 1, activation=activation, name=f"{name}_pw")


def _inverted(x, filters: int, expanded: int, kernel_size: int, strides, activation: str,
              se_channels: int | None, se_activation: str, se_gate: str, drop_rate: float,
              padding: str, name: str, dilation: int = 1):
    """Expansion (skipped when ``expanded`` equals the input channels) -> depthwise -> SE -> projection."""
    channels = int(x.shape[-1])
    y = x
    if expanded != channels:
        y = conv_bn_act(y, expanded, 1, activation=activation, name=f"{name}_expand")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation <= 0:
        raise ValueError(f"dilation must be a positive integer; got {dilation!r}.")
    if dilation > 1 and strides not in (1, (1, 1)):
        raise ValueError(f"dilation > 1 needs strides 1 (a dilated stage replaces its stride); got {strides!r}.")
    y = conv_bn_act(y, 0, kernel_size, strides, depthwise=True, activation=activation, padding=padding,
                    dilation=dilation, name=f"{name}_dw")
    if se_channels:
        y = se(y, reduced_channels=se_channels, activation=se_activation, gate=se_gate, name=f"{name}_se")
    y = conv_bn_act(y, filters, 1, activation=None, name=f"{name}_project")
    if strides in (1, (1, 1)) and channels == filters:
        y = drop_path(y, drop_rate, name=f"{name}_drop")
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _check(value, argument: str, accepted: str, ok: bool):
    if not ok:
        raise ValueError(f"{argument} must be {accepted}; got {value!r}.")


def inverted_residual(x, filters: int, expansion: float = 6, strides=1, *, kernel_size: int = 3,
                      activation: str = "relu6", padding: str = "same", dilation: int = 1, name: str):
    """MobileNetV2 inverted residual with linear bottleneck (Sandler et al. 2018, CVPR).

    1x1 expansion to t*C_in (omitted for t=1) -> BN -> ReLU6 -> depthwise kxk -> BN -> ReLU6 ->
    1x1 linear projection -> BN; identity shortcut when stride is 1 and C_in == filters.
    Parameters (t>1, E = round(t*C_in)): C_in*E + 2E + k*k*E + 2E + E*filters + 2*filters.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        expansion: expansion factor t.
        strides: stride of the depthwise conv.
        kernel_size: depthwise kernel size.
        activation: activation of the expansion and depthwise convs.
        padding: "same" or "symmetric".
        dilation: dilation of the depthwise conv (strides 1 only; DeepLab's dilated stages).
        name: layer name prefix.
    """
    _check(expansion, "expansion", "a number >= 1", expansion >= 1)
    expanded = int(round(int(x.shape[-1]) * expansion))
    return _inverted(x, filters, expanded, kernel_size, strides, activation, None, "relu", "sigmoid", 0.0,
                     padding, name, dilation)


def bneck(x, filters: int, expanded: int, kernel_size: int = 3, strides=1, *, use_se: bool = False,
          activation: str = "relu", padding: str = "same", dilation: int = 1, name: str):
    """MobileNetV3 bneck (Howard et al. 2019, Searching for MobileNetV3, ICCV).

    1x1 expansion to ``expanded`` (omitted when it equals C_in) -> BN -> act -> depthwise kxk -> BN ->
    act -> [SE: reduce to make_divisible(expanded/4), ReLU, hard-sigmoid gate] -> 1x1 linear projection
    -> BN; identity shortcut when stride is 1 and C_in == filters.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        expanded: channels of the expansion (given explicitly in the paper's tables).
        kernel_size: depthwise kernel size (3 or 5).
        strides: stride of the depthwise conv.
        use_se: insert squeeze-and-excitation after the depthwise conv.
        activation: "relu" or "hard_swish".
        padding: "same" or "symmetric".
        dilation: dilation of the depthwise conv (strides 1 only; torchvision's ``dilated=True``).
        name: layer name prefix.
    """
    _check(activation, "activation", "'relu' or 'hard_swish'", activation in ("relu", "hard_swish"))
    se_channels = make_divisible(expanded / 4) if use_se else None
    return _inverted(x, filters, expanded, kernel_size, strides, activation, se_channels, "relu",
                     "hard_sigmoid", 0.0, padding, name, dilation)


def mbconv(x, filters: int, expansion: int = 6, kernel_size: int = 3, strides=1, *, se_ratio: float = 0.25,
           drop_rate: float = 0.0, activation: str = "swish", padding: str = "same", name: str):
    """EfficientNet MBConv (Tan & Le 2019, EfficientNet, ICML).

    1x1 expansion to t*C_in (omitted for t=1) -> BN -> swish -> depthwise kxk -> BN -> swish ->
    SE (reduce to max(1, int(C_in*se_ratio)), swish, sigmoid) -> 1x1 linear projection -> BN;
    when stride is 1 and C_in == filters, drop-path (stochastic depth, ``drop_rate``) then identity add.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        expansion: expansion factor t.
        kernel_size: depthwise kernel size (3 or 5).
        strides: stride of the depthwise conv.
        se_ratio: SE reduction relative to the block's input channels (0 disables SE).
        drop_rate: drop-path rate on the residual branch.
        activation: activation of the expansion, depthwise conv and SE.
        padding: "same" or "symmetric".
        name: layer name prefix.
    """
    _check(expansion, "expansion", "a number >= 1", expansion >= 1)
    _check(se_ratio, "se_ratio", "in [0, 1]", 0 <= se_ratio <= 1)
    channels = int(x.shape[-1])
    se_channels = max(1, int(channels * se_ratio)) if se_ratio else None
    return _inverted(x, filters, channels * expansion, kernel_size, strides, activation, se_channels,
                     activation, "sigmoid", drop_rate, padding, name)
