"""DenseNet-BC blocks: shapes and exact closed-form parameter counts, connectivity, round trip."""

import keras
import numpy as np
import pytest

from catalog.blocks import dense
from helpers import keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def layer_params(c, k, b=4):
    """BN(C) + 1x1 conv C->b*k + BN(b*k) + 3x3 conv b*k->k, no biases."""
    return 2 * c + c * b * k + 2 * b * k + 9 * b * k * k


def test_dense_layer():
    x = keras.Input((8, 8, 64))
    model = keras.Model(x, dense.dense_layer(x, 32, name="l"))
    assert model.output.shape == (None, 8, 8, 64 + 32)
    assert n_params(model) == layer_params(64, 32)
    assert model.get_layer("l_bottleneck_conv").filters == 4 * 32
    assert not model.get_layer("l_growth_conv").use_bias
    # the layer's input passes through unchanged as the first C channels
    data = random_input((8, 8, 64))
    np.testing.assert_allclose(np.asarray(model(data, training=False))[..., :64], data, rtol=0, atol=0)


@pytest.mark.parametrize("num_layers, growth_rate, bn_size", [(6, 32, 4), (3, 12, 2)])
def test_dense_block(num_layers, growth_rate, bn_size):
    x = keras.Input((6, 6, 24))
    model = keras.Model(x, dense.dense_block(x, num_layers, growth_rate, bn_size, name="b"))
    assert model.output.shape == (None, 6, 6, 24 + num_layers * growth_rate)
    assert n_params(model) == sum(layer_params(24 + i * growth_rate, growth_rate, bn_size)
                                  for i in range(num_layers))
    # layer i (1-based) sees the block input and the i - 1 earlier layers: n(n+1)/2 connections in all
    seen = [(model.get_layer(f"b_layer{i}_bn1").input.shape[-1] - 24) // growth_rate + 1
            for i in range(1, num_layers + 1)]
    assert seen == list(range(1, num_layers + 1))
    assert sum(seen) == num_layers * (num_layers + 1) // 2


def test_dense_layer_dropout():
    x = keras.Input((4, 4, 8))
    model = keras.Model(x, dense.dense_layer(x, 4, dropout=0.2, name="l"))
    assert model.get_layer("l_drop").rate == 0.2


@pytest.mark.parametrize("channels, size, theta, out_channels, out_size",
                         [(256, 56, 0.5, 128, 28), (10, 7, 0.3, 3, 3), (6, 4, 1.0, 6, 2)])
def test_transition(channels, size, theta, out_channels, out_size):
    x = keras.Input((size, size, channels))
    model = keras.Model(x, dense.transition(x, theta, name="t"))
    assert model.output.shape == (None, out_size, out_size, out_channels)
    assert n_params(model) == 2 * channels + channels * out_channels


def test_transition_rejects_bad_compression():
    x = keras.Input((4, 4, 8))
    with pytest.raises(ValueError, match="compression must be in"):
        dense.transition(x, 0.0, name="t")


def test_round_trip_small_dense_model():
    x = keras.Input((8, 8, 8))
    y = dense.dense_block(x, 2, 4, name="block1")
    y = dense.transition(y, 0.5, name="transition1")
    y = dense.dense_block(y, 2, 4, bn_size=2, name="block2")
    model = keras.Model(x, y)
    assert model.output.shape == (None, 4, 4, 16)
    keras_round_trip(model, random_input((8, 8, 8)))
