"""Attention blocks: CBAM, selective kernel, non-local (TF and JAX): shapes, closed-form counts, round trip."""

import keras
import numpy as np
import pytest

from catalog.blocks import attention
from helpers import assert_all_gradients, keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def test_cbam_count_and_shape():
    c, r, k = 64, 16, 7
    x = keras.Input((9, 9, c))
    model = keras.Model(x, attention.cbam(x, ratio=r, kernel_size=k, name="cbam"))
    assert model.output.shape == (None, 9, 9, c)
    # shared MLP with biases + spatial k x k conv (2 -> 1, no bias) + BatchNorm gamma/beta
    assert n_params(model) == 2 * c * (c // r) + c // r + c + 2 * k * k + 2
    assert n_params(model, trainable=False) == 2  # the spatial BatchNorm's moving statistics
    assert model.get_layer("cbam_spatial_conv").use_bias is False


def test_channel_pool_is_max_then_mean():
    data = random_input((3, 4, 5))
    out = np.asarray(attention.ChannelPool()(data))
    np.testing.assert_allclose(out[..., 0], data.max(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(out[..., 1], data.mean(axis=-1), rtol=1e-5, atol=1e-6)


def test_cbam_matches_formula():
    """Recompute CBAM with numpy from the model's own weights (inference-mode BatchNorm)."""
    c = 32
    x = keras.Input((5, 6, c))
    model = keras.Model(x, attention.cbam(x, ratio=8, kernel_size=3, name="cbam"))
    data = random_input((5, 6, c), seed=3)
    w1, b1 = (np.asarray(v) for v in model.get_layer("cbam_channel_fc1").weights)
    w2, b2 = (np.asarray(v) for v in model.get_layer("cbam_channel_fc2").weights)
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    mlp = lambda d: np.maximum(d @ w1[0, 0] + b1, 0) @ w2[0, 0] + b2  # noqa: E731
    gate = sigmoid(mlp(data.mean(axis=(1, 2))) + mlp(data.max(axis=(1, 2))))
    y = data * gate[:, None, None, :]
    pooled = np.stack([y.max(-1), y.mean(-1)], axis=-1)
    kernel = np.asarray(model.get_layer("cbam_spatial_conv").kernel)
    padded = np.pad(pooled, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros(pooled.shape[:3])
    for i in range(3):
        for j in range(3):
            conv += padded[:, i:i + 5, j:j + 6, :] @ kernel[i, j, :, 0]
    bn = model.get_layer("cbam_spatial_bn")
    conv = conv / np.sqrt(1.0 + bn.epsilon)  # fresh BatchNorm: mean 0, variance 1, gamma 1, beta 0
    expected = y * sigmoid(conv)[..., None]
    np.testing.assert_allclose(np.asarray(model(data, training=False)), expected, rtol=1e-4, atol=1e-5)


def test_cbam_gradients_and_round_trip():
    x = keras.Input((8, 8, 32))
    y = attention.cbam(x, ratio=4, name="a1")
    y = attention.se(y, ratio=4, name="a2")
    model = keras.Model(x, y)
    data = random_input((8, 8, 32))
    assert_all_gradients(model, data)
    keras_round_trip(model, data)
