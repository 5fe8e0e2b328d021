"""Facts of the classic families: AlexNet/ZFNet sizes and towers, LRN, VGG layout (A-E, A-LRN, C), NiN and
All-CNN counts and the All-CNN paper's comparison nets."""

import keras
import numpy as np
import pytest

import catalog
from catalog.models.alexnet import LocalResponseNormalization
from catalog.registry import count_params, get_entry
from catalog.models.vgg import bn_conv_biases
from helpers import keras_round_trip, random_input


def conv(k, c_in, c_out, groups=1):
    return k * k * (c_in // groups) * c_out + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def out_size(w, k, s, p=0):
    return (w - k + 2 * p) // s + 1  # O = floor((W - K + 2P) / S) + 1


def test_alexnet_spatial_sizes_227_55_27_27_13_13_6():
    model = catalog.create_model("alexnet", include_top=False)
    sizes = [model.get_layer(n).output.shape[1] for n in ("conv1_act", "pool1", "conv2_act", "pool2", "conv5_act",
                                                          "pool3")]
    assert [227] + sizes == [227, 55, 27, 27, 13, 13, 6]
    assert out_size(227, 11, 4) == 55 and out_size(55, 3, 2) == 27 and out_size(27, 3, 2) == 13
    assert out_size(13, 3, 2) == 6


@pytest.mark.parametrize("groups", [1, 2])
def test_alexnet_towers_closed_form(groups):
    # At 67x67 the last map is 1x1, so fc1 sees 256 inputs; the convs do not depend on the input size.
    model = catalog.create_model("alexnet", groups=groups, input_shape=(67, 67, 3), num_classes=10)
    convs = (conv(11, 3, 96) + conv(5, 96, 256, groups) + conv(3, 256, 384) + conv(3, 384, 384, groups)
             + conv(3, 384, 256, groups))
    assert model.get_layer("pool3").output.shape[1:] == (1, 1, 256)
    assert count_params(model) == convs + fc(256, 4096) + fc(4096, 4096) + fc(4096, 10)
    assert model.get_layer("conv2_conv").kernel.shape == (5, 5, 96 // groups, 256)
    assert model.get_layer("conv3_conv").kernel.shape == (3, 3, 256, 384)  # conv3 sees both towers
    # At 227 the head is the paper's: fc1 sees 6*6*256 = 9216 inputs.
    full = 60_965_224 if groups == 2 else 62_378_344
    assert convs + fc(9216, 4096) + fc(4096, 4096) + fc(4096, 1000) == full
    assert sum(isinstance(layer, LocalResponseNormalization) for layer in model.layers) == 2


def test_alexnet_tv_and_zfnet_layouts():
    tv = catalog.create_model("alexnet_tv", include_top=False)
    assert [tv.get_layer(n).output.shape[1] for n in ("conv1_act", "pool1", "pool2", "pool3")] == [55, 27, 13, 6]
    convs = conv(11, 3, 64) + conv(5, 64, 192) + conv(3, 192, 384) + conv(3, 384, 256) + conv(3, 256, 256)
    assert count_params(tv) == convs
    assert convs + fc(9216, 4096) + fc(4096, 4096) + fc(4096, 1000) == 61_100_840
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in tv.layers)
    # Zeiler & Fergus 2014, Fig. 3: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 6 (Caffe pools round up).
    zf = catalog.create_model("zfnet", include_top=False)
    sizes = [zf.get_layer(n).output.shape[1] for n in ("conv1_act", "pool1", "conv2_act", "pool2", "conv5_act",
                                                       "pool3")]
    assert sizes == [110, 55, 26, 13, 13, 6]
    convs = conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384) + conv(3, 384, 256)
    assert count_params(zf) == convs
    assert convs + fc(9216, 4096) + fc(4096, 4096) + fc(4096, 1000) == 62_357_608


