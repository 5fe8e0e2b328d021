"""The MAC counter: closed-form counts per layer type, LeNet-5 by hand, and every registered reference MACs."""

import warnings

import keras
import pytest
from keras import layers, ops

import catalog
from catalog.flops import count_macs, layer_macs
from catalog.registry import get_entry, measure_card
from helpers import reference_case



def _model(layer, shape):
    x = keras.Input(shape)
    return keras.Model(x, layer(x))


@pytest.mark.jax
@pytest.mark.parametrize("layer, shape, expected", [
    # k_h * k_w * C_in * C_out * H_out * W_out
    (layers.Conv2D(16, 3, padding="same"), (10, 10, 8), 3 * 3 * 8 * 16 * 10 * 10),
    (layers.Conv2D(16, 3, strides=2, padding="valid"), (11, 11, 8), 3 * 3 * 8 * 16 * 5 * 5),
    (layers.Conv2D(16, 3, groups=4), (10, 10, 8), 3 * 3 * (8 // 4) * 16 * 8 * 8),
    (layers.Conv2D(4, 3, dilation_rate=2), (10, 10, 8), 3 * 3 * 8 * 4 * 6 * 6),  # 10 - 2*(3-1) = 6
    (layers.Conv2D(4, (1, 7), padding="same"), (9, 9, 8), 1 * 7 * 8 * 4 * 9 * 9),
    (layers.DepthwiseConv2D(3, padding="same"), (10, 10, 8), 3 * 3 * 8 * 10 * 10),
    (layers.DepthwiseConv2D(5, strides=2, depth_multiplier=2, padding="same"), (10, 10, 8), 5 * 5 * 8 * 2 * 5 * 5),
    (layers.SeparableConv2D(16, 3, padding="same"), (10, 10, 8), (3 * 3 * 8 + 8 * 16) * 10 * 10),
    (layers.Conv2DTranspose(4, 3, strides=2, padding="same"), (5, 5, 8), 3 * 3 * 8 * 4 * 5 * 5),
    (layers.Conv1D(6, 3), (20, 4), 3 * 4 * 6 * 18),
    (layers.Conv3D(2, 3), (5, 5, 5, 3), 27 * 3 * 2 * 27),
    (layers.Dense(10), (32,), 32 * 10),
    (layers.Dense(10), (4, 4, 32), 4 * 4 * 32 * 10),
    (layers.BatchNormalization(), (4, 4, 8), 0),
    (layers.MaxPooling2D(2), (4, 4, 8), 0),
    (layers.ReLU(), (4, 4, 8), 0),
])
def test_closed_form_per_layer(layer, shape, expected):
    model = _model(layer, shape)
    assert count_macs(model) == expected
    assert [m for _, _, m in layer_macs(model)] == [expected]


@pytest.mark.jax
def test_dot_counts_the_contraction():
    # Non-local attention's products: (N, 6, 4) x (N, 5, 4) over the last axes -> 6 * 5 outputs of 4 MACs.
    a, b = keras.Input((6, 4)), keras.Input((5, 4))
    model = keras.Model([a, b], layers.Dot(axes=(2, 2))([a, b]))
    assert count_macs(model) == 6 * 5 * 4


def test_elementwise_counts_only_on_request():
    x = keras.Input((6, 6, 8))
    a = layers.BatchNormalization(name="bn")(x)
    b = layers.AveragePooling2D(3, strides=1, padding="same", name="pool")(a)
    c = layers.Add(name="add")([a, b, x])
    d = layers.GlobalAveragePooling2D(name="gap")(c)
    e = layers.ReLU(name="relu")(d)
    model = keras.Model(x, e)
    elements = 6 * 6 * 8
    assert count_macs(model) == 0
    assert layer_macs(model, include_elementwise=True) == [
        ("bn", "BatchNormalization", elements), ("pool", "AveragePooling2D", 9 * elements),
        ("add", "Add", 2 * elements), ("gap", "GlobalAveragePooling2D", elements), ("relu", "ReLU", 0)]


@pytest.mark.jax
def test_nested_and_shared_layers_count_every_call():
    inner_in = keras.Input((None, None, 4))
    inner = keras.Model(inner_in, layers.Conv2D(6, 3, padding="same", name="c")(inner_in), name="inner")
    seq = keras.Sequential([layers.Dense(5, name="fc")], name="seq")
    shared = layers.Conv2D(4, 1, name="shared")
    x = keras.Input((8, 8, 4))
    y = inner(shared(shared(x)))
    z = seq(layers.GlobalAveragePooling2D(name="gap")(y))
    model = keras.Model(x, z)
    assert layer_macs(model) == [("shared", "Conv2D", 16 * 64), ("shared", "Conv2D", 16 * 64),
                                 ("inner/c", "Conv2D", 9 * 4 * 6 * 64), ("gap", "GlobalAveragePooling2D", 0),
                                 ("seq/fc", "Dense", 30)]
    assert count_macs(model) == 2 * 16 * 64 + 9 * 4 * 6 * 64 + 30
    # The inner model takes any size; the outer input_shape propagates into it.
    assert count_macs(model, input_shape=(16, 16, 4)) == 4 * (2 * 16 * 64 + 9 * 4 * 6 * 64) + 30


class _Squares(layers.Layer):
    def call(self, x):
        return ops.square(x)

    def count_macs(self, input_shapes, output_shapes):
        assert input_shapes == [(1, 3, 3, 2)] and output_shapes == [(1, 3, 3, 2)]
        return 7


class _Weighted(layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],))

    def call(self, x):
        return x * self.w


