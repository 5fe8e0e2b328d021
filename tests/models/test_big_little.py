"""Big-Little Net facts: closed-form parameter count, branch resolutions and widths, MACs, feature strides.

The reference count of bl_resnet50 (built at its defaults) is checked in tests/test_models.py.
"""

import keras
import numpy as np
import pytest

import catalog
from catalog.flops import count_macs
from catalog.models.big_little import little_depth
from catalog.registry import count_params, feature_reduction, get_entry

SMALL = dict(width=16, depths=(2, 2, 2, 1), input_shape=(64, 64, 3), num_classes=10)


def bottleneck_params(cin, f, projection):
    """1x1-3x3-1x1 (4f out) convs with BatchNorm, plus a 1x1 conv-BN projection shortcut."""
    total = cin * f + 9 * f * f + f * 4 * f + 2 * (f + f + 4 * f)
    return total + (cin * 4 * f + 2 * 4 * f if projection else 0)


def bl_resnet_params(width, depths, alpha, beta, classes):
    w, lw = width, width // alpha
    total = 49 * 3 * w + 2 * w                                           # 7x7/2 stem
    total += 9 * w * w + 2 * w                                           # Big stem 3x3/2
    total += 9 * w * lw + 2 * lw + 9 * lw * lw + 2 * lw + lw * w + 2 * w  # Little stem 3x3, 3x3/2, 1x1
    total += w * w + 2 * w                                               # 1x1 after the merge
    cin = w
    for i, d in enumerate(depths[:3]):
        f = w * 2 ** i
        total += bottleneck_params(cin, f, True) + (d - 2) * bottleneck_params(4 * f, f, False)  # Big
        lf = f // alpha
        total += bottleneck_params(cin, lf, cin != 4 * lf)                                      # Little
        total += (little_depth(d, beta) - 1) * bottleneck_params(4 * lf, lf, False)
        total += 4 * lf * 4 * f + 2 * 4 * f                                  # Little's 1x1 to the Big width
        total += bottleneck_params(4 * f, f, False)                          # fusion (parameter-free shortcut)
        cin = 4 * f
    f = 8 * w
    total += bottleneck_params(cin, f, True) + (depths[3] - 1) * bottleneck_params(4 * f, f, False)
    return total + 4 * f * classes + classes


def test_registered_row_and_the_reference_count_in_closed_form():
    entry = get_entry("bl_resnet50")
    assert entry.family == "big_little"
    assert entry.defaults == dict(depths=(3, 4, 6, 3), alpha=2, beta=4)
    # IBM/BigLittleNet blresnet_model(50, 2, 4) counts 26,694,568 (paper: 26.69M)
    assert bl_resnet_params(64, (3, 4, 6, 3), 2, 4, 1000) == entry.reference_params == 26_694_568


def test_small_counts_in_closed_form():
    for options in (dict(), dict(beta=1), dict(alpha=4, depths=(3, 2, 5, 2))):
        kwargs = {**SMALL, **options}
        model = catalog.create_model("bl_resnet50", **kwargs)
        expected = bl_resnet_params(16, kwargs["depths"], kwargs.get("alpha", 2), kwargs.get("beta", 4), 10)
        assert count_params(model) == expected, options


