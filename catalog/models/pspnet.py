"""PSPNet (Zhao et al. 2017, "Pyramid Scene Parsing Network", CVPR) on any ``features_only`` backbone.

A dilated backbone (output stride 8) -> :func:`catalog.blocks.segmentation.pyramid_pooling` (bins 1, 2, 3, 6,
each to C/4 channels, concatenated with the input: 2C) -> 3x3 conv-BN-ReLU to 512 -> dropout 0.1 -> 1x1
classifier -> bilinear upsampling to the input size. ``aux=True`` adds the paper's deeply supervised auxiliary
head on stage 3 (torchvision's ``FCNHead`` layout; the paper weighs its loss 0.4, the recipe's ``aux_weight``).
Deliberate difference: the torchvision ResNet-50 (7x7 stem) instead of the paper's three-3x3-conv stem.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.blocks.segmentation import pyramid_pooling
from catalog.models.segmentation import (check_common, classifier_conv, dilated_maps, fcn_head, load_weights,
                                         segmentation_outputs, segmentation_recipe)
from catalog.registry import register_model

ZHAO2017 = "Zhao et al. 2017, Pyramid Scene Parsing Network, CVPR"

# name: (builder keywords, exact trainable params of this implementation at 21 classes)
VARIANTS = {
    "pspnet_resnet50": (dict(backbone="resnet50"), 46_592_597),
}


def pspnet(backbone: str = "resnet50", num_classes: int = 21, input_shape=(473, 473, 3), output_stride: int = 8,
           bins=(1, 2, 3, 6), channels: int = 512, dropout: float = 0.1, aux: bool = False, aux_reduction: int = 16,
           backbone_options: dict | None = None, backbone_weights=None, weights=None, name: str = "pspnet"):
    """PSPNet: dilated backbone, pyramid pooling module, 3x3 conv, classifier.

    Args:
        backbone: a registered classifier with stages at reductions 16 and 32 (and ``output_stride``).
        num_classes: classes of the logits (21).
        input_shape: (height, width, channels); the paper crops 473 (a 60 x 60 map at stride 8).
        output_stride: 8, 16 or 32 of the backbone's last stage.
        bins: pyramid pooling sizes.
        channels: channels of the 3x3 conv after the pyramid.
        dropout: dropout before the classifier.
        aux: add the auxiliary head (outputs become ``{"logits", "aux"}``).
        aux_reduction: the nominal reduction of the stage the auxiliary head reads.
        backbone_options, backbone_weights, weights, name: as :func:`catalog.models.deeplab.deeplabv3`.
    """
    shape = check_common(num_classes, input_shape)
    inputs, last, aux_map = dilated_maps(backbone, shape, aux=aux, aux_reduction=aux_reduction,
                                         output_stride=output_stride, backbone_options=backbone_options,
                                         backbone_weights=backbone_weights, model=name)
    x = pyramid_pooling(last, bins=bins, name="ppm")
    x = conv_bn_act(x, channels, 3, name="head_conv")
    if dropout:
        x = layers.Dropout(dropout, name="head_drop")(x)
    logits = classifier_conv(x, num_classes, name="head_classifier")
    aux_logits = fcn_head(aux_map, num_classes, name="aux") if aux else None
    model = keras.Model(inputs, segmentation_outputs(inputs, logits, aux_logits), name=name)
    return load_weights(model, weights)


for _name, (_row, _params) in VARIANTS.items():
    register_model(pspnet, name=_name, family="pspnet", task="segmentation", paper=ZHAO2017,
                   input_shape=(473, 473, 3), num_classes=21, defaults={**_row, "name": _name},
                   reference_params=_params, reference_params_source=f"this implementation: exactly {_params:,}",
                   min_input_size=32, preprocessing="torch", crop_fraction=1.0, recipe=segmentation_recipe)
