"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation") and DeepLabV3+
(Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation", ECCV)
on any ``features_only`` backbone with ``output_stride`` (ResNet, MobileNet v2/v3, Xception families).

- DeepLabV3, torchvision's ``DeepLabHead``: the backbone's last stage at output stride 8 or 16 ->
  :func:`catalog.blocks.segmentation.aspp` (1x1, three 3x3 atrous, image pooling; 256 channels, dropout 0.5) ->
  3x3 conv-BN-ReLU 256 -> 1x1 conv to the classes -> bilinear upsampling to the input size.
- DeepLabV3+: ASPP output upsampled bilinearly to the stride-4 stage, whose 1x1 conv-BN-ReLU to 48 channels
  is concatenated, two 3x3 conv-BN-ReLU of 256, 1x1 classifier, bilinear upsampling to the input.
- ``aux=True`` adds torchvision's auxiliary ``FCNHead`` (3x3 conv-BN-ReLU to C/4, dropout 0.1, 1x1 classifier)
  on the stage at reduction 16 (ResNet: stage 3, "layer3") or 8 (MobileNetV3), and the outputs become
  ``{"logits", "aux"}``.

Exact torchvision counts at 21 classes (``weights=None, weights_backbone=None``, torchvision 0.29):
deeplabv3_resnet50 39,638,869 (42,004,074 with aux); deeplabv3_mobilenet_v3_large 11,025,477 (11,029,328 with
aux). torchvision's MobileNetV3 aux head reads the first block at stride 8 (``features[4]``); here the last
(block 6, the end of that stage): the same 40 channels and count.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.blocks.segmentation import aspp, resize_like
from catalog.models.segmentation import (backbone_features, check_common, classifier_conv, fcn_head, load_weights,
                                         segmentation_outputs, segmentation_recipe)
from catalog.registry import register_model

CHEN2017 = "Chen et al. 2017, Rethinking Atrous Convolution for Semantic Image Segmentation, arXiv:1706.05587"
CHEN2018 = ("Chen et al. 2018, Encoder-Decoder with Atrous Separable Convolution for Semantic Image "
            "Segmentation, ECCV")

# name: (builder keywords, trainable params at 21 classes without aux, its source)
VARIANTS = {
    "deeplabv3_resnet50": (dict(backbone="resnet50", output_stride=8, rates=(12, 24, 36), aux_reduction=16),
                           39_638_869, "torchvision deeplabv3_resnet50(num_classes=21, aux_loss=False)"),
    "deeplabv3_mobilenet_v3_large": (dict(backbone="mobilenet_v3_large", output_stride=16, rates=(12, 24, 36),
                                          aux_reduction=8),
                                     11_025_477,
                                     "torchvision deeplabv3_mobilenet_v3_large(num_classes=21, aux_loss=False)"),
}
# name: (builder keywords, exact trainable params of this implementation at 21 classes)
VARIANTS_PLUS = {
    "deeplabv3plus_resnet50": (dict(backbone="resnet50", output_stride=16, rates=(6, 12, 18)), 40_352_181),
    "deeplabv3plus_mobilenet_v2": (dict(backbone="mobilenet_v2", output_stride=16, rates=(6, 12, 18)), 5_816_053),
}


def deeplabv3(backbone: str = "resnet50", num_classes: int = 21, input_shape=(512, 512, 3), output_stride: int = 16,
              rates=(6, 12, 18), channels: int = 256, decoder: bool = False, low_level_channels: int = 48,
              aux: bool = False, aux_reduction: int = 16, backbone_options: dict | None = None,
              backbone_weights=None, weights=None, name: str = "deeplabv3"):
    """DeepLabV3 (or V3+ with ``decoder=True``) on a ``features_only`` backbone; logits at the input size.

    Args:
        backbone: a registered classifier with ``output_stride`` and stages at reductions 4 (V3+), 16, 32.
        num_classes: classes of the logits (21: VOC's 20 and background).
        input_shape: (height, width, channels); height and width may be None.
        output_stride: 8 or 16 (32: no dilation) of the backbone's last stage.
        rates: ASPP dilation rates (6/12/18 at stride 16, 12/24/36 at 8; torchvision uses 12/24/36 for both).
        channels: channels of ASPP and the head.
        decoder: add the V3+ decoder on the stride-4 stage.
        low_level_channels: the decoder's 1x1 projection of the stride-4 stage (48).
        aux: add the auxiliary FCN head (outputs become ``{"logits", "aux"}``).
        aux_reduction: the nominal reduction of the stage the auxiliary head reads.
        backbone_options: more keywords for the backbone (``alpha``, ``include_preprocessing``, ...).
        backbone_weights: a local weights file of the backbone classifier.
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_classes, input_shape)
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be one of 8, 16 or 32; got {output_stride!r}.")
    if not isinstance(aux, bool) or not isinstance(decoder, bool):
        raise ValueError(f"aux and decoder must be True or False; got aux={aux!r}, decoder={decoder!r}.")
    reductions = [32] + ([4] if decoder else []) + ([aux_reduction] if aux else [])
    features = backbone_features(backbone, reductions, shape, output_stride=output_stride,
                                 backbone_options=backbone_options, backbone_weights=backbone_weights, model=name)
    inputs = keras.Input(shape=shape, name="input")
    maps = features(inputs)
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    last = maps.pop(0)
    low = maps.pop(0) if decoder else None
    x = aspp(last, rates=rates, channels=channels, name="aspp")
    if decoder:
        low = conv_bn_act(low, low_level_channels, 1, name="decoder_low")
        x = resize_like(x, low, name="decoder_up")
        x = layers.Concatenate(name="decoder_concat")([x, low])
        x = conv_bn_act(x, channels, 3, name="decoder_conv1")
        x = conv_bn_act(x, channels, 3, name="decoder_conv2")
    else:
        x = conv_bn_act(x, channels, 3, name="head_conv")
    logits = classifier_conv(x, num_classes, name="head_classifier")
    aux_logits = fcn_head(maps.pop(0), num_classes, name="aux") if aux else None
    model = keras.Model(inputs, segmentation_outputs(inputs, logits, aux_logits), name=name)
    return load_weights(model, weights)


for _name, (_row, _params, _source) in VARIANTS.items():
    register_model(deeplabv3, name=_name, family="deeplabv3", task="segmentation", paper=CHEN2017,
                   input_shape=(512, 512, 3), num_classes=21, defaults={**_row, "name": _name},
                   reference_params=_params, reference_params_source=_source, min_input_size=32,
                   preprocessing="torch", crop_fraction=1.0, recipe=segmentation_recipe)

for _name, (_row, _params) in VARIANTS_PLUS.items():
    register_model(deeplabv3, name=_name, family="deeplabv3plus", task="segmentation", paper=CHEN2018,
                   input_shape=(512, 512, 3), num_classes=21, defaults={**_row, "decoder": True, "name": _name},
                   reference_params=_params, reference_params_source=f"this implementation: exactly {_params:,}",
                   min_input_size=32, preprocessing="torch" if "resnet" in _name else "tf", crop_fraction=1.0,
                   recipe=segmentation_recipe)
