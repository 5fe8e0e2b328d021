"""R3D-18 (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR), in
torchvision's ``r3d_18`` layout (``VideoResNet`` with ``BasicBlock`` and ``Conv3DSimple``).

Stem: conv 3x7x7, stride (1, 2, 2), padding (1, 3, 3), 64 channels, BN, ReLU (no max pool). Four stages of two
3D basic blocks (:func:`catalog.blocks.conv3d.basic_3d`) with 64, 128, 256, 512 channels; the first block of
stages 2-4 has stride 2 in time, height and width and a 1x1x1 strided conv + BN shortcut. Global average pool
over (T, H, W), FC to the classes. No conv bias; BatchNorm eps 1e-5, momentum 0.1 (PyTorch's convention).
Initialization as torchvision's: He-normal fan-out convs, BN 1/0, the FC N(0, 0.01) with zero bias.
A 16 x 112 x 112 clip gives 16x56x56 after the stem and 16x56x56, 8x28x28, 4x14x14, 2x7x7 after the stages.

Parameters at 400 classes (Kinetics-400): 33,371,472, torchvision's ``r3d_18`` trainable count exactly;
MACs at 16 x 112 x 112: torchvision's 40.70 GFLOPS (its GFLOPS are MACs).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from catalog.blocks.conv3d import basic_3d, conv_bn_act_3d
from catalog.models.classifier import dense
from catalog.models.video import check_head, load_weights, video_input, video_recipe, video_top
from catalog.registry import register_model

TRAN2018 = "Tran et al. 2018, A Closer Look at Spatiotemporal Convolutions for Action Recognition, CVPR"
KINETICS_CLASSES = 400


def r3d(num_classes: int = KINETICS_CLASSES, input_shape=None, include_top: bool = True, pooling=None,
        classifier_activation: str | None = "softmax", depths: Sequence[int] = (2, 2, 2, 2), width: int = 64,
        dropout: float = 0.0, weights=None, name: str = "r3d_18"):
    """R3D: 3x7x7 stem (stride 1, 2, 2), four stages of 3D basic blocks, global average pool, FC.

    Args:
        num_classes: classes of the FC (400: Kinetics-400).
        input_shape: (frames, height, width, channels); default (16, 112, 112, 3); sizes may be None.
        include_top: add the pooling and the FC.
        pooling: None, "avg" or "max": the pooling of the last map without the top.
        classifier_activation: activation of the FC ("softmax", or None for logits).
        depths: blocks per stage ((2, 2, 2, 2): R3D-18).
        width: channels of the stem and stage 1; stage i has ``width * 2**i`` (64 for R3D-18).
        dropout: dropout rate before the FC (torchvision has none).
        weights: a local weights file of this model.
        name: model name.
    """
    check_head(include_top, pooling, num_classes, classifier_activation)
    if not (isinstance(depths, (tuple, list)) and depths and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in depths)):
        raise ValueError(f"depths must be a tuple of positive integers (blocks per stage); got {depths!r}.")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive integer; got {width!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
    inputs = video_input(input_shape)
    x = conv_bn_act_3d(inputs, width, (3, 7, 7), (1, 2, 2), padding="symmetric", name="stem")
    for s, depth in enumerate(depths):
        for b in range(depth):
            stride = 2 if (s > 0 and b == 0) else 1
            x = basic_3d(x, width * 2 ** s, stride, name=f"stage{s + 1}_block{b + 1}")
    if include_top:
        x = layers.GlobalAveragePooling3D(name="head_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="head_drop")(x)
        x = dense(x, num_classes, name="head_fc", init="normal")
    x = video_top(x, include_top, pooling, classifier_activation)
    return load_weights(keras.Model(inputs, x, name=name), weights)


register_model(r3d, name="r3d_18", family="r3d", task="video", paper=TRAN2018, input_shape=(16, 112, 112, 3),
               num_classes=KINETICS_CLASSES, defaults=dict(depths=(2, 2, 2, 2), name="r3d_18"),
               reference_params=33_371_472,
               reference_params_source="torchvision r3d_18 (400 Kinetics-400 classes, trainable parameters)",
               reference_macs=40.697e9,
               reference_macs_source="torchvision r3d_18 docs, 40.70 GFLOPS at 16x112x112 (GFLOPS = MACs)",
               preprocessing="unit", crop_fraction=1.0, recipe=video_recipe)
