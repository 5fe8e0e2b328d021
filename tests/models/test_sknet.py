"""SKNet: closed-form counts of the SK unit and the whole net, SK units per stage, strides, knobs and errors.

The registered reference counts and the smoke tests of every name are in tests/test_models.py.
"""

import numpy as np
import pytest

import catalog
from catalog.registry import count_params, get_entry
from helpers import assert_all_gradients, random_input


def sk_unit_params(c_in, c, groups=32, branches=2, ratio=16, min_dim=32):
    """Li et al. 2019: M grouped 3x3 conv-BN branches, fuse 1x1 C -> d + BN, M select 1x1s d -> C (no biases)."""
    d = max(c // ratio, min_dim)
    return branches * (9 * (c_in // groups) * c + 2 * c) + c * d + 2 * d + branches * d * c


def sknet_params(depths, width=64, groups=32, base_width=4, classes=1000, **sk):
    """Stem 7x7 conv-BN, SK bottlenecks (1x1-BN, SK unit, 1x1-BN, 1x1 projection-BN where the shape changes), FC."""
    total, c_in = 49 * 3 * width + 2 * width, width
    for i, depth in enumerate(depths):
        planes = width * 2 ** i
        w, out = int(planes * base_width / 64) * groups, 4 * planes
        for _ in range(depth):
            total += c_in * w + 2 * w + sk_unit_params(w, w, groups, **sk) + w * out + 2 * out
            total += c_in * out + 2 * out if c_in != out else 0
            c_in = out
    return total + c_in * classes + classes


@pytest.fixture(scope="module")
def sknet50():
    return catalog.create_model("sknet50")


def _params_under(model, prefix):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights if w.path.startswith(prefix))


def test_sknet50_count_is_closed_form_and_timm(sknet50):
    assert count_params(sknet50) == sknet_params((3, 4, 6, 3)) == 27_479_784 == get_entry("sknet50").reference_params
    assert round(count_params(sknet50) / 1e6, 1) == 27.5  # Li et al. 2019 Table 2
    assert get_entry("sknet50").reference_params_rtol == 0.0


def test_sknet101_count_and_paper_tolerance():
    exact = sknet_params((3, 4, 23, 3))
    assert exact == 48_736_040
    entry = get_entry("sknet101")
    assert entry.reference_params == 48_900_000 and abs(exact - 48_900_000) <= entry.reference_params_rtol * 48_900_000
    # The authors' sknet101.prototxt: d = 16 (not 32) in the four 256-wide units of its conv3_x.
    assert exact - 4 * (256 * 16 + 2 * 16 + 2 * 16 * 256) == 48_686_760
    small = catalog.create_model("sknet101", width=16, input_shape=(32, 32, 3), num_classes=10)
    assert count_params(small) == sknet_params((3, 4, 23, 3), width=16, classes=10)
    assert len([layer for layer in small.layers if layer.name.endswith("_sk_softmax")]) == 33


def test_sk_unit_inside_the_net_is_closed_form(sknet50):
    # stage2_block1: C_in = C = 256 (the 1x1 reduce output), G = 32, d = max(256/16, 32) = 32, M = 2.
    expected = 2 * (9 * 8 * 256 + 2 * 256) + 256 * 32 + 2 * 32 + 2 * 32 * 256
    assert _params_under(sknet50, "stage2_block1_sk_") == sk_unit_params(256, 256) == expected == 62_528
    # stage4: C = 1024, d = 1024 / 16 = 64 (the ratio, not L, decides).
    assert _params_under(sknet50, "stage4_block3_sk_") == sk_unit_params(1024, 1024) == 2 * (
        9 * 32 * 1024 + 2 * 1024) + 1024 * 64 + 2 * 64 + 2 * 64 * 1024
    for stage, d in ((1, 32), (2, 32), (3, 32), (4, 64)):
        assert sknet50.get_layer(f"stage{stage}_block1_sk_fc_conv").filters == d
    branch2 = sknet50.get_layer("stage1_block1_sk_branch2_conv")
    assert branch2.groups == 32 and branch2.dilation_rate == (2, 2) and branch2.kernel_size == (3, 3)
    assert branch2.filters == 128


def test_sk_units_per_stage_and_output_stride(sknet50):
    units = [layer.name for layer in sknet50.layers if layer.name.endswith("_sk_softmax")]
    assert len(units) == 16
    assert [sum(n.startswith(f"stage{s}_") for n in units) for s in (1, 2, 3, 4)] == [3, 4, 6, 3]
    assert sknet50.get_layer("stage4_block3_out").output.shape == (None, 7, 7, 2048)  # 224 / 32
    # The stride sits on the SK unit of the first block of stages 2-4 (both branches), never on the 1x1s.
    assert sknet50.get_layer("stage2_block1_sk_branch1_conv").strides == (2, 2)
    assert sknet50.get_layer("stage2_block1_sk_subsample").strides == (2, 2)
    assert sknet50.get_layer("stage2_block1_conv1_conv").strides == (1, 1)
    assert sknet50.get_layer("stage1_block1_sk_branch1_conv").strides == (1, 1)
    feats = catalog.create_model("sknet50", depths=(1, 1, 1, 1), features_only=True, input_shape=(64, 64, 3))
    assert [tuple(t.shape[1:]) for t in feats.outputs] == [(32, 32, 64), (16, 16, 256), (8, 8, 512),
                                                           (4, 4, 1024), (2, 2, 2048)]


def test_sk_knobs_change_the_count_in_closed_form():
    small = dict(width=16, depths=(1, 2), input_shape=(32, 32, 3), num_classes=10)
    three = catalog.create_model("sknet50", branches=3, ratio=8, min_dim=16, groups=8, drop_path_rate=0.2, **small)
    assert count_params(three) == sknet_params((1, 2), width=16, groups=8, classes=10, branches=3, ratio=8,
                                               min_dim=16)
    assert three.get_layer("stage1_block1_sk_branch3_conv").dilation_rate == (3, 3)
    assert three.get_layer("stage2_block1_drop_path").rate == pytest.approx(0.1)
    assert three.get_layer("stage2_block2_drop_path").rate == pytest.approx(0.2)
    assert "stage1_block1_drop_path" not in [layer.name for layer in three.layers]  # the first rate is 0
    assert assert_all_gradients(three, random_input((32, 32, 3))).shape == (2, 10)
    zero = catalog.create_model("sknet50", zero_init_residual=True, **small)
    assert not np.asarray(zero.get_layer("stage2_block2_conv3_bn").gamma).any()
    assert np.asarray(zero.get_layer("stage2_block2_conv1_bn").gamma).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(depths=(3, 0, 6, 3)), "depths must be a tuple of positive integers"),
    (dict(branches=1), "branches must be an integer >= 2"),
    (dict(groups=0), "groups must be a positive integer"),
    (dict(ratio=2.5), "ratio must be a positive integer"),
    (dict(width=8, base_width=4), "width \\* base_width must be at least 64"),
    (dict(drop_path_rate=1.0), "drop_path_rate must be a number in \\[0, 1\\)"),
    (dict(zero_init_residual="yes"), "zero_init_residual must be True or False"),
])
def test_bad_keywords_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("sknet50", **kwargs)
