"""Channel and spatial attention blocks that insert into any residual or inverted-residual branch.

``se``, ``cbam`` and ``non_local`` have the signature ``block(x, ..., name=...) -> tensor`` with the same
shape as ``x``, so a family passes one as ``attention=functools.partial(attention.se, ratio=16)``.
``sk`` (selective kernel) replaces a 3x3 convolution: ``sk(x, filters, strides, ..., name=...)``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from catalog.blocks.layers import act, batch_norm, conv2d, conv_bn_act


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
    s = conv2d(reduced, 1, use_bias=True, name=f"{name}_reduce")(s)
    s = act(s, activation, name=f"{name}_act")
    s = conv2d(channels, 1, use_bias=True, name=f"{name}_expand")(s)
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
    fc1 = conv2d(reduced, 1, use_bias=True, name=f"{name}_channel_fc1")
    relu = layers.ReLU(name=f"{name}_channel_act")
    fc2 = conv2d(channels, 1, use_bias=True, name=f"{name}_channel_fc2")
    avg = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_channel_avg_pool")(x)
    mx = layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_channel_max_pool")(x)
    s = layers.Add(name=f"{name}_channel_sum")([fc2(relu(fc1(avg))), fc2(relu(fc1(mx)))])
    s = act(s, "sigmoid", name=f"{name}_channel_gate")
    x = layers.Multiply(name=f"{name}_channel_scale")([x, s])
    m = ChannelPool(name=f"{name}_spatial_pool")(x)
    m = conv_bn_act(m, 1, kernel_size, activation="sigmoid", name=f"{name}_spatial")
    return layers.Multiply(name=f"{name}_spatial_scale")([x, m])


def sk(x, filters: int, strides: int = 1, branches: int = 2, groups: int = 32, ratio: int = 16,
       min_dim: int = 32, *, name: str):
    """Selective Kernel convolution (Li et al. 2019, "Selective Kernel Networks", CVPR).

    Split: M branches of grouped 3x3 conv-BN-ReLU with dilation 1..M (a 3x3 with dilation 2 stands for
    the paper's 5x5). Fuse: sum, global average pooling, 1x1 conv C -> d = max(C/r, L) (no bias) + BN +
    ReLU. Select: one 1x1 conv d -> C (no bias) per branch, softmax across branches, weighted sum.
    Parameters: sum_m (9*(C_in/G)*C + 2*C) + C*d + 2*d + M*d*C.

    TensorFlow's Conv2D rejects stride > 1 together with dilation > 1. A strided branch whose dilation d
    is a multiple of the stride s reads only the input pixels on the stride grid, so it is computed
    exactly as a dilation-d/s, stride-1 convolution of the input sub-sampled by s (1x1 max-pool, shared
    by those branches): the same output and grid as PyTorch's strided dilated conv (padding d on every
    side) at 1/s^2 of the cost. Any other strided dilated branch is computed at stride 1 and sub-sampled
    before its BatchNorm.

    Args:
        x: input tensor (NHWC).
        filters: output channels C.
        strides: stride of the branch convolutions (1 or 2).
        branches: number of branches M (>= 2).
        groups: convolution groups G of the branches.
        ratio: reduction ratio r of the fuse layer.
        min_dim: lower bound L of the fuse layer's width d.
        name: layer name prefix.
    """
    if branches < 2:
        raise ValueError(f"branches must be an integer >= 2; got {branches!r}.")
    if strides not in (1, 2):
        raise ValueError(f"strides must be 1 or 2; got {strides!r}.")
    dim = max(filters // ratio, min_dim)
    feats = []
    subsampled = None
    for m in range(branches):
        prefix, dilation = f"{name}_branch{m + 1}", m + 1
        if m == 0 or strides == 1:
            u = conv_bn_act(x, filters, 3, strides, groups=groups, dilation=dilation, padding="symmetric",
                            name=prefix)
        elif dilation % strides == 0:
            if subsampled is None:
                subsampled = layers.MaxPooling2D(1, strides=strides, name=f"{name}_subsample")(x)
            u = conv_bn_act(subsampled, filters, 3, 1, groups=groups, dilation=dilation // strides,
                            padding="symmetric", name=prefix)
        else:
            u = conv_bn_act(x, filters, 3, 1, groups=groups, dilation=dilation, padding="symmetric", norm=False,
                            activation=None, use_bias=False, name=prefix)
            u = layers.MaxPooling2D(1, strides=strides, name=f"{prefix}_subsample")(u)
            u = act(batch_norm(u, name=f"{prefix}_bn"), "relu", name=f"{prefix}_act")
        feats.append(u)
    s = layers.Add(name=f"{name}_fuse")(feats)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(s)
    z = conv_bn_act(s, dim, 1, name=f"{name}_fc")
    logits = [layers.Reshape((1, filters), name=f"{name}_select{m + 1}_reshape")(
        conv2d(filters, 1, use_bias=False, name=f"{name}_select{m + 1}")(z)) for m in range(branches)]
    weights = layers.Concatenate(axis=1, name=f"{name}_select_concat")(logits)
    weights = layers.Softmax(axis=1, name=f"{name}_softmax")(weights)  # (M, C): softmax across branches
    out = []
    for m in range(branches):
        a = layers.Cropping1D((m, branches - 1 - m), name=f"{name}_attention{m + 1}_crop")(weights)
        a = layers.Reshape((1, 1, filters), name=f"{name}_attention{m + 1}_reshape")(a)
        out.append(layers.Multiply(name=f"{name}_branch{m + 1}_scale")([feats[m], a]))
    return layers.Add(name=f"{name}_sum")(out)


def non_local(x, reduction: int = 2, sub_sample: bool = True, zero_init: bool = True, *, name: str):
    """Non-local block, embedded Gaussian (Wang et al. 2018, "Non-local Neural Networks", CVPR).

    theta, phi, g: 1x1 convs C -> C/2 (with bias, as in the reference); y = softmax(theta phi^T) g over
    all positions; 1x1 conv C/2 -> C + BatchNorm (gamma initialised to zero, so the block starts as the
    identity); residual add. ``sub_sample`` max-pools phi and g by 2x2 (4x fewer pairs).
    Parameters: 3*(C*C/2 + C/2) + (C/2)*C + 2*C. The reference's bias on the output conv is dropped (it
    precedes BatchNorm). Needs a fixed height and width (the positions are reshaped back to a map).

    Args:
        x: input tensor (NHWC) with static height and width.
        reduction: channel reduction of the embeddings (C / reduction).
        sub_sample: 2x2 max-pool phi and g.
        zero_init: initialise the output BatchNorm's gamma to zero (the paper's choice).
        name: layer name prefix.
    """
    height, width, channels = x.shape[1:]
    if height is None or width is None:
        raise ValueError(f"non_local needs an input with a fixed height and width; got shape {tuple(x.shape)}.")
    inner = max(1, channels // reduction)
    theta = conv2d(inner, 1, name=f"{name}_theta")(x)
    phi = conv2d(inner, 1, name=f"{name}_phi")(x)
    g = conv2d(inner, 1, name=f"{name}_g")(x)
    if sub_sample:
        phi = layers.MaxPooling2D(2, name=f"{name}_phi_pool")(phi)
        g = layers.MaxPooling2D(2, name=f"{name}_g_pool")(g)
    theta = layers.Reshape((-1, inner), name=f"{name}_theta_flat")(theta)
    phi = layers.Reshape((-1, inner), name=f"{name}_phi_flat")(phi)
    g = layers.Reshape((-1, inner), name=f"{name}_g_flat")(g)
    f = layers.Dot(axes=(2, 2), name=f"{name}_affinity")([theta, phi])  # (N, HW, H'W')
    f = layers.Softmax(axis=-1, name=f"{name}_softmax")(f)
    y = layers.Dot(axes=(2, 1), name=f"{name}_aggregate")([f, g])  # (N, HW, C/2)
    y = layers.Reshape((height, width, inner), name=f"{name}_unflat")(y)
    y = conv2d(channels, 1, use_bias=False, name=f"{name}_out_conv")(y)
    y = batch_norm(y, name=f"{name}_out_bn", gamma_initializer="zeros" if zero_init else "ones")
    return layers.Add(name=f"{name}_add")([x, y])
