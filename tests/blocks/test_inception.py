"""Inception blocks: output shapes and exact closed-form parameter counts, residual scaling, round trip."""

import keras
import numpy as np
import pytest

from catalog.blocks import inception
from catalog.blocks.layers import norm_defaults
from helpers import keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def conv(cin, cout, kh, kw=None, bn=2):
    """Trainable parameters of conv (no bias) + BatchNorm (gamma and beta: bn=2; beta only: bn=1)."""
    return kh * (kh if kw is None else kw) * cin * cout + bn * cout


def build(block, shape, *args, **kwargs):
    x = keras.Input(shape)
    return keras.Model(x, block(x, *args, name="m", **kwargs))


def reduced(size):
    """Output size of a 3x3/2 "valid" conv or pool: floor((W - 3) / 2) + 1."""
    return (size - 3) // 2 + 1


def test_inception_v1_module():
    c1, c3r, c3, c5r, c5, pp = 64, 96, 128, 16, 32, 32  # GoogLeNet inception3a
    model = build(inception.inception_v1, (14, 14, 192), c1, c3r, c3, c5r, c5, pp)
    assert model.output.shape == (None, 14, 14, c1 + c3 + c5 + pp)
    assert n_params(model) == (conv(192, c1, 1) + conv(192, c3r, 1) + conv(c3r, c3, 3) + conv(192, c5r, 1)
                               + conv(c5r, c5, 5) + conv(192, pp, 1))
    assert model.get_layer("m_branch2_conv2_conv").kernel_size == (5, 5)
    assert isinstance(model.get_layer("m_branch3_pool"), keras.layers.MaxPooling2D)


def test_inception_bn_module():
    model = build(inception.inception_bn, (28, 28, 192), 64, 64, 64, 64, 96, "avg", 32)  # BN-Inception 3a
    assert model.output.shape == (None, 28, 28, 64 + 64 + 96 + 32)
    assert n_params(model) == (conv(192, 64, 1) + conv(192, 64, 1) + conv(64, 64, 3) + conv(192, 64, 1)
                               + conv(64, 96, 3) + conv(96, 96, 3) + conv(192, 32, 1))
    assert model.get_layer("m_branch2_conv3_conv").kernel_size == (3, 3)  # the factorized 5x5
    assert isinstance(model.get_layer("m_branch3_pool"), keras.layers.AveragePooling2D)


