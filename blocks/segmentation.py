"""Dense-prediction blocks: ASPP, pyramid pooling, upsampling and a U-Net decoder stage.

- :func:`aspp`: DeepLabV3's atrous spatial pyramid pooling (Chen et al. 2017, "Rethinking Atrous Convolution
  for Semantic Image Segmentation"), torchvision's ``ASPP``: a 1x1 branch, one 3x3 branch per atrous rate, an
  image-pooling branch (global average -> 1x1 -> upsampled), concatenated, projected by a 1x1, dropout 0.5.
- :func:`pyramid_pooling`: PSPNet's pyramid pooling module (Zhao et al. 2017, "Pyramid Scene Parsing
  Network"): per bin size, adaptive average pooling -> 1x1 conv -> bilinear upsampling, concatenated with the
  input.
- :func:`upsample`: bilinear (no weights) or a learned transposed convolution (FCN's "deconvolution",
  Long et al. 2015, initialized to bilinear interpolation with :class:`BilinearKernel`).
- :func:`decoder_stage`: U-Net's expanding step (Ronneberger et al. 2015): upsample, concatenate the skip
  connection, two 3x3 convs.

Every conv-BN-ReLU is :func:`catalog.blocks.layers.conv_bn_act` (no conv bias before BatchNorm). A resize to
another tensor's size is :class:`ResizeLike`, the one custom layer here (``layers.Resizing`` takes a fixed
target size only).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from catalog.blocks.layers import conv_bn_act, positive_int

INTERPOLATIONS = ("bilinear", "nearest")
UPSAMPLE_METHODS = ("bilinear", "transposed")


@keras.saving.register_keras_serializable(package="catalog")
class ResizeLike(layers.Layer):
    """Resize ``x`` to the height and width of ``reference``: ``ResizeLike()([x, reference])``.

    Bilinear with half-pixel centres equals PyTorch's ``interpolate(mode="bilinear", align_corners=False)``;
    "nearest" is for label maps. The target size is the reference's static size when known, else its dynamic
    size (TensorFlow eager and JAX; a traced TensorFlow graph needs static sizes).
    """

    def __init__(self, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.")
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        static = tuple(reference.shape[1:3])
        size = static if None not in static else tuple(ops.shape(reference)[1:3])
        if tuple(x.shape[1:3]) == static:
            return x
        return ops.cast(ops.image.resize(x, size, interpolation=self.interpolation), x.dtype)

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        return (x[0], reference[1], reference[2], x[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="catalog")
class BilinearKernel(keras.initializers.Initializer):
    """A transposed-convolution kernel (k, k, out, in) that upsamples by bilinear interpolation, channel by
    channel (zero across channels), as FCN initializes its deconvolutions (Long et al. 2015, section 3.3)."""

    def __call__(self, shape, dtype=None):
        k, _, out_channels, in_channels = shape
        factor = (k + 1) // 2
        center = factor - 1 if k % 2 == 1 else factor - 0.5
        grid = np.arange(k)
        weights = 1 - np.abs(grid - center) / factor
        kernel = np.zeros(shape, "float32")
        for c in range(min(out_channels, in_channels)):
            kernel[:, :, c, c] = np.outer(weights, weights)
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


def resize_like(x, reference, name: str, interpolation: str = "bilinear"):
    """:class:`ResizeLike` of ``x`` to ``reference``'s height and width."""
    return ResizeLike(interpolation, name=name)([x, reference])


def aspp(x, rates=(6, 12, 18), channels: int = 256, image_pooling: bool = True, dropout: float = 0.5, *,
         name: str = "aspp"):
    """Atrous spatial pyramid pooling (DeepLabV3, Chen et al. 2017; torchvision's ``ASPP``).

    Branches: 1x1 conv-BN-ReLU; per rate r a 3x3 conv-BN-ReLU of dilation r; with ``image_pooling`` global
    average pooling -> 1x1 conv-BN-ReLU -> bilinear upsampling to the input size. Concatenated, then a 1x1
    conv-BN-ReLU projection to ``channels`` and dropout. With B branches and C_in input channels, parameters:
    C_in*ch + 2ch + len(rates)*(9*C_in*ch + 2ch) + [C_in*ch + 2ch] + B*ch*ch + 2ch.

    Args:
        x: input feature map (NHWC).
        rates: dilation rates of the 3x3 branches (6/12/18 at output stride 16; 12/24/36 at 8).
        channels: channels of every branch and of the output.
        image_pooling: add the image-level pooling branch.
        dropout: dropout after the projection (torchvision's 0.5; 0 for none).
        name: layer name prefix (``{name}_b0``, ``{name}_rate{r}``, ``{name}_pool``, ``{name}_project``).
    """
    positive_int(channels, "channels")
    rates = tuple(rates)
    for rate in rates:
        positive_int(rate, "rates")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
    branches = [conv_bn_act(x, channels, 1, name=f"{name}_b0")]
    branches += [conv_bn_act(x, channels, 3, dilation=r, name=f"{name}_rate{r}") for r in rates]
    if image_pooling:
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool_gap")(x)
        pooled = conv_bn_act(pooled, channels, 1, name=f"{name}_pool")
        branches.append(resize_like(pooled, x, name=f"{name}_pool_resize"))
    y = layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    y = conv_bn_act(y, channels, 1, name=f"{name}_project")
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_drop")(y)
    return y


