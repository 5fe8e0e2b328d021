"""Operators (TF and JAX): deformable convolution v1/v2, spatial transformer, maxout, CReLU, PReLU and
LeakyReLU slopes, AlexNet's LRN, mixed and stochastic pooling, highway: shapes, closed-form counts, round
trips and each operator's defining property.

``operators_torch_reference.npz`` holds torchvision's ``deform_conv2d`` and torch's ``affine_grid`` +
``grid_sample`` on random inputs, in Keras layouts. :data:`TORCH_FIXTURE_SCRIPT` at the end of this file
made it (torch 2.14, torchvision 0.29): save the string to a file and run that with a Python that has torch
and torchvision, never inside the TensorFlow process, giving the .npz path as its argument.
"""

import os

import keras
import numpy as np
import pytest

from catalog.blocks import operators
from catalog.blocks.layers import act
from catalog.blocks.operators import (CReLU, DeformableConv2D, HighwayGate, Maxout, MixedPooling,
                                      SpatialTransformer, StochasticPooling)
from catalog.flops import count_macs
from helpers import assert_all_gradients, gradients, keras_round_trip, n_params, random_input

# CI's JAX pass runs the tests that compare numbers (marked jax); the round trips and counts run on TensorFlow

FIXTURE = os.path.join(os.path.dirname(__file__), "operators_torch_reference.npz")


def _conv_reference(data, kernel, bias, strides, dilation, padding):
    conv = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides=strides, dilation_rate=dilation,
                               padding=padding)
    conv.build(data.shape)
    conv.set_weights([kernel, bias])
    return np.asarray(conv(data))


def _deformable(data, kernel, bias, offsets, mask=None, **options):
    layer = DeformableConv2D(kernel.shape[-1], kernel.shape[:2], modulated=mask is not None, **options)
    inputs = [data, offsets] + ([mask] if mask is not None else [])
    layer.build([i.shape for i in inputs])
    layer.set_weights([kernel, bias])
    return np.asarray(layer(inputs))


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("strides, dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_with_zero_offsets_is_conv2d(padding, strides, dilation, modulated):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 9, 10, 4)).astype("float32")  # odd and even sides: asymmetric "same"
    kernel = rng.standard_normal((3, 3, 4, 5)).astype("float32")
    bias = rng.standard_normal(5).astype("float32")
    expected = _conv_reference(data, kernel, bias, strides, dilation, padding)
    out_shape = expected.shape[:3]
    offsets = np.zeros((*out_shape, 18), "float32")
    mask = np.ones((*out_shape, 9), "float32") if modulated else None
    got = _deformable(data, kernel, bias, offsets, mask, strides=strides, dilation_rate=dilation, padding=padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.jax
def test_deformable_integer_offset_is_a_shifted_conv():
    """Every tap moved by (dy, dx) = (+1, 0) reads the next row: output row i equals the conv's row i + 1."""
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2, 8, 7, 3)).astype("float32")
    kernel = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    bias = rng.standard_normal(4).astype("float32")
    offsets = np.zeros((2, 8, 7, 9, 2), "float32")
    offsets[..., 0] = 1.0
    got = _deformable(data, kernel, bias, offsets.reshape(2, 8, 7, 18))
    conv = _conv_reference(data, kernel, bias, 1, 1, "same")
    np.testing.assert_allclose(got[:, :-1], conv[:, 1:], atol=1e-5, rtol=1e-5)


def test_deformable_half_pixel_offset_averages_two_neighbours():
    """A 1x1 identity kernel with dy = 0.5 returns (x[i] + x[i + 1]) / 2, and x[-1] / 2 at the bottom edge
    (the pixel below the image counts as zero)."""
    data = random_input((5, 6, 3), seed=2)
    offsets = np.zeros((2, 5, 6, 2), "float32")
    offsets[..., 0] = 0.5
    got = _deformable(data, np.eye(3, dtype="float32")[None, None], np.zeros(3, "float32"), offsets)
    np.testing.assert_allclose(got[:, :-1], (data[:, :-1] + data[:, 1:]) / 2, atol=1e-6)
    np.testing.assert_allclose(got[:, -1], data[:, -1] / 2, atol=1e-6)


