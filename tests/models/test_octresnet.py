"""OctResNet family facts: vanilla parameter count at every alpha, frequencies and resolutions, MACs,
input sizes that are not multiples of 32."""

import keras
import numpy as np
import pytest

import catalog
from catalog.flops import count_macs
from catalog.registry import count_params, get_entry

DEPTHS = (1, 1, 2, 1)
SMALL = dict(width=16, depths=DEPTHS, input_shape=(64, 64, 3), num_classes=10)


def test_registered_alphas():
    assert {n: get_entry(n).defaults["alpha"] for n in catalog.list_models("oct_resnet50*")} == {
        "oct_resnet50": 0.5, "oct_resnet50_a250": 0.25, "oct_resnet50_a125": 0.125}


def test_parameter_count_is_the_vanilla_one_at_every_alpha():
    vanilla = count_params(catalog.create_model("oct_resnet50", alpha=0.0, **SMALL))
    # ResNet v1.5 layout at width 16: stem, bottlenecks, one projection per stage, classifier
    w, expected, c_in = 16, 7 * 7 * 3 * 16 + 2 * 16, 16
    for s, depth in enumerate(DEPTHS):
        f = w * 2 ** s
        for b in range(depth):
            expected += c_in * f + 9 * f * f + 4 * f * f + 2 * (f + f + 4 * f)
            if b == 0:
                expected += c_in * 4 * f + 2 * 4 * f
            c_in = 4 * f
    expected += c_in * 10 + 10
    assert vanilla == expected
    for alpha in (0.125, 0.25, 0.5):
        assert count_params(catalog.create_model("oct_resnet50", alpha=alpha, **SMALL)) == vanilla


def test_low_frequency_at_half_resolution_and_stage4_single():
    model = catalog.create_model("oct_resnet50", **SMALL)
    for s, size, channels in ((1, 16, 64), (2, 8, 128), (3, 4, 256)):
        high = model.get_layer(f"stage{s}_block1_high_out").output
        low = model.get_layer(f"stage{s}_block1_low_out").output
        assert high.shape == (None, size, size, channels // 2)
        assert low.shape == (None, size // 2, size // 2, channels // 2)
    names = {layer.name for layer in model.layers}
    assert "stage4_block1_conv1_conv_l2h" in names  # stage 4's first block merges the frequencies
    assert "stage3_block2_conv2_conv_l2l" in names
    assert not any(n.startswith("stage4") and "low" in n for n in names if "block1" not in n)


def test_features_concatenate_both_frequencies():
    feats = catalog.create_model("oct_resnet50", features_only=True, **SMALL)
    assert [tuple(t.shape[1:]) for t in feats.outputs] == [
        (32, 32, 16), (16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512)]


def test_macs_fall_with_alpha():
    macs = [count_macs(catalog.create_model("oct_resnet50", alpha=a, **SMALL)) for a in (0.0, 0.125, 0.5)]
    assert macs[0] > macs[1] > macs[2] > 0.4 * macs[0]  # stem, stage 4 and head stay full resolution


@pytest.mark.parametrize("size", [80, 112, 200])
def test_input_sizes_not_multiples_of_32_build_and_predict(size):
    # odd sides from stage 2 (200: 25), 3 (112: 7) or 3-4 (80: 5, 3), where the low frequency came back
    # from upsampling one row short of the high one ("incompatible shapes")
    model = catalog.create_model("oct_resnet50", input_shape=(size, size, 3), num_classes=5)
    x = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype("float32")
    out = np.asarray(model.predict_on_batch(x))
    assert out.shape == (1, 5) and np.all(np.isfinite(out))


def test_odd_sides_give_resnet50_stage_sizes():
    feats = catalog.create_model("oct_resnet50", features_only=True, **{**SMALL, "input_shape": (45, 45, 3)})
    assert [tuple(t.shape[1:3]) for t in feats.outputs] == [(23, 23), (12, 12), (6, 6), (3, 3), (2, 2)]
    stage3 = feats.get_layer("stage3_block1_low_out").output
    assert tuple(stage3.shape[1:3]) == (2, 2)  # half of 3, rounded up; cropped back where it meets 3
    assert "stage3_features" in {layer.name for layer in feats.layers}
    assert "stage3_low_crop" in {layer.name for layer in feats.layers}


def test_multiples_of_32_add_no_size_matching_layers():
    model = catalog.create_model("oct_resnet50", **SMALL)
    assert not any(isinstance(layer, keras.layers.Cropping2D) for layer in model.layers)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert pools and {layer.padding for layer in pools} == {"valid"}


@pytest.mark.parametrize("kwargs, match", [(dict(alpha=1.0), "alpha must be"),
                                           (dict(alpha=0.3, width=16), "width must be"),
                                           (dict(depths=(3, 4, 6)), "depths must be")])
def test_bad_knobs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("oct_resnet50", **kwargs)
