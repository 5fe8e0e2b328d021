"""Octave convolution blocks (TF and JAX): resolutions, closed-form counts, the four paths, odd sides,
round trip."""

import keras
import numpy as np
import pytest

from catalog.blocks.octave import octave_bottleneck, octave_conv, octave_conv_bn_act
from helpers import assert_all_gradients, keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def _inputs(c_in, alpha_in, size=8):
    low = int(alpha_in * c_in)
    high = keras.Input((size, size, c_in - low))
    half = -(-size // 2)  # the low frequency of an odd side rounds up
    return high, (keras.Input((half, half, low)) if low else None)


@pytest.mark.parametrize("alpha_in, alpha_out", [(0.0, 0.5), (0.5, 0.5), (0.25, 0.125), (0.5, 0.0)])
@pytest.mark.parametrize("stride", [1, 2])
def test_octave_conv_counts_and_resolutions(alpha_in, alpha_out, stride):
    c_in, c_out, k, size = 32, 16, 3, 8
    xh, xl = _inputs(c_in, alpha_in, size)
    yh, yl = octave_conv(xh, xl, c_out, k, alpha_in, alpha_out, stride, name="oct")
    model = keras.Model([t for t in (xh, xl) if t is not None], [t for t in (yh, yl) if t is not None])
    assert n_params(model) == k * k * c_in * c_out  # the vanilla conv's weights, split four ways
    low_out = int(alpha_out * c_out)
    assert yh.shape == (None, size // stride, size // stride, c_out - low_out)
    if low_out:
        assert yl.shape == (None, size // stride // 2, size // stride // 2, low_out)  # half resolution
    else:
        assert yl is None


def test_octave_conv_paths_match_formula():
    """1x1 kernels: y_h = x_h W_hh + up2(x_l W_lh), y_l = avgpool2(x_h) W_hl + x_l W_ll."""
    xh, xl = _inputs(8, 0.5, size=4)
    yh, yl = octave_conv(xh, xl, 6, 1, 0.5, 0.5, name="oct")
    model = keras.Model([xh, xl], [yh, yl])
    dh, dl = random_input((4, 4, 4), seed=1), random_input((2, 2, 4), seed=2)
    w = {p: np.asarray(model.get_layer(f"oct_{p}").kernel)[0, 0] for p in ("h2h", "h2l", "l2h", "l2l")}
    up = (dl @ w["l2h"]).repeat(2, axis=1).repeat(2, axis=2)
    pooled = dh.reshape(2, 2, 2, 2, 2, 4).mean(axis=(2, 4))
    oh, ol = (np.asarray(t) for t in model([dh, dl]))
    np.testing.assert_allclose(oh, dh @ w["h2h"] + up, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ol, pooled @ w["h2l"] + dl @ w["l2l"], rtol=1e-5, atol=1e-5)


def test_octave_conv_bn_act_and_errors():
    xh, xl = _inputs(16, 0.5)
    yh, yl = octave_conv_bn_act(xh, xl, 16, 3, name="c")
    model = keras.Model([xh, xl], [yh, yl])
    assert n_params(model) == 9 * 16 * 16 + 2 * 16  # BN gamma/beta on 8 high + 8 low channels
    assert {"c_high_bn", "c_low_bn", "c_high_act", "c_low_act"} <= {layer.name for layer in model.layers}
    with pytest.raises(ValueError, match="alpha_out must be"):
        octave_conv(xh, xl, 8, alpha_out=1.0, name="bad")
    with pytest.raises(ValueError, match="x_low must be None"):
        octave_conv(xh, None, 8, alpha_in=0.5, name="bad2")
    with pytest.raises(ValueError, match="stride must be"):
        octave_conv(xh, xl, 8, stride=3, name="bad3")
    with pytest.raises(ValueError, match=r"x_low must have half the height .* \(4, 4\); got \(3, 4\)"):
        octave_conv(xh, keras.Input((3, 4, 8)), 8, name="bad4")


@pytest.mark.parametrize("alpha_in, alpha_out", [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 5])
def test_octave_conv_odd_sides_round_up(alpha_in, alpha_out, stride, size):
    c_in, c_out, k = 32, 16, 3
    xh, xl = _inputs(c_in, alpha_in, size)
    yh, yl = octave_conv(xh, xl, c_out, k, alpha_in, alpha_out, stride, name="oct")
    model = keras.Model([t for t in (xh, xl) if t is not None], [t for t in (yh, yl) if t is not None])
    assert n_params(model) == k * k * c_in * c_out  # cropping and rounding add no weights
    high = -(-size // stride)  # as a stride-2 conv with padding 1: ceil(size / 2)
    assert yh.shape[1:3] == (high, high)
    if yl is not None:
        assert yl.shape[1:3] == (-(-high // 2),) * 2
    data = [random_input(tuple(t.shape[1:]), batch=1, seed=i) for i, t in enumerate(model.inputs)]
    assert all(np.all(np.isfinite(np.asarray(o))) for o in model(data))


def test_octave_conv_odd_side_paths_match_formula():
    """Side 5, 1x1 kernels: the low frequency is 3x3 (the last row/column pooled alone), L->H is the nearest
    resize of 3 to 5 (upsample x2 to 6, crop the bottom/right), on TF and JAX alike."""
    xh, xl = _inputs(8, 0.5, size=5)
    yh, yl = octave_conv(xh, xl, 6, 1, 0.5, 0.5, name="oct")
    model = keras.Model([xh, xl], [yh, yl])
    assert {"oct_l2h_crop"} <= {layer.name for layer in model.layers}
    dh, dl = random_input((5, 5, 4), seed=1), random_input((3, 3, 4), seed=2)
    w = {p: np.asarray(model.get_layer(f"oct_{p}").kernel)[0, 0] for p in ("h2h", "h2l", "l2h", "l2l")}
    nearest = np.array([0, 0, 1, 1, 2])  # floor(i * 3 / 5), PyTorch's interpolate(size=5, mode="nearest")
    up = (dl @ w["l2h"])[:, nearest][:, :, nearest]
    # ceil-mode 2x2 pooling: the last window of a side of 5 holds one row/column, averaged alone
    pooled = np.stack([np.stack([dh[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(1, 2))
                                 for j in range(3)], axis=1) for i in range(3)], axis=1)
    oh, ol = (np.asarray(t) for t in model([dh, dl]))
    np.testing.assert_allclose(oh, dh @ w["h2h"] + up, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ol, pooled @ w["h2l"] + dl @ w["l2l"], rtol=1e-5, atol=1e-5)


def test_octave_conv_even_sides_add_no_layers():
    xh, xl = _inputs(16, 0.5, size=8)
    yh, yl = octave_conv(xh, xl, 16, 3, stride=2, name="oct")
    model = keras.Model([xh, xl], [yh, yl])
    assert not any("crop" in layer.name for layer in model.layers)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert len(pools) == 3 and {layer.padding for layer in pools} == {"valid"}


def _vanilla_bottleneck_params(c_in, f, projection):
    count = c_in * f + 2 * f + 9 * f * f + 2 * f + f * 4 * f + 2 * 4 * f
    return count + (c_in * 4 * f + 2 * 4 * f if projection else 0)


@pytest.mark.parametrize("alpha_in, alpha_out, stride", [(0.0, 0.5, 1), (0.5, 0.5, 2), (0.5, 0.0, 2)])
def test_octave_bottleneck_matches_vanilla_count(alpha_in, alpha_out, stride):
    c_in, f = 32, 16
    xh, xl = _inputs(c_in, alpha_in)
    yh, yl = octave_bottleneck(xh, xl, f, stride, alpha_in=alpha_in, alpha=0.5, alpha_out=alpha_out, name="b")
    model = keras.Model([t for t in (xh, xl) if t is not None], [t for t in (yh, yl) if t is not None])
    assert n_params(model) == _vanilla_bottleneck_params(c_in, f, projection=True)
    size = 8 // stride
    low = int(alpha_out * 4 * f)
    assert yh.shape == (None, size, size, 4 * f - low)
    assert (yl is None) == (alpha_out == 0)
    if yl is not None:
        assert yl.shape == (None, size // 2, size // 2, low)


def test_octave_identity_bottleneck_has_no_projection():
    xh, xl = _inputs(64, 0.5)
    yh, yl = octave_bottleneck(xh, xl, 16, name="b")
    model = keras.Model([xh, xl], [yh, yl])
    assert n_params(model) == _vanilla_bottleneck_params(64, 16, projection=False)
    assert not any(layer.name.startswith("b_shortcut") for layer in model.layers)


@pytest.mark.parametrize("size", [16, 14])  # 14: odd sides after the split, pools round up, L->H crops
def test_octave_model_gradients_and_round_trip(size):
    x = keras.Input((size, size, 3))
    h, l = octave_conv_bn_act(x, None, 16, 3, alpha_in=0.0, alpha_out=0.25, name="first")
    h, l = octave_bottleneck(h, l, 8, stride=2, alpha_in=0.25, alpha=0.25, alpha_out=0.25, name="mid")
    h, l = octave_conv_bn_act(h, l, 8, 3, alpha_in=0.25, alpha_out=0.0, name="last")
    assert l is None and h.shape == (None, size // 2, size // 2, 8)
    model = keras.Model(x, h)
    assert ("last_conv_l2h_crop" in {layer.name for layer in model.layers}) == (size // 2 % 2 == 1)
    data = random_input((size, size, 3))
    assert_all_gradients(model, data)
    keras_round_trip(model, data)


@pytest.mark.parametrize("alpha", [0.125, 0.5])
def test_octave_conv_macs_closed_form(alpha):
    from catalog.flops import count_macs

    c, k, size = 32, 3, 8
    xh, xl = _inputs(c, alpha, size)
    yh, yl = octave_conv(xh, xl, c, k, alpha, alpha, name="oct")
    lo = int(alpha * c)
    hi = c - lo
    # H->H at full resolution; H->L, L->H (before upsampling) and L->L at a quarter of the positions
    expected = size * size * k * k * (hi * hi + (hi * lo + lo * hi + lo * lo) / 4)
    assert count_macs(keras.Model([xh, xl], [yh, yl])) == expected
