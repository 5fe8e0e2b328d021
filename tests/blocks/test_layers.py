"""Shared pieces: conv_bn_act, norm_defaults, make_divisible, activations (LeNet-5's scaled tanh too), DropPath
(TF and JAX). Normalization kinds: test_normalization.py."""

import keras
import numpy as np
import pytest

from catalog.blocks import attention
import catalog
from catalog.blocks.layers import (ACTIVATIONS, DropPath, GroupedConv2D, act, conv2d, conv_bn_act, make_divisible,
                                   norm_defaults, scaled_tanh)
from helpers import assert_all_gradients, gradients, keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def test_conv_bn_act_counts_and_names():
    x = keras.Input((16, 16, 8))
    y = conv_bn_act(x, 32, 3, strides=2, name="stem")
    model = keras.Model(x, y)
    assert y.shape == (None, 8, 8, 32)
    assert [layer.name for layer in model.layers[1:]] == ["stem_conv", "stem_bn", "stem_act"]
    assert n_params(model) == 3 * 3 * 8 * 32 + 2 * 32  # no conv bias; BN gamma and beta
    assert n_params(model, trainable=False) == 2 * 32  # moving mean and variance
    assert model.get_layer("stem_bn").epsilon == 1e-5


def test_grouped_depthwise_and_symmetric_padding():
    x = keras.Input((15, 15, 8))
    g = keras.Model(x, conv_bn_act(x, 16, 3, groups=4, norm=False, activation=None, name="g"))
    assert n_params(g) == 3 * 3 * (8 // 4) * 16 + 16  # bias when no BatchNorm follows
    d = keras.Model(x, conv_bn_act(x, 0, 3, depthwise=True, name="d"))
    assert n_params(d) == 9 * 8 + 2 * 8
    s = keras.Model(x, conv_bn_act(x, 4, 7, strides=2, padding="symmetric", name="s"))
    assert s.output.shape == (None, 8, 8, 4)  # floor((15 + 6 - 7) / 2) + 1
    assert s.layers[1].name == "s_pad"
    with pytest.raises(ValueError, match="padding must be"):
        conv_bn_act(x, 4, 3, padding="full", name="bad")


@pytest.mark.parametrize("options, zeroed", [
    (dict(), "z_bn/gamma"),                                             # the BatchNorm's gamma
    (dict(norm=False), "z_conv/kernel"),                                # no BatchNorm: the kernel
    (dict(norm=False, depthwise=True), "z_conv/kernel"),                # the depthwise kernel
])
def test_conv_bn_act_zero_init_starts_the_unit_at_zero(options, zeroed):
    x = keras.Input((8, 8, 16))
    model = keras.Model(x, conv_bn_act(x, 16, 3, activation=None, zero_init=True, name="z", **options))
    weights = {f"{layer.name}/{w.name}": np.asarray(w) for layer in model.layers for w in layer.weights}
    assert {key for key, w in weights.items() if "moving" not in key and not w.any()} == (
        {zeroed} | {key for key in weights if key.endswith(("beta", "bias"))})
    np.testing.assert_array_equal(model(random_input((8, 8, 16))), 0.0)


def test_norm_defaults_is_scoped():
    x = keras.Input((8, 8, 3))
    with norm_defaults(epsilon=1e-3, momentum=0.99, scale=False):
        inner = conv_bn_act(x, 4, 1, name="a")
    outer = conv_bn_act(x, 4, 1, name="b")
    model = keras.Model(x, [inner, outer])
    bn_a, bn_b = model.get_layer("a_bn"), model.get_layer("b_bn")
    assert (bn_a.epsilon, bn_a.momentum, bn_a.scale) == (1e-3, 0.99, False)
    assert (bn_b.epsilon, bn_b.momentum, bn_b.scale) == (1e-5, 0.9, True)


@pytest.mark.parametrize("value, divisor, expected", [(32 * 0.35, 8, 16), (24 * 0.5, 8, 16), (96 * 0.75, 8, 72),
                                                      (10, 8, 16), (1280 * 1.4, 8, 1792), (7, 8, 8)])
def test_make_divisible(value, divisor, expected):
    assert make_divisible(value, divisor) == expected
    assert make_divisible(value, divisor) % divisor == 0


def test_activations():
    x = keras.Input((4,))
    for kind in ACTIVATIONS:
        act(x, kind, name=f"a_{kind}")
    assert act(x, None, name="none") is x
    with pytest.raises(ValueError, match="activation must be one of"):
        act(x, "sinusoid", name="bad")
    hs = keras.Model(x, act(x, "hard_swish", name="hs"))
    v = np.array([[-4.0, -1.0, 1.0, 4.0]], "float32")
    np.testing.assert_allclose(np.asarray(hs(v)), v * np.clip(v + 3, 0, 6) / 6, atol=1e-6)


def test_drop_path_training_and_inference():
    layer = DropPath(0.5, seed=1)
    x = np.ones((400, 2, 2, 3), "float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    per_sample = y.reshape(400, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # whole samples dropped
    assert 0.35 < (per_sample[:, 0] == 0).mean() < 0.65
    with pytest.raises(ValueError, match="rate must be in"):
        DropPath(1.0)


def test_se_count_and_round_trip():
    x = keras.Input((8, 8, 64))
    model = keras.Model(x, attention.se(x, ratio=16, name="se"))
    c, r = 64, 16
    assert n_params(model) == 2 * c * (c // r) + c // r + c
    data = random_input((8, 8, 64))
    assert_all_gradients(model, data)
    with_drop = keras.Model(x, DropPath(0.2, name="dp")(model.output))
    keras_round_trip(with_drop, data)


def test_scaled_tanh_is_lecuns_squashing_function():
    x = keras.Input((5,))
    model = keras.Model(x, act(x, "scaled_tanh", name="st"))
    assert model.get_layer("st").activation is scaled_tanh
    v = np.array([[-3.0, -1.0, 0.0, 1.0, 3.0]], "float32")
    out = np.asarray(model(v))
    np.testing.assert_allclose(out, 1.7159 * np.tanh(2.0 * v / 3.0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[0, [1, 3]], [-1.0, 1.0], atol=1e-4)  # LeCun 1998: f(+-1) = +-1
    assert np.all(np.abs(out) < 1.7159)
    keras_round_trip(model, v)


def test_lenet5_activation_keyword():
    default = catalog.create_model("lenet5")
    assert default.get_layer("c1_conv").get_config()["activation"] == "tanh"  # the registered graph: fused tanh
    model = catalog.create_model("lenet5", activation="scaled_tanh")
    assert [layer.name for layer in model.layers] == [layer.name for layer in default.layers]
    assert model.count_params() == default.count_params() == 61_706
    conv = model.get_layer("c1_conv")
    assert conv.activation is scaled_tanh and model.get_layer("f6_fc").activation is scaled_tanh
    x = random_input((32, 32, 1))
    c1 = np.asarray(keras.Model(model.input, conv.output)(x))
    pre = np.asarray(keras.ops.conv(x, conv.kernel, padding="valid")) + np.asarray(conv.bias)
    np.testing.assert_allclose(c1, 1.7159 * np.tanh(2.0 * pre / 3.0), rtol=1e-5, atol=1e-5)
    keras_round_trip(model, x)
    with pytest.raises(ValueError, match="activation must be one of tanh, scaled_tanh, relu, sigmoid; got 'selu'"):
        catalog.create_model("lenet5", activation="selu")


def _grouped_pair(groups, strides=1, dilation=1, padding="same", use_bias=True, channels=8):
    """The same grouped convolution as Keras' Conv2D and as GroupedConv2D, with equal weights."""
    x = keras.Input((9, 9, channels))
    config = dict(filters=12 if groups < channels else channels, kernel_size=3, strides=strides, padding=padding,
                  groups=groups, dilation_rate=dilation, use_bias=use_bias, bias_initializer="random_normal")
    native = keras.Model(x, keras.layers.Conv2D(**config, name="conv")(x))
    grouped = keras.Model(x, GroupedConv2D(**config, name="conv")(x))
    grouped.set_weights(native.get_weights())
    return native, grouped


@pytest.mark.parametrize("groups, strides, dilation, padding, use_bias",
                         [(2, 1, 1, "same", True), (4, 2, 1, "valid", False), (4, 1, 2, "same", True),
                          (8, 2, 1, "same", False)])
def test_grouped_conv2d_equals_keras_grouped_conv(groups, strides, dilation, padding, use_bias):
    """Outputs and the gradients of every weight equal Keras' grouped Conv2D's (the per-group path on CPU)."""
    native, grouped = _grouped_pair(groups, strides, dilation, padding, use_bias)
    data = random_input((9, 9, 8), seed=5)
    (out_n, grads_n), (out_g, grads_g) = gradients(native, data), gradients(grouped, data)
    np.testing.assert_allclose(np.asarray(out_g), np.asarray(out_n), rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_g, grads_n):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
    keras_round_trip(grouped, data)


def test_grouped_conv2d_runs_per_group_on_cpu_and_keras_op_when_depthwise(monkeypatch):
    calls = []
    keras_op = keras.layers.Conv2D.convolution_op
    monkeypatch.setattr(keras.layers.Conv2D, "convolution_op",
                        lambda self, *args: calls.append(self.groups) or keras_op(self, *args))
    data = random_input((9, 9, 8))
    assert GroupedConv2D(12, 3, groups=4)(data).shape == (2, 7, 7, 12)  # one ops.conv per group
    assert GroupedConv2D(8, 3, groups=8)(data).shape == (2, 7, 7, 8)  # depthwise count: Keras' op
    assert calls == [8]
    assert isinstance(conv2d(8, 3, groups=2, name="g"), GroupedConv2D)
    assert type(conv2d(8, 3, name="c")) is keras.layers.Conv2D
