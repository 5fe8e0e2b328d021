"""SENet-154 (Hu et al. 2018, the authors' released model): closed-form count, stem, pool, shortcuts, errors.

Reference counts and smoke tests of every registered name are in tests/test_models.py; the SE-ResNet-50 /
SE-ResNeXt-50 layouts in tests/models/test_resnet.py.
"""

import pytest

import catalog
from catalog.models.senet import VARIANTS
from catalog.registry import count_params

SMALL = dict(width=16, groups=8, base_width=16, depths=(1, 1, 1, 1))


def senet154_params(width=64, groups=64, base_width=4, depths=(3, 8, 36, 3), classes=1000, ratio=16):
    """SENet-154: deep stem (3x3 convs width, width, 2*width, BN each), SE bottlenecks whose first 1x1 has half
    the grouped 3x3's width, 3x3 projection shortcuts on stages 2-4 (1x1 on stage 1), FC."""
    total = 9 * 3 * width + 9 * width * width + 9 * width * 2 * width + 2 * (width + width + 2 * width)
    cin = 2 * width
    for i, depth in enumerate(depths):
        planes = width * 2 ** i
        w = planes * base_width // 64 * groups
        first, out = w // 2, 4 * planes
        for j in range(depth):
            total += cin * first + 9 * (first // groups) * w + w * out + 2 * (first + w + out)
            total += 2 * out * (out // ratio) + out // ratio + out  # SE: two 1x1 convs with bias
            if j == 0:
                k = 3 if i > 0 else 1
                total += k * k * cin * out + 2 * out
            cin = out
    return total + cin * classes + classes


def test_senet154_closed_form_equals_the_reference():
    # Cadene pretrainedmodels senet154 and timm senet154 both have 115,088,984 parameters.
    assert senet154_params() == VARIANTS["senet154"][2] == 115_088_984


def test_senet154_small_layout_and_exact_count():
    model = catalog.create_model("senet154", input_shape=(64, 64, 3), num_classes=10, **SMALL)
    assert count_params(model) == senet154_params(classes=10, **SMALL)
    stem = [model.get_layer(f"stem{k}_conv") for k in (1, 2, 3)]
    assert [c.kernel_size for c in stem] == [(3, 3)] * 3
    assert [c.strides for c in stem] == [(2, 2), (1, 1), (1, 1)]
    assert [c.filters for c in stem] == [16, 16, 32]
    conv1, conv2 = model.get_layer("stage2_block1_conv1_conv"), model.get_layer("stage2_block1_conv2_conv")
    assert (conv1.filters, conv2.filters, conv2.groups) == (32, 64, 8)  # first 1x1 at half the 3x3's width
    assert conv2.strides == (2, 2) and conv1.strides == (1, 1)  # the stride sits on the grouped 3x3
    assert model.get_layer("stage1_block1_shortcut_conv").kernel_size == (1, 1)
    for stage in (2, 3, 4):
        sc = model.get_layer(f"stage{stage}_block1_shortcut_conv")
        assert sc.kernel_size == (3, 3) and sc.strides == (2, 2) and not sc.use_bias
    assert model.get_layer("stage4_block1_se_reduce").filters == 4 * 128 // 16
    assert model.get_layer("head_drop").rate == pytest.approx(0.2)
    assert model.get_layer("stage4_block1_add").output.shape == (None, 2, 2, 512)


def test_senet154_ceil_mode_stem_pool():
    # 65 px -> 33 after the stride-2 stem; Caffe/PyTorch ceil_mode without padding gives 16, where torchvision's
    # padded pool gives 17.
    ceil = catalog.create_model("senet154", input_shape=(65, 65, 3), include_top=False, **SMALL)
    pad = catalog.create_model("senet154", input_shape=(65, 65, 3), include_top=False, stem_pool="pad", **SMALL)
    assert ceil.get_layer("stem3_act").output.shape[1] == 33
    assert ceil.get_layer("stem_pool").output.shape[1:3] == (16, 16)
    assert pad.get_layer("stem_pool").output.shape[1:3] == (17, 17)


def test_se_resnet50_keeps_the_torchvision_stem():
    model = catalog.create_model("se_resnet50", depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    names = {layer.name for layer in model.layers}
    assert "stem_conv" in names and "stem1_conv" not in names
    assert model.get_layer("stem_conv").kernel_size == (7, 7)
    assert model.get_layer("stage2_block1_shortcut_conv").kernel_size == (1, 1)
    assert "head_drop" not in names


@pytest.mark.parametrize("kwargs, match", [
    (dict(reduce_first=3), "reduce_first=3 leaves"),
    (dict(reduce_first=0), "reduce_first must be a positive integer"),
    (dict(stem="3x3"), "stem must be one of 7x7, deep"),
    (dict(stem_pool="avg"), "stem_pool must be one of pad, ceil"),
    (dict(shortcut_kernel=2), "shortcut_kernel must be 1, 3, 5 or 7"),
    (dict(block="basic", groups=1, base_width=64), "apply to block='bottleneck' only"),
])
def test_senet154_keyword_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("senet154", input_shape=(32, 32, 3), **{**SMALL, **kwargs})
