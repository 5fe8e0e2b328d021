"""Residual Attention Networks: closed-form counts against the authors' prototxts, module placement, mask
range and shape, attention residual learning (1 + M) * T, map sizes at 224, errors.

Reference counts and smoke tests of the registered names are in tests/test_models.py.
"""

import keras
import numpy as np
import pytest

import catalog
from catalog.models.residual_attention import LEVELS, VARIANTS
from catalog.registry import count_params, get_entry


def unit_params(cin, c):
    """Bias-free pre-activation bottleneck cin -> c (c/4 planes), a 1x1 projection where the channels change."""
    f = c // 4
    return 2 * cin + cin * f + 9 * f * f + 4 * f + f * c + (cin * c if cin != c else 0)


def module_params(c, levels):
    """pre + post, two trunk units, mask down (2 innermost), skips, mask up; mask BN-1x1-BN-1x1."""
    units = 2 + 2 + (levels + 1) + 2 * (levels - 1)
    return units * unit_params(c, c) + 2 * (c * c + 2 * c)


def net_params(width, modules, classes=1000):
    total, cin = 49 * 3 * width + 2 * width, width
    for i, (count, levels) in enumerate(zip(modules, LEVELS)):
        c = 4 * width * 2 ** i
        total += unit_params(cin, c) + count * module_params(c, levels)
        cin = c
    c = 32 * width
    total += unit_params(cin, c) + 2 * unit_params(c, c)
    return total + 2 * c + c * classes + classes


def test_closed_form_equals_the_authors_prototxt_counts():
    # Caffe deploy prototxts of fwang91/residual-attention-network, counted layer by layer.
    assert net_params(64, (1, 1, 1)) == VARIANTS["residual_attention56"][1] == 31_810_728
    assert net_params(64, (1, 2, 3)) == VARIANTS["residual_attention92"][1] == 52_466_344
    assert module_params(256, 3) == 976_896 and module_params(512, 2) == 3_046_912
    assert module_params(1024, 1) == 8_804_352
    for name in VARIANTS:
        entry = get_entry(name)
        assert entry.reference_params == VARIANTS[name][1] and entry.reference_params_rtol == 0.0


@pytest.fixture(scope="module")
def small56():
    return catalog.create_model("residual_attention56", width=8, num_classes=10)


def fusions(model):
    return [layer.name for layer in model.layers if layer.name.endswith("_fusion")]


def test_attention56_layout_and_map_sizes_at_224(small56):
    assert count_params(small56) == net_params(8, (1, 1, 1), classes=10)
    assert fusions(small56) == ["stage1_attention1_fusion", "stage2_attention1_fusion", "stage3_attention1_fusion"]
    shape = lambda name: tuple(small56.get_layer(name).output.shape[1:])  # noqa: E731
    assert shape("stem_act") == (112, 112, 8) and shape("stem_pool") == (56, 56, 8)
    # Stage 1's mask pools 56 -> 28 -> 14 -> 7 and comes back up to 56; stage 2 28 -> 7; stage 3 14 -> 7.
    assert [shape(f"stage1_attention1_mask_down{i}_pool")[:2] for i in (1, 2, 3)] == [(28, 28), (14, 14), (7, 7)]
    assert [shape(f"stage2_attention1_mask_down{i}_pool")[:2] for i in (1, 2)] == [(14, 14), (7, 7)]
    assert shape("stage3_attention1_mask_down1_pool")[:2] == (7, 7)
    assert shape("stage1_attention1_mask_up1_add") == (28, 28, 32)
    assert shape("stage1_attention1_mask_up2_add") == (14, 14, 32)
    for stage, size, channels in ((1, 56, 32), (2, 28, 64), (3, 14, 128)):
        assert shape(f"stage{stage}_attention1_mask_sigmoid") == (size, size, channels)
        assert shape(f"stage{stage}_attention1_post1_add") == (size, size, channels)
    assert shape("post_act") == (7, 7, 256)
    assert not [layer.name for layer in small56.layers if "mask_skip" in layer.name and "stage3" in layer.name]
    assert not [w for w in small56.trainable_weights if "conv" in w.path and "bias" in w.path]


def test_mask_in_unit_interval_and_attention_residual_learning(small56):
    names = [f"stage{s}_attention1_{part}" for s in (1, 2, 3) for part in ("trunk2_add", "mask_sigmoid", "fusion")]
    probe = keras.Model(small56.input, [small56.get_layer(n).output for n in names])
    x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
    # Training mode: BatchNorm normalizes by batch statistics, so an untrained mask does not saturate in float32.
    outs = [np.asarray(o) for o in probe(x, training=True)]
    for trunk, mask, fused in zip(outs[0::3], outs[1::3], outs[2::3]):
        assert mask.shape == trunk.shape
        assert mask.min() > 0.0 and mask.max() < 1.0 and mask.std() > 0.0
        np.testing.assert_allclose(fused, (1.0 + mask) * trunk, rtol=1e-5, atol=1e-5)


def test_attention92_modules_odd_sizes_and_nearest():
    model = catalog.create_model("residual_attention92", width=8, num_classes=10, input_shape=(40, 40, 3),
                                 interpolation="nearest")
    assert count_params(model) == net_params(8, (1, 2, 3), classes=10)
    assert len(fusions(model)) == 6
    assert [sum(n.startswith(f"stage{s}_") for n in fusions(model)) for s in (1, 2, 3)] == [1, 2, 3]
    # Stage 1 at 10x10: 10 -> 5 -> 3 -> 2; each upsampling x2 is cropped back (4 -> 3, 6 -> 5).
    assert tuple(model.get_layer("stage1_attention1_mask_down3_pool").output.shape[1:3]) == (2, 2)
    assert tuple(model.get_layer("stage1_attention1_mask_up2_crop").output.shape[1:3]) == (3, 3)
    assert tuple(model.get_layer("stage1_attention1_mask_up1_crop").output.shape[1:3]) == (5, 5)
    assert model.get_layer("stage1_attention1_mask_up0_upsample").interpolation == "nearest"
    assert model.output.shape == (None, 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(modules=(1, 1)), "modules must be three"),
    (dict(modules=(1, -1, 1)), "modules must be three"),
    (dict(width=0), "width must be a positive integer"),
    (dict(interpolation="bicubic"), "interpolation must be one of bilinear, nearest"),
    (dict(include_top=False, input_shape=(None, None, 3)), "fixed input height and width"),
    (dict(input_shape=(16, 16, 3)), "at least 32"),
])
def test_bad_keywords(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("residual_attention56", **{"width": 8, **kwargs})
