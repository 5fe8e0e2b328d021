"""Segmentation blocks (TF and JAX): ASPP, pyramid pooling, upsampling, decoder stage: shapes, closed-form
counts, resize semantics, .keras round trips."""

import keras
import numpy as np
import pytest

from catalog.blocks.segmentation import (BilinearKernel, ResizeLike, aspp, decoder_stage, pyramid_pooling,
                                         resize_like, upsample)
from helpers import keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def aspp_params(cin, ch, rates, pooling=True):
    """1x1 + 3x3 per rate + pooling 1x1 (convs without bias, BN gamma/beta each) + 1x1 projection."""
    branches = 1 + len(rates) + pooling
    return (cin * ch + 2 * ch) * (1 + pooling) + len(rates) * (9 * cin * ch + 2 * ch) + branches * ch * ch + 2 * ch


@pytest.mark.parametrize("pooling", [True, False])
def test_aspp_shape_and_count(pooling):
    x = keras.Input((13, 11, 10))
    y = aspp(x, rates=(2, 3, 5), channels=8, image_pooling=pooling, name="aspp")
    assert tuple(y.shape[1:]) == (13, 11, 8)
    model = keras.Model(x, y)
    assert n_params(model) == aspp_params(10, 8, (2, 3, 5), pooling)
    dilations = {layer.name: layer.dilation_rate for layer in model.layers if "rate" in layer.name
                 and layer.name.endswith("_conv")}
    assert dilations == {"aspp_rate2_conv": (2, 2), "aspp_rate3_conv": (3, 3), "aspp_rate5_conv": (5, 5)}


def test_aspp_torchvision_deeplab_head_count():
    # torchvision DeepLabHead(2048, 21): ASPP(2048, [12, 24, 36]) + 3x3 conv-BN 256 + 1x1 conv 21 = 16,130,837.
    assert aspp_params(2048, 256, (12, 24, 36)) + 9 * 256 * 256 + 2 * 256 + 256 * 21 + 21 == 16_130_837


def test_aspp_image_pooling_branch_is_constant_over_space():
    x = keras.Input((9, 7, 4))
    model = keras.Model(x, aspp(x, rates=(2,), channels=4, name="aspp"))
    probe = keras.Model(model.input, model.get_layer("aspp_pool_resize").output)
    out = np.asarray(probe(random_input((9, 7, 4))))
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1, :1], out.shape), rtol=1e-6, atol=1e-6)


def test_aspp_round_trip_with_dynamic_size():
    x = keras.Input((None, None, 6))
    model = keras.Model(x, aspp(x, rates=(2, 4), channels=4, name="aspp"))
    data = random_input((10, 12, 6))
    assert np.asarray(model(data)).shape == (2, 10, 12, 4)
    keras_round_trip(model, data)


def test_pyramid_pooling_shape_count_and_round_trip():
    x = keras.Input((12, 12, 16))
    y = pyramid_pooling(x, bins=(1, 2, 3, 6), name="ppm")
    assert tuple(y.shape[1:]) == (12, 12, 16 + 4 * 4)
    model = keras.Model(x, y)
    assert n_params(model) == 4 * (16 * 4 + 2 * 4)
    assert n_params(keras.Model(x, pyramid_pooling(x, bins=(1, 3), channels=5, name="p2"))) == 2 * (16 * 5 + 10)
    keras_round_trip(model, random_input((12, 12, 16)))