@pytest.mark.parametrize("size", [28, 7])
def test_inception_bn_pass_through_reduction(size):
    model = build(inception.inception_bn, (size, size, 576), 0, 128, 192, 192, 256, "max", strides=2)
    half = -(-size // 2)  # both 3x3 branches and the pool agree on odd sizes too
    assert model.output.shape == (None, half, half, 192 + 256 + 576)  # BN-Inception 4e
    assert n_params(model) == (conv(576, 128, 1) + conv(128, 192, 3) + conv(576, 192, 1) + conv(192, 256, 3)
                               + conv(256, 256, 3))
    assert model.get_layer("m_branch0_conv2_conv").strides == (2, 2)
    assert model.get_layer("m_branch1_conv2_conv").strides == (1, 1)
    assert model.get_layer("m_branch1_conv3_conv").strides == (2, 2)
    assert model.get_layer("m_branch2_pool").strides == (2, 2)


def test_average_pool_counting_its_zero_padding():
    x = keras.Input((4, 4, 1))
    y = inception.inception_module(x, [[("avg", 3, 1, "symmetric")]], name="m")
    data = np.arange(1, 17, dtype="float32").reshape(1, 4, 4, 1)
    out = np.asarray(keras.Model(x, y)(data))[0, :, :, 0]
    assert out.shape == (4, 4)
    assert out[0, 0] == pytest.approx((1 + 2 + 5 + 6) / 9)  # zeros count, unlike "same" (/ 4)
    assert out[1, 1] == pytest.approx(6.0)


def test_inception_bn_errors():
    x = keras.Input((8, 8, 16))
    with pytest.raises(ValueError, match="pool must be 'avg' or 'max'"):
        inception.inception_bn(x, 4, 4, 4, 4, 4, "sum", 4, name="bad")
    with pytest.raises(ValueError, match="strides must be 1 or 2"):
        inception.inception_bn(x, 0, 4, 4, 4, 4, "max", strides=3, name="bad")
    with pytest.raises(ValueError, match="c1 must be 0"):
        inception.inception_bn(x, 4, 4, 4, 4, 4, "max", strides=2, name="bad")


@pytest.mark.parametrize("factorized", [False, True])
def test_inception_v3_a(factorized):
    model = build(inception.inception_v3_a, (9, 9, 192), 32, factorized=factorized)
    assert model.output.shape == (None, 9, 9, 64 + 64 + 96 + 32)
    five = conv(48, 64, 3) + conv(64, 64, 3) if factorized else conv(48, 64, 5)
    assert n_params(model) == (conv(192, 64, 1) + conv(192, 48, 1) + five + conv(192, 64, 1)
                               + conv(64, 96, 3) + conv(96, 96, 3) + conv(192, 32, 1))


def test_inception_v3_a_without_batchnorm_scale():
    with norm_defaults(scale=False, epsilon=1e-3):
        model = build(inception.inception_v3_a, (9, 9, 256), 64, c1=96)  # Inception-ResNet-v2 mixed_5b
    assert model.output.shape == (None, 9, 9, 96 + 64 + 96 + 64)
    assert n_params(model) == (conv(256, 96, 1, bn=1) + conv(256, 48, 1, bn=1) + conv(48, 64, 5, bn=1)
                               + conv(256, 64, 1, bn=1) + conv(64, 96, 3, bn=1) + conv(96, 96, 3, bn=1)
                               + conv(256, 64, 1, bn=1))


def test_inception_v3_grid_reduction_b():
    model = build(inception.inception_v3_b, (9, 9, 288))
    assert model.output.shape == (None, reduced(9), reduced(9), 384 + 96 + 288)
    assert n_params(model) == conv(288, 384, 3) + conv(288, 64, 1) + conv(64, 96, 3) + conv(96, 96, 3)


@pytest.mark.parametrize("c7", [128, 192])
def test_inception_v3_c_asymmetric(c7):
    model = build(inception.inception_v3_c, (7, 7, 768), c7)
    assert model.output.shape == (None, 7, 7, 768)
    assert n_params(model) == (conv(768, 192, 1)
                               + conv(768, c7, 1) + conv(c7, c7, 1, 7) + conv(c7, 192, 7, 1)
                               + conv(768, c7, 1) + 3 * conv(c7, c7, 7, 1) + conv(c7, 192, 1, 7)
                               + conv(768, 192, 1))
    assert model.get_layer("m_branch1_conv2_conv").kernel_size == (1, 7)
    assert model.get_layer("m_branch1_conv3_conv").kernel_size == (7, 1)


def test_inception_v3_grid_reduction_d():
    model = build(inception.inception_v3_d, (9, 9, 768))
    assert model.output.shape == (None, 4, 4, 320 + 192 + 768)
    assert n_params(model) == (conv(768, 192, 1) + conv(192, 320, 3) + conv(768, 192, 1)
                               + conv(192, 192, 1, 7) + conv(192, 192, 7, 1) + conv(192, 192, 3))


def test_inception_v3_e_expanded_filter_bank():
    model = build(inception.inception_v3_e, (3, 3, 1280))
    assert model.output.shape == (None, 3, 3, 320 + 768 + 768 + 192)
    fork = conv(384, 384, 1, 3) + conv(384, 384, 3, 1)
    assert n_params(model) == (conv(1280, 320, 1) + conv(1280, 384, 1) + fork + conv(1280, 448, 1)
                               + conv(448, 384, 3) + fork + conv(1280, 192, 1))
    assert model.get_layer("m_branch1_concat").output.shape[-1] == 768


def test_inception_v4_modules():
    a = build(inception.inception_v4_a, (5, 5, 384))
    assert a.output.shape == (None, 5, 5, 384)
    assert n_params(a) == (conv(384, 96, 1) + conv(384, 64, 1) + conv(64, 96, 3) + conv(384, 64, 1)
                           + conv(64, 96, 3) + conv(96, 96, 3) + conv(384, 96, 1))
    b = build(inception.inception_v4_b, (5, 5, 1024))
    assert b.output.shape == (None, 5, 5, 1024)
    assert n_params(b) == (conv(1024, 384, 1) + conv(1024, 192, 1) + conv(192, 224, 1, 7)
                           + conv(224, 256, 7, 1) + conv(1024, 192, 1) + conv(192, 192, 7, 1)
                           + conv(192, 224, 1, 7) + conv(224, 224, 7, 1) + conv(224, 256, 1, 7)
                           + conv(1024, 128, 1))
    c = build(inception.inception_v4_c, (3, 3, 1536))
    assert c.output.shape == (None, 3, 3, 1536)
    fork = conv(384, 256, 1, 3) + conv(384, 256, 3, 1)
    assert n_params(c) == (conv(1536, 256, 1) + conv(1536, 384, 1) + fork + conv(1536, 384, 1)
                           + conv(384, 448, 3, 1) + conv(448, 512, 1, 3) + conv(512, 256, 1, 3)
                           + conv(512, 256, 3, 1) + conv(1536, 256, 1))


@pytest.mark.parametrize("klmn", [(192, 224, 256, 384), (256, 256, 384, 384)])
def test_reduction_a(klmn):
    k, l, m, n = klmn
    model = build(inception.reduction_a, (11, 11, 384), *klmn)
    assert model.output.shape == (None, 5, 5, 384 + n + m)
    assert n_params(model) == conv(384, n, 3) + conv(384, k, 1) + conv(k, l, 3) + conv(l, m, 3)


def test_reduction_b_modules():
    v4 = build(inception.inception_v4_reduction_b, (8, 8, 1024))
    assert v4.output.shape == (None, reduced(8), reduced(8), 192 + 320 + 1024)
    assert n_params(v4) == (conv(1024, 192, 1) + conv(192, 192, 3) + conv(1024, 256, 1)
                            + conv(256, 256, 1, 7) + conv(256, 320, 7, 1) + conv(320, 320, 3))
    res = build(inception.inception_resnet_reduction_b, (8, 8, 1088))
    assert res.output.shape == (None, 3, 3, 384 + 288 + 320 + 1088)
    assert n_params(res) == (conv(1088, 256, 1) + conv(256, 384, 3) + conv(1088, 256, 1) + conv(256, 288, 3)
                             + conv(1088, 256, 1) + conv(256, 288, 3) + conv(288, 320, 3))


@pytest.mark.parametrize("block_type, channels, branches", [
    ("a", 320, conv(320, 32, 1) + conv(320, 32, 1) + conv(32, 32, 3) + conv(320, 32, 1) + conv(32, 48, 3)
     + conv(48, 64, 3)),
    ("b", 1088, conv(1088, 192, 1) + conv(1088, 128, 1) + conv(128, 160, 1, 7) + conv(160, 192, 7, 1)),
    ("c", 2080, conv(2080, 192, 1) + conv(2080, 192, 1) + conv(192, 224, 1, 3) + conv(224, 256, 3, 1)),
])
def test_inception_resnet_blocks(block_type, channels, branches):
    concat = {"a": 128, "b": 384, "c": 448}[block_type]
    model = build(inception.inception_resnet, (4, 4, channels), block_type, 0.17)
    assert model.output.shape == (None, 4, 4, channels)
    assert n_params(model) == branches + concat * channels + channels  # 1x1 "up" conv with bias


@pytest.mark.parametrize("activation", ["relu", None])
def test_inception_resnet_residual_scaling(activation):
    scale = 0.17
    x = keras.Input((5, 5, 24))
    y = inception.inception_resnet(x, "a", scale, activation=activation, name="m")
    model = keras.Model(x, y)
    probe = keras.Model(x, [model.get_layer("m_up_conv").output, y])
    data = random_input((5, 5, 24))
    up, out = (np.asarray(t) for t in probe(data, training=False))
    expected = data + scale * up
    np.testing.assert_allclose(out, np.maximum(expected, 0) if activation else expected, rtol=1e-5, atol=1e-5)
    assert model.get_layer("m_scale").scale == scale
    assert ("m_act" in [layer.name for layer in model.layers]) == (activation is not None)


def test_errors():
    x = keras.Input((8, 8, 16))
    with pytest.raises(ValueError, match="block_type must be"):
        inception.inception_resnet(x, "d", 0.1, name="bad")
    with pytest.raises(ValueError, match="'fork' must be the last op"):
        inception.inception_module(x, [[("fork", [[(4, 1)], [(4, 3)]]), (4, 1)]], name="bad")


def test_round_trip_small_inception_model():
    x = keras.Input((9, 9, 16))
    y = inception.inception_v1(x, 4, 4, 8, 2, 4, 4, name="v1")  # 20 channels
    y = inception.inception_module(y, [[(8, 1), ("fork", [[(4, (1, 3))], [(4, (3, 1))]])],
                                       [("avg", 3, 1, "same"), (12, 1)]], name="table")  # 8 + 12 = 20
    y = inception.inception_resnet(y, "a", 0.2, name="res")
    y = inception.inception_module(y, [[(8, 3, 2, "valid")], [("max", 3, 2, "valid")]], name="reduce")
    model = keras.Model(x, y)
    assert model.output.shape == (None, 4, 4, 28)
    keras_round_trip(model, random_input((9, 9, 16)))
