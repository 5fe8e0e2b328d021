"""SqueezeNet Fire module: shapes, exact closed-form counts, simple bypass, .keras round trip (TF and JAX)."""

import keras
import numpy as np
import pytest

from catalog.blocks.fire import fire
from helpers import assert_all_gradients, keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def fire_params(c_in, s, e1, e3):
    return c_in * s + s + s * e1 + e1 + 9 * s * e3 + e3


def test_fire_shape_count_and_names():
    x = keras.Input((13, 11, 96))
    model = keras.Model(x, fire(x, 16, 64, 64, name="fire2"))
    assert model.output.shape == (None, 13, 11, 128)
    assert n_params(model) == fire_params(96, 16, 64, 64) == 11_920  # torchvision squeezenet1_0 fire2
    names = [layer.name for layer in model.layers[1:]]
    assert names == ["fire2_squeeze_conv", "fire2_squeeze_act", "fire2_expand1x1_conv", "fire2_expand3x3_conv",
                     "fire2_expand1x1_act", "fire2_expand3x3_act", "fire2_concat"]


def test_simple_bypass_adds_the_input():
    x = keras.Input((8, 8, 128))
    plain = keras.Model(x, fire(x, 16, 64, 64, name="f"))
    x2 = keras.Input((8, 8, 128))
    bypassed = keras.Model(x2, fire(x2, 16, 64, 64, bypass=True, name="f"))
    assert n_params(bypassed) == n_params(plain) == fire_params(128, 16, 64, 64)
    bypassed.set_weights(plain.get_weights())
    data = random_input((8, 8, 128))
    np.testing.assert_allclose(np.asarray(bypassed(data)), np.asarray(plain(data)) + data, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bypass needs input channels"):
        fire(keras.Input((8, 8, 96)), 16, 64, 64, bypass=True, name="bad")
    with pytest.raises(ValueError, match="squeeze must be a positive integer"):
        fire(x, 0, 64, 64, name="bad")


def test_fire_round_trip_and_gradients():
    x = keras.Input((9, 9, 32))
    y = fire(x, 8, 16, 16, bypass=True, name="fire1")
    y = fire(y, 8, 24, 8, name="fire2")
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D(name="pool")(y))
    data = random_input((9, 9, 32))
    assert_all_gradients(model, data)
    keras_round_trip(model, data)
