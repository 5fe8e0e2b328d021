"""Convolutional highway network for CIFAR: the authors' 19-layer layout and count, the gates' initial
bias, a closed gate carrying its input, knobs and their errors.

The full-size reference count of highway_cifar19 is checked in tests/test_models.py.
"""

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks.operators import HighwayGate
from catalog.models.highway import PARAMS
from catalog.registry import count_params
from helpers import random_input


def closed_form(widths, depths, head_width, classes):
    """Plain 3x3 conv with bias per stage, highway layers of two 3x3 convs with bias (H and T), the 1x1
    conv with bias, FC."""
    total, cin = 0, 3
    for width, depth in zip(widths, depths):
        total += 9 * cin * width + width + depth * 2 * (9 * width * width + width)
        cin = width
    return total + cin * head_width + head_width + head_width * classes + classes


def test_highway_cifar19_is_the_authors_caffe_model():
    assert closed_form((32, 80, 128), (4, 5, 5), 100, 10) == PARAMS["highway_cifar19"] == 2_256_838
    # the Caffe file's FC has 100 outputs: the same net with 100 classes has its exact count
    model = catalog.create_model("highway_cifar19", num_classes=100)
    assert count_params(model) == closed_form((32, 80, 128), (4, 5, 5), 100, 100) == 2_265_928
    assert round(PARAMS["highway_cifar19"] / 1e6, 1) == 2.3  # Srivastava et al. 2015 Table 1: ~2.3M
    gates = [layer for layer in model.layers if isinstance(layer, HighwayGate)]
    plain = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and not layer.name.endswith(("_h", "_t"))]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert (len(gates), len(plain), len(dense)) == (14, 4, 1)
    assert len(gates) + len(plain) + len(dense) == 19
    assert [model.get_layer(f"stage{s}_highway1").output.shape[1:] for s in (1, 2, 3)] == [
        (32, 32, 32), (16, 16, 80), (8, 8, 128)]
    assert model.get_layer("final_conv").kernel_size == (1, 1)
    assert [model.get_layer(n).rate for n in ("input_drop", "stage1_drop", "stage2_drop", "head_drop")] == [0.2] * 4
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_gates_start_with_bias_minus_two():
    model = catalog.create_model("highway_cifar19", widths=(8, 16), depths=(2, 1), head_width=12)
    biases = [np.asarray(layer.bias) for layer in model.layers if layer.name.endswith("_t")]
    assert len(biases) == 3 and all(np.all(b == -2.0) for b in biases)
    assert count_params(model) == closed_form((8, 16), (2, 1), 12, 10)
    other = catalog.create_model("highway_cifar19", widths=(8, 16), depths=(2, 1), head_width=12, gate_bias=-3.0)
    assert np.all(np.asarray(other.get_layer("stage2_highway1_t").bias) == -3.0)


@pytest.mark.jax
def test_closed_gates_carry_the_input():
    """With every transform gate shut (T = sigmoid(-100) = 0) each highway layer is the identity: the net
    equals the same net without highway layers."""
    small = dict(widths=(8, 16), head_width=12, input_shape=(16, 16, 3))
    gated = catalog.create_model("highway_cifar19", depths=(2, 3), gate_bias=-100.0, **small)
    plain = catalog.create_model("highway_cifar19", depths=(0, 0), **small)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(gated.get_layer(layer.name).get_weights())
    x = random_input((16, 16, 3), batch=3, seed=4)
    np.testing.assert_allclose(np.asarray(gated(x)), np.asarray(plain(x)), rtol=1e-5, atol=1e-6)


def test_input_size_follows_the_stages():
    assert catalog.create_model("highway_cifar19", input_shape=(4, 4, 3)).output.shape == (None, 10)
    with pytest.raises(ValueError, match="at least 4"):
        catalog.create_model("highway_cifar19", input_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="at least 8"):
        catalog.create_model("highway_cifar19", widths=(8, 8, 8, 8), depths=(1, 1, 1, 1), input_shape=(4, 4, 3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(widths=()), "widths"), (dict(depths=(1, 2)), "depths"), (dict(head_width=0), "head_width"),
    (dict(block_dropout=1.0), "block_dropout")])
def test_bad_keywords_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("highway_cifar19", **kwargs)