def test_pyramid_pooling_bin_one_is_the_global_mean():
    x = keras.Input((6, 6, 3))
    model = keras.Model(x, pyramid_pooling(x, bins=(1,), channels=3, name="ppm"))
    probe = keras.Model(model.input, model.get_layer("ppm_bin1_pool").output)
    data = random_input((6, 6, 3))
    np.testing.assert_allclose(np.asarray(probe(data))[:, 0, 0], data.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_resize_like_equals_torch_bilinear_half_pixel():
    # PyTorch interpolate(mode="bilinear", align_corners=False) of [[0, 1], [2, 3]] to 4x4, by hand.
    src = np.array([[0.0, 1.0], [2.0, 3.0]], "float32")[None, :, :, None]
    ref = keras.Input((4, 4, 1))
    inp = keras.Input((2, 2, 1))
    model = keras.Model([inp, ref], ResizeLike()([inp, ref]))
    out = np.asarray(model([src, np.zeros((1, 4, 4, 1), "float32")]))[0, :, :, 0]
    axis = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1)  # source coordinate of each output pixel
    expected = 2 * axis[:, None] + axis[None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_resize_like_nearest_keeps_labels():
    inp, ref = keras.Input((3, 3, 1)), keras.Input((6, 6, 1))
    model = keras.Model([inp, ref], resize_like(inp, ref, name="r", interpolation="nearest"))
    labels = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    out = np.asarray(model([labels, np.zeros((1, 6, 6, 1), "float32")]))
    np.testing.assert_array_equal(out[0, ::2, ::2, 0], labels[0, :, :, 0])
    with pytest.raises(ValueError, match="interpolation must be"):
        ResizeLike("cubic")


def test_upsample_bilinear_and_transposed():
    x = keras.Input((5, 7, 6))
    assert tuple(upsample(x, 4, name="up").shape[1:]) == (20, 28, 6)
    y = upsample(x, 2, method="transposed", channels=3, name="deconv")
    assert tuple(y.shape[1:]) == (10, 14, 3)
    assert n_params(keras.Model(x, y)) == 4 * 4 * 6 * 3
    like = keras.Input((11, 15, 1))
    z = upsample(x, 2, like=like, method="transposed", name="deconv_like")
    assert tuple(z.shape[1:]) == (11, 15, 6)
    with pytest.raises(ValueError, match="method must be"):
        upsample(x, 2, method="nearest", name="bad")
    with pytest.raises(ValueError, match="needs factor"):
        upsample(x, name="bad")


def test_bilinear_kernel_upsamples_a_constant_to_a_constant_inside():
    x = keras.Input((6, 6, 2))
    model = keras.Model(x, upsample(x, 2, method="transposed", name="deconv"))
    out = np.asarray(model(np.ones((1, 6, 6, 2), "float32")))
    np.testing.assert_allclose(out[0, 1:-1, 1:-1], 1.0, rtol=1e-6)  # interior: weights sum to 1 per output
    kernel = np.asarray(BilinearKernel()((4, 4, 2, 2)))
    assert not kernel[:, :, 0, 1].any() and np.isclose(kernel[:, :, 0, 0].sum(), 4.0)


@pytest.mark.parametrize("method,norm", [("transposed", False), ("bilinear", True)])
def test_decoder_stage_shape_and_count(method, norm):
    deep, skip = keras.Input((4, 4, 16)), keras.Input((8, 8, 6))
    y = decoder_stage(deep, skip, 8, method=method, norm=norm, name="up1")
    assert tuple(y.shape[1:]) == (8, 8, 8)
    model = keras.Model([deep, skip], y)
    up_channels = 8 if method == "transposed" else 16
    up_params = 4 * 16 * 8 + 8 if method == "transposed" else 0
    per_conv = 4 * 8 if norm else 2 * 8  # BN gamma/beta of two convs, or two biases
    assert n_params(model) == up_params + 9 * (6 + up_channels) * 8 + 9 * 8 * 8 + per_conv
    keras_round_trip(model, [random_input((4, 4, 16)), random_input((8, 8, 6), seed=1)])


def test_decoder_stage_odd_skip_size():
    deep, skip = keras.Input((3, 4, 8)), keras.Input((7, 9, 4))
    assert tuple(decoder_stage(deep, skip, 4, name="up").shape[1:]) == (7, 9, 4)


def test_errors_name_the_argument():
    x = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="channels must be"):
        aspp(x, channels=0)
    with pytest.raises(ValueError, match="rates must be"):
        aspp(x, rates=(0,))
    with pytest.raises(ValueError, match="bins must be"):
        pyramid_pooling(x, bins=())
    with pytest.raises(ValueError, match="method must be"):
        decoder_stage(x, x, 4, method="nearest", name="d")
