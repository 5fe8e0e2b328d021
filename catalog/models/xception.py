"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR).

keras.applications layout: entry flow 3x3/2 conv (32, "valid") -> 3x3 conv (64, "valid") -> three
down-sampling blocks (128, 256, 728: [ReLU] sep 3x3 -> BN -> ReLU -> sep 3x3 -> BN -> 3x3/2 max pool, plus
a 1x1/2 conv + BN shortcut); middle flow 8 x (ReLU-sep 728-BN) x 3 with identity shortcuts; exit flow one
down-sampling block (728, 1024) then sep 1536 -> BN -> ReLU -> sep 2048 -> BN -> ReLU. Separable convs
have no bias; BatchNorm is Keras' (eps 1e-3, momentum 0.99): 22,855,952 trainable parameters.

``output_stride`` 16 or 8 (DeepLab, Chen et al. 2018): the last down-sampling blocks keep their size (max pool
and shortcut at stride 1) and the separable convs after them are dilated 2 (then 4), as
:func:`catalog.models.classifier.dilation_plan` plans; parameters are unchanged.
"""

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv_bn_act, norm_defaults, separable_conv2d
from catalog.models.classifier import build_classifier, dilation_plan
from catalog.registry import register_model

ENTRY = ((128, 128), (256, 256), (728, 728))
EXIT = (728, 1024)
MIDDLE_BLOCKS = 8


def _sep_bn(x, filters, name, pre_act=True, dilation=1):
    """[ReLU] -> 3x3 SeparableConv2D (no bias, ``dilation``) -> BatchNorm, named ``{name}_act/_conv/_bn``."""
    if pre_act:
        x = act(x, "relu", name=f"{name}_act")
    x = separable_conv2d(filters, 3, padding="same", use_bias=False, dilation_rate=dilation, name=f"{name}_conv")(x)
    return batch_norm(x, name=f"{name}_bn")


def _down_block(x, filters, name, first_act=True, stride=2, dilation=1):
    shortcut = conv_bn_act(x, filters[1], 1, stride, activation=None, name=f"{name}_shortcut")
    x = _sep_bn(x, filters[0], f"{name}_sep1", pre_act=first_act, dilation=dilation)
    x = _sep_bn(x, filters[1], f"{name}_sep2", dilation=dilation)
    x = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


def xception(middle_blocks: int = MIDDLE_BLOCKS, output_stride: int = 32, **kwargs):
    """Xception: entry, middle and exit flows of depthwise-separable convolutions with residuals.

    Args:
        middle_blocks: repetitions of the middle-flow block (8 in the paper).
        output_stride: 8, 16 or 32: the last down-sampling blocks keep their size and later separable convs
            are dilated (see the module docstring).
    """
    if isinstance(middle_blocks, bool) or not isinstance(middle_blocks, int) or middle_blocks < 0:
        raise ValueError(f"middle_blocks must be a non-negative integer; got {middle_blocks!r}.")
    plan = iter(dilation_plan([2] * len(ENTRY) + [1] * middle_blocks + [2, 1], output_stride, reduction=2))

    def backbone(x):
        with norm_defaults(epsilon=1e-3, momentum=0.99):
            x = conv_bn_act(x, 32, 3, 2, padding="valid", name="block1_conv1")
            x = conv_bn_act(x, 64, 3, padding="valid", name="block1_conv2")
            stages = [x]
            for i, filters in enumerate(ENTRY, start=2):
                stride, dilation = next(plan)
                x = _down_block(x, filters, f"block{i}", first_act=i > 2, stride=stride, dilation=dilation)
                if i < 4:
                    stages.append(x)
            for i in range(5, 5 + middle_blocks):
                _, dilation = next(plan)
                y = x
                for j in range(1, 4):
                    y = _sep_bn(y, 728, f"block{i}_sep{j}", dilation=dilation)
                x = layers.Add(name=f"block{i}_add")([x, y])
            stages.append(x)
            i = 5 + middle_blocks
            stride, dilation = next(plan)
            x = _down_block(x, EXIT, f"block{i}", stride=stride, dilation=dilation)
            _, dilation = next(plan)
            x = _sep_bn(x, 1536, f"block{i + 1}_sep1", pre_act=False, dilation=dilation)
            x = act(x, "relu", name=f"block{i + 1}_sep1_out")
            x = _sep_bn(x, 2048, f"block{i + 1}_sep2", pre_act=False, dilation=dilation)
            x = act(x, "relu", name=f"block{i + 1}_sep2_out")
            stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


register_model(xception, name="xception", family="xception",
               paper="Chollet 2017, Xception: Deep Learning with Depthwise Separable Convolutions, CVPR",
               input_shape=(299, 299, 3), reference_params=22_855_952,
               reference_params_source="keras.applications Xception (trainable)",
               reference_macs=8.4e9, reference_macs_source="timm legacy_xception (8.4 GMACs, approx.)",
               min_input_size=71, preprocessing="tf")