def test_alexnet_errors_and_fixed_top():
    with pytest.raises(ValueError, match="groups must be 1"):
        catalog.create_model("alexnet", groups=4)
    with pytest.raises(ValueError, match="groups=2 exists only"):
        catalog.create_model("zfnet", groups=2)
    with pytest.raises(ValueError, match="layout must be one of"):
        catalog.create_model("alexnet", layout="caffenet")
    with pytest.raises(ValueError, match="needs a fixed height and width"):
        catalog.create_model("alexnet", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="at least 67"):
        catalog.create_model("alexnet", input_shape=(66, 66, 3))


def lrn_numpy(a, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """Krizhevsky et al. 2012, Section 3.3, written per channel."""
    channels = a.shape[-1]
    out = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        out[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo:hi + 1] ** 2, axis=-1)) ** beta
    return out


@pytest.mark.jax
def test_lrn_matches_the_paper_formula():
    data = (random_input((5, 4, 7)) * 30).astype("float32")  # large enough that the denominator matters
    x = keras.Input((5, 4, 7))
    model = keras.Model(x, LocalResponseNormalization(name="lrn")(x))
    np.testing.assert_allclose(np.asarray(model(data)), lrn_numpy(data), rtol=1e-5)
    other = LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=1e-3, beta=0.5, name="lrn")
    np.testing.assert_allclose(np.asarray(other(data)), lrn_numpy(data, 3, 1.0, 1e-3, 0.5), rtol=1e-5)
    assert not (np.allclose(lrn_numpy(data), data / 2.0 ** 0.75))  # the window term is not negligible here
    keras_round_trip(model, data)
    assert other.count_macs([(1, 5, 4, 7)], [(1, 5, 4, 7)]) == 3 * 5 * 4 * 7
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)


@pytest.mark.parametrize("name, convs", [("vgg11", 8), ("vgg13", 10), ("vgg16", 13), ("vgg19", 16)])
def test_vgg_layout(name, convs):
    # Weight layers = convs + 3 FC (configurations A, B, D, E); at 32x32 the last map is 1x1.
    model = catalog.create_model(name, input_shape=(32, 32, 3), num_classes=10)
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == convs
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
        "head_fc1", "head_fc2", "head_fc"]
    assert model.get_layer("head_fc1").kernel.shape == (512, 4096)


def test_vgg_feature_sizes_and_notop_counts():
    feats = catalog.create_model("vgg16", features_only=True)
    assert [t.shape[1:] for t in feats.outputs] == [(112, 112, 64), (56, 56, 128), (28, 28, 256), (14, 14, 512),
                                                    (7, 7, 512)]
    assert count_params(feats) == 14_714_688  # keras.applications VGG16(include_top=False)
    assert count_params(catalog.create_model("vgg19", include_top=False)) == 20_024_384  # VGG19 notop
    bn = catalog.create_model("vgg16_bn", include_top=False)
    # BatchNorm after the 13 convs (gamma, beta), and no conv bias before it: torchvision's 138,365,992
    # less its 4,224 redundant conv biases.
    assert bn_conv_biases(16) == 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512 == 4_224
    assert count_params(bn) == 14_714_688 - 4_224 + 2 * 4_224
    assert bn.get_layer("stage1_conv1_conv").use_bias is False
    assert bn.get_layer("stage1_conv1_bn").epsilon == 1e-5
    with pytest.raises(ValueError, match="depth must be one of"):
        catalog.create_model("vgg16", depth=17)


def vgg_params(stages, classes=1000, fc_in=7 * 7 * 512):
    """Closed form of VGG: ``stages`` lists each stage's conv kernel sizes (64-128-256-512-512 filters)."""
    total, c = 0, 3
    for kernels, filters in zip(stages, (64, 128, 256, 512, 512)):
        for k in kernels:
            total += conv(k, c, filters)
            c = filters
    return total + fc(fc_in, 4096) + fc(4096, 4096) + fc(4096, classes)


