"""Channel and spatial attention blocks that insert into any residual or inverted-residual branch.

Every block has the signature ``block(x, ..., name=...) -> tensor`` with the same shape as ``x``, so a
family passes one as ``attention=functools.partial(attention.se, ratio=16)``.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import act


def se(x, ratio: int = 16, reduced_channels: int | None = None, activation: str = "relu",
       gate: str = "sigmoid", *, name: str):
    """Squeeze-and-Excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks").

    Global average pooling -> 1x1 conv to C/r (with bias) -> activation -> 1x1 conv to C (with bias)
    -> gate -> channel-wise scale. Parameters: 2*C*(C/r) + C/r + C. MobileNetV3 uses
    ``activation="relu", gate="hard_sigmoid"`` with ``reduced_channels=make_divisible(C/4)``;
    EfficientNet ``activation="swish"`` with ``reduced_channels`` a quarter of the block's input.

    Args:
        x: input tensor (NHWC).
        ratio: reduction ratio r (used when ``reduced_channels`` is None).
        reduced_channels: channels of the bottleneck; overrides ``ratio``.
        activation: activation after the reduction.
        gate: the gating activation ("sigmoid" or "hard_sigmoid").
        name: layer name prefix.
    """
    channels = int(x.shape[-1])
    reduced = reduced_channels if reduced_channels is not None else max(1, channels // ratio)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(reduced, 1, use_bias=True, name=f"{name}_reduce")(s)
    s = act(s, activation, name=f"{name}_act")
    s = layers.Conv2D(channels, 1, use_bias=True, name=f"{name}_expand")(s)
    s = act(s, gate, name=f"{name}_gate")
    return layers.Multiply(name=f"{name}_scale")([x, s])