def pyramid_pooling(x, bins=(1, 2, 3, 6), channels: int | None = None, *, name: str = "ppm"):
    """PSPNet's pyramid pooling module (Zhao et al. 2017).

    Per bin size b: adaptive average pooling to b x b -> 1x1 conv-BN-ReLU to ``channels`` (default
    C_in // len(bins), the paper's 1/N) -> bilinear upsampling to the input size; the input and the branches
    are concatenated: C_in + len(bins)*channels outputs. Parameters: len(bins)*(C_in*ch + 2ch).

    Args:
        x: input feature map (NHWC).
        bins: output sizes of the poolings (1, 2, 3, 6 in the paper).
        channels: channels of each branch.
        name: layer name prefix (``{name}_bin{b}_pool``, ``{name}_bin{b}``, ``{name}_concat``).
    """
    bins = tuple(bins)
    if not bins:
        raise ValueError("bins must be a non-empty tuple of positive integers; got ().")
    for b in bins:
        positive_int(b, "bins")
    channels = int(x.shape[-1]) // len(bins) if channels is None else channels
    positive_int(channels, "channels")
    branches = [x]
    for b in bins:
        # to 1x1 a global average: Keras 3.15's AdaptiveAveragePooling2D(1) fails in a TensorFlow graph (predict,
        # fit), its unused larger window being one pixel wider than the input
        pool = (layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_bin{b}_pool") if b == 1
                else layers.AdaptiveAveragePooling2D(b, name=f"{name}_bin{b}_pool"))
        y = pool(x)
        y = conv_bn_act(y, channels, 1, name=f"{name}_bin{b}")
        branches.append(resize_like(y, x, name=f"{name}_bin{b}_resize"))
    return layers.Concatenate(name=f"{name}_concat")(branches)


def upsample(x, factor: int | None = None, *, like=None, method: str = "bilinear", channels: int | None = None,
             name: str):
    """Upsample ``x`` by an integer ``factor`` or to the size of the tensor ``like``.

    ``method="bilinear"``: no weights (``UpSampling2D`` for a factor, :class:`ResizeLike` for ``like``).
    ``method="transposed"``: a learned Conv2DTranspose of kernel 2*factor, stride ``factor`` to ``channels``
    (default: the input's), bias-free, initialized to bilinear interpolation (FCN's deconvolution); with
    ``like`` the result is then resized to it if the sizes differ (odd sizes). Parameters:
    (2f)^2 * C_in * channels for "transposed", else none.

    Args:
        x: input feature map (NHWC).
        factor: integer scale factor (needed for "transposed").
        like: a tensor whose height and width the output takes.
        method: "bilinear" or "transposed".
        channels: output channels of "transposed".
        name: layer name.
    """
    if method not in UPSAMPLE_METHODS:
        raise ValueError(f"method must be one of {', '.join(UPSAMPLE_METHODS)}; got {method!r}.")
    if factor is None and like is None:
        raise ValueError("upsample needs factor (an integer) or like (a tensor to match).")
    if factor is not None:
        positive_int(factor, "factor")
    if method == "bilinear":
        if like is not None:
            return resize_like(x, like, name=name)
        return layers.UpSampling2D(factor, interpolation="bilinear", name=name)(x)
    if factor is None:
        raise ValueError("method='transposed' needs an integer factor.")
    channels = int(x.shape[-1]) if channels is None else channels
    positive_int(channels, "channels")
    y = layers.Conv2DTranspose(channels, 2 * factor, strides=factor, padding="same", use_bias=False,
                               kernel_initializer=BilinearKernel(), name=name)(x)
    if like is not None and tuple(y.shape[1:3]) != tuple(like.shape[1:3]):
        y = resize_like(y, like, name=f"{name}_resize")
    return y


def decoder_stage(x, skip, channels: int, *, method: str = "transposed", norm: bool = True, name: str):
    """U-Net expanding step (Ronneberger et al. 2015): upsample x2, concatenate the skip, two 3x3 convs.

    ``method="transposed"`` is the paper's 2x2 up-convolution halving the channels (a Conv2DTranspose of kernel
    2, stride 2 to ``channels``, with bias); "bilinear" resizes without weights. The upsampled map is resized to
    the skip's size where they differ (odd sizes), then ``concat([skip, up])`` -> 3x3 conv-[BN]-ReLU -> 3x3
    conv-[BN]-ReLU, both to ``channels`` ("same" padding). Parameters with C = channels, S = skip channels,
    U = C ("transposed", + 4*C_in*C + C) or C_in ("bilinear"): 9*(S+U)*C + 9*C*C + 4C with ``norm``, + 2C
    biases instead of 4C BatchNorm weights without.

    Args:
        x: the deeper map (NHWC).
        skip: the encoder map at twice the size.
        channels: output channels.
        method: "transposed" or "bilinear".
        norm: BatchNorm after each conv (the paper has none).
        name: layer name prefix.
    """
    positive_int(channels, "channels")
    if method not in UPSAMPLE_METHODS:
        raise ValueError(f"method must be one of {', '.join(UPSAMPLE_METHODS)}; got {method!r}.")
    if method == "transposed":
        up = layers.Conv2DTranspose(channels, 2, strides=2, name=f"{name}_up")(x)
    else:
        up = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    if tuple(up.shape[1:3]) != tuple(skip.shape[1:3]) or None in tuple(skip.shape[1:3]):
        up = resize_like(up, skip, name=f"{name}_up_resize")
    y = layers.Concatenate(name=f"{name}_concat")([skip, up])
    y = conv_bn_act(y, channels, 3, norm=norm, name=f"{name}_conv1")
    return conv_bn_act(y, channels, 3, norm=norm, name=f"{name}_conv2")
