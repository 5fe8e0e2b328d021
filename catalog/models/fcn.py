"""Fully convolutional networks (Long et al. 2015, "Fully Convolutional Networks for Semantic Segmentation",
CVPR): the paper's FCN-32s/16s/8s on VGG16 and torchvision's ``fcn_resnet50``.

- FCN-VGG16 (the paper): VGG16's conv stages; fc6 and fc7 as convolutions (7x7 to 4096 and 1x1 to 4096, ReLU,
  dropout 0.5); a zero-initialized 1x1 class scorer. FCN-32s upsamples its scores 32x with fixed bilinear
  interpolation. FCN-16s adds a zero-initialized 1x1 scorer on pool4 to the scores upsampled 2x by a learned
  transposed conv (4x4/2, no bias, bilinear at the start), then upsamples 16x; FCN-8s adds pool3 the same way.
  Deliberate differences: "same" padding on fc6 instead of Caffe's 100-pixel input padding and crops (any
  input size works, outputs align without crops); the final upsampling is bilinear resizing to the input size
  (what the paper's fixed bilinear deconvolution computes). Trainable counts at 21 classes: FCN-32s
  134,346,581, FCN-16s 134,364,410, FCN-8s 134,376,863 (Long et al. 2015 Table 1: 134M).
- ``fcn_resnet50`` (torchvision): ResNet-50 at output stride 8, ``FCNHead`` (3x3 conv-BN-ReLU to 512, dropout
  0.1, 1x1 classifier), bilinear upsampling; ``aux=True`` adds the same head (1024 -> 256) on stage 3 and the
  outputs become ``{"logits", "aux"}``. 32,957,013 trainable parameters at 21 classes (35,322,218 with aux),
  torchvision's exactly.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.segmentation import upsample
from catalog.models.segmentation import (backbone_features, check_common, dilated_maps, fcn_head, load_weights,
                                         segmentation_outputs, segmentation_recipe)
from catalog.registry import register_model

LONG2015 = "Long et al. 2015, Fully Convolutional Networks for Semantic Segmentation, CVPR"
FC_WIDTH = 4096

# name: (skip strides fused into the scores, exact trainable params at 21 classes)
VARIANTS_VGG = {
    "fcn32s_vgg16": ((), 134_346_581),
    "fcn16s_vgg16": ((16,), 134_364_410),
    "fcn8s_vgg16": ((16, 8), 134_376_863),
}


def _score(x, num_classes, name):
    """A zero-initialized 1x1 class scorer with bias (the paper's score layers)."""
    return layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=name)(x)


def fcn_vgg(backbone: str = "vgg16", num_classes: int = 21, input_shape=(512, 512, 3), skips=(16, 8),
            fc_width: int = FC_WIDTH, dropout: float = 0.5, backbone_options: dict | None = None,
            backbone_weights=None, weights=None, name: str = "fcn8s_vgg16"):
    """FCN-32s/16s/8s (Long et al. 2015): VGG conv stages, fc6/fc7 as convs, skip scorers fused coarse to fine.

    Args:
        backbone: a registered VGG (any classifier with stages at reductions 8, 16, 32 works).
        num_classes: classes of the logits.
        input_shape: (height, width, channels); height and width may be None.
        skips: the reductions whose pooled stages are fused: () FCN-32s, (16,) FCN-16s, (16, 8) FCN-8s.
        fc_width: channels of fc6 and fc7 (4096).
        dropout: dropout after fc6 and fc7.
        backbone_options: more keywords for the backbone (``batch_norm``, ``include_preprocessing``, ...).
        backbone_weights: a local weights file of the backbone classifier.
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_classes, input_shape)
    skips = tuple(skips)
    if skips not in ((), (16,), (16, 8)):
        raise ValueError(f"skips must be () (FCN-32s), (16,) (FCN-16s) or (16, 8) (FCN-8s); got {skips!r}.")
    features = backbone_features(backbone, (32,) + skips, shape, backbone_options=backbone_options,
                                 backbone_weights=backbone_weights, model=name)
    inputs = keras.Input(shape=shape, name="input")
    maps = features(inputs)
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    x = layers.Conv2D(fc_width, 7, padding="same", activation="relu", name="fc6")(maps[0])
    if dropout:
        x = layers.Dropout(dropout, name="fc6_drop")(x)
    x = layers.Conv2D(fc_width, 1, activation="relu", name="fc7")(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc7_drop")(x)
    scores = _score(x, num_classes, "score_fr")
    for reduction, skip in zip(skips, maps[1:]):
        skip_scores = _score(skip, num_classes, f"score_pool{reduction.bit_length() - 1}")
        up = upsample(scores, 2, like=skip_scores, method="transposed", name=f"upscore_to{reduction}")
        scores = layers.Add(name=f"fuse_pool{reduction.bit_length() - 1}")([skip_scores, up])
    model = keras.Model(inputs, segmentation_outputs(inputs, scores), name=name)
    return load_weights(model, weights)


def fcn(backbone: str = "resnet50", num_classes: int = 21, input_shape=(512, 512, 3), output_stride: int = 8,
        aux: bool = False, aux_reduction: int = 16, backbone_options: dict | None = None, backbone_weights=None,
        weights=None, name: str = "fcn_resnet50"):
    """FCN in torchvision's layout: a dilated backbone's last stage -> ``FCNHead`` -> bilinear upsampling.

    Args:
        backbone: a registered classifier with stages at reductions 16 and 32 (and ``output_stride``).
        num_classes: classes of the logits.
        input_shape: (height, width, channels); height and width may be None.
        output_stride: 8, 16 or 32 of the backbone's last stage (torchvision: 8).
        aux: add the auxiliary FCN head (outputs become ``{"logits", "aux"}``).
        aux_reduction: the nominal reduction of the stage the auxiliary head reads.
        backbone_options, backbone_weights, weights, name: as :func:`catalog.models.deeplab.deeplabv3`.
    """
    shape = check_common(num_classes, input_shape)
    inputs, last, aux_map = dilated_maps(backbone, shape, aux=aux, aux_reduction=aux_reduction,
                                         output_stride=output_stride, backbone_options=backbone_options,
                                         backbone_weights=backbone_weights, model=name)
    logits = fcn_head(last, num_classes, name="head")
    aux_logits = fcn_head(aux_map, num_classes, name="aux") if aux else None
    model = keras.Model(inputs, segmentation_outputs(inputs, logits, aux_logits), name=name)
    return load_weights(model, weights)


for _name, (_skips, _params) in VARIANTS_VGG.items():
    register_model(fcn_vgg, name=_name, family="fcn_vgg", task="segmentation", paper=LONG2015,
                   input_shape=(512, 512, 3), num_classes=21, defaults=dict(skips=_skips, name=_name),
                   reference_params=134_000_000, reference_params_rtol=0.004,
                   reference_params_source=f"Long et al. 2015 Table 1: 134M; this implementation: exactly {_params:,}",
                   min_input_size=32, preprocessing="caffe", crop_fraction=1.0, recipe=segmentation_recipe)

register_model(fcn, name="fcn_resnet50", family="fcn", task="segmentation", paper=LONG2015,
               input_shape=(512, 512, 3), num_classes=21, defaults=dict(name="fcn_resnet50"),
               reference_params=32_957_013,
               reference_params_source="torchvision fcn_resnet50(num_classes=21, aux_loss=False)",
               min_input_size=32, preprocessing="torch", crop_fraction=1.0, recipe=segmentation_recipe)
