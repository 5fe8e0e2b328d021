"""What every restoration family (SRCNN, ESPCN, EDSR, DnCNN) shares: argument checks, the sub-pixel
convolution layer, the output format and the training recipe.

Output format (what ``catalog evaluate --task restoration`` reads): an image (B, H * scale, W * scale, C) in the
input's range (the catalog trains on ``unit`` pixels, [0, 1]), float32 under mixed precision, not clipped (the
evaluation clips to the range). A model whose output is larger than its input is a super-resolution model (the
``catalog.datasets`` task ``super_resolution``: low-res input, clean target ``scale`` times larger); one whose
output has the input's size is a denoiser (task ``denoising``: noisy input, clean target).

Inputs: ``num_channels`` 1 (luminance, as SRCNN, ESPCN and DnCNN train in their papers) or 3 (RGB);
``input_shape`` (height, width) or (height, width, channels), height and width may be None (every model here is
fully convolutional); default 64 x 64, the size the cards' MACs are counted at.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from catalog.registry import TrainingRecipe

DEFAULT_SIZE = 64


def check_common(num_channels, input_shape, scale=None, scales=(2, 3, 4)):
    """Validate ``num_channels`` (1 or 3), ``scale`` (one of ``scales``; None: not checked) and ``input_shape``
    ((height, width[, channels]), positive ints or None; channels, when given, must equal ``num_channels``);
    return the (height, width, channels) input shape."""
    if isinstance(num_channels, bool) or num_channels not in (1, 3):
        raise ValueError(f"num_channels must be 1 (luminance) or 3 (RGB); got {num_channels!r}.")
    if scale is not None and (isinstance(scale, bool) or scale not in scales):
        raise ValueError(f"scale must be one of {', '.join(map(str, scales))}; got {scale!r}.")
    shape = (DEFAULT_SIZE, DEFAULT_SIZE) if input_shape is None else tuple(input_shape)
    if len(shape) == 2:
        shape = (*shape, num_channels)
    if len(shape) != 3 or any(s is not None and (isinstance(s, bool) or not isinstance(s, int) or s <= 0)
                              for s in shape[:2]):
        raise ValueError(f"input_shape must be (height, width) or (height, width, channels) of positive integers "
                         f"(height and width may be None); got {input_shape!r}.")
    if shape[2] != num_channels:
        raise ValueError(f"input_shape has {shape[2]} channels but num_channels is {num_channels}; make them "
                         f"agree (or give input_shape as (height, width)).")
    return shape


def positive_int(value, argument):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{argument} must be a positive integer; got {value!r}.")


@keras.saving.register_keras_serializable(package="catalog")
class PixelShuffle(layers.Layer):
    """Sub-pixel convolution's rearrangement (Shi et al. 2016): (B, H, W, C * r^2) -> (B, H * r, W * r, C).

    The channel order is TensorFlow's ``tf.nn.depth_to_space`` (output pixel (h*r + i, w*r + j), channel c
    reads input channel (i*r + j) * C + c); PyTorch's ``nn.PixelShuffle`` reads c*r^2 + i*r + j (a weight port
    permutes the last conv's output channels). ``keras.ops`` only: runs on every backend, sizes may be None.
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        positive_int(scale, "scale")
        self.scale = int(scale)

    def call(self, x):
        r = self.scale
        channels = x.shape[-1] // (r * r)
        shape = ops.shape(x)
        height, width = shape[1], shape[2]
        x = ops.reshape(x, (-1, height, width, r, r, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, height * r, width * r, channels))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.scale
        if c % (r * r):
            raise ValueError(f"PixelShuffle({r}) needs channels divisible by {r * r}; got {c}.")
        return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def upsampler(x, scale: int, filters: int, *, name: str, kernel_size: int = 3):
    """EDSR's upsampler: a conv to ``filters * r^2`` channels and a :class:`PixelShuffle` per factor (x4 is two
    x2 steps, x3 one x3 step), named ``{name}{i}_conv`` / ``{name}{i}_shuffle``."""
    steps = (2, 2) if scale == 4 else (scale,)
    for i, r in enumerate(steps, 1):
        x = layers.Conv2D(filters * r * r, kernel_size, padding="same", name=f"{name}{i}_conv")(x)
        x = PixelShuffle(r, name=f"{name}{i}_shuffle")(x)
    return x


def image_output(x, name: str = "output"):
    """The model's image output, float32 under mixed precision."""
    return layers.Activation("linear", dtype="float32", name=name)(x)


def load_weights(model, weights):
    """A local weights file of the whole restoration model (see :func:`catalog.models.classifier.load_weights`)."""
    from catalog.models.classifier import load_weights as load

    return load(model, weights)


def restoration_scale(model) -> int:
    """The upscaling factor of a restoration model: its output size over its input size (1: a denoiser), from the
    static shapes or, when they are None, from one call on a 12 x 12 input."""
    (_, h_in, _, channels), out = model.input_shape, model.output_shape
    h_out = out[1]
    if h_in is None or h_out is None:
        probe = np.zeros((1, 12, 12, channels), np.float32)
        h_in, h_out = 12, int(ops.shape(model(probe, training=False))[1])
    if h_out % h_in:
        raise ValueError(f"model {model.name!r} maps {h_in} pixels to {h_out}: not a restoration model (its output "
                         f"must be the input's size or an integer multiple of it).")
    return h_out // h_in


@keras.saving.register_keras_serializable(package="catalog")
def psnr(y_true, y_pred):
    """PSNR in dB of images in [0, 1] (the prediction clipped to it), per image, for ``compile(metrics=...)``."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.clip(ops.cast(y_pred, "float32"), 0.0, 1.0)
    mse = ops.mean(ops.square(y_true - y_pred), axis=(1, 2, 3))
    return -10.0 * ops.log(ops.maximum(mse, 1e-10)) / np.log(10.0)


LOSSES = ("l1", "l2")


def restoration_recipe(model, loss: str = "l1", noise_std: float = 25.0) -> TrainingRecipe:
    """Training recipe of a restoration model: L1 (EDSR's) or L2 (SRCNN's, ESPCN's, DnCNN's) pixel loss, PSNR.

    The data task follows the model: a model whose output is larger than its input trains on
    ``catalog.datasets`` ``super_resolution`` pairs at its scale (low-res: the mean of each scale x scale block
    of the clean image); a same-size model on ``denoising`` pairs with Gaussian noise of ``noise_std`` (in 0..255
    units). ``TrainingRecipe.data_options`` carries them to ``catalog.datasets.load``.

    Args:
        model: a restoration model (output as in this module's docstring).
        loss: "l1" (mean absolute error) or "l2" (mean squared error).
        noise_std: the denoising data's noise standard deviation (0..255 units; 25 is DnCNN's sigma 25).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or noise_std < 0:
        raise ValueError(f"noise_std must be a non-negative number (0..255 units); got {noise_std!r}.")
    scale = restoration_scale(model)
    keras_loss = keras.losses.MeanAbsoluteError() if loss == "l1" else keras.losses.MeanSquaredError()
    if scale > 1:
        task, options = "super_resolution", {"scale": scale}
        notes = [f"super-resolution x{scale}: low-res inputs are the means of {scale}x{scale} blocks of the clean "
                 f"images; {loss.upper()} loss"]
    else:
        task, options = "denoising", {"noise_std": float(noise_std)}
        notes = [f"denoising: Gaussian noise of sigma {float(noise_std):g} (0..255 units), rounded and clipped; "
                 f"{loss.upper()} loss"]
    return TrainingRecipe(task=task, loss=keras_loss, metrics=[psnr], data_options=options, notes=notes)
