"""MobileNet v1/v2/v3: width knobs, closed-form counts, registered settings, make_divisible rounding, errors."""

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks.layers import make_divisible
from catalog.models.mobilenet import V1_STAGES, V2_ROWS, V3_LARGE, V3_SMALL
from catalog.registry import count_params, get_entry
from helpers import random_input


def v1_params(alpha, classes=1000, repeats_14x14=5):
    """Closed form of the keras.applications MobileNet layout: stem, 13 separable convs, 1x1-conv head."""
    c = int(32 * alpha)
    total = 27 * c + 2 * c
    for s, stage in enumerate(V1_STAGES):
        for filters, _ in (stage[:1 + repeats_14x14] if s == 3 else stage):
            out = int(filters * alpha)
            total += 9 * c + 2 * c + c * out + 2 * out
            c = out
    return total + c * classes + classes


def v2_params(alpha, classes=1000):
    c = make_divisible(32 * alpha)
    total = 27 * c + 2 * c
    for t, ch, n, _ in V2_ROWS:
        out = make_divisible(int(ch * alpha))
        for _ in range(n):
            e = t * c
            total += (c * e + 2 * e if t != 1 else 0) + 9 * e + 2 * e + e * out + 2 * out
            c = out
    last = make_divisible(1280 * alpha) if alpha > 1 else 1280
    return total + c * last + 2 * last + last * classes + classes


def test_v1_closed_form_equals_keras_applications_count():
    assert v1_params(1.0) == 4_231_976  # keras.applications MobileNet trainable weights
    for name in ("mobilenet_v1_0_75_224", "mobilenet_v1_0_5_224", "mobilenet_v1_0_25_224"):
        entry = get_entry(name)
        assert v1_params(entry.defaults["alpha"]) == entry.reference_params


def test_v1_width_knob_on_a_small_model():
    model = catalog.create_model("mobilenet_v1", alpha=0.25, input_shape=(32, 32, 3), num_classes=10)
    assert count_params(model) == v1_params(0.25, classes=10)
    assert model.get_layer("stem_conv").filters == 8
    assert model.get_layer("stage5_block2_pw_conv").filters == 256
    assert model.get_layer("stage1_block1_dw_act").get_config()["max_value"] == 6.0
    assert model.get_layer("head_drop").rate == 1e-3


def test_v1_registered_settings():
    names = catalog.list_models("mobilenet_v1*")
    assert names == ["mobilenet_v1", "mobilenet_v1_0_25_224", "mobilenet_v1_0_5_224", "mobilenet_v1_0_75_224",
                     "mobilenet_v1_1_0_128", "mobilenet_v1_1_0_160", "mobilenet_v1_1_0_192", "mobilenet_v1_shallow"]
    for name in names[1:-1]:
        alpha, res = name[len("mobilenet_v1_"):].rsplit("_", 1)
        entry = get_entry(name)
        assert entry.defaults["alpha"] == float(alpha.replace("_", "."))
        assert entry.input_shape == (int(res), int(res), 3)


def test_v1_shallow_closed_form_and_paper_figures():
    # Howard et al. 2017, Section 4.1 / Table 5: the five 14x14x512 separable layers removed; 2.9M, 307M MACs.
    entry = get_entry("mobilenet_v1_shallow")
    assert entry.defaults == {"repeats_14x14": 0} and entry.input_shape == (224, 224, 3)
    block = 9 * 512 + 2 * 512 + 512 * 512 + 2 * 512  # depthwise + BN, pointwise + BN
    assert v1_params(1.0, repeats_14x14=0) == 4_231_976 - 5 * block == 2_887_976
    assert abs(2_887_976 - entry.reference_params) <= entry.reference_params_rtol * entry.reference_params
    assert entry.reference_params_rtol * entry.reference_params == pytest.approx(0.05e6)  # 2.9M to 0.1M
    # MACs of the five blocks at 14x14: 196 * (9 * 512 + 512 * 512); 569M - 261.4M is the paper's 307M.
    assert 569e6 - 5 * 196 * (9 * 512 + 512 * 512) == pytest.approx(entry.reference_macs, rel=5e-3)


@pytest.mark.parametrize("repeats", [0, 2, 5])
def test_v1_repeats_14x14_trims_stage4(repeats):
    model = catalog.create_model("mobilenet_v1", alpha=0.25, repeats_14x14=repeats, input_shape=(32, 32, 3),
                                 num_classes=10)
    names = [layer.name for layer in model.layers]
    blocks = sorted({n.rsplit("_", 2)[0] for n in names if n.endswith("_pw_conv")})
    assert len(blocks) == 8 + repeats  # separable convs: 13 with all five repeats
    assert [b for b in blocks if b.startswith("stage4_")] == [f"stage4_block{i}" for i in range(1, repeats + 2)]
    full = len(catalog.create_model("mobilenet_v1", alpha=0.25, input_shape=(32, 32, 3), num_classes=10).layers)
    assert len(names) == full - 6 * (5 - repeats)  # each block: dw conv, BN, ReLU6, pw conv, BN, ReLU6
    assert count_params(model) == v1_params(0.25, classes=10, repeats_14x14=repeats)
    assert model.get_layer(f"stage4_block{repeats + 1}_pw_act").output.shape[1:] == (2, 2, 128)