def test_little_branch_runs_at_twice_the_big_resolution():
    model = catalog.create_model("bl_resnet50", **SMALL)
    # 64 px: 1/4 after the stem; each module's Big branch halves, the strided fusion blocks of stages 1-2 too
    for s, (little_side, f) in enumerate(((16, 16), (8, 32), (4, 64)), start=1):
        big = model.get_layer(f"stage{s}_big_block1_out").output
        little = model.get_layer(f"stage{s}_little_block1_out").output
        assert big.shape == (None, little_side // 2, little_side // 2, 4 * f)  # full width, half resolution
        assert little.shape == (None, little_side, little_side, 4 * f // 2)   # width / alpha
        up = model.get_layer(f"stage{s}_big_up")
        assert up.interpolation == "bilinear" and up.output.shape == (None, little_side, little_side, 4 * f)
        assert model.get_layer(f"stage{s}_merge_act").output.shape == (None, little_side, little_side, 4 * f)
    assert model.get_layer("stage1_fusion_out").output.shape == (None, 8, 8, 64)
    assert model.get_layer("stage3_fusion_out").output.shape == (None, 4, 4, 256)  # stage 3's fusion keeps it
    assert model.get_layer("stage4_block1_out").output.shape == (None, 2, 2, 512)
    assert "stage4_big_block1_out" not in {layer.name for layer in model.layers}  # stage 4 is a plain stage


def test_branch_depths_follow_alpha_beta_rule():
    model = catalog.create_model("bl_resnet50", width=16, input_shape=(32, 32, 3))
    names = {layer.name for layer in model.layers}
    for s, (big, little) in enumerate(((2, 1), (3, 1), (5, 1)), start=1):  # depths (3, 4, 6): d - 1, max(1, d//4 - 1)
        assert {n for n in names if n.startswith(f"stage{s}_big_block") and n.endswith("_out")} == {
            f"stage{s}_big_block{j}_out" for j in range(1, big + 1)}
        assert {n for n in names if n.startswith(f"stage{s}_little_block") and n.endswith("_out")} == {
            f"stage{s}_little_block{j}_out" for j in range(1, little + 1)}
    assert [little_depth(d, 2) for d in (3, 4, 6, 18)] == [1, 1, 2, 8]
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)
                and layer.pool_size != (1, 1)]  # no stem max pool: the Big-Little stem reduces instead


def test_macs_match_the_reference_and_the_paper():
    model = catalog.create_model("bl_resnet50")
    assert count_params(model) == 26_694_568
    macs = count_macs(model)
    assert macs == 2_856_058_880  # conv + FC multiply-adds of blresnet_model(50, 2, 4) at 224
    assert macs == pytest.approx(2.85e9, rel=0.005)  # paper / README: 2.85 GFLOPs
    assert macs < 0.70 * 4.09e9  # ResNet-50 (torchvision) 4.09G: the paper's "1/3 less computation"


def test_features_only_strides_and_channels():
    feats = catalog.create_model("bl_resnet50", features_only=True, **SMALL)
    assert [feature_reduction(64, t.shape[1]) for t in feats.outputs] == [2, 4, 8, 16, 32]
    assert [tuple(t.shape[1:]) for t in feats.outputs] == [
        (32, 32, 16), (16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512)]
    stage2 = catalog.create_model("bl_resnet50", features_only=True, out_indices=(2,), **SMALL)
    assert stage2.outputs[0].shape == (None, 8, 8, 128)
    assert "stage3_fusion_conv1_conv" not in {layer.name for layer in stage2.layers}  # ends at stage 2's merge


def test_odd_little_side_crops_the_upsampled_big_branch():
    # 80 px: stage 3's Little side is 5, its Big side 3, upsampled to 6 and cropped to 5 (with "nearest", the
    # released code's interpolate(size=5))
    model = catalog.create_model("bl_resnet50", interpolation="nearest", **{**SMALL, "input_shape": (80, 80, 3)})
    assert model.get_layer("stage3_big_up").interpolation == "nearest"
    assert model.get_layer("stage3_big_crop").output.shape == (None, 5, 5, 256)
    assert "stage1_big_crop" not in {layer.name for layer in model.layers}
    x = np.random.default_rng(0).standard_normal((1, 80, 80, 3)).astype("float32")
    out = np.asarray(model(x, training=False))
    assert out.shape == (1, 10) and np.all(np.isfinite(out))


def test_bad_knobs():
    for kwargs, match in [
        (dict(depths=(3, 4, 6)), "depths must be"), (dict(depths=(1, 4, 6, 3)), "depths must be"),
        (dict(alpha=0), "alpha must be"), (dict(beta=2.0), "beta must be"),
        (dict(width=18, alpha=4), "width must be a multiple of alpha"),
        (dict(interpolation="bicubic"), "interpolation must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            catalog.create_model("bl_resnet50", **kwargs)
