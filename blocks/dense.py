"""DenseNet-BC blocks (Huang et al. 2017, "Densely Connected Convolutional Networks", CVPR).

Every layer of a dense block sees the concatenation of all earlier feature maps of the block, so a block
of n layers has n(n+1)/2 direct connections (its input counted as layer 0); transitions between blocks
compress channels by theta and halve the resolution. Convolutions carry no bias (BatchNorm order is
pre-activation: BN-ReLU-conv).
"""

from __future__ import annotations

import math

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv_bn_act


def dense_layer(x, growth_rate: int, bn_size: int = 4, dropout: float = 0.0, *, name: str):
    """DenseNet-BC composite layer: BN-ReLU-1x1 conv (bn_size*k)-BN-ReLU-3x3 conv (k), concatenated to x.

    Parameters with C input channels, k = growth_rate, b = bn_size: 2C + C*b*k + 2*b*k + 9*b*k*k.

    Args:
        x: input tensor (NHWC) with C channels; the output has C + growth_rate.
        growth_rate: k, channels each layer adds.
        bn_size: bottleneck width factor (4 in the paper).
        dropout: dropout rate after the 3x3 conv (0.2 in the paper's runs without augmentation).
        name: layer name prefix.
    """
    y = batch_norm(x, name=f"{name}_bn1")
    y = act(y, "relu", name=f"{name}_act1")
    y = conv_bn_act(y, bn_size * growth_rate, 1, name=f"{name}_bottleneck")  # conv1 -> BN2 -> ReLU2
    y = conv_bn_act(y, growth_rate, 3, norm=False, use_bias=False, activation=None, name=f"{name}_growth")
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_drop")(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def dense_block(x, num_layers: int, growth_rate: int, bn_size: int = 4, dropout: float = 0.0, *,
                name: str):
    """A dense block: ``num_layers`` dense layers; C + num_layers * growth_rate output channels.

    Args:
        x: input tensor (NHWC).
        num_layers: layers in the block.
        growth_rate: k.
        bn_size: bottleneck width factor.
        dropout: dropout rate inside each layer.
        name: layer name prefix; layer i is ``{name}_layer{i}``.
    """
    for i in range(1, num_layers + 1):
        x = dense_layer(x, growth_rate, bn_size, dropout, name=f"{name}_layer{i}")
    return x


def transition(x, compression: float = 0.5, *, name: str):
    """Transition: BN-ReLU-1x1 conv to floor(theta * C) channels-2x2 average pool, stride 2.

    Parameters with C input channels: 2C + C * floor(theta * C).

    Args:
        x: input tensor (NHWC).
        compression: theta in (0, 1].
        name: layer name prefix.
    """
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"compression must be in (0, 1]; got {compression}.")
    channels = int(math.floor(compression * int(x.shape[-1])))
    x = batch_norm(x, name=f"{name}_bn")
    x = act(x, "relu", name=f"{name}_act")
    x = conv_bn_act(x, channels, 1, norm=False, use_bias=False, activation=None, name=name)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
