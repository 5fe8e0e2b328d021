"""Inception v3 / v4 / Inception-ResNet-v2 and Xception: layout facts, keras.applications parity, knobs."""

import collections
import re

import keras
import numpy as np
import pytest

import catalog
from catalog.registry import count_params
from helpers import random_input

# keras.applications' builders at their minimum sizes (weights=None: nothing is downloaded).
KERAS_APPLICATIONS = {
    "inception_v3": ("InceptionV3", 75),
    "xception": ("Xception", 71),
    "inception_resnet_v2": ("InceptionResNetV2", 75),
}


@pytest.mark.parametrize("name", [
    "inception_v3", "xception", pytest.param("inception_resnet_v2", marks=pytest.mark.slow)])
def test_same_weights_same_outputs_as_keras_applications(name):
    """Weights in keras.applications' order and shapes; loading them gives keras.applications' outputs."""
    builder, size = KERAS_APPLICATIONS[name]
    shape = (size, size, 3)
    ref = getattr(keras.applications, builder)(weights=None, include_top=False, input_shape=shape)
    mine = catalog.create_model(name, include_top=False, input_shape=shape)
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in ref.weights]
    rng = np.random.default_rng(0)
    weights = [w + 0.1 * rng.standard_normal(w.shape).astype("float32") if w.ndim == 1 else w
               for w in ref.get_weights()]  # perturb BatchNorm statistics so they matter
    weights = [np.abs(w) + 0.5 if "variance" in v.path else w for w, v in zip(weights, ref.weights)]
    ref.set_weights(weights)
    mine.set_weights(weights)
    x = random_input(shape, batch=1)
    np.testing.assert_allclose(np.asarray(mine(x, training=False)), np.asarray(ref(x, training=False)),
                               rtol=1e-4, atol=1e-4)


def test_inception_v3_batchnorm_has_no_scale():
    model = catalog.create_model("inception_v3", include_top=False, input_shape=(75, 75, 3))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 94  # one per conv
    assert all(not bn.scale and bn.epsilon == 1e-3 for bn in bns)
    assert count_params(model) == 23_817_352 - (2048 * 1000 + 1000)  # the reference minus the FC


def test_inception_v4_layout():
    feats = catalog.create_model("inception_v4", features_only=True, input_shape=(75, 75, 3))
    assert [int(t.shape[-1]) for t in feats.outputs] == [64, 160, 384, 1024, 1536]  # timm feature_info
    # 75 -> 37 -> 35 (stem) -> 17 (mixed3a) -> 15 -> 7 (mixed5a, A) -> 3 (Reduction-A, B) -> 1 (C)
    assert [t.shape[1] for t in feats.outputs] == [35, 17, 7, 3, 1]
    modules = [re.match(r"(stage\d)_block\d+_concat$", layer.name) for layer in feats.layers]
    counts = collections.Counter(m.group(1) for m in modules if m)
    assert counts == {"stage1": 4, "stage2": 7, "stage3": 3}  # 4 x A, 7 x B, 3 x C
    bn = feats.get_layer("stem_conv1_bn")
    assert bn.scale and bn.epsilon == 1e-3


def test_inception_resnet_v2_residual_scales():
    model = catalog.create_model("inception_resnet_v2", include_top=False, input_shape=(75, 75, 3))
    scales = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Rescaling):
            scales.setdefault(layer.name.split("_")[0], []).append(layer.scale)
    assert scales == {"block35": [0.17] * 10, "block17": [0.1] * 20, "block8": [0.2] * 9 + [1.0]}
    names = {layer.name for layer in model.layers}
    assert "block8_9_act" in names and "block8_10_act" not in names  # the last block is linear


@pytest.mark.parametrize("name", ["inception_v3", "inception_v4", "inception_resnet_v2", "xception"])
def test_minimum_input_size_is_enforced(name):
    minimum = catalog.registry.get_entry(name).min_input_size
    assert minimum == (71 if name == "xception" else 75)
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        catalog.create_model(name, input_shape=(minimum - 1, minimum - 1, 3))


def test_knob_errors():
    with pytest.raises(ValueError, match="version must be one of"):
        catalog.create_model("inception_v3", version="v2")
    with pytest.raises(ValueError, match="middle_blocks must be"):
        catalog.create_model("xception", middle_blocks=-1)


def test_xception_middle_blocks_knob():
    """Each middle-flow block is 3 x (depthwise 3x3 + pointwise 728x728 + BN): 3 * (9*728 + 728*728 + 2*728)."""
    full = count_params(catalog.create_model("xception", include_top=False, input_shape=(71, 71, 3)))
    short = count_params(catalog.create_model("xception", include_top=False, input_shape=(71, 71, 3),
                                              middle_blocks=6))
    assert full - short == 2 * 3 * (9 * 728 + 728 * 728 + 2 * 728)
