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


@pytest.mark.parametrize("c_in, c, groups, strides", [(64, 64, 32, 1), (32, 64, 8, 2)])
def test_sk_count_shape_and_stride(c_in, c, groups, strides):
    x = keras.Input((10, 10, c_in))
    model = keras.Model(x, attention.sk(x, c, strides=strides, groups=groups, name="sk"))
    assert model.output.shape == (None, 10 // strides, 10 // strides, c)
    d = max(c // 16, 32)
    branches = 2 * (9 * (c_in // groups) * c + 2 * c)  # grouped 3x3 convs (no bias) + BN
    assert n_params(model) == branches + c * d + 2 * d + 2 * d * c
    # The strided dilation-2 branch runs as a dilation-1 conv of the sub-sampled input (same result).
    assert model.get_layer("sk_branch2_conv").dilation_rate == (2 // strides,) * 2


@pytest.mark.parametrize("size", [9, 10])
@pytest.mark.parametrize("branch, probe", [(2, "sk_branch2_bn"), (3, "sk_branch3_subsample")])
def test_sk_strided_dilated_branch_equals_strided_conv(size, branch, probe):
    """Each strided branch equals PyTorch's stride-2 conv with dilation d and padding d: branch 2 (d = 2)
    as a dilation-1 conv of the 2x sub-sampled input, branch 3 (d = 3) as a stride-1 conv sub-sampled."""
    data = random_input((size, size, 4), seed=1)
    x = keras.Input((size, size, 4))
    model = keras.Model(x, attention.sk(x, 8, strides=2, branches=3, groups=1, name="sk"))
    probe = model.get_layer(probe)
    pre_norm = keras.Model(x, probe.input if probe.name.endswith("_bn") else probe.output)
    kernel = np.asarray(model.get_layer(f"sk_branch{branch}_conv").kernel)
    padded = np.pad(data, ((0, 0), (branch, branch), (branch, branch), (0, 0)))
    out = (size - 1) // 2 + 1
    expected = np.zeros((2, out, out, 8), "float32")
    for i in range(3):
        for j in range(3):
            rows, cols = branch * i, branch * j
            expected += padded[:, rows:rows + 2 * out:2, cols:cols + 2 * out:2, :] @ kernel[i, j]
    np.testing.assert_allclose(np.asarray(pre_norm(data)), expected, rtol=1e-4, atol=1e-5)


def test_sk_attention_is_a_softmax_across_branches():
    x = keras.Input((6, 6, 32))
    model = keras.Model(x, attention.sk(x, 32, branches=3, groups=4, name="sk"))
    probe = keras.Model(x, model.get_layer("sk_softmax").output)
    w = np.asarray(probe(random_input((6, 6, 32))))
    assert w.shape == (2, 3, 32)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="branches"):
        attention.sk(x, 32, branches=1, name="bad")


@pytest.mark.parametrize("sub_sample", [True, False])
def test_non_local_count_and_identity_at_init(sub_sample):
    c = 16
    x = keras.Input((6, 6, c))
    model = keras.Model(x, attention.non_local(x, sub_sample=sub_sample, name="nl"))
    i = c // 2
    assert n_params(model) == 3 * (c * i + i) + i * c + 2 * c
    assert model.output.shape == (None, 6, 6, c)
    data = random_input((6, 6, c))
    np.testing.assert_allclose(np.asarray(model(data, training=False)), data, rtol=1e-6)  # zero-init gamma
    pooled = model.get_layer("nl_affinity").output.shape
    assert pooled == (None, 36, 9 if sub_sample else 36)


def test_non_local_matches_formula():
    c, h, w = 8, 4, 6
    x = keras.Input((h, w, c))
    model = keras.Model(x, attention.non_local(x, sub_sample=False, zero_init=False, name="nl"))
    data = random_input((h, w, c), seed=2)
    emb = {k: [np.asarray(v) for v in model.get_layer(f"nl_{k}").weights] for k in ("theta", "phi", "g")}
    flat = data.reshape(2, h * w, c)
    t, p, g = (flat @ emb[k][0][0, 0] + emb[k][1] for k in ("theta", "phi", "g"))
    f = np.einsum("nic,njc->nij", t, p)
    f = np.exp(f - f.max(-1, keepdims=True))
    f /= f.sum(-1, keepdims=True)
    y = (f @ g) @ np.asarray(model.get_layer("nl_out_conv").kernel)[0, 0]
    y = y / np.sqrt(1.0 + model.get_layer("nl_out_bn").epsilon)
    np.testing.assert_allclose(np.asarray(model(data, training=False)), data + y.reshape(2, h, w, c),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="fixed height and width"):
        attention.non_local(keras.Input((None, None, c)), name="bad")


def test_sk_and_non_local_gradients_and_round_trip():
    x = keras.Input((8, 8, 32))
    y = attention.sk(x, 32, groups=8, name="sk")
    y = attention.non_local(y, zero_init=False, name="nl")
    model = keras.Model(x, y)
    data = random_input((8, 8, 32))
    assert_all_gradients(model, data)
    keras_round_trip(model, data)


def test_sk_strided_branch1_pads_like_pytorch():
    data = random_input((8, 8, 4), seed=4)
    x = keras.Input((8, 8, 4))
    model = keras.Model(x, attention.sk(x, 8, strides=2, groups=1, name="sk"))
    conv = keras.Model(x, model.get_layer("sk_branch1_conv").output)
    kernel = np.asarray(model.get_layer("sk_branch1_conv").kernel)
    padded = np.pad(data, ((0, 0), (1, 1), (1, 1), (0, 0)))  # padding 1 on every side, windows at 0, 2, 4, 6
    expected = sum(padded[:, i:i + 8:2, j:j + 8:2, :] @ kernel[i, j] for i in range(3) for j in range(3))
    np.testing.assert_allclose(np.asarray(conv(data)), expected, rtol=1e-4, atol=1e-5)
