"""ResNet families: structure facts, CIFAR closed-form counts, feature reductions, knobs and their errors.

Reference counts and smoke tests of every registered name are in tests/test_models.py.
"""

import functools

import keras
import pytest

import catalog
from catalog.blocks import attention
from catalog.registry import count_params, get_entry
from catalog.models.nonlocal_resnet import VARIANTS as VARIANTS_NONLOCAL
from catalog.models.resnet import VARIANTS, VARIANTS_CIFAR, VARIANTS_V2


def bottleneck_resnet_params(depths, classes=1000):
    """torchvision-layout bottleneck ResNet: 7x7 stem conv-BN, 1x1-3x3-1x1 blocks (BN each), 1x1 projections, FC."""
    total, cin = 7 * 7 * 3 * 64 + 2 * 64, 64
    for i, depth in enumerate(depths):
        planes = 64 * 2 ** i
        for j in range(depth):
            total += cin * planes + 9 * planes * planes + planes * 4 * planes + 2 * (2 * planes + 4 * planes)
            if j == 0:
                total += cin * 4 * planes + 2 * 4 * planes
            cin = 4 * planes
    return total + cin * classes + classes


def non_local_params(channels):
    """Embedded-Gaussian non-local block: theta, phi, g 1x1 convs C -> C/2 with bias, 1x1 conv C/2 -> C, BN."""
    return 3 * (channels * channels // 2 + channels // 2) + channels // 2 * channels + 2 * channels


def test_bottleneck_resnets_closed_form():
    assert bottleneck_resnet_params((3, 4, 6, 3)) == VARIANTS["resnet50"][1] == 25_557_032
    assert bottleneck_resnet_params((3, 8, 36, 3)) == VARIANTS["resnet152"][1] == 60_192_808
    # timm resnet200 (He et al. 2016, "Identity Mappings", trained ResNet-200): 64,673,832.
    assert bottleneck_resnet_params((3, 24, 36, 3)) == VARIANTS["resnet200"][1] == 64_673_832
    assert VARIANTS["resnet200"][0]["depths"] == (3, 24, 36, 3)
    assert 3 * sum(VARIANTS["resnet200"][0]["depths"]) + 2 == 200  # layers: 3 per bottleneck, stem, FC


def test_nonlocal_resnet50_closed_form():
    assert (non_local_params(512), non_local_params(1024)) == (526_080, 2_100_736)
    assert (bottleneck_resnet_params((3, 4, 6, 3)) + 2 * non_local_params(512) + 3 * non_local_params(1024)
            == VARIANTS_NONLOCAL["nonlocal_resnet50"][1] == 32_911_400)


def test_nonlocal_resnet_placement_and_count():
    small = dict(width=16, depths=(1, 4, 6, 1), input_shape=(32, 32, 3), num_classes=10)  # res3, res4 in full
    model = catalog.create_model("nonlocal_resnet50", **small)
    blocks = [layer.name[:-len("_nonlocal_add")] for layer in model.layers if layer.name.endswith("_nonlocal_add")]
    # Wang et al. 2018: 5 blocks, every other residual block of res3 (stage2) and res4 (stage3).
    assert blocks == ["stage2_block2", "stage2_block4", "stage3_block2", "stage3_block4", "stage3_block6"]
    plain = catalog.create_model("resnet50", **small)
    assert count_params(model) - count_params(plain) == 2 * non_local_params(128) + 3 * non_local_params(256)
    # The non-local block follows the residual block's output and feeds the next block.
    assert model.get_layer("stage2_block3_conv1_conv").input is model.get_layer("stage2_block2_nonlocal_add").output
    assert model.get_layer("stage3_block2_nonlocal_out_bn").gamma.numpy().max() == 0.0  # starts as the identity
    assert model.get_layer("stage3_block2_nonlocal_phi_pool").output.shape == (None, 1, 1, 128)
    every = catalog.create_model("nonlocal_resnet50", non_local_stages=(3,), non_local_every=3,
                                 **{**small, "depths": (1, 1, 6, 1)})
    assert [layer.name for layer in every.layers if layer.name.endswith("_nonlocal_add")] == [
        "stage3_block3_nonlocal_add", "stage3_block6_nonlocal_add"]


def test_nonlocal_resnet_needs_a_fixed_size():
    with pytest.raises(ValueError, match="fixed height and width"):
        catalog.create_model("nonlocal_resnet50", width=16, include_top=False, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="at least 32"):
        catalog.create_model("nonlocal_resnet50", width=16, input_shape=(16, 16, 3))


def test_after_block_sees_every_block_in_order():
    seen = []
    model = catalog.create_model("resnet18", depths=(2, 1, 1, 1), input_shape=(32, 32, 3),
                                 after_block=lambda x, stage, block: seen.append((stage, block)) or x)
    assert seen == [(1, 1), (1, 2), (2, 1), (3, 1), (4, 1)]
    assert count_params(model) == count_params(catalog.create_model("resnet18", depths=(2, 1, 1, 1),
                                                                     input_shape=(32, 32, 3)))


def cifar_resnet_params(n, classes=10):
    """He et al. 2016 CIFAR ResNet-(6n+2), option A shortcuts: 3x3 convs without bias, BN gamma/beta, FC."""
    total = 9 * 3 * 16 + 2 * 16                                   # stem conv-BN
    total += n * (2 * (9 * 16 * 16 + 2 * 16))                     # stage 1: 16 -> 16
    for cin, c in ((16, 32), (32, 64)):                           # stages 2, 3: first block widens
        total += 9 * cin * c + 9 * c * c + 4 * c + (n - 1) * (2 * 9 * c * c + 4 * c)
    return total + 64 * classes + classes


def preact_params(stem, widths, depths, classes=10):
    """Pre-activation basic-block net: 3x3 stem, blocks BN-conv-BN-conv (+1x1 projection), final BN, FC."""
    total, cin = 9 * 3 * stem, stem
    for c, n in zip(widths, depths):
        for _ in range(n):
            total += 2 * cin + 9 * cin * c + 2 * c + 9 * c * c + (cin * c if cin != c else 0)
            cin = c
    return total + 2 * cin + cin * classes + classes


@pytest.mark.parametrize("name, n", [("resnet20", 3), pytest.param("resnet32", 5, marks=pytest.mark.slow),
                                     pytest.param("resnet44", 7, marks=pytest.mark.slow), ("resnet56", 9),
                                     pytest.param("resnet110", 18, marks=pytest.mark.slow)])
def test_cifar_resnet_exact_counts(name, n):
    model = catalog.create_model(name)
    assert model.input.shape == (None, 32, 32, 3) and model.output.shape == (None, 10)
    assert count_params(model) == cifar_resnet_params(n) == VARIANTS_CIFAR[name][1]
    assert len([layer for layer in model.layers if layer.name.endswith("_add")]) == 3 * n
    assert not [w for w in model.trainable_weights if "shortcut" in w.path]  # option A: parameter-free


def test_cifar_resnet_paper_counts():
    # He et al. 2016 Table 6 rounds to 0.27M / 0.85M / 1.7M.
    assert round(cifar_resnet_params(3) / 1e6, 2) == 0.27
    assert round(cifar_resnet_params(9) / 1e6, 2) == 0.85
    assert round(cifar_resnet_params(18) / 1e6, 1) == 1.7


def test_wrn28_10_and_preact_resnet18_exact_counts():
    wrn = catalog.create_model("wrn28_10")
    assert count_params(wrn) == preact_params(16, (160, 320, 640), (4, 4, 4)) == 36_479_194
    assert count_params(catalog.create_model("wrn28_10", width_factor=2)) == preact_params(16, (32, 64, 128),
                                                                                            (4, 4, 4))
    assert round(count_params(wrn) / 1e6, 1) == 36.5  # Zagoruyko & Komodakis 2016: 36.5M
    assert wrn.get_layer("stage3_block4_add").output.shape == (None, 8, 8, 640)
    pre = catalog.create_model("preact_resnet18")
    assert count_params(pre) == preact_params(64, (64, 128, 256, 512), (2, 2, 2, 2)) == 11_172_170
    assert pre.get_layer("stage4_block2_add").output.shape == (None, 4, 4, 512)


def test_stride_on_1x1_moves_the_stride_not_the_count():
    small = dict(depths=(1, 1, 1, 1), input_shape=(64, 64, 3))
    v15 = catalog.create_model("resnet50", **small)
    v1 = catalog.create_model("resnet50", stride_on_1x1=True, **small)
    assert v15.get_layer("stage2_block1_conv2_conv").strides == (2, 2)
    assert v15.get_layer("stage2_block1_conv1_conv").strides == (1, 1)
    assert v1.get_layer("stage2_block1_conv1_conv").strides == (2, 2)
    assert v1.get_layer("stage2_block1_conv2_conv").strides == (1, 1)
    assert count_params(v1) == count_params(v15)
    assert v1.get_layer("stage2_block1_add").output.shape == v15.get_layer("stage2_block1_add").output.shape


def test_resnext_and_wide_widths():
    rx = catalog.create_model("resnext50_32x4d", depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    for stage, planes in ((1, 64), (4, 512)):
        conv = rx.get_layer(f"stage{stage}_block1_conv2_conv")
        assert conv.groups == 32 and conv.filters == int(planes * 4 / 64) * 32
    assert rx.get_layer("stage4_block1_out").output.shape[-1] == 2048
    wide = catalog.create_model("wide_resnet50_2", depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    assert wide.get_layer("stage1_block1_conv2_conv").filters == 128
    assert wide.get_layer("stage1_block1_conv2_conv").groups == 1


def test_resnet50_features_at_64():
    feats = catalog.create_model("resnet50", features_only=True, out_indices=(2, 3, 4), input_shape=(64, 64, 3))
    assert [tuple(t.shape[1:]) for t in feats.outputs] == [(8, 8, 512), (4, 4, 1024), (2, 2, 2048)]
    assert feats.get_layer("stem_bn").epsilon == 1e-5


def test_resnet_v2_layout():
    model = catalog.create_model("resnet50_v2", depths=(2, 2, 2, 2), input_shape=(64, 64, 3))
    # keras.applications ResNetV2: stride on the last block of stages 1-3, biased stem and 1x1 outputs.
    assert model.get_layer("stage1_block2_conv2_conv").strides == (2, 2)
    assert model.get_layer("stage1_block1_conv2_conv").strides == (1, 1)
    assert model.get_layer("stage4_block2_conv2_conv").strides == (1, 1)
    assert model.get_layer("stem_conv").use_bias and model.get_layer("stage1_block1_conv3_conv").use_bias
    assert model.get_layer("stage1_block1_shortcut_conv").use_bias
    assert not model.get_layer("stage1_block1_conv1_conv").use_bias
    assert model.get_layer("post_bn").epsilon == 1.001e-5
    feats = catalog.create_model("resnet50_v2", depths=(2, 2, 2, 2), features_only=True, input_shape=(64, 64, 3))
    assert [tuple(t.shape[1:]) for t in feats.outputs] == [(32, 32, 64), (16, 16, 256), (8, 8, 512),
                                                           (4, 4, 1024), (2, 2, 2048)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS_V2))
def test_resnet_v2_matches_keras_applications(name):
    ka = {"resnet50_v2": keras.applications.ResNet50V2, "resnet101_v2": keras.applications.ResNet101V2,
          "resnet152_v2": keras.applications.ResNet152V2}[name](weights=None)
    ours = catalog.create_model(name)
    assert sorted(tuple(w.shape) for w in ours.weights) == sorted(tuple(w.shape) for w in ka.weights)
    assert count_params(ours) == count_params(ka) == VARIANTS_V2[name][1]
    assert abs(count_params(ours) - get_entry(name).reference_params) <= 0.005 * get_entry(name).reference_params


def test_knobs_drop_path_and_attention():
    model = catalog.create_model("resnet20", drop_path_rate=0.2)
    rates = {layer.name: layer.rate for layer in model.layers if layer.name.endswith("_drop_path")}
    assert "stage1_block1_drop_path" not in rates  # linear schedule starts at 0: no layer
    assert rates["stage3_block3_drop_path"] == pytest.approx(0.2)
    assert rates["stage2_block1_drop_path"] == pytest.approx(0.2 * 3 / 8)
    se = functools.partial(attention.se, ratio=16)
    base = catalog.create_model("resnet18", depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    with_se = catalog.create_model("resnet18", depths=(1, 1, 1, 1), attention=se, input_shape=(32, 32, 3))
    assert with_se.get_layer("stage4_block1_se_reduce").filters == 512 // 16
    assert count_params(with_se) - count_params(base) == sum(2 * c * (c // 16) + c // 16 + c
                                                             for c in (64, 128, 256, 512))


def test_se_resnet50_stride_and_se_placement():
    model = catalog.create_model("se_resnet50", depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    assert model.get_layer("stage2_block1_conv1_conv").strides == (2, 2)  # the paper's Caffe layout
    assert model.get_layer("stage3_block1_se_expand").filters == 1024
    rx = catalog.create_model("se_resnext50_32x4d", depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    assert rx.get_layer("stage2_block1_conv2_conv").strides == (2, 2)
    assert rx.get_layer("stage2_block1_conv2_conv").groups == 32


@pytest.mark.parametrize("name, kwargs, match", [
    ("resnet50", dict(block="wide"), "block must be 'basic' or 'bottleneck'"),
    ("resnet50", dict(depths=(3, 0, 6, 3)), "depths must be a tuple of positive integers"),
    ("resnet18", dict(groups=32), "apply to block='bottleneck' only"),
    ("resnet50", dict(groups=0), "groups must be a positive integer"),
    ("resnet50", dict(drop_path_rate=1.5), "drop_path_rate must be a number in"),
    ("resnet50", dict(attention="se"), "attention must be None or a callable"),
    ("resnet20", dict(shortcut="conv"), "shortcut must be one of"),
    ("resnet20", dict(depths=(3, -1, 3)), "depths must be a tuple of positive integers"),
    ("wrn28_10", dict(width_factor=0), "width_factor must be a positive integer"),
    ("resnet20", dict(block_dropout=0.3), "block_dropout applies to block='preact_basic' only"),
    ("resnet50_v2", dict(width=0), "width must be a positive integer"),
    ("se_resnet50", dict(attention="sk"), "attention must be one of se, cbam"),
    ("se_resnet50", dict(ratio=0), "ratio must be a positive integer"),
    ("resnet50", dict(stem="deep3"), "stem must be one of 7x7, deep"),
    ("resnet50", dict(stem_pool="max"), "stem_pool must be one of pad, ceil"),
    ("resnet50", dict(shortcut_kernel=0), "shortcut_kernel must be 1, 3, 5 or 7"),
    ("resnet18", dict(reduce_first=2), "apply to block='bottleneck' only"),
    ("resnet50", dict(after_block="nonlocal"), "after_block must be None or a callable"),
    ("nonlocal_resnet50", dict(non_local_stages=(5,)), "non_local_stages must be a tuple of stage numbers in 1..4"),
    ("nonlocal_resnet50", dict(non_local_every=0), "non_local_every must be a positive integer"),
    ("nonlocal_resnet50", dict(non_local_sub_sample=1), "non_local_sub_sample must be True or False"),
    ("nonlocal_resnet50", dict(non_local_zero_init="yes"), "non_local_zero_init must be True or False"),
])
def test_knob_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model(name, **kwargs)
