"""EDSR baseline (Lim et al. 2017, "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW).

Layout (the reference ``EDSR-PyTorch`` baseline): a 3x3 head conv to 64; 16 residual blocks, each conv-ReLU-conv
(3x3, 64, bias, no BatchNorm) times ``res_scale`` (1 for the baseline; 0.1 for the paper's large model) added to the
block input; a 3x3 conv after the blocks and a global skip from the head; the upsampler (a 3x3 conv to 64 * r^2
and a :class:`catalog.models.restoration.PixelShuffle` per step: x2, x3, or x4 as two x2); a 3x3 conv to the
channels. Deliberate difference: no MeanShift (the reference subtracts the DIV2K RGB mean from 0..255 inputs with a
fixed, untrained conv); here inputs are [0, 1] pixels as the catalog trains them, and the counts are unchanged.

Parameters at 3 channels: 1,369,859 (x2), 1,554,499 (x3), 1,517,571 (x4); the paper's table 1 gives 1.5M.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.models.restoration import check_common, image_output, load_weights, positive_int, restoration_recipe, \
    upsampler
from catalog.registry import register_model

LIM2017 = "Lim et al. 2017, Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW"

# name: (builder keywords, exact trainable params of this implementation at 3 channels)
VARIANTS = {
    "edsr_baseline_x2": (dict(scale=2), 1_369_859),
    "edsr_baseline_x3": (dict(scale=3), 1_554_499),
    "edsr_baseline_x4": (dict(scale=4), 1_517_571),
}


def residual_block(x, filters: int, res_scale: float, *, name: str):
    """EDSR's block: conv-ReLU-conv without BatchNorm, scaled by ``res_scale``, plus the input."""
    y = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    if res_scale != 1:
        y = layers.Rescaling(res_scale, name=f"{name}_scale")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def edsr(scale: int = 2, num_channels: int = 3, input_shape=None, num_blocks: int = 16, filters: int = 64,
         res_scale: float = 1.0, weights=None, name: str = "edsr_baseline_x2"):
    """EDSR: head conv, ``num_blocks`` residual blocks without BatchNorm, a global skip, a sub-pixel upsampler.

    Args:
        scale: upscaling factor (2, 3 or 4).
        num_channels: 3 (RGB, the paper's) or 1.
        input_shape: the low-res input, (height, width[, channels]); None sizes allowed (default 64 x 64).
        num_blocks: residual blocks (16 baseline, 32 in the paper's large EDSR).
        filters: feature channels (64 baseline, 256 large).
        res_scale: residual scaling (1.0 baseline; 0.1 for the large model, as the paper).
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_channels, input_shape, scale)
    positive_int(num_blocks, "num_blocks")
    positive_int(filters, "filters")
    if isinstance(res_scale, bool) or not isinstance(res_scale, (int, float)) or not res_scale > 0:
        raise ValueError(f"res_scale must be a positive number; got {res_scale!r}.")
    inputs = keras.Input(shape=shape, name="input")
    head = layers.Conv2D(filters, 3, padding="same", name="head_conv")(inputs)
    x = head
    for i in range(num_blocks):
        x = residual_block(x, filters, float(res_scale), name=f"body_block{i + 1}")
    x = layers.Conv2D(filters, 3, padding="same", name="body_conv")(x)
    x = layers.Add(name="body_add")([head, x])
    x = upsampler(x, scale, filters, name="tail_up")
    x = layers.Conv2D(num_channels, 3, padding="same", name="tail_conv")(x)
    model = keras.Model(inputs, image_output(x), name=name)
    return load_weights(model, weights)


for _name, (_row, _params) in VARIANTS.items():
    register_model(edsr, name=_name, family="edsr", task="restoration", paper=LIM2017, input_shape=(64, 64, 3),
                   num_classes=0, defaults={**_row, "name": _name}, reference_params=1_500_000,
                   reference_params_rtol=0.1,
                   reference_params_source=f"Lim et al. 2017, table 1: EDSR baseline 1.5M (this implementation, "
                                           f"the reference layout: exactly {_params:,})",
                   preprocessing="unit", crop_fraction=1.0, recipe=restoration_recipe)