def test_vgg_a_lrn_and_c_closed_form():
    # Simonyan & Zisserman 2015, Table 1: A-LRN is A plus one LRN (no weights); C is D with conv1-256 and
    # conv1-512 as the third conv of stages 3-5. Table 2 prints 133M and 134M.
    a = vgg_params([(3,), (3,), (3, 3), (3, 3), (3, 3)])
    c = vgg_params([(3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)])
    d = vgg_params([(3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)])
    assert a == get_entry("vgg11").reference_params == 132_863_336
    assert d == get_entry("vgg16").reference_params == 138_357_544
    assert c == d - 8 * (256 * 256 + 2 * 512 * 512) == 133_638_952
    for name, count, paper in (("vgg11_lrn", a, 133e6), ("vgg16_c", c, 134e6)):
        entry = get_entry(name)
        assert entry.reference_params == paper and entry.reference_params_rtol * paper == pytest.approx(0.5e6)
        assert abs(count - paper) <= 0.5e6
    # At 32x32 the last map is 1x1: fc1 sees 512 inputs.
    lrn = catalog.create_model("vgg11_lrn", input_shape=(32, 32, 3), num_classes=10)
    assert count_params(lrn) == vgg_params([(3,), (3,), (3, 3), (3, 3), (3, 3)], 10, 512)
    c_small = catalog.create_model("vgg16_c", input_shape=(32, 32, 3), num_classes=10)
    assert count_params(c_small) == vgg_params([(3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)], 10, 512)


def test_vgg11_lrn_position_and_parameters():
    model = catalog.create_model("vgg11_lrn", input_shape=(32, 32, 3), include_top=False)
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["input", "stage1_conv1_conv", "stage1_conv1_act", "stage1_conv1_lrn", "stage1_pool"]
    norms = [layer for layer in model.layers if isinstance(layer, LocalResponseNormalization)]
    assert [layer.name for layer in norms] == ["stage1_conv1_lrn"]
    # "the parameters for the LRN layer are those of (Krizhevsky et al., 2012)": n = 5, k = 2, 1e-4, 0.75
    assert (norms[0].depth_radius, norms[0].bias, norms[0].alpha, norms[0].beta) == (2, 2.0, 1e-4, 0.75)
    plain = [layer.name for layer in catalog.create_model("vgg11", input_shape=(32, 32, 3), include_top=False).layers]
    assert [n for n in names if n != "stage1_conv1_lrn"] == plain


def test_vgg16_c_one_by_one_convs():
    model = catalog.create_model("vgg16_c", input_shape=(32, 32, 3), include_top=False)
    kernels = {layer.name: layer.kernel_size for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    assert len(kernels) == 13
    assert sorted(n for n, k in kernels.items() if k == (1, 1)) == [
        "stage3_conv3_conv", "stage4_conv3_conv", "stage5_conv3_conv"]
    assert model.get_layer("stage3_conv3_conv").kernel.shape == (1, 1, 256, 256)
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in model.layers)
    with pytest.raises(ValueError, match="conv1x1=True .* needs depth 16"):
        catalog.create_model("vgg16_c", depth=19)
    with pytest.raises(ValueError, match="lrn must be True or False"):
        catalog.create_model("vgg11_lrn", lrn="yes")


def test_nin_counts_and_head():
    cifar = catalog.create_model("nin_cifar")
    expected = (conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96) + conv(5, 96, 192) + 2 * conv(1, 192, 192)
                + conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10))
    assert count_params(cifar) == expected == 966_986
    assert not any(isinstance(layer, keras.layers.Dense) for layer in cifar.layers)
    assert cifar.get_layer("head_conv").output.shape[1:] == (8, 8, 10)
    imagenet = catalog.create_model("nin", include_top=False)
    assert [imagenet.get_layer(f"block{b}_layer1_act").output.shape[1] for b in (1, 2, 3, 4)] == [54, 27, 13, 6]
    expected = (conv(11, 3, 96) + 2 * conv(1, 96, 96) + conv(5, 96, 256) + 2 * conv(1, 256, 256) + conv(3, 256, 384)
                + 2 * conv(1, 384, 384) + conv(3, 384, 1024) + conv(1, 1024, 1024))
    assert count_params(imagenet) == expected
    assert expected + conv(1, 1024, 1000) == 7_595_176


