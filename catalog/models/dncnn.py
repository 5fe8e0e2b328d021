"""DnCNN (Zhang et al. 2017, "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising", TIP).

Layout: ``depth`` 3x3 conv layers of 64 features: conv + ReLU; ``depth - 2`` of conv + BatchNorm + ReLU (no conv
bias before BatchNorm); a conv to the channels that predicts the noise (residual learning); the output is the
input minus the predicted noise (a ``Subtract`` layer), so the model outputs the clean image and trains against it
(an L2 loss on the output equals the paper's loss on the residual). Parameters at 17 layers, 1 channel:
(9*64 + 64) + 15 * (9*64*64 + 128) + (9*64 + 1) = 556,097 (the paper: 0.56M).
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.models.restoration import check_common, image_output, load_weights, positive_int, restoration_recipe
from catalog.registry import register_model

ZHANG2017 = ("Zhang et al. 2017, Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising, "
             "TIP")


def dncnn(num_channels: int = 1, input_shape=None, depth: int = 17, filters: int = 64, zero_init: bool = True,
          weights=None, name: str = "dncnn"):
    """DnCNN: a conv-ReLU, ``depth - 2`` conv-BN-ReLU, a conv to the noise; output = input - noise.

    Args:
        num_channels: 1 (gray, DnCNN-S/B) or 3 (colour, CDnCNN).
        input_shape: (height, width[, channels]); None sizes allowed (default 64 x 64).
        depth: conv layers (17 for DnCNN-S, 20 for DnCNN-B/CDnCNN-B).
        filters: feature channels (64).
        zero_init: the noise conv starts at zero, so the untrained model is the identity (its output the noisy
            input) and a short run starts from the noisy input's PSNR; False: Glorot like every other conv (the
            paper: He initialization), whose random noise estimate costs a short run its first hundreds of steps.
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_channels, input_shape)
    positive_int(filters, "filters")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 3:
        raise ValueError(f"depth must be an integer >= 3; got {depth!r}.")
    inputs = keras.Input(shape=shape, name="input")
    x = conv_bn_act(inputs, filters, 3, norm=False, name="layer1")
    for i in range(2, depth):
        x = conv_bn_act(x, filters, 3, name=f"layer{i}")
    init = "zeros" if zero_init else "glorot_uniform"
    noise = layers.Conv2D(num_channels, 3, padding="same", kernel_initializer=init, name=f"layer{depth}_conv")(x)
    x = layers.Subtract(name="residual")([inputs, noise])
    model = keras.Model(inputs, image_output(x), name=name)
    return load_weights(model, weights)


register_model(dncnn, name="dncnn", family="dncnn", task="restoration", paper=ZHANG2017, input_shape=(64, 64, 1),
               num_classes=0, defaults=dict(name="dncnn"), reference_params=560_000, reference_params_rtol=0.01,
               reference_params_source="Zhang et al. 2017, sec. IV-A / table: 0.56M for 17 layers (this "
                                       "implementation: exactly 556,097 at 1 channel)",
               preprocessing="unit", crop_fraction=1.0, recipe=restoration_recipe)
