"""SRCNN (Dong et al. 2014/2016, "Image Super-Resolution Using Deep Convolutional Networks", ECCV 2014 / TPAMI
2016): three convolutions on the bicubic-upscaled low-resolution image.

Layout: bicubic upsampling by ``scale`` (``UpSampling2D(interpolation="bicubic")`` inside the model, so the
model takes the low-res image like every other super-resolution model here and trains on the ``catalog.datasets``
``super_resolution`` pairs; Keras' bicubic (Keys a = -0.5 on TensorFlow, the backend's resize elsewhere) differs
slightly from MATLAB's and PIL's ``imresize`` at the borders), then ``f1 x f1`` conv to 64 + ReLU (patch
extraction), ``f2 x f2`` conv to 32 + ReLU (non-linear mapping), ``f3 x f3`` conv to the channels (reconstruction),
all with bias. ``srcnn_915`` is the 9-1-5 network of the 2014 paper, ``srcnn_955`` the 9-5-5 of 2016.
Deliberate difference: "same" padding (the paper's convs are unpadded, so its output is 12 (9-1-5) or 16 (9-5-5)
pixels smaller than its input and its loss is taken on the centre); here the output is the upscaled size.

Parameters at 1 channel (the papers' Y channel): 9-1-5: 9*9*64 + 1*1*64*32 + 5*5*32 = 8,032 weights (the 2014
paper's count) + 97 biases = 8,129; 9-5-5: 57,184 weights (the 2016 paper's) + 97 = 57,281.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.models.restoration import check_common, image_output, load_weights, restoration_recipe
from catalog.registry import register_model

DONG2016 = ("Dong et al. 2016, Image Super-Resolution Using Deep Convolutional Networks, TPAMI (ECCV 2014: "
            "Learning a Deep Convolutional Network for Image Super-Resolution)")

# name: (builder keywords, trainable params at 1 channel: the paper's weights + the 97 biases)
VARIANTS = {
    "srcnn_915": (dict(kernel_sizes=(9, 1, 5)), 8_129, "Dong et al. 2014 (ECCV), sec. 3: 8,032 weights; "
                  "+ 97 biases = 8,129"),
    "srcnn_955": (dict(kernel_sizes=(9, 5, 5)), 57_281, "Dong et al. 2016 (TPAMI), sec. 4.3: 57,184 weights for "
                  "9-5-5; + 97 biases = 57,281"),
}


def srcnn(scale: int = 2, num_channels: int = 1, input_shape=None, kernel_sizes=(9, 1, 5), filters=(64, 32),
          weights=None, name: str = "srcnn_915"):
    """SRCNN: bicubic upsampling, then patch extraction, non-linear mapping and reconstruction convolutions.

    Args:
        scale: upscaling factor (2, 3 or 4).
        num_channels: 1 (luminance, the paper's) or 3 (RGB).
        input_shape: the low-res input, (height, width[, channels]); None sizes allowed (default 64 x 64).
        kernel_sizes: (f1, f2, f3): (9, 1, 5) or (9, 5, 5) in the papers.
        filters: (n1, n2) channels of the first two convs (64, 32).
        weights: a local weights file of this model.
        name: model name.
    """
    shape = check_common(num_channels, input_shape, scale)
    if len(tuple(kernel_sizes)) != 3 or len(tuple(filters)) != 2:
        raise ValueError(f"kernel_sizes must have 3 entries and filters 2; got {kernel_sizes!r} and {filters!r}.")
    inputs = keras.Input(shape=shape, name="input")
    x = layers.UpSampling2D(scale, interpolation="bicubic", name="upsample_bicubic")(inputs)
    for i, (k, f) in enumerate(zip(kernel_sizes[:2], filters), 1):
        x = layers.Conv2D(f, k, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.Conv2D(num_channels, kernel_sizes[2], padding="same", name="conv3")(x)
    model = keras.Model(inputs, image_output(x), name=name)
    return load_weights(model, weights)


for _name, (_row, _params, _source) in VARIANTS.items():
    register_model(srcnn, name=_name, family="srcnn", task="restoration", paper=DONG2016,
                   input_shape=(64, 64, 1), num_classes=0, defaults={**_row, "name": _name},
                   reference_params=_params, reference_params_source=_source, preprocessing="unit",
                   crop_fraction=1.0, recipe=restoration_recipe)
