"""BN-Inception: the closed-form count against the reference's, the 28/14/7 grid, the modules of Figure 5."""

import keras
import pytest

import catalog
from catalog.models.bn_inception import MODULES, REFERENCE_CONV_BIASES, REFERENCE_PARAMS
from catalog.registry import count_params


def conv(cin, cout, k):
    return k * k * cin * cout + 2 * cout  # no bias; BatchNorm gamma and beta


@pytest.fixture(scope="module")
def model():
    return catalog.create_model("bn_inception")


def test_closed_form_parameter_count(model):
    total, biases, cin = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3), 64 + 64 + 192, 192
    for c1, c3r, c3, d3r, d3, _, proj, _ in MODULES.values():
        total += (conv(cin, c1, 1) if c1 else 0) + conv(cin, c3r, 1) + conv(c3r, c3, 3) + conv(cin, d3r, 1)
        total += conv(d3r, d3, 3) + conv(d3, d3, 3) + (conv(cin, proj, 1) if proj else 0)
        biases += c1 + c3r + c3 + d3r + 2 * d3 + proj
        cin = c1 + c3 + d3 + (proj or cin)
    total += cin * 1000 + 1000
    assert cin == 1024
    assert biases == REFERENCE_CONV_BIASES == 10_016  # what Cadene's port carries before each BatchNorm
    assert total == REFERENCE_PARAMS - REFERENCE_CONV_BIASES == 11_285_224
    assert count_params(model) == total


def test_grid_sizes_at_224(model):
    sizes = {name: model.get_layer(f"{name}_concat").output.shape[1:] for name in MODULES}
    assert model.get_layer("pool2").output.shape[1:] == (28, 28, 192)
    assert sizes["inception3a"] == (28, 28, 256)
    assert sizes["inception3b"] == (28, 28, 320)
    assert sizes["inception3c"] == (14, 14, 576)
    assert [sizes[f"inception4{m}"] for m in "abcd"] == [(14, 14, 576)] * 2 + [(14, 14, 608)] * 2
    assert sizes["inception4e"] == (7, 7, 1056)
    assert sizes["inception5a"] == sizes["inception5b"] == (7, 7, 1024)


def test_module_3a_branches(model):
    names = {layer.name for layer in model.layers if layer.name.startswith("inception3a_")}
    convs = sorted(n[:-len("_conv")] for n in names if n.endswith("_conv"))
    # 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 (the factorized 5x5) | avg pool -> 1x1
    assert convs == ["inception3a_branch0_conv1", "inception3a_branch1_conv1", "inception3a_branch1_conv2",
                     "inception3a_branch2_conv1", "inception3a_branch2_conv2", "inception3a_branch2_conv3",
                     "inception3a_branch3_conv2"]
    assert [model.get_layer(f"{c}_conv").filters for c in convs] == [64, 64, 64, 64, 96, 96, 32]
    assert not any(model.get_layer(f"{c}_conv").kernel_size == (5, 5) for c in convs)
    assert isinstance(model.get_layer("inception3a_branch3_pool"), keras.layers.AveragePooling2D)
    assert isinstance(model.get_layer("inception5b_branch3_pool"), keras.layers.MaxPooling2D)
    # 3c passes the max-pooled input through: 3x3 (160) + double 3x3 (96) + 320 = 576
    concat = model.get_layer("inception3c_concat")
    assert [t.shape[-1] for t in concat.input] == [160, 96, 320]
    assert isinstance(model.get_layer("inception3c_branch2_pool"), keras.layers.MaxPooling2D)
    assert not any(layer.name.startswith("inception3c_branch3") for layer in model.layers)
    assert model.get_layer("head_fc").input.shape[-1] == 1024
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_features_at_64x64():
    feats = catalog.create_model("bn_inception", features_only=True, input_shape=(64, 64, 3))
    assert [int(t.shape[-1]) for t in feats.outputs] == [64, 192, 320, 608, 1024]
    assert [t.shape[1] for t in feats.outputs] == [32, 16, 8, 4, 2]  # strides 2, 4, 8, 16, 32


def test_dropout_error():
    with pytest.raises(ValueError, match="dropout must be a number in"):
        catalog.create_model("bn_inception", dropout=1.5)
