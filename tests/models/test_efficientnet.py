"""EfficientNet: compound scaling (repeats, widths), drop-path schedule, registered settings, errors."""

import math

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks.layers import DropPath, make_divisible
from catalog.models.efficientnet import ROWS, VARIANTS
from catalog.registry import get_entry


@pytest.mark.parametrize("name, width, depth, res, dropout, blocks", [
    ("efficientnet_b0", 1.0, 1.0, 224, 0.2, 16), ("efficientnet_b1", 1.0, 1.1, 240, 0.2, 23),
    ("efficientnet_b2", 1.1, 1.2, 260, 0.3, 23), ("efficientnet_b3", 1.2, 1.4, 300, 0.3, 26)])
def test_compound_scaling_table(name, width, depth, res, dropout, blocks):
    assert sum(math.ceil(depth * row[1]) for row in ROWS) == blocks
    entry = get_entry(name)
    assert entry.input_shape == (res, res, 3) and entry.defaults["dropout"] == dropout
    assert entry.defaults["width"] == width and entry.defaults["depth"] == depth


def test_b3_builds_its_scaled_table():
    width, depth, _, dropout, _, _ = VARIANTS["efficientnet_b3"]
    model = catalog.create_model("efficientnet_b3", input_shape=(32, 32, 3), num_classes=4)
    names = [layer.name for layer in model.layers]
    assert sum(n.endswith("_project_conv") for n in names) == 26
    assert sum(n.startswith("stage4_block") and n.endswith("_project_conv") for n in names) == 5  # ceil(3 * 1.4)
    assert model.get_layer("stem_conv").filters == make_divisible(32 * width)
    assert model.get_layer("head_conv_conv").filters == make_divisible(1280 * width)
    assert model.get_layer("head_drop").rate == dropout


def test_widths_round_like_keras():
    assert [make_divisible(c * 1.1) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
        32, 16, 24, 48, 88, 120, 208, 352, 1408]
    assert [make_divisible(c * 1.2) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
        40, 24, 32, 48, 96, 136, 232, 384, 1536]


def test_drop_path_grows_linearly_and_se_uses_input_channels():
    model = catalog.create_model("efficientnet_b0", input_shape=(32, 32, 3), include_top=False)
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, DropPath)}
    # block index i of 16 (0-based) gets 0.2 * i / 16; only stride-1 repeats have a residual.
    assert rates["stage2_block2_drop"] == pytest.approx(0.2 * 2 / 16)
    assert rates["stage6_block4_drop"] == pytest.approx(0.2 * 14 / 16)
    assert len(rates) == 16 - 7
    assert model.get_layer("stage3_block1_se_reduce").filters == 6  # int(24 * 0.25)
    assert model.get_layer("stage1_block1_se_reduce").filters == 8  # int(32 * 0.25), no expansion
    off = catalog.create_model("efficientnet_b0", input_shape=(32, 32, 3), include_top=False, drop_path_rate=0.0)
    assert not any(isinstance(layer, DropPath) for layer in off.layers)


@pytest.mark.parametrize("kwargs, match", [(dict(width=0), "width must be"), (dict(depth=-1), "depth must be"),
                                           (dict(drop_path_rate=1.0), "drop_path_rate must be")])
def test_bad_knobs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("efficientnet_b0", input_shape=(32, 32, 3), **kwargs)


def test_output_parity_with_keras_applications():
    """keras.applications EfficientNetB0 (weights=None, no download): same weights in the same order and,
    on an input already scaled as its Rescaling(1/255) + (un-adapted) Normalization layers do, same outputs."""
    shape = (64, 64, 3)
    ref = keras.applications.EfficientNetB0(weights=None, input_shape=shape, classes=10,
                                            classifier_activation=None)
    ours = catalog.create_model("efficientnet_b0", input_shape=shape, num_classes=10, classifier_activation=None)
    assert [tuple(w.shape) for w in ours.trainable_weights] == [tuple(w.shape) for w in ref.trainable_weights]
    preprocessing = {id(w) for layer in ref.layers if isinstance(layer, keras.layers.Normalization)
                     for w in layer.weights}
    ours.set_weights([np.asarray(w) for w in ref.weights if id(w) not in preprocessing])
    x = 255 * np.random.default_rng(3).random((2, *shape)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x / 255, training=False)), np.asarray(ref(x, training=False)),
                               rtol=1e-4, atol=1e-4)