@pytest.mark.jax
@pytest.mark.parametrize("case", ["deform_a", "deform_b"])
def test_deformable_matches_torchvision(case):
    """Random offsets (many samples fall outside the image), masks, groups and deformable groups against
    ``torchvision.ops.deform_conv2d``; case b: kernel (3, 2), stride 2, padding 2, dilation 2."""
    ref = np.load(FIXTURE)
    kh, kw, stride, pad, dilation, groups, deformable_groups = (int(v) for v in ref[f"{case}_config"])
    layer = DeformableConv2D(ref[f"{case}_kernel"].shape[-1], (kh, kw), stride, padding=pad,
                             dilation_rate=dilation, groups=groups, deformable_groups=deformable_groups,
                             modulated=True)
    inputs = [ref[f"{case}_x"], ref[f"{case}_offset"], ref[f"{case}_mask"]]
    layer.build([i.shape for i in inputs])
    layer.set_weights([ref[f"{case}_kernel"], ref[f"{case}_bias"]])
    np.testing.assert_allclose(np.asarray(layer(inputs)), ref[f"{case}_y"], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_conv_block_counts_start_and_round_trip(modulated):
    c, f, k = 4, 6, 3
    x = keras.Input((8, 8, c))
    model = keras.Model(x, operators.deformable_conv(x, f, k, modulated=modulated, name="dcn"))
    taps = k * k
    expected = k * k * c * f + f + (k * k * c + 1) * 2 * taps + ((k * k * c + 1) * taps if modulated else 0)
    assert n_params(model) == expected
    assert model.output.shape == (None, 8, 8, f)
    data = random_input((8, 8, c), seed=3)
    layer = model.get_layer("dcn")
    conv = _conv_reference(data, np.asarray(layer.kernel), np.zeros(f, "float32"), 1, 1, "same")
    scale = 0.5 if modulated else 1.0  # v2's mask starts at sigmoid(0) = 0.5, as Zhu et al. initialize it
    np.testing.assert_allclose(np.asarray(model(data)), scale * conv, atol=1e-5, rtol=1e-5)
    assert_all_gradients(model, data)  # offsets and mask convolutions learn from the first step
    keras_round_trip(model, data)
    # The deformable layer counts as the convolution it replaces; the offset/mask convs as convs.
    assert count_macs(model) == 8 * 8 * (k * k * c * f + k * k * c * (3 if modulated else 2) * taps)


def test_deformable_conv_block_strides_and_errors():
    x = keras.Input((9, 9, 4))
    y = operators.deformable_conv(x, 8, 3, strides=2, deformable_groups=2, groups=2, name="dcn")
    assert y.shape == (None, 5, 5, 8)
    with pytest.raises(ValueError, match="padding must be"):
        DeformableConv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="channels after x"):
        DeformableConv2D(4, 3, modulated=True)([x, keras.Input((9, 9, 18))])


def test_spatial_transformer_identity_translation_and_scale():
    data = random_input((7, 7, 2), seed=4)
    layer = SpatialTransformer()
    batch = data.shape[0]

    def warp(theta):
        return np.asarray(layer([data, np.tile(np.asarray(theta, "float32"), (batch, 1))]))

    np.testing.assert_array_equal(warp(operators.IDENTITY_THETA), data)  # exactly
    # Translation c = 2 / W reads one pixel to the right: the content moves one pixel left, zeros enter.
    shifted = warp([1, 0, 2 / 7, 0, 1, 0])
    np.testing.assert_allclose(shifted[:, :, :-1], data[:, :, 1:], atol=1e-5)
    np.testing.assert_allclose(shifted[:, :, -1], 0.0, atol=1e-6)
    # Scale 2 (zoom out) on an odd 7x7 grid: output (i, j) reads input (2i - 3, 2j - 3), zero outside.
    zoomed = warp([2, 0, 0, 0, 2, 0])
    expected = np.zeros_like(data)
    expected[:, 2:5, 2:5] = data[:, 1:6:2, 1:6:2]
    np.testing.assert_allclose(zoomed, expected, atol=1e-5)


