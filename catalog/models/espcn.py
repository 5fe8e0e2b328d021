"""ESPCN (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR): convolutions at the low resolution, then a sub-pixel convolution.

Layout (the paper's l = 3 network): 5x5 conv to 64, tanh; 3x3 conv to 32, tanh; 3x3 conv to ``channels * r^2``;
:class:`catalog.models.restoration.PixelShuffle` to (H * r, W * r, channels); all convs with bias, "same"
padding (the paper's are unpadded on 17 x 17 training crops). Parameters at 1 channel:
5*5*64 + 64 + 3*3*64*32 + 32 + 3*3*32*r^2 + r^2 = 20,128 + 289 r^2: 21,284 (x2), 22,729 (x3), 24,752 (x4).
The paper gives no count; the card's reference is this implementation's.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.models.restoration import PixelShuffle, check_common, image_output, load_weights, restoration_recipe
from catalog.registry import register_model

SHI2016 = ("Shi et al. 2016, Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel "
           "Convolutional Neural Network, CVPR")


def espcn_params(scale: int, channels: int = 1) -> int:
    """Closed-form trainable parameters of :func:`espcn`."""
    return (25 * channels * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 + 1) * channels * scale * scale


def espcn(scale: int = 2, num_channels: int = 1, input_shape=None, filters=(64, 32), activation: str = "tanh",
          weights=None, name: str = "espcn"):
    """ESPCN: 5x5 and 3x3 convs with tanh at the low resolution, a 3x3 conv to channels * scale^2, pixel shuffle.

    Args:
        scale: upscaling factor (2, 3 or 4).
        num_channels: 1 (luminance, the paper's) or 3 (RGB).
        input_shape: the low-res input, (height, width[, channels]); None sizes allowed (default 64 x 64).
        filters: channels of the two hidden convs (64, 32).
        activation: of the hidden convs ("tanh", the paper's; "relu" is a common variant).
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_channels, input_shape, scale)
    if len(tuple(filters)) != 2:
        raise ValueError(f"filters must have 2 entries; got {filters!r}.")
    inputs = keras.Input(shape=shape, name="input")
    x = layers.Conv2D(filters[0], 5, padding="same", activation=activation, name="conv1")(inputs)
    x = layers.Conv2D(filters[1], 3, padding="same", activation=activation, name="conv2")(x)
    x = layers.Conv2D(num_channels * scale * scale, 3, padding="same", name="conv3")(x)
    x = PixelShuffle(scale, name="pixel_shuffle")(x)
    model = keras.Model(inputs, image_output(x), name=name)
    return load_weights(model, weights)


register_model(espcn, name="espcn", family="espcn", task="restoration", paper=SHI2016, input_shape=(64, 64, 1),
               num_classes=0, defaults=dict(scale=2, name="espcn"), reference_params=espcn_params(2),
               reference_params_source=f"this implementation (the paper gives no count): 20,128 + 289 * scale^2 "
                                       f"at 1 channel = {espcn_params(2):,} at x2",
               preprocessing="unit", crop_fraction=1.0, recipe=restoration_recipe)
