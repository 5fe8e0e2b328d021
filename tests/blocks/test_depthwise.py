"""Depthwise-separable blocks: shapes, exact closed-form parameter counts, shortcuts, .keras round trip."""

import keras
import pytest

from catalog.blocks import depthwise
from catalog.blocks.layers import DropPath, make_divisible
from helpers import keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def _model(block, shape, **kwargs):
    x = keras.Input(shape)
    return keras.Model(x, block(x, **kwargs))


def _bn(c):
    return 2 * c  # trainable gamma and beta


def test_separable_conv():
    m = _model(depthwise.separable, (16, 16, 8), filters=16, strides=2, name="b")
    assert m.output.shape == (None, 8, 8, 16)
    assert n_params(m) == 3 * 3 * 8 + _bn(8) + 8 * 16 + _bn(16)
    assert [layer.name for layer in m.layers[1:]] == ["b_dw_conv", "b_dw_bn", "b_dw_act",
                                                      "b_pw_conv", "b_pw_bn", "b_pw_act"]


@pytest.mark.parametrize("c_in, t, c_out, k, stride, residual", [
    (16, 6, 16, 3, 1, True), (16, 6, 24, 3, 1, False), (16, 6, 16, 3, 2, False), (24, 4, 24, 5, 1, True)])
def test_inverted_residual(c_in, t, c_out, k, stride, residual):
    m = _model(depthwise.inverted_residual, (16, 16, c_in), filters=c_out, expansion=t, strides=stride,
               kernel_size=k, name="b")
    e = t * c_in
    assert m.output.shape == (None, 16 // stride, 16 // stride, c_out)
    assert n_params(m) == c_in * e + _bn(e) + k * k * e + _bn(e) + e * c_out + _bn(c_out)
    names = [layer.name for layer in m.layers]
    assert ("b_add" in names) is residual
    assert m.get_layer("b_dw_act").get_config()["max_value"] == 6.0  # ReLU6
    assert "b_project_act" not in names  # linear bottleneck


def test_inverted_residual_without_expansion():
    m = _model(depthwise.inverted_residual, (8, 8, 32), filters=16, expansion=1, name="b")
    assert n_params(m) == 9 * 32 + _bn(32) + 32 * 16 + _bn(16)
    assert "b_expand_conv" not in [layer.name for layer in m.layers]
    with pytest.raises(ValueError, match="expansion must be"):
        _model(depthwise.inverted_residual, (8, 8, 32), filters=16, expansion=0.5, name="c")


@pytest.mark.parametrize("c_in, exp, c_out, k, se, activation", [
    (24, 72, 40, 5, True, "relu"), (40, 120, 40, 5, True, "hard_swish"), (80, 200, 80, 3, False, "hard_swish"),
    (16, 16, 16, 3, True, "relu")])
def test_bneck(c_in, exp, c_out, k, se, activation):
    m = _model(depthwise.bneck, (8, 8, c_in), filters=c_out, expanded=exp, kernel_size=k, use_se=se,
               activation=activation, name="b")
    r = make_divisible(exp / 4)
    expand = 0 if exp == c_in else c_in * exp + _bn(exp)
    se_params = (exp * r + r + r * exp + exp) if se else 0
    assert n_params(m) == expand + k * k * exp + _bn(exp) + se_params + exp * c_out + _bn(c_out)
    names = [layer.name for layer in m.layers]
    assert ("b_add" in names) is (c_in == c_out)
    assert ("b_expand_conv" in names) is (exp != c_in)
    if se:
        assert m.get_layer("b_se_gate").get_config()["activation"] == "hard_sigmoid"
        assert m.get_layer("b_se_reduce").filters == r
    dw_act = m.get_layer("b_dw_act")
    if activation == "relu":
        assert isinstance(dw_act, keras.layers.ReLU) and dw_act.get_config()["max_value"] is None
    else:
        assert dw_act.get_config()["activation"] == "hard_silu"  # Keras' name for hard-swish


def test_bneck_se_rounding_and_bad_activation():
    assert make_divisible(72 / 4) == 24 and make_divisible(88 / 4) == 24 and make_divisible(960 / 4) == 240
    with pytest.raises(ValueError, match="activation must be"):
        _model(depthwise.bneck, (8, 8, 16), filters=16, expanded=32, activation="swish", name="b")


@pytest.mark.parametrize("c_in, t, c_out, k, stride", [(16, 6, 16, 3, 1), (32, 1, 16, 3, 1), (24, 6, 40, 5, 2)])
def test_mbconv(c_in, t, c_out, k, stride):
    m = _model(depthwise.mbconv, (16, 16, c_in), filters=c_out, expansion=t, kernel_size=k, strides=stride,
               drop_rate=0.1, name="b")
    e = t * c_in
    r = max(1, int(c_in * 0.25))
    expand = 0 if t == 1 else c_in * e + _bn(e)
    assert m.output.shape == (None, 16 // stride, 16 // stride, c_out)
    assert n_params(m) == expand + k * k * e + _bn(e) + (e * r + r + r * e + e) + e * c_out + _bn(c_out)
    residual = stride == 1 and c_in == c_out
    names = [layer.name for layer in m.layers]
    assert ("b_add" in names) is residual
    if residual:
        assert isinstance(m.get_layer("b_drop"), DropPath) and m.get_layer("b_drop").rate == 0.1
    assert m.get_layer("b_se_act").get_config()["activation"] == "silu"


def test_round_trip_small_depthwise_model():
    x = keras.Input((16, 16, 8))
    y = depthwise.separable(x, 16, name="s")
    y = depthwise.inverted_residual(y, 16, expansion=4, name="ir")
    y = depthwise.bneck(y, 24, expanded=48, kernel_size=5, strides=2, use_se=True, activation="hard_swish",
                        name="bn")
    y = depthwise.mbconv(y, 24, expansion=6, drop_rate=0.2, name="mb")
    keras_round_trip(keras.Model(x, y), random_input((16, 16, 8)))