def test_allconv_count_and_strided_convs():
    model = catalog.create_model("allconv")
    expected = (conv(3, 3, 96) + 2 * conv(3, 96, 96) + conv(3, 96, 192) + 3 * conv(3, 192, 192) + conv(1, 192, 192)
                + conv(1, 192, 10))
    assert count_params(model) == expected == 1_369_738
    assert not any(isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))
                   for layer in model.layers)
    assert [model.get_layer(f"conv{i}_conv").strides for i in (3, 6)] == [(2, 2), (2, 2)]
    assert model.get_layer("head_conv").output.shape[1:] == (6, 6, 10)
    with pytest.raises(ValueError, match="input_dropout must be"):
        catalog.create_model("allconv", input_dropout=1.0)


# The All-CNN paper's base models (Table 1) in closed form, and the two 3x3 convs (96 and 192 channels) that
# ConvPool-CNN adds before and All-CNN puts in place of the two pools (Table 2).
_TOP = conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10)
_BASE = {"a": conv(5, 3, 96) + conv(5, 96, 192),
         "b": conv(5, 3, 96) + conv(1, 96, 96) + conv(5, 96, 192) + conv(1, 192, 192),
         "c": conv(3, 3, 96) + conv(3, 96, 96) + conv(3, 96, 192) + conv(3, 192, 192)}
_EXTRA = conv(3, 96, 96) + conv(3, 192, 192)


@pytest.mark.parametrize("name, base, extra, pattern", [
    # Conv kernel/stride and max pools in order, before the 3x3 valid + 1x1 top (Table 2 for C).
    ("allconv_model_a", "a", False, "5/1 pool 5/1 pool"),
    ("strided_cnn_a", "a", False, "5/2 5/2"),
    ("convpool_cnn_a", "a", True, "5/1 3/1 pool 5/1 3/1 pool"),
    ("allconv_a", "a", True, "5/1 3/2 5/1 3/2"),
    ("allconv_model_b", "b", False, "5/1 1/1 pool 5/1 1/1 pool"),
    ("strided_cnn_b", "b", False, "5/1 1/2 5/1 1/2"),
    ("convpool_cnn_b", "b", True, "5/1 1/1 3/1 pool 5/1 1/1 3/1 pool"),
    ("allconv_b", "b", True, "5/1 1/1 3/2 5/1 1/1 3/2"),
    ("allconv_model_c", "c", False, "3/1 3/1 pool 3/1 3/1 pool"),
    ("strided_cnn_c", "c", False, "3/1 3/2 3/1 3/2"),
    ("convpool_cnn_c", "c", True, "3/1 3/1 3/1 pool 3/1 3/1 3/1 pool"),
    ("allconv", "c", True, "3/1 3/1 3/2 3/1 3/1 3/2")])
def test_allcnn_comparison_nets(name, base, extra, pattern):
    model = catalog.create_model(name)
    assert count_params(model) == _BASE[base] + _TOP + extra * _EXTRA == get_entry(name).reference_params
    steps = [f"{layer.kernel_size[0]}/{layer.strides[0]}" if isinstance(layer, keras.layers.Conv2D) else "pool"
             for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    assert " ".join(steps) == pattern + " 3/1 1/1 1/1"  # the shared top and the head's class conv
    assert model.get_layer("head_conv").output.shape[1:] == (6, 6, 10)  # "global averaging over 6x6"
    drops = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops == [0.2, 0.5, 0.5]  # the input and after each pool or the layer that replaces it


def test_allcnn_table3_figures():
    # Table 3 prints ~1.4M for ConvPool-CNN-C and All-CNN-C: within its rounding. The other rows' figures
    # (~0.9M, ~1M, ~1.28M, ~1.35M, ~1.3M) exceed the layer tables' counts (the cards say so).
    assert abs(_BASE["c"] + _TOP + _EXTRA - 1.4e6) <= 0.05e6
    assert _BASE["c"] + _TOP == 954_730 and _BASE["a"] + _TOP == 839_242 and _BASE["b"] + _TOP == 885_610
    with pytest.raises(ValueError, match="base must be one of A, B, C"):
        catalog.create_model("allconv", base="D")
    with pytest.raises(ValueError, match="reduction must be one of pool, strided, convpool, all"):
        catalog.create_model("allconv", reduction="avg")