@pytest.mark.jax
def test_custom_layers_declare_their_count_and_unknown_weighted_layers_warn():
    x = keras.Input((3, 3, 2))
    assert count_macs(keras.Model(x, _Squares(name="sq")(x))) == 7
    x = keras.Input((3, 3, 2))
    model = keras.Model(x, _Weighted(name="w")(x))
    with pytest.warns(UserWarning, match="no rule for layer 'w'"):
        assert count_macs(model) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_macs(keras.Model(x, layers.Activation("relu", name="r")(x))) == 0


@pytest.mark.jax
def test_dynamic_input_needs_input_shape():
    x = keras.Input((None, None, 3))
    model = keras.Model(x, layers.Conv2D(2, 1, name="c")(x))
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(model)
    assert count_macs(model, input_shape=(5, 4, 3)) == 3 * 2 * 20
    with pytest.raises(ValueError, match="input_shape must give"):
        count_macs(model, input_shape=(5, 4))


def test_lenet5_by_hand():
    model = catalog.create_model("lenet5")
    c1 = 5 * 5 * 1 * 6 * 28 * 28
    c3 = 5 * 5 * 6 * 16 * 10 * 10
    c5 = 5 * 5 * 16 * 120 * 1 * 1
    f6, out = 120 * 84, 84 * 10
    assert count_macs(model) == c1 + c3 + c5 + f6 + out == 416_520
    assert catalog.model_info("lenet5", measure=True).macs == 416_520


WITH_MACS = [n for n in catalog.list_models() if get_entry(n).reference_macs]


@pytest.mark.parametrize("name", [reference_case(n) for n in WITH_MACS])
def test_reference_macs_within_5_percent(name):
    # count_macs of the model at its defaults; measure_card is cached, so the registry tests of
    # tests/test_models.py reuse this build.
    entry = get_entry(name)
    macs = measure_card(name)["macs"]
    assert abs(macs - entry.reference_macs) <= 0.05 * entry.reference_macs, (macs, entry.reference_macs)


# The published figures people compare with (torchvision's GFLOPS = MACs, the MobileNet and ShuffleNet papers'
# MFLOPs = MACs), within 3%. GoogLeNet: torchvision's 1.50G is of its layout, whose "5x5" branches are 3x3
# convs (layout="torchvision"); the paper's 5x5 layout counts 1.58G (its card's reference).
@pytest.mark.parametrize("name, options, published", [
    ("resnet18", {}, 1.81e9), ("resnet50", {}, 4.09e9), ("mobilenet_v2", {}, 0.30e9),
    ("mobilenet_v3_large", {}, 0.217e9), ("shufflenet_v2_x1_0", {}, 0.146e9), ("vgg16", {}, 15.47e9),
    ("googlenet", {"layout": "torchvision"}, 1.50e9), ("squeezenet1_1", {}, 0.35e9),
])
def test_macs_within_3_percent_of_the_published_figures(name, options, published):
    macs = count_macs(catalog.create_model(name, **options)) if options else catalog.model_info(name).macs
    assert macs == pytest.approx(published, rel=0.03)
