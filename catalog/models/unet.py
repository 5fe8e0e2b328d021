"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI):
the paper's encoder-decoder, and a U-Net decoder on any registered ``features_only`` encoder.

- ``unet`` (the paper): a contracting path of ``depth`` steps, each two 3x3 conv-ReLU (with bias, no
  BatchNorm) then a 2x2/2 max pool, channels ``width * 2**i`` (64 ... 512); a bottom of two 3x3 convs at
  ``width * 2**depth`` (1024); an expanding path of :func:`catalog.blocks.segmentation.decoder_stage` (2x2
  up-convolution halving the channels, concatenation with the encoder map, two 3x3 conv-ReLU); a 1x1 conv to
  the classes. Deliberate difference: "same" padding (the paper's convs are unpadded, so its 572 input gives a
  388 map and needs crops); outputs are at the input size for any size (odd sizes resize the up-sampled map to
  the skip's). At width 64, depth 4, 3 input channels and 2 classes: 31,031,810 trainable parameters.
- ``unet_resnet34`` etc.: the encoder's stages at reductions 2, 4, 8, 16 are the skips of bilinear decoder
  stages with BatchNorm (channels 256, 128, 64, 32 from deep to shallow), a 1x1 classifier, bilinear
  upsampling to the input size.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.layers import conv_bn_act, positive_int
from catalog.blocks.segmentation import decoder_stage
from catalog.models.segmentation import (backbone_features, check_common, classifier_conv, load_weights,
                                         segmentation_outputs, segmentation_recipe)
from catalog.registry import register_model

RONNEBERGER2015 = ("Ronneberger et al. 2015, U-Net: Convolutional Networks for Biomedical Image Segmentation, "
                   "MICCAI")

# name: (builder keywords, exact trainable params of this implementation at the registered defaults)
VARIANTS = {
    "unet": (dict(width=64, depth=4), 31_031_810),
}
# name: (encoder, exact trainable params of this implementation at 21 classes)
VARIANTS_ENCODER = {
    "unet_resnet34": ("resnet34", 24_429_941),
    "unet_mobilenet_v2": ("mobilenet_v2", 3_998_517),
}


def unet(num_classes: int = 2, input_shape=(512, 512, 3), width: int = 64, depth: int = 4, norm: bool = False,
         up: str = "transposed", weights=None, name: str = "unet"):
    """The paper's U-Net: ``depth`` down steps of two 3x3 convs and a max pool, a bottom, ``depth`` up steps.

    Args:
        num_classes: classes of the logits (2 in the paper).
        input_shape: (height, width, channels); height and width may be None.
        width: channels of the first step (64); step i has ``width * 2**i``.
        depth: number of down (and up) steps (4).
        norm: BatchNorm after every 3x3 conv (the paper has none).
        up: "transposed" (the paper's 2x2 up-convolution) or "bilinear".
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_classes, input_shape)
    positive_int(width, "width")
    positive_int(depth, "depth")
    inputs = keras.Input(shape=shape, name="input")
    x, skips = inputs, []
    for i in range(depth):
        x = conv_bn_act(x, width * 2 ** i, 3, norm=norm, name=f"down{i + 1}_conv1")
        x = conv_bn_act(x, width * 2 ** i, 3, norm=norm, name=f"down{i + 1}_conv2")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{i + 1}_pool")(x)
    x = conv_bn_act(x, width * 2 ** depth, 3, norm=norm, name="bottom_conv1")
    x = conv_bn_act(x, width * 2 ** depth, 3, norm=norm, name="bottom_conv2")
    for i in reversed(range(depth)):
        x = decoder_stage(x, skips[i], width * 2 ** i, method=up, norm=norm, name=f"up{i + 1}")
    logits = classifier_conv(x, num_classes, name="head_classifier")
    model = keras.Model(inputs, segmentation_outputs(inputs, logits), name=name)
    return load_weights(model, weights)


def unet_encoder(backbone: str = "resnet34", num_classes: int = 21, input_shape=(512, 512, 3),
                 decoder_channels=(256, 128, 64, 32), up: str = "bilinear", backbone_options: dict | None = None,
                 backbone_weights=None, weights=None, name: str = "unet_resnet34"):
    """A U-Net decoder on a registered encoder's stages at reductions 2, 4, 8, 16 (skips) and 32 (bottom).

    Args:
        backbone: a registered classifier with stages at reductions 2, 4, 8, 16, 32.
        num_classes: classes of the logits.
        input_shape: (height, width, channels); height and width may be None.
        decoder_channels: channels of the decoder stages, deep (reduction 16) to shallow; fewer than four
            entries use only the deepest skips.
        up: "bilinear" or "transposed" upsampling in the decoder stages.
        backbone_options, backbone_weights, weights, name: as :func:`catalog.models.deeplab.deeplabv3`.
    """
    shape = check_common(num_classes, input_shape)
    channels = tuple(decoder_channels)
    if not 1 <= len(channels) <= 4:
        raise ValueError(f"decoder_channels must have 1 to 4 entries; got {decoder_channels!r}.")
    for c in channels:
        positive_int(c, "decoder_channels")
    reductions = (32, 16, 8, 4, 2)[:len(channels) + 1]
    features = backbone_features(backbone, reductions, shape, backbone_options=backbone_options,
                                 backbone_weights=backbone_weights, model=name)
    inputs = keras.Input(shape=shape, name="input")
    maps = list(features(inputs))
    x = maps[0]
    for c, skip, reduction in zip(channels, maps[1:], reductions[1:]):
        x = decoder_stage(x, skip, c, method=up, name=f"decoder{reduction}")
    logits = classifier_conv(x, num_classes, name="head_classifier")
    model = keras.Model(inputs, segmentation_outputs(inputs, logits), name=name)
    return load_weights(model, weights)


for _name, (_row, _params) in VARIANTS.items():
    register_model(unet, name=_name, family="unet", task="segmentation", paper=RONNEBERGER2015,
                   input_shape=(512, 512, 3), num_classes=2, defaults={**_row, "name": _name},
                   reference_params=_params,
                   reference_params_source=f"this implementation (the paper's layout, 'same' padding): exactly "
                                           f"{_params:,}",
                   min_input_size=16, preprocessing="unit", crop_fraction=1.0, recipe=segmentation_recipe)

for _name, (_encoder, _params) in VARIANTS_ENCODER.items():
    register_model(unet_encoder, name=_name, family="unet_encoder", task="segmentation", paper=RONNEBERGER2015,
                   input_shape=(512, 512, 3), num_classes=21, defaults=dict(backbone=_encoder, name=_name),
                   reference_params=_params, reference_params_source=f"this implementation: exactly {_params:,}",
                   min_input_size=32, preprocessing="torch" if "resnet" in _encoder else "tf",
                   crop_fraction=1.0, recipe=segmentation_recipe)
