"""ShuffleNet v1/v2: closed-form counts of the whole networks, group/scale knobs, features, errors."""

import pytest

import catalog
from catalog.registry import count_params, get_entry
from catalog.models.shufflenet import REPEATS, STEM, V1_CHANNELS, V1_COUNTS, V1_VARIANTS, V2_CHANNELS


def v1_params(groups, scale, classes=1000):
    """Stem 3x3 conv + BN; per unit grouped 1x1 + BN, dw 3x3 + BN, grouped 1x1 + BN; Dense head."""
    total = 27 * STEM + 2 * STEM
    c_in = STEM
    for s, (c, n) in enumerate(zip(V1_CHANNELS[groups], REPEATS)):
        c = int(c * scale)
        mid = c // 4 // groups * groups
        for b in range(n):
            out = c - c_in if b == 0 else c
            g1 = 1 if (s, b) == (0, 0) else groups
            total += c_in * mid // g1 + 2 * mid + 9 * mid + 2 * mid + mid * out // groups + 2 * out
            c_in = c
    return total + c_in * classes + classes


def v2_params(scale, classes=1000):
    *channels, last = V2_CHANNELS[scale]
    total = 27 * STEM + 2 * STEM
    c_in = STEM
    for c, n in zip(channels, REPEATS):
        h = c // 2
        total += 9 * c_in + 2 * c_in + c_in * h + 2 * h  # down-sampling unit, left branch
        total += c_in * h + 2 * h + 9 * h + 2 * h + h * h + 2 * h  # right branch
        total += (n - 1) * (h * h + 2 * h + 9 * h + 2 * h + h * h + 2 * h)
        c_in = c
    return total + c_in * last + 2 * last + last * classes + classes


def test_v1_closed_form_matches_registered_counts():
    for (groups, scale), (params, _) in V1_COUNTS.items():
        assert v1_params(groups, scale) == params, (groups, scale)
    for name, (groups, scale) in V1_VARIANTS.items():
        if name != "shufflenet_v1":
            assert get_entry(name).reference_params == v1_params(groups, scale)
    assert v1_params(3, 1.0) == 1_865_728  # "about 1.9M" in the paper / authors' code
    entry = get_entry("shufflenet_v1")
    assert abs(1_865_728 - entry.reference_params) <= entry.reference_params_rtol * entry.reference_params


@pytest.mark.parametrize("groups, scale", [(3, 0.5), (4, 0.5), (2, 1.5), (8, 0.5)])
def test_v1_groups_and_scale_knobs(groups, scale):
    model = catalog.create_model("shufflenet_v1", groups=groups, scale=scale, input_shape=(32, 32, 3),
                                 num_classes=10)
    assert count_params(model) == v1_params(groups, scale, classes=10)
    assert model.get_layer("stage2_block1_reduce_conv").groups == 1  # paper: no groups on 24 input channels
    assert model.get_layer("stage2_block2_reduce_conv").groups == groups
    assert model.get_layer("stage4_block4_out_act").output.shape[-1] == int(V1_CHANNELS[groups][2] * scale)


def test_v2_closed_form_equals_torchvision():
    expected = {0.5: 1_366_792, 1.0: 2_278_604, 1.5: 3_503_624, 2.0: 7_393_996}
    for scale, params in expected.items():
        assert v2_params(scale) == params


def test_features_reductions():
    v1 = catalog.create_model("shufflenet_v1", features_only=True, out_indices=(2, 3, 4), scale=0.5,
                              input_shape=(64, 64, 3))
    assert [64 // t.shape[1] for t in v1.outputs] == [8, 16, 32]
    assert [t.shape[-1] for t in v1.outputs] == [120, 240, 480]
    v2 = catalog.create_model("shufflenet_v2_x0_5", features_only=True, input_shape=(64, 64, 3))
    assert [64 // t.shape[1] for t in v2.outputs] == [2, 4, 8, 16, 32]
    assert [t.shape[-1] for t in v2.outputs] == [24, 24, 48, 96, 1024]


@pytest.mark.parametrize("name, kwargs, match", [
    ("shufflenet_v1", dict(groups=5), "groups must be"), ("shufflenet_v1", dict(scale=0.25), "scale must be"),
    ("shufflenet_v2_x1_0", dict(scale=3.0), "scale must be")])
def test_bad_knobs(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model(name, input_shape=(32, 32, 3), **kwargs)