@pytest.mark.jax
def test_spatial_transformer_matches_torch_grid_sample():
    ref = np.load(FIXTURE)
    got = SpatialTransformer(output_size=(5, 6))([ref["stn_x"], ref["stn_theta"]])
    assert got.shape == (3, 5, 6, 2)
    np.testing.assert_allclose(np.asarray(got), ref["stn_y"], atol=1e-5, rtol=1e-5)


def test_spatial_transformer_block_count_identity_and_round_trip():
    x = keras.Input((12, 12, 3))
    model = keras.Model(x, operators.spatial_transformer(x, filters=(8, 16), units=32, name="stn"))
    flat = 3 * 3 * 16  # 12 -> 6 -> 3 after two 2x2 pools
    assert n_params(model) == (9 * 3 + 1) * 8 + (9 * 8 + 1) * 16 + (flat + 1) * 32 + (32 + 1) * 6
    data = random_input((12, 12, 3), seed=5)
    np.testing.assert_array_equal(np.asarray(model(data)), data)  # the identity at initialization
    _, grads = gradients(model, data)
    theta_grads = [g for w, g in zip(model.trainable_weights, grads) if "stn_theta" in w.path]
    assert all(np.any(g) for g in theta_grads)
    keras_round_trip(model, data)
    small = keras.Model(x, operators.spatial_transformer(
        x, output_size=(6, 4), localization=keras.layers.GlobalAveragePooling2D(name="gap"), name="st2"))
    assert small.output.shape == (None, 6, 4, 3)
    assert n_params(small) == (3 + 1) * 6


