"""Channel and spatial attention blocks that insert into any residual or inverted-residual branch.

Every block has the signature ``block(x, ..., name=...) -> tensor`` with the same shape as ``x``, so a
family passes one as ``attention=functools.partial(attention.se, ratio=16)``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from catalog.blocks.layers import act, conv_bn_act


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


@keras.saving.register_keras_serializable(package="catalog")
class ChannelPool(layers.Layer):
    """Channel-wise max and mean maps, concatenated: (N, H, W, C) -> (N, H, W, 2) (CBAM's spatial input).

    Max first, then mean, as in the authors' reference implementation (Jongchan/attention-module).
    """

    def call(self, x):
        return ops.concatenate([ops.max(x, axis=-1, keepdims=True), ops.mean(x, axis=-1, keepdims=True)],
                               axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)


def cbam(x, ratio: int = 16, kernel_size: int = 7, *, name: str):
    """Convolutional Block Attention Module (Woo et al. 2018, "CBAM", ECCV): channel then spatial attention.

    Channel: a shared MLP (1x1 conv C -> C/r with bias, ReLU, 1x1 conv C/r -> C with bias) on the global
    average- and max-pooled descriptors, summed, sigmoid, scale. Spatial: channel-wise max and mean maps
    concatenated, 7x7 conv (2 -> 1, no bias) + BatchNorm as in the authors' reference implementation,
    sigmoid, scale. Parameters: 2*C*(C/r) + C/r + C + 2*k*k + 2.

    Args:
        x: input tensor (NHWC).
        ratio: reduction ratio r of the channel MLP.
        kernel_size: kernel of the spatial-attention conv.
        name: layer name prefix.
    """
    channels = int(x.shape[-1])
    reduced = max(1, channels // ratio)
    fc1 = layers.Conv2D(reduced, 1, use_bias=True, name=f"{name}_channel_fc1")
    relu = layers.ReLU(name=f"{name}_channel_act")
    fc2 = layers.Conv2D(channels, 1, use_bias=True, name=f"{name}_channel_fc2")
    avg = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_channel_avg_pool")(x)
    mx = layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_channel_max_pool")(x)
    s = layers.Add(name=f"{name}_channel_sum")([fc2(relu(fc1(avg))), fc2(relu(fc1(mx)))])
    s = act(s, "sigmoid", name=f"{name}_channel_gate")
    x = layers.Multiply(name=f"{name}_channel_scale")([x, s])
    m = ChannelPool(name=f"{name}_spatial_pool")(x)
    m = conv_bn_act(m, 1, kernel_size, activation="sigmoid", name=f"{name}_spatial")
    return layers.Multiply(name=f"{name}_spatial_scale")([x, m])
