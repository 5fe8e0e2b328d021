"""ShuffleNet blocks: the channel-shuffle and channel-split layers, the v1 unit, the v2 units.

Channel shuffle (Zhang et al. 2018) with g groups on C channels sends input channel ``j*(C/g) + i`` to
output channel ``i*g + j``: reshape to (g, C/g), transpose, flatten, as the papers and torchvision do.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from catalog.blocks.layers import conv_bn_act


@keras.saving.register_keras_serializable(package="catalog")
class ChannelShuffle(layers.Layer):
    """Channel shuffle with ``groups`` groups over the last axis (NHWC); no weights."""

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"ChannelShuffle groups must be a positive integer; got {groups!r}.")
        self.groups = groups

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % self.groups:
            raise ValueError(f"ChannelShuffle groups={self.groups} must divide the {channels} input channels.")

    def call(self, x):
        shape = ops.shape(x)
        channels = x.shape[-1]
        y = ops.reshape(x, (shape[0], shape[1], shape[2], self.groups, channels // self.groups))
        y = ops.transpose(y, (0, 1, 2, 4, 3))
        return ops.reshape(y, (shape[0], shape[1], shape[2], channels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_macs(self, input_shapes, output_shapes):
        return 0

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="catalog")
class ChannelSplit(layers.Layer):
    """Split the last axis into ``sections`` equal parts (ShuffleNet v2's channel split); no weights."""

    def __init__(self, sections: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(sections, bool) or not isinstance(sections, int) or sections < 1:
            raise ValueError(f"ChannelSplit sections must be a positive integer; got {sections!r}.")
        self.sections = sections

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % self.sections:
            raise ValueError(f"ChannelSplit sections={self.sections} must divide the {channels} input channels.")

    def call(self, x):
        return ops.split(x, self.sections, axis=-1)

    def compute_output_shape(self, input_shape):
        part = tuple(input_shape[:-1]) + (input_shape[-1] // self.sections,)
        return [part] * self.sections

    def count_macs(self, input_shapes, output_shapes):
        return 0

    def get_config(self):
        return {**super().get_config(), "sections": self.sections}


def shufflenet_v1_unit(x, filters: int, groups: int, strides: int = 1, *, first_groups: int | None = None,
                       bottleneck: int | None = None, padding: str = "same", name: str):
    """ShuffleNet unit (Zhang et al. 2018, ShuffleNet, CVPR), Fig. 2 (b) and (c).

    Grouped 1x1 to the bottleneck -> BN -> ReLU -> channel shuffle -> depthwise 3x3 (stride) -> BN ->
    grouped 1x1 -> BN; stride 1: add the input, ReLU; stride 2: the branch makes ``filters - C_in``
    channels and is concatenated after a 3x3/2 average pool of the input, then ReLU.

    Args:
        x: input tensor (NHWC).
        filters: output channels of the unit.
        groups: groups of the two pointwise convolutions (and of the shuffle).
        strides: 1 or 2.
        first_groups: groups of the first 1x1 (the paper uses 1 on the first unit of stage 2, whose
            input has only 24 channels); defaults to ``groups``.
        bottleneck: bottleneck channels; defaults to ``filters // 4`` as in the paper.
        padding: "same", or "symmetric" for PyTorch-style padding (the shortcut pool then averages over
            the zero padding too, as ``nn.AvgPool2d(3, 2, 1)`` does).
        name: layer name prefix.
    """
    channels = int(x.shape[-1])
    if strides not in (1, 2):
        raise ValueError(f"strides must be 1 or 2; got {strides!r}.")
    if strides == 1 and channels != filters:
        raise ValueError(f"a stride-1 ShuffleNet unit keeps its channels: filters must be {channels}; got {filters}.")
    mid = bottleneck or filters // 4
    branch_out = filters - channels if strides == 2 else filters
    y = conv_bn_act(x, mid, 1, groups=first_groups or groups, name=f"{name}_reduce")
    if groups > 1:
        y = ChannelShuffle(groups, name=f"{name}_shuffle")(y)
    y = conv_bn_act(y, 0, 3, strides, depthwise=True, activation=None, padding=padding, name=f"{name}_dw")
    y = conv_bn_act(y, branch_out, 1, groups=groups, activation=None, name=f"{name}_expand")
    if strides == 1:
        y = layers.Add(name=f"{name}_add")([x, y])
    else:
        shortcut = x
        if padding == "symmetric":
            shortcut = layers.ZeroPadding2D(1, name=f"{name}_shortcut_pad")(shortcut)
        shortcut = layers.AveragePooling2D(3, 2, padding="valid" if padding == "symmetric" else "same",
                                           name=f"{name}_shortcut_pool")(shortcut)
        y = layers.Concatenate(name=f"{name}_concat")([shortcut, y])
    return layers.ReLU(name=f"{name}_out_act")(y)


def _v2_branch(x, filters: int, strides: int, padding: str, name: str):
    x = conv_bn_act(x, filters, 1, name=f"{name}_conv1")
    x = conv_bn_act(x, 0, 3, strides, depthwise=True, activation=None, padding=padding, name=f"{name}_dw")
    return conv_bn_act(x, filters, 1, name=f"{name}_conv2")


def shufflenet_v2_unit(x, filters: int, strides: int = 1, *, padding: str = "same", name: str):
    """ShuffleNet v2 unit (Ma et al. 2018, ShuffleNet V2, ECCV), Fig. 3 (c) and (d).

    Stride 1: split the channels in half; one half passes, the other goes 1x1 -> BN-ReLU -> dw 3x3 -> BN
    -> 1x1 -> BN-ReLU; concat; shuffle with 2 groups. Stride 2 (down-sampling): both branches see the
    whole input; the left one is dw 3x3/2 -> BN -> 1x1 -> BN-ReLU, the right one as above with a stride-2
    depthwise conv; each makes ``filters // 2`` channels; concat; shuffle.

    Args:
        x: input tensor (NHWC).
        filters: output channels (even).
        strides: 1 or 2.
        padding: "same" or "symmetric".
        name: layer name prefix.
    """
    channels = int(x.shape[-1])
    if strides not in (1, 2):
        raise ValueError(f"strides must be 1 or 2; got {strides!r}.")
    if filters % 2:
        raise ValueError(f"filters of a ShuffleNet v2 unit must be even; got {filters}.")
    half = filters // 2
    if strides == 1:
        if channels != filters:
            raise ValueError(f"a stride-1 ShuffleNet v2 unit keeps its channels: filters must be {channels}; "
                             f"got {filters}.")
        left, right = ChannelSplit(2, name=f"{name}_split")(x)
    else:
        left = conv_bn_act(x, 0, 3, 2, depthwise=True, activation=None, padding=padding,
                           name=f"{name}_branch1_dw")
        left = conv_bn_act(left, half, 1, name=f"{name}_branch1_conv")
        right = x
    right = _v2_branch(right, half, strides, padding, name=f"{name}_branch2")
    y = layers.Concatenate(name=f"{name}_concat")([left, right])
    return ChannelShuffle(2, name=f"{name}_shuffle")(y)