def test_v1_repeats_14x14_bounds():
    for repeats in (-1, 6, 2.0, True, None):
        with pytest.raises(ValueError, match="repeats_14x14 must be an integer from 0 to 5"):
            catalog.create_model("mobilenet_v1", repeats_14x14=repeats, input_shape=(32, 32, 3))


def test_v2_closed_form_and_last_channel_rule():
    assert v2_params(1.0) == 3_504_872
    for name in catalog.list_models("mobilenet_v2_*"):
        entry = get_entry(name)
        assert v2_params(entry.defaults["alpha"]) == entry.reference_params, name
    wide = catalog.create_model("mobilenet_v2", alpha=1.4, input_shape=(32, 32, 3), include_top=False)
    assert wide.get_layer("head_conv_conv").filters == 1792  # make_divisible(1280 * 1.4)
    thin = catalog.create_model("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), num_classes=5)
    assert thin.get_layer("head_conv_conv").filters == 1280  # 1280 unless alpha > 1
    assert count_params(thin) == v2_params(0.35, classes=5)
    # keras rounds int(c * alpha): 16 * 0.35 -> 5 -> 8; 32 * 0.35 -> 11 -> 16 (8 < 0.9 * 11); stem 11.2 -> 16
    assert thin.get_layer("stage1_block1_project_conv").filters == 8
    assert thin.get_layer("stage3_block1_project_conv").filters == 16
    assert thin.get_layer("stem_conv").filters == 16
    adds = [layer.name for layer in thin.layers if layer.name.endswith("_add")]
    assert len(adds) == sum(n - 1 for t, c, n, s in V2_ROWS)  # every repeat after the first is residual
    assert thin.get_layer("stem_bn").momentum == 0.999 and thin.get_layer("stem_bn").epsilon == 1e-3


@pytest.mark.parametrize("config, rows, head", [("large", V3_LARGE, 1280), ("small", V3_SMALL, 1024)])
def test_v3_structure(config, rows, head):
    model = catalog.create_model(f"mobilenet_v3_{config}", input_shape=(32, 32, 3), num_classes=3)
    names = [layer.name for layer in model.layers]
    assert sum(n.endswith("_se_gate") for n in names) == sum(row[3] for row in rows)
    assert model.get_layer("head_fc1").units == head
    assert model.get_layer("head_conv_conv").filters == 6 * rows[-1][2]
    assert model.get_layer("head_drop").rate == 0.2
    assert model.get_layer("stem_bn").epsilon == 1e-3


def test_v3_width_knob():
    model = catalog.create_model("mobilenet_v3_small", alpha=0.5, input_shape=(32, 32, 3), include_top=False)
    assert model.get_layer("block4_expand_conv").filters == make_divisible(96 * 0.5)
    assert model.get_layer("block4_se_reduce").filters == make_divisible(make_divisible(96 * 0.5) / 4)
    assert model.get_layer("head_conv_conv").filters == 6 * make_divisible(96 * 0.5)


@pytest.mark.parametrize("name, kwargs, match", [
    ("mobilenet_v1", dict(alpha=0), "alpha must be"), ("mobilenet_v2", dict(alpha="wide"), "alpha must be"),
    ("mobilenet_v3_large", dict(config="medium"), "config must be"),
    ("mobilenet_v3_small", dict(alpha=-1.0), "alpha must be")])
def test_bad_knobs(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model(name, input_shape=(32, 32, 3), **kwargs)


@pytest.mark.parametrize("name, reference", [("mobilenet_v1", "MobileNet"), ("mobilenet_v2", "MobileNetV2")])
def test_output_parity_with_keras_applications(name, reference):
    """Same weights in the same order as keras.applications (weights=None, no download), same outputs."""
    shape, alpha = (64, 64, 3), 0.5
    ref = getattr(keras.applications, reference)(weights=None, alpha=alpha, input_shape=shape, classes=10,
                                                  classifier_activation=None)
    ours = catalog.create_model(name, alpha=alpha, input_shape=shape, num_classes=10, classifier_activation=None)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in ref.weights]
    ours.set_weights(ref.get_weights())
    x = random_input(shape, batch=2, seed=3)
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), np.asarray(ref(x, training=False)),
                               rtol=1e-4, atol=1e-4)
