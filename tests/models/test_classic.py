"""Facts of the classic families: AlexNet/ZFNet sizes and towers, LRN, VGG layout, NiN and All-CNN counts."""

import keras
import numpy as np
import pytest

import catalog
from catalog.models.alexnet import LocalResponseNormalization
from catalog.registry import count_params
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
