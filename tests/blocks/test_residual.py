"""Residual blocks: shapes, exact closed-form parameter counts, strides, drop-path, attention, round trip."""

import functools

import keras
import numpy as np
import pytest

from catalog.blocks import attention, residual
from helpers import keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax


def block_model(fn, in_shape, *args, **kwargs):
    x = keras.Input(in_shape)
    return keras.Model(x, fn(x, *args, name="b", **kwargs))


def conv(k, cin, cout, groups=1, bias=False):
    return k * k * (cin // groups) * cout + (cout if bias else 0)


def bn(c):
    return 2 * c  # gamma and beta (moving statistics are not trainable)


@pytest.mark.parametrize("cin, filters, stride, hw_in, hw_out", [(16, 16, 1, 8, 8), (8, 16, 2, 15, 8),
                                                                 (8, 16, 1, 8, 8)])
def test_basic_shape_and_count(cin, filters, stride, hw_in, hw_out):
    model = block_model(residual.basic, (hw_in, hw_in, cin), filters, stride)
    assert model.output.shape == (None, hw_out, hw_out, filters)
    projection = conv(1, cin, filters) + bn(filters) if (stride != 1 or cin != filters) else 0
    assert n_params(model) == conv(3, cin, filters) + bn(filters) + conv(3, filters, filters) + bn(filters) + projection
    names = {layer.name for layer in model.layers}
    assert ("b_shortcut_conv" in names) == bool(projection)
    assert {"b_conv1_conv", "b_conv2_bn", "b_add", "b_out"} <= names


@pytest.mark.parametrize("cin, filters, stride, groups, base_width", [
    (64, 64, 1, 1, 64),     # ResNet-50 stage1 block1: w = 64, projection 64 -> 256
    (256, 64, 1, 1, 64),    # identity shortcut
    (256, 128, 2, 1, 64),   # strided projection
    (64, 64, 2, 32, 4),     # ResNeXt 32x4d: w = int(64 * 4 / 64) * 32 = 128
    (64, 64, 1, 1, 128),    # Wide ResNet-50-2: w = 128
])
def test_bottleneck_shape_and_count(cin, filters, stride, groups, base_width):
    model = block_model(residual.bottleneck, (9, 9, cin), filters, stride, groups=groups, base_width=base_width)
    w = int(filters * base_width / 64) * groups
    out = 4 * filters
    hw = 5 if stride == 2 else 9
    assert model.output.shape == (None, hw, hw, out)
    projection = conv(1, cin, out) + bn(out) if (stride != 1 or cin != out) else 0
    expected = (conv(1, cin, w) + bn(w) + conv(3, w, w, groups) + bn(w) + conv(1, w, out) + bn(out) + projection)
    assert n_params(model) == expected
    assert model.get_layer("b_conv2_conv").groups == groups


def test_grouped_and_wide_are_the_bottleneck():
    x = keras.Input((8, 8, 64))
    rx = keras.Model(x, residual.grouped_bottleneck(x, 64, cardinality=32, base_width=4, name="b"))
    assert rx.get_layer("b_conv2_conv").groups == 32 and rx.get_layer("b_conv2_conv").filters == 128
    wide = keras.Model(x, residual.wide_bottleneck(x, 64, width_factor=2, name="w"))
    assert wide.get_layer("w_conv1_conv").filters == 128 and wide.output.shape[-1] == 256
    # Wide ResNet-50-2 stage1 block1: 64*128 + 9*128*128 + 128*256 + 64*256 (projection) + BN.
    assert n_params(wide) == 64 * 128 + 9 * 128 * 128 + 128 * 256 + 64 * 256 + 2 * (128 + 128 + 256 + 256)


def test_stride_on_1x1_moves_the_stride_not_the_count():
    x = keras.Input((16, 16, 64))
    v15 = keras.Model(x, residual.bottleneck(x, 32, 2, name="b"))
    v1 = keras.Model(x, residual.bottleneck(x, 32, 2, stride_on_1x1=True, name="b"))
    assert v15.get_layer("b_conv1_conv").strides == (1, 1) and v15.get_layer("b_conv2_conv").strides == (2, 2)
    assert v1.get_layer("b_conv1_conv").strides == (2, 2) and v1.get_layer("b_conv2_conv").strides == (1, 1)
    assert n_params(v1) == n_params(v15)
    assert v1.output.shape == v15.output.shape == (None, 8, 8, 128)
    # v1.5 pads a strided 3x3 by 1 on every side, as PyTorch does.
    assert v15.get_layer("b_conv2_pad").padding == ((1, 1), (1, 1))


def test_senet154_bottleneck_reduce_first_and_3x3_shortcut():
    # SENet-154 stage 2 block 1 at 1/4 width: 1x1 to w/2, grouped 3x3 (stride 2) to w, 1x1 to 4F; 3x3/2 projection.
    cin, filters, groups = 64, 32, 16
    model = block_model(residual.bottleneck, (9, 9, cin), filters, 2, groups=groups, base_width=4, reduce_first=2,
                        shortcut_kernel=3)
    w, out = 32, 4 * filters
    assert w == int(filters * 4 / 64) * groups == 32
    assert model.get_layer("b_conv1_conv").filters == w // 2
    assert model.get_layer("b_conv2_conv").filters == w and model.get_layer("b_conv2_conv").groups == groups
    sc = model.get_layer("b_shortcut_conv")
    assert sc.kernel_size == (3, 3) and sc.strides == (2, 2)
    assert model.get_layer("b_shortcut_pad").padding == ((1, 1), (1, 1))  # PyTorch's padding=1
    assert model.output.shape == (None, 5, 5, out)
    assert n_params(model) == (conv(1, cin, w // 2) + bn(w // 2) + conv(3, w // 2, w, groups) + bn(w)
                               + conv(1, w, out) + bn(out) + conv(3, cin, out) + bn(out))


def test_shortcut_kernel_defaults_keep_the_1x1_projection():
    model = block_model(residual.basic, (8, 8, 8), 16, 2)
    assert model.get_layer("b_shortcut_conv").kernel_size == (1, 1)
    assert "b_shortcut_pad" not in {layer.name for layer in model.layers}
    wide = block_model(residual.basic, (8, 8, 8), 16, 2, shortcut_kernel=3)
    assert n_params(wide) - n_params(model) == conv(3, 8, 16) - conv(1, 8, 16)
    assert wide.output.shape == model.output.shape == (None, 4, 4, 16)


def test_zero_pad_shortcut_is_parameter_free_subsample_and_pad():
    model = block_model(residual.basic, (8, 8, 4), 8, 2, shortcut="zero_pad")
    assert n_params(model) == conv(3, 4, 8) + bn(8) + conv(3, 8, 8) + bn(8)  # option A: no shortcut weights
    x = keras.Input((7, 7, 4))
    sc = keras.Model(x, residual._shortcut(x, 8, 2, "zero_pad", "s"))
    data = random_input((7, 7, 4))
    expected = np.pad(data[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (2, 2)))
    np.testing.assert_array_equal(np.asarray(sc(data)), expected)


@pytest.mark.parametrize("cin, filters, stride, use_bias", [(16, 16, 1, False), (16, 32, 2, False),
                                                            (16, 32, 2, True)])
def test_preact_basic_shape_and_count(cin, filters, stride, use_bias):
    model = block_model(residual.preact_basic, (8, 8, cin), filters, stride, use_bias=use_bias)
    assert model.output.shape == (None, 8 // stride, 8 // stride, filters)
    projection = conv(1, cin, filters, bias=use_bias) if (stride != 1 or cin != filters) else 0
    expected = bn(cin) + conv(3, cin, filters) + bn(filters) + conv(3, filters, filters, bias=use_bias) + projection
    assert n_params(model) == expected
    assert model.layers[-1].name == "b_add"  # no activation after the addition


@pytest.mark.parametrize("cin, filters, stride", [(64, 64, 1), (256, 64, 1), (256, 64, 2)])
def test_preact_bottleneck_shape_and_count(cin, filters, stride):
    model = block_model(residual.preact_bottleneck, (8, 8, cin), filters, stride)
    out = 4 * filters
    assert model.output.shape == (None, 8 // stride, 8 // stride, out)
    projection = conv(1, cin, out, bias=True) if cin != out else 0  # keras.applications: biased projection
    expected = (bn(cin) + conv(1, cin, filters) + bn(filters) + conv(3, filters, filters) + bn(filters)
                + conv(1, filters, out, bias=True) + projection)
    assert n_params(model) == expected
    names = {layer.name for layer in model.layers}
    assert ("b_shortcut_pool" in names) == (stride == 2 and cin == out)  # strided identity subsamples


def test_preact_bottleneck_strided_identity_subsamples():
    x = keras.Input((7, 7, 16))
    model = keras.Model(x, residual.preact_bottleneck(x, 4, 2, name="b"))
    conv3 = model.get_layer("b_conv3_conv")
    conv3.set_weights([np.zeros_like(w) for w in conv3.get_weights()])  # residual branch = 0
    data = random_input((7, 7, 16))
    np.testing.assert_allclose(np.asarray(model(data, training=False)), data[:, ::2, ::2, :], atol=1e-6)


@pytest.mark.parametrize("fn, kwargs", [(residual.basic, {}), (residual.bottleneck, {}),
                                        (residual.preact_basic, {}), (residual.preact_bottleneck, {})])
def test_se_attention_on_the_residual_branch(fn, kwargs):
    plain = block_model(fn, (8, 8, 64), 16)
    with_se = block_model(fn, (8, 8, 64), 16, attention=functools.partial(attention.se, ratio=4))
    c = with_se.output.shape[-1]
    assert n_params(with_se) - n_params(plain) == 2 * c * (c // 4) + c // 4 + c
    scale = with_se.get_layer("b_se_scale")
    add = with_se.get_layer("b_add")
    assert any(t is scale.output for t in add.input)  # SE output feeds the addition directly


def test_drop_path_identity_at_inference_per_sample_in_training():
    x = keras.Input((6, 6, 8))
    dropped = keras.Model(x, residual.preact_basic(x, 8, drop_path_rate=0.5, name="b"))
    plain = keras.Model(x, residual.preact_basic(x, 8, name="b"))
    plain.set_weights(dropped.get_weights())
    assert dropped.get_layer("b_drop_path").rate == 0.5
    data = random_input((6, 6, 8), batch=16)
    np.testing.assert_allclose(np.asarray(dropped(data, training=False)), np.asarray(plain(data, training=False)),
                               rtol=1e-6, atol=1e-6)
    branch = np.asarray(plain(data, training=True)) - data  # no activation after the addition
    out = np.asarray(dropped(data, training=True))
    kept = [np.allclose(o, d + 2.0 * b, atol=1e-4) for o, d, b in zip(out, data, branch)]
    gone = [np.allclose(o, d, atol=1e-6) for o, d in zip(out, data)]
    assert all(k != g for k, g in zip(kept, gone)), "each sample keeps (scaled 1/(1-p)) or drops its branch"
    assert 0 < sum(kept) < len(kept)


def test_bad_arguments_raise():
    x = keras.Input((8, 8, 16))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        residual.basic(x, 16, 3, name="a")
    with pytest.raises(ValueError, match="filters must be a positive integer"):
        residual.bottleneck(x, 0, name="b")
    with pytest.raises(ValueError, match="shortcut must be one of"):
        residual.basic(x, 32, 2, shortcut="conv", name="c")
    with pytest.raises(ValueError, match="attention must be None or a callable"):
        residual.basic(x, 16, attention="se", name="d")
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        residual.bottleneck(x, 16, groups=0, name="e")
    with pytest.raises(ValueError, match="reduce_first=4 leaves 4 channels"):
        residual.bottleneck(x, 16, groups=8, base_width=8, reduce_first=4, name="f")
    with pytest.raises(ValueError, match="shortcut_kernel must be a positive odd integer"):
        residual.bottleneck(x, 16, 2, shortcut_kernel=2, name="g")


def test_round_trip_of_a_model_made_of_residual_blocks():
    x = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    y = residual.basic(y, 8, name="s1")
    y = residual.basic(y, 16, 2, shortcut="zero_pad", drop_path_rate=0.1, name="s2")
    y = residual.bottleneck(y, 8, 2, groups=2, base_width=32, attention=functools.partial(attention.se, ratio=4),
                            name="s3")
    y = residual.preact_basic(y, 32, dropout=0.1, name="s4")
    y = residual.preact_bottleneck(y, 8, 2, drop_path_rate=0.1, name="s5")
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D(name="pool")(y))
    assert model.output.shape == (None, 32)
    keras_round_trip(model, random_input((16, 16, 3)))
