"""DCGAN (Radford, Metz, Chintala 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR): an all-convolutional generator and discriminator.

Generator (the paper's Figure 1): noise z (100) -> a dense projection to 4 x 4 x ``filters`` (1024), BatchNorm,
ReLU -> ``L`` strided transposed 5x5 convs, each doubling the size and halving the channels (BatchNorm, ReLU),
the last to ``channels`` with tanh (no BatchNorm on the output layer). ``L`` = log2(image size / 4): 4 up-blocks
at 64 x 64 (1024 -> 512 -> 256 -> 128 -> 3), 3 at 32 x 32. Discriminator: the mirror image, ``L`` strided 5x5 convs
doubling the channels up to ``filters`` (128 -> 256 -> 512 -> 1024 at 64 x 64), LeakyReLU 0.2, BatchNorm on all
but the first (input) layer, then flatten and a dense logit (B, 1). No conv bias before BatchNorm; weights
initialised from N(0, 0.02) as in the paper; 5x5 kernels as in the authors' code (dcgan_code).

Conditional option (``conditional=True``, ``num_classes`` classes): the generator concatenates a learned class
embedding (``embedding_dim``, default 50) to the noise (Mirza and Osindero 2014's conditioning at the input); the
discriminator embeds the class into one H x W map concatenated to the image as an extra input channel. Both
then take two inputs: ``[noise, labels]`` and ``[images, labels]`` (labels int (B,)).

Parameters (``f`` = filters, ``k`` = 5, ``c`` = channels, ``z`` = noise_dim, widths ``w_i = f / 2^i``):
generator ``16 z f + 2 f + sum_{i=1}^{L-1} (k^2 w_{i-1} w_i + 2 w_i) + k^2 w_{L-1} c + c``; discriminator
``k^2 c d_1 + d_1 + sum_{i=2}^{L} (k^2 d_{i-1} d_i + 2 d_i) + 16 f + 1`` with ``d_i = f / 2^(L-i)``.
At 64 x 64 x 3, f = 1024: 1,640,448 + 13,108,224 + 3,277,312 + 819,456 + 9,603 = 18,855,043 (generator) and
9,728 + 819,712 + 3,277,824 + 13,109,248 + 16,385 = 17,232,897 (discriminator); at 32 x 32 x 3, f = 512: 4,926,595 and
4,115,457. The registered ``dcgan``/``dcgan_32`` count both networks (the GAN's MACs are its generator's).

Output format (what ``catalog evaluate --task generation`` reads): images (B, H, W, C) in [-1, 1] (the catalog's
``tf`` preprocessing), float32 under mixed precision.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from catalog.models.classifier import load_weights
from catalog.registry import register_model
from catalog.training.gan import GAN

RADFORD2016 = ("Radford, Metz, Chintala 2016, Unsupervised Representation Learning with Deep Convolutional "
               "Generative Adversarial Networks, ICLR")
KERNEL = 5
BN = dict(momentum=0.9, epsilon=1e-5)  # the authors' Theano/Torch BatchNorm settings


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def _check(input_shape, filters, noise_dim, conditional, num_classes, embedding_dim):
    """(size, channels, up-blocks) from the image ``input_shape``; every argument checked."""
    shape = (64, 64, 3) if input_shape is None else tuple(input_shape)
    if len(shape) == 2:
        shape = (*shape, 3)
    if (len(shape) != 3 or shape[0] != shape[1] or shape[2] not in (1, 3)
            or not isinstance(shape[0], int) or isinstance(shape[0], bool)):
        raise ValueError(f"input_shape must be a square image shape (size, size, channels) with 1 or 3 channels; "
                         f"got {input_shape!r}.")
    size = shape[0]
    blocks = int(round(math.log2(size / 4))) if size >= 8 else 0
    if blocks < 1 or 4 * 2 ** blocks != size:
        raise ValueError(f"input_shape must be 4 * 2^n pixels on a side (8, 16, 32, 64, 128, ...); got {size}.")
    for value, argument in ((filters, "filters"), (noise_dim, "noise_dim"), (embedding_dim, "embedding_dim")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{argument} must be a positive integer; got {value!r}.")
    if filters % 2 ** (blocks - 1):
        raise ValueError(f"filters must be divisible by {2 ** (blocks - 1)} (halved {blocks - 1} times at "
                         f"{size} x {size}); got {filters}.")
    if conditional and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 for a conditional model; got {num_classes!r}.")
    return size, shape[2], blocks


def dcgan_generator(input_shape=(64, 64, 3), filters: int = 1024, noise_dim: int = 100, conditional: bool = False,
                    num_classes: int | None = None, embedding_dim: int = 50, weights=None,
                    name: str = "dcgan_generator"):
    """DCGAN generator: noise -> 4 x 4 x filters -> strided 5x5 transposed convs -> tanh image in [-1, 1].

    Args:
        input_shape: the generated image, (size, size, channels); size 4 * 2^n (64: 4 up-blocks, 32: 3).
        filters: channels at 4 x 4 (1024 in the paper), halved by every up-block.
        noise_dim: length of the noise vector (100).
        conditional: also take class labels, embedded and concatenated to the noise.
        num_classes: classes of a conditional model (ignored otherwise).
        embedding_dim: length of the class embedding (conditional only).
        weights: a local weights file of this model.
        name: model name.
    """
    size, channels, blocks = _check(input_shape, filters, noise_dim, conditional, num_classes, embedding_dim)
    noise = keras.Input(shape=(noise_dim,), name="noise")
    inputs, x = noise, noise
    if conditional:
        labels = keras.Input(shape=(), dtype="int32", name="labels")
        embedded = layers.Embedding(num_classes, embedding_dim, embeddings_initializer=_init(),
                                    name="label_embedding")(labels)
        x = layers.Concatenate(name="noise_label_concat")([noise, embedded])
        inputs = [noise, labels]
    x = layers.Dense(4 * 4 * filters, use_bias=False, kernel_initializer=_init(), name="project_dense")(x)
    x = layers.Reshape((4, 4, filters), name="project_reshape")(x)
    x = layers.BatchNormalization(**BN, name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    width = filters
    for i in range(1, blocks):
        width //= 2
        x = layers.Conv2DTranspose(width, KERNEL, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=_init(), name=f"up{i}_conv")(x)
        x = layers.BatchNormalization(**BN, name=f"up{i}_bn")(x)
        x = layers.ReLU(name=f"up{i}_relu")(x)
    x = layers.Conv2DTranspose(channels, KERNEL, strides=2, padding="same", kernel_initializer=_init(),
                               name=f"up{blocks}_conv")(x)
    images = layers.Activation("tanh", dtype="float32", name="output")(x)
    return load_weights(keras.Model(inputs, images, name=name), weights)


def dcgan_discriminator(input_shape=(64, 64, 3), filters: int = 1024, conditional: bool = False,
                        num_classes: int | None = None, weights=None, name: str = "dcgan_discriminator"):
    """DCGAN discriminator: strided 5x5 convs with LeakyReLU 0.2 (BatchNorm from the second), a dense logit.

    Args:
        input_shape: the image, (size, size, channels); size 4 * 2^n.
        filters: channels of the last conv at 4 x 4 (1024 in the paper); each earlier conv has half.
        conditional: also take class labels, embedded as one extra input channel.
        num_classes: classes of a conditional model (ignored otherwise).
        weights: a local weights file of this model.
        name: model name.

    Returns a model of logits (B, 1) (real > 0), float32 under mixed precision.
    """
    size, channels, blocks = _check(input_shape, filters, 100, conditional, num_classes, 1)
    images = keras.Input(shape=(size, size, channels), name="images")
    inputs, x = images, images
    if conditional:
        labels = keras.Input(shape=(), dtype="int32", name="labels")
        plane = layers.Embedding(num_classes, size * size, embeddings_initializer=_init(),
                                 name="label_embedding")(labels)
        plane = layers.Reshape((size, size, 1), name="label_plane")(plane)
        x = layers.Concatenate(name="image_label_concat")([images, plane])
        inputs = [images, labels]
    for i in range(1, blocks + 1):
        width = filters // 2 ** (blocks - i)
        x = layers.Conv2D(width, KERNEL, strides=2, padding="same", use_bias=i == 1, kernel_initializer=_init(),
                          name=f"down{i}_conv")(x)
        if i > 1:  # no BatchNorm on the input layer (Radford et al. 2016, section 3)
            x = layers.BatchNormalization(**BN, name=f"down{i}_bn")(x)
        x = layers.LeakyReLU(0.2, name=f"down{i}_lrelu")(x)
    x = layers.Flatten(name="head_flatten")(x)
    logits = layers.Dense(1, kernel_initializer=_init(), dtype="float32", name="head_logit")(x)
    return load_weights(keras.Model(inputs, logits, name=name), weights)


def dcgan(input_shape=(64, 64, 3), filters: int = 1024, noise_dim: int = 100, conditional: bool = False,
          num_classes: int | None = None, embedding_dim: int = 50, seed: int | None = None, weights=None,
          name: str = "dcgan"):
    """DCGAN: a :class:`catalog.training.gan.GAN` holding a DCGAN generator and discriminator.

    Calling it maps noise (and labels when conditional) to images in [-1, 1]; ``fit`` on (images, labels) batches
    alternates one discriminator and one generator step (compile with ``loss`` "non_saturating", "lsgan",
    "hinge" or "wgan_gp").

    Args:
        input_shape: the images, (size, size, channels); size 4 * 2^n.
        filters: generator channels at 4 x 4 and discriminator channels of its last conv.
        noise_dim: length of the noise vector.
        conditional: condition both networks on class labels (``num_classes`` classes).
        num_classes: classes of a conditional model (ignored otherwise).
        embedding_dim: the generator's class embedding length (conditional only).
        seed: seed of the training noise (None: drawn from Keras' global seed).
        weights: a local weights file of the whole GAN (both networks).
        name: model name.
    """
    generator = dcgan_generator(input_shape, filters, noise_dim, conditional, num_classes, embedding_dim,
                                name=f"{name}_generator")
    discriminator = dcgan_discriminator(input_shape, filters, conditional, num_classes,
                                        name=f"{name}_discriminator")
    return load_weights(GAN(generator, discriminator, seed=seed, name=name), weights)


def dcgan_params(image_size: int = 64, filters: int = 1024, noise_dim: int = 100, channels: int = 3,
                 part: str = "both") -> int:
    """Closed-form trainable parameters of the unconditional DCGAN ``part`` ("generator", "discriminator" or
    "both"); see the module docstring."""
    blocks, k2 = int(round(math.log2(image_size / 4))), KERNEL * KERNEL
    g_widths = [filters // 2 ** i for i in range(blocks)]
    g = 16 * noise_dim * filters + 2 * filters
    g += sum(k2 * a * b + 2 * b for a, b in zip(g_widths, g_widths[1:]))
    g += k2 * g_widths[-1] * channels + channels
    d_widths = [filters // 2 ** (blocks - i) for i in range(1, blocks + 1)]
    d = k2 * channels * d_widths[0] + d_widths[0]
    d += sum(k2 * a * b + 2 * b for a, b in zip(d_widths, d_widths[1:]))
    d += 16 * filters + 1
    return {"generator": g, "discriminator": d, "both": g + d}[part]


def _part_recipe(model, **_):
    from catalog.models.generation import part_recipe

    return part_recipe(model)


def _gan_recipe(model, loss: str = "non_saturating"):
    from catalog.models.generation import generation_recipe

    return generation_recipe(model, loss=loss)


_SOURCE = ("closed form of Radford et al. 2016's layout (5x5 kernels, no conv bias before BatchNorm; "
           "see catalog.models.dcgan): {}")
VARIANTS = {
    # name: (builder, image size, filters, part of dcgan_params, description of the count)
    "dcgan_generator": (dcgan_generator, 64, 1024, "generator"),
    "dcgan_discriminator": (dcgan_discriminator, 64, 1024, "discriminator"),
    "dcgan": (dcgan, 64, 1024, "both"),
    "dcgan_32": (dcgan, 32, 512, "both"),
}
for _name, (_builder, _size, _filters, _part) in VARIANTS.items():
    _count = dcgan_params(_size, _filters, part=_part)
    register_model(_builder, name=_name, family="dcgan", task="generation", paper=RADFORD2016,
                   input_shape=(_size, _size, 3), num_classes=0,
                   defaults=dict(input_shape=(_size, _size, 3), filters=_filters, name=_name),
                   reference_params=_count,
                   reference_params_source=_SOURCE.format(f"{_part} at {_size} x {_size} x 3, filters {_filters}: "
                                                          f"{_count:,}"),
                   preprocessing="tf", crop_fraction=1.0,
                   recipe=_gan_recipe if _builder is dcgan else _part_recipe)
