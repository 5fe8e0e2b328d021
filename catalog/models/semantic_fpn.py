"""Semantic FPN (Kirillov et al. 2019, "Panoptic Feature Pyramid Networks", CVPR, section 3: the semantic
segmentation branch) on any ``features_only`` backbone with stages at reductions 4, 8, 16, 32.

:func:`catalog.blocks.fpn.fpn` (P2-P5, 256 channels) -> per level Pk, k - 2 steps (one for P2) of 3x3 conv
(no bias) -> GroupNorm(32) -> ReLU -> bilinear 2x upsampling (none on P2's single step), 128 channels, so every
level reaches stride 4 -> element-wise sum -> 1x1 conv to the classes -> bilinear upsampling to the input size.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.fpn import fpn
from catalog.blocks.layers import act, conv2d
from catalog.blocks.segmentation import resize_like
from catalog.models.segmentation import (backbone_features, check_common, classifier_conv, load_weights,
                                         segmentation_outputs, segmentation_recipe)
from catalog.registry import register_model

KIRILLOV2019 = "Kirillov et al. 2019, Panoptic Feature Pyramid Networks, CVPR"

# name: (builder keywords, exact trainable params of this implementation at 21 classes)
VARIANTS = {
    "semantic_fpn_resnet50": (dict(backbone="resnet50"), 28_478_933),
}


def semantic_fpn(backbone: str = "resnet50", num_classes: int = 21, input_shape=(512, 512, 3),
                 fpn_channels: int = 256, channels: int = 128, groups: int = 32, backbone_options: dict | None = None,
                 backbone_weights=None, weights=None, name: str = "semantic_fpn"):
    """Semantic FPN: FPN P2-P5, per-level conv-GN-ReLU-upsample steps to stride 4, sum, classifier.

    Args:
        backbone: a registered classifier with stages at reductions 4, 8, 16, 32.
        num_classes: classes of the logits.
        input_shape: (height, width, channels); height and width may be None.
        fpn_channels: channels of the pyramid (256).
        channels: channels of the per-level steps (128).
        groups: GroupNorm groups (32); must divide ``channels``.
        backbone_options, backbone_weights, weights, name: as :func:`catalog.models.deeplab.deeplabv3`.
    """
    shape = check_common(num_classes, input_shape)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0 or channels % groups:
        raise ValueError(f"groups must be a positive integer dividing channels={channels}; got {groups!r}.")
    features = backbone_features(backbone, (4, 8, 16, 32), shape, backbone_options=backbone_options,
                                 backbone_weights=backbone_weights, model=name)
    inputs = keras.Input(shape=shape, name="input")
    maps = features(inputs)
    pyramid = fpn({f"C{level}": t for level, t in zip((2, 3, 4, 5), maps)}, channels=fpn_channels, name="fpn")
    finest = None
    branches = []
    for level in (2, 3, 4, 5):
        x = pyramid[f"P{level}"]
        for step in range(max(1, level - 2)):
            prefix = f"head_p{level}_step{step + 1}"
            x = conv2d(channels, 3, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
            x = layers.GroupNormalization(groups, epsilon=1e-5, name=f"{prefix}_gn")(x)
            x = act(x, "relu", name=f"{prefix}_act")
            if level > 2:
                x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{prefix}_up")(x)
        if finest is None:
            finest = x
        elif tuple(x.shape[1:3]) != tuple(finest.shape[1:3]) or None in tuple(finest.shape[1:3]):
            x = resize_like(x, finest, name=f"head_p{level}_resize")
        branches.append(x)
    x = layers.Add(name="head_sum")(branches)
    logits = classifier_conv(x, num_classes, name="head_classifier")
    model = keras.Model(inputs, segmentation_outputs(inputs, logits), name=name)
    return load_weights(model, weights)


for _name, (_row, _params) in VARIANTS.items():
    register_model(semantic_fpn, name=_name, family="semantic_fpn", task="segmentation", paper=KIRILLOV2019,
                   input_shape=(512, 512, 3), num_classes=21, defaults={**_row, "name": _name},
                   reference_params=_params, reference_params_source=f"this implementation: exactly {_params:,}",
                   min_input_size=32, preprocessing="torch", crop_fraction=1.0, recipe=segmentation_recipe)
