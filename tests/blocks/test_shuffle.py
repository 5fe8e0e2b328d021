"""ShuffleNet blocks: channel shuffle permutation, split, v1/v2 units (shapes, exact counts), round trip."""

import keras
import numpy as np
import pytest

from catalog.blocks.shuffle import ChannelShuffle, ChannelSplit, shufflenet_v1_unit, shufflenet_v2_unit
from helpers import keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def _model(block, shape, **kwargs):
    x = keras.Input(shape)
    return keras.Model(x, block(x, **kwargs))


def _bn(c):
    return 2 * c


@pytest.mark.parametrize("channels, groups", [(12, 3), (8, 2), (16, 4), (6, 1)])
def test_channel_shuffle_permutation(channels, groups):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, channels)).astype("float32")
    y = np.asarray(ChannelShuffle(groups)(x))
    n = channels // groups
    expected = np.empty_like(x)
    for i in range(n):
        for j in range(groups):
            expected[..., i * groups + j] = x[..., j * n + i]
    np.testing.assert_array_equal(y, expected)
    assert ChannelShuffle(groups).count_macs([x.shape], [x.shape]) == 0


def test_channel_shuffle_and_split_errors():
    with pytest.raises(ValueError, match="must divide"):
        ChannelShuffle(5)(np.zeros((1, 2, 2, 12), "float32"))
    with pytest.raises(ValueError, match="groups must be"):
        ChannelShuffle(0)
    with pytest.raises(ValueError, match="must divide"):
        ChannelSplit(2)(np.zeros((1, 2, 2, 7), "float32"))


def test_channel_split():
    x = np.arange(2 * 2 * 2 * 6, dtype="float32").reshape(2, 2, 2, 6)
    a, b = ChannelSplit(2)(x)
    np.testing.assert_array_equal(np.asarray(a), x[..., :3])
    np.testing.assert_array_equal(np.asarray(b), x[..., 3:])


def test_v1_unit_stride1():
    c, g = 48, 3
    m = _model(shufflenet_v1_unit, (8, 8, c), filters=c, groups=g, name="u")
    mid = c // 4
    assert m.output.shape == (None, 8, 8, c)
    assert n_params(m) == c * mid // g + _bn(mid) + 9 * mid + _bn(mid) + mid * c // g + _bn(c)
    names = [layer.name for layer in m.layers]
    assert "u_add" in names and "u_shuffle" in names


@pytest.mark.parametrize("padding", ["same", "symmetric"])
def test_v1_unit_stride2_first_unit(padding):
    c_in, c_out, g = 24, 240, 3
    m = _model(shufflenet_v1_unit, (16, 16, c_in), filters=c_out, groups=g, strides=2, first_groups=1,
               padding=padding, name="u")
    mid, branch = c_out // 4, c_out - c_in
    assert m.output.shape == (None, 8, 8, c_out)
    assert n_params(m) == c_in * mid + _bn(mid) + 9 * mid + _bn(mid) + mid * branch // g + _bn(branch)
    assert m.get_layer("u_reduce_conv").groups == 1 and m.get_layer("u_expand_conv").groups == g
    assert "u_concat" in [layer.name for layer in m.layers]


def test_v1_unit_without_shuffle_for_one_group_and_errors():
    m = _model(shufflenet_v1_unit, (8, 8, 16), filters=16, groups=1, name="u")
    assert "u_shuffle" not in [layer.name for layer in m.layers]
    with pytest.raises(ValueError, match="filters must be 16"):
        _model(shufflenet_v1_unit, (8, 8, 16), filters=32, groups=1, name="v")


def test_v2_unit_stride1():
    c = 48
    h = c // 2
    m = _model(shufflenet_v2_unit, (8, 8, c), filters=c, name="u")
    assert m.output.shape == (None, 8, 8, c)
    assert n_params(m) == h * h + _bn(h) + 9 * h + _bn(h) + h * h + _bn(h)
    assert "u_split" in [layer.name for layer in m.layers]


def test_v2_unit_stride1_passes_half_through_shuffled():
    x = keras.Input((4, 4, 8))
    m = keras.Model(x, shufflenet_v2_unit(x, 8, name="u"))
    v = random_input((4, 4, 8))
    y = np.asarray(m(v, training=False))
    np.testing.assert_allclose(y[..., 0::2], v[..., :4], rtol=1e-6)  # left half lands on even channels


@pytest.mark.parametrize("padding", ["same", "symmetric"])
def test_v2_down_sampling_unit(padding):
    c_in, c_out = 24, 116
    h = c_out // 2
    m = _model(shufflenet_v2_unit, (16, 16, c_in), filters=c_out, strides=2, padding=padding, name="u")
    assert m.output.shape == (None, 8, 8, c_out)
    left = 9 * c_in + _bn(c_in) + c_in * h + _bn(h)
    right = c_in * h + _bn(h) + 9 * h + _bn(h) + h * h + _bn(h)
    assert n_params(m) == left + right
    with pytest.raises(ValueError, match="must be even"):
        _model(shufflenet_v2_unit, (8, 8, 24), filters=25, strides=2, name="v")


def test_round_trip_small_shuffle_model():
    x = keras.Input((16, 16, 12))
    y = shufflenet_v1_unit(x, 48, groups=3, strides=2, padding="symmetric", name="a")
    y = shufflenet_v1_unit(y, 48, groups=3, name="b")
    y = shufflenet_v2_unit(y, 32, strides=2, name="c")
    y = shufflenet_v2_unit(y, 32, name="d")
    keras_round_trip(keras.Model(x, y), random_input((16, 16, 12)))