@pytest.mark.jax
def test_maxout_and_crelu_closed_form():
    x = np.array([[1.0, -2.0, 5.0, 3.0, -1.0, -4.0]], "float32")
    np.testing.assert_array_equal(np.asarray(Maxout(2)(x)), [[1.0, 5.0, -1.0]])
    np.testing.assert_array_equal(np.asarray(Maxout(3)(x)), [[5.0, 3.0]])
    np.testing.assert_array_equal(np.asarray(CReLU()(x[:, :3])), [[1.0, 0.0, 5.0, 0.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match="divisible by pieces"):
        Maxout(4)(x)


def test_maxout_block_counts_and_round_trip():
    inputs = keras.Input((6, 6, 5))
    y = operators.maxout(inputs, 4, pieces=3, name="mo")
    assert y.shape == (None, 6, 6, 4)
    y = operators.maxout(y, 2, pieces=2, kernel_size=3, name="mo_conv")
    y = CReLU(name="crelu")(y)
    model = keras.Model(inputs, y)
    assert model.output.shape == (None, 6, 6, 4)
    assert n_params(model) == (5 + 1) * 4 * 3 + (9 * 4 + 1) * 2 * 2
    data = random_input((6, 6, 5), seed=6)
    linear = model.get_layer("mo_linear")
    kernel, bias = (np.asarray(w) for w in linear.weights)
    expected = (data @ kernel + bias).reshape(2, 6, 6, 4, 3).max(-1)
    first = keras.Model(inputs, model.get_layer("mo").output)
    np.testing.assert_allclose(np.asarray(first(data)), expected, atol=1e-5)
    keras_round_trip(model, data)


def test_prelu_and_leaky_relu_slopes():
    x = keras.Input((4, 4, 3))
    model = keras.Model(x, [act(x, "prelu", name="prelu"), act(x, "leaky_relu_0.2", name="leaky"),
                            act(x, "leaky_relu", name="leaky_default")])
    assert n_params(model) == 3  # channel-wise PReLU: one slope per channel
    data = random_input((4, 4, 3), seed=7)
    prelu, leaky, default = (np.asarray(o) for o in model(data))
    np.testing.assert_allclose(prelu, np.where(data > 0, data, 0.25 * data), atol=1e-6)
    np.testing.assert_allclose(leaky, np.where(data > 0, data, 0.2 * data), atol=1e-6)
    np.testing.assert_allclose(default, np.where(data > 0, data, 0.1 * data), atol=1e-6)
    dense = keras.Input((5,))
    assert n_params(keras.Model(dense, act(dense, "prelu", name="p"))) == 5
    with pytest.raises(ValueError, match="slope must be a number"):
        act(x, "leaky_relu_steep", name="bad")
    keras_round_trip(model, data)


def test_local_response_normalization_is_alexnets():
    """b_c = a_c / (k + alpha * sum_{|j - c| <= n/2} a_j^2)^beta with k = 2, n = 5, alpha = 1e-4, beta = 0.75
    (Krizhevsky et al. 2012, Section 3.3): the catalog's layer is AlexNet's, reused, not redefined."""
    from catalog.models.alexnet import LocalResponseNormalization

    data = 30.0 * random_input((3, 3, 9), seed=8)  # large enough that the denominator departs from 2^0.75
    sums = np.stack([np.sum(data[..., max(0, c - 2):c + 3] ** 2, axis=-1) for c in range(9)], axis=-1)
    expected = data / (2.0 + 1e-4 * sums) ** 0.75
    np.testing.assert_allclose(np.asarray(LocalResponseNormalization()(data)), expected, rtol=1e-5)


@pytest.mark.jax
def test_mixed_pooling_fixed_and_learned():
    data = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    high = np.array([[5.0, 7.0], [13.0, 15.0]])
    mean = np.array([[2.5, 4.5], [10.5, 12.5]])
    fixed = MixedPooling(2, mix=0.25)
    np.testing.assert_allclose(np.asarray(fixed(data))[0, ..., 0], 0.25 * high + 0.75 * mean, rtol=1e-6)
    assert not fixed.weights
    x = keras.Input((4, 4, 1))
    model = keras.Model(x, MixedPooling(2, mix=0.8, learn=True, name="mix")(x))
    assert n_params(model) == 1
    np.testing.assert_allclose(np.asarray(model(data))[0, ..., 0], 0.8 * high + 0.2 * mean, rtol=1e-5)
    assert_all_gradients(model, data)
    keras_round_trip(model, data)
    with pytest.raises(ValueError, match="mix must be in"):
        MixedPooling(mix=1.0, learn=True)
    same = keras.Input((5, 5, 2))
    mixed = MixedPooling(3, strides=2, padding="same", mix=0.3)(same)
    assert mixed.shape == (None, 3, 3, 2)
    odd = random_input((5, 5, 2), seed=12)
    pools = [np.asarray(pool(3, strides=2, padding="same")(odd))
             for pool in (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)]
    np.testing.assert_allclose(np.asarray(keras.Model(same, mixed)(odd)), 0.3 * pools[0] + 0.7 * pools[1],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.jax
def test_stochastic_pooling_inference_is_the_weighted_average():
    data = np.abs(random_input((6, 6, 2), seed=9))
    data[0, :3, :3, 0] = 0.0  # an all-zero window pools to 0
    data[1, :3, :3, 1] = -1.0  # so does a window without a positive value
    x = keras.Input((6, 6, 2))
    model = keras.Model(x, StochasticPooling(3, strides=2, seed=1, name="sp")(x))
    assert model.output.shape == (None, 2, 2, 2) and n_params(model) == 0
    windows = np.stack([data[:, i:i + 3, j:j + 3] for i in (0, 2) for j in (0, 2)], axis=1).reshape(2, 2, 2, 9, 2)
    positive = np.maximum(windows, 0)
    total = positive.sum(3)
    expected = np.where(total > 0, (positive * windows).sum(3) / np.where(total > 0, total, 1), 0)
    np.testing.assert_allclose(np.asarray(model(data, training=False)), expected, rtol=1e-5, atol=1e-6)
    assert expected[0, 0, 0, 0] == expected[1, 0, 0, 1] == 0.0
    np.testing.assert_array_equal(np.asarray(model(data, training=True))[1, 0, 0, 1], 0.0)
    keras_round_trip(model, data)


def test_stochastic_pooling_training_samples_inside_the_window():
    data = np.abs(random_input((4, 4, 3), batch=4, seed=10))
    data[:, 0, 0, :] = 0.0  # zero-probability taps are never drawn
    layer = StochasticPooling(2, seed=3)
    draws = np.asarray(layer(data, training=True))
    windows = data.reshape(4, 2, 2, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(4, 2, 2, 4, 3)
    assert np.all(np.any(np.isclose(draws[:, :, :, None, :], windows) & (windows > 0), axis=3))
    # Frequencies follow p_i = a_i / sum_j a_j: one window (1, 3, 0, 0) drawn 4000 times.
    single = np.tile(np.array([[1.0, 3.0], [0.0, 0.0]], "float32")[None, :, :, None], (4000, 1, 1, 1))
    picks = np.asarray(StochasticPooling(2, seed=4)(single, training=True)).ravel()
    assert set(np.unique(picks)) <= {1.0, 3.0}
    assert 0.72 < np.mean(picks == 3.0) < 0.78


@pytest.mark.parametrize("kernel_size", [None, 3])
def test_highway_closed_form_count_and_round_trip(kernel_size):
    c = 6
    x = keras.Input((5, 5, c))
    model = keras.Model(x, operators.highway(x, kernel_size=kernel_size, gate_bias=-3.0, name="hw"))
    fan_in = c if kernel_size is None else 9 * c
    assert n_params(model) == 2 * (fan_in + 1) * c
    np.testing.assert_array_equal(np.asarray(model.get_layer("hw_t").bias), -3.0)
    data = random_input((5, 5, c), seed=11)
    h = np.asarray(keras.Model(x, model.get_layer("hw_h").output)(data))
    t = np.asarray(keras.Model(x, model.get_layer("hw_t").output)(data))
    np.testing.assert_allclose(np.asarray(model(data)), h * t + data * (1 - t), atol=1e-5)
    if kernel_size is None:  # T = sigmoid(W_T x + b_T), recomputed from the dense gate's weights
        w, b = (np.asarray(v) for v in model.get_layer("hw_t").weights)
        np.testing.assert_allclose(t, 1 / (1 + np.exp(-(data @ w + b))), atol=1e-5)
    assert_all_gradients(model, data)
    keras_round_trip(model, data)
    gate = HighwayGate()([np.full((1, 2), 4.0, "float32"), np.full((1, 2), 8.0, "float32"),
                          np.array([[0.0, 0.25]], "float32")])
    np.testing.assert_allclose(np.asarray(gate), [[4.0, 5.0]])


TORCH_FIXTURE_SCRIPT = r'''
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

rng = np.random.default_rng(19)
out = {}
cases = {  # name: (N, C, H, W, F, k, stride, padding, dilation, groups, deformable groups)
    "deform_a": (2, 4, 7, 8, 6, 3, 1, 1, 1, 2, 2),
    "deform_b": (1, 3, 9, 7, 4, (3, 2), 2, 2, 2, 1, 1),
}
for name, (n, c, h, w, f, k, s, p, d, g, dg) in cases.items():
    kh, kw = (k, k) if isinstance(k, int) else k
    ho, wo = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1
    x = rng.standard_normal((n, c, h, w)).astype("float32")
    weight = rng.standard_normal((f, c // g, kh, kw)).astype("float32")
    bias = rng.standard_normal(f).astype("float32")
    offset = (2.5 * rng.standard_normal((n, 2 * dg * kh * kw, ho, wo))).astype("float32")
    mask = rng.uniform(0, 1, (n, dg * kh * kw, ho, wo)).astype("float32")
    t = torch.from_numpy
    y = deform_conv2d(t(x), t(offset), t(weight), t(bias), stride=s, padding=p, dilation=d, mask=t(mask))
    nhwc = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # noqa: E731
    out.update({f"{name}_x": nhwc(x), f"{name}_kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0)),
                f"{name}_bias": bias, f"{name}_offset": nhwc(offset), f"{name}_mask": nhwc(mask),
                f"{name}_y": nhwc(y.numpy()),
                f"{name}_config": np.array([kh, kw, s, p, d, g, dg])})
# Spatial transformer: random affine maps near the identity, output 5x6 from 7x8.
x = rng.standard_normal((3, 2, 7, 8)).astype("float32")
theta = (np.array([1, 0, 0, 0, 1, 0], "float32") + 0.4 * rng.standard_normal((3, 6))).astype("float32")
grid = F.affine_grid(torch.from_numpy(theta.reshape(3, 2, 3)), (3, 2, 5, 6), align_corners=False)
y = F.grid_sample(torch.from_numpy(x), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
out.update({"stn_x": x.transpose(0, 2, 3, 1).copy(), "stn_theta": theta,
            "stn_y": y.numpy().transpose(0, 2, 3, 1).copy()})
np.savez_compressed(sys.argv[1], **out)
'''
