"""Selectable normalization: BatchNorm, GroupNorm (statistics over (C/G)*H*W), LayerNorm, InstanceNorm and none,
in ``conv_bn_act``, ``batch_norm`` and ``create_model(norm=...)``.

The definitions are checked against NumPy on random inputs on TensorFlow and JAX (``jax`` mark); the model
builds and the training step run on TensorFlow.
"""

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks.layers import NORMS, batch_norm, conv_bn_act, norm_defaults, normalization
from catalog.registry import count_params
from helpers import keras_round_trip, n_params, random_input

JAX = pytest.mark.jax
EPS = 1e-5  # the catalog's default epsilon, every kind


def _reference(x, groups, gamma, beta):
    """NumPy GroupNorm of NHWC ``x``: per sample, per group of C/G consecutive channels, over (C/G)*H*W values."""
    n, h, w, c = x.shape
    grouped = x.astype("float64").reshape(n, h, w, groups, c // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    return ((grouped - mean) / np.sqrt(var + EPS)).reshape(x.shape) * gamma + beta


def _apply(x, kind, groups=None, seed=0):
    """``normalization`` of kind ``kind`` on ``x`` with random gamma and beta; (output, layer, gamma, beta)."""
    inputs = keras.Input(x.shape[1:])
    with norm_defaults(kind=kind, groups=groups):
        model = keras.Model(inputs, normalization(inputs, name="n_bn"))
    layer = model.get_layer("n_bn")
    rng = np.random.default_rng(seed)
    gamma, beta = rng.uniform(0.5, 1.5, x.shape[-1]), rng.standard_normal(x.shape[-1])
    layer.set_weights([gamma.astype("float32"), beta.astype("float32")])
    return np.asarray(model(x, training=True)), layer, gamma, beta


@JAX
def test_group_norm_statistics_are_over_channels_per_group_times_height_times_width():
    x = random_input((5, 6, 12), batch=3) * 3.0 + 1.0
    out, layer, gamma, beta = _apply(x, "group", groups=4)
    assert isinstance(layer, keras.layers.GroupNormalization) and layer.groups == 4
    np.testing.assert_allclose(out, _reference(x, 4, gamma, beta), atol=2e-5)
    # normalized per sample and group: each group of 3 channels has mean 0 and variance 1 before the affine
    unit = ((out - beta) / gamma).reshape(3, 5, 6, 4, 3)
    np.testing.assert_allclose(unit.mean(axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(unit.var(axis=(1, 2, 4)), 1.0, atol=1e-3)


@JAX
def test_group_norm_with_one_group_per_channel_equals_instance_norm():
    x = random_input((7, 5, 8), batch=2, seed=1) * 2.0 - 0.5
    per_channel, _, gamma, beta = _apply(x, "group", groups=8, seed=2)
    instance, layer, _, _ = _apply(x, "instance", seed=2)
    assert layer.groups == 8
    np.testing.assert_allclose(instance, per_channel, atol=1e-6)
    # InstanceNorm: per sample and channel over H*W
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(instance, (x - mean) / np.sqrt(var + EPS) * gamma + beta, atol=2e-5)


@JAX
def test_group_norm_with_one_group_equals_layer_norm_over_height_width_channels():
    x = random_input((6, 6, 16), batch=2, seed=3) * 4.0
    one_group, _, _, _ = _apply(x, "group", groups=1)
    layer_norm, layer, _, _ = _apply(x, "layer")
    assert isinstance(layer, keras.layers.GroupNormalization) and layer.groups == 1
    np.testing.assert_allclose(layer_norm, one_group, atol=1e-6)
    # Keras' LayerNormalization over (H, W, C) computes the same statistics (its gamma and beta are per
    # position, shape (H, W, C); ours per channel, as Wu and He 2018's GroupNorm with G = 1)
    keras_ln = keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=EPS)
    gamma, beta = np.asarray(layer.gamma), np.asarray(layer.beta)
    np.testing.assert_allclose(layer_norm, np.asarray(keras_ln(x)) * gamma + beta, atol=2e-5)
    assert keras_ln.gamma.shape == (6, 6, 16) and layer.gamma.shape == (16,)


@JAX
def test_group_norm_is_independent_of_the_batch_and_of_training_mode():
    x = random_input((4, 4, 8), batch=2, seed=4)
    inputs = keras.Input((4, 4, 8))
    with norm_defaults(kind="group", groups=2):
        model = keras.Model(inputs, conv_bn_act(inputs, 8, 3, name="u"))
    both = np.asarray(model(x, training=True))
    np.testing.assert_allclose(np.asarray(model(x[:1], training=True)), both[:1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), both, atol=1e-6)


@pytest.mark.parametrize("norm, layer_type, groups", [
    (True, keras.layers.BatchNormalization, None), ("batch", keras.layers.BatchNormalization, None),
    ("group", keras.layers.GroupNormalization, 4), ("layer", keras.layers.GroupNormalization, 1),
    ("instance", keras.layers.GroupNormalization, 16),
])
def test_conv_bn_act_builds_the_selected_kind(norm, layer_type, groups):
    x = keras.Input((8, 8, 8))
    with norm_defaults(groups=4):
        model = keras.Model(x, conv_bn_act(x, 16, 3, norm=norm, zero_init=True, name="u"))
    assert [layer.name for layer in model.layers[1:]] == ["u_conv", "u_bn", "u_act"]
    norm_layer = model.get_layer("u_bn")
    assert type(norm_layer) is layer_type and getattr(norm_layer, "groups", None) == groups
    assert norm_layer.epsilon == 1e-5
    assert not model.get_layer("u_conv").use_bias
    assert n_params(model) == 3 * 3 * 8 * 16 + 2 * 16  # gamma and beta per channel, every kind
    assert n_params(model, trainable=False) == (2 * 16 if layer_type is keras.layers.BatchNormalization else 0)
    assert not np.asarray(norm_layer.gamma).any()  # zero_init reaches every kind


@pytest.mark.parametrize("norm", [False, None, "none"])
def test_conv_bn_act_without_normalization_has_a_conv_bias(norm):
    x = keras.Input((8, 8, 3))
    model = keras.Model(x, conv_bn_act(x, 4, 3, norm=norm, name="u"))
    assert [layer.name for layer in model.layers[1:]] == ["u_conv", "u_act"]
    assert n_params(model) == 3 * 3 * 3 * 4 + 4


def test_norm_true_and_batch_norm_follow_norm_defaults_an_explicit_kind_wins():
    x = keras.Input((8, 8, 16))
    with norm_defaults(kind="instance", epsilon=1e-3) as made:
        default = conv_bn_act(x, 16, 1, name="a")
        explicit = conv_bn_act(x, 16, 1, norm="batch", name="b")
        direct = batch_norm(x, name="c_bn", gamma_initializer="zeros")
        with norm_defaults(kind="none"):
            assert batch_norm(x, name="d_bn") is x  # "none": no layer at all
    outside = batch_norm(x, name="e_bn")
    model = keras.Model(x, [default, explicit, direct, outside])
    kinds = {name: (type(model.get_layer(name)).__name__, getattr(model.get_layer(name), "groups", None))
             for name in ("a_bn", "b_bn", "c_bn", "e_bn")}
    assert kinds == {"a_bn": ("GroupNormalization", 16), "b_bn": ("BatchNormalization", None),
                     "c_bn": ("GroupNormalization", 16), "e_bn": ("BatchNormalization", None)}
    assert model.get_layer("a_bn").epsilon == 1e-3 and model.get_layer("e_bn").epsilon == 1e-5
    assert not np.asarray(model.get_layer("c_bn").gamma).any()
    assert made == {"batch": 1, "group": 0, "layer": 0, "instance": 2, "none": 1}


def test_norm_defaults_restores_the_kind_after_an_error():
    x = keras.Input((8, 8, 12))
    with pytest.raises(ValueError, match=r"GroupNorm layer 'g_bn' normalizes 12 channels, which 8 groups"):
        with norm_defaults(kind="group", groups=8):
            conv_bn_act(x, 12, 1, name="g")
    assert type(keras.Model(x, batch_norm(x, name="after_bn")).get_layer("after_bn")) is keras.layers.BatchNormalization


@pytest.mark.parametrize("call, match", [
    (lambda x: conv_bn_act(x, 4, 1, norm="batchnorm", name="u"), "norm must be True, False, None or one of batch"),
    (lambda x: norm_defaults(kind="group_norm").__enter__(), "kind must be True, False, None or one of batch"),
    (lambda x: norm_defaults(groups=0).__enter__(), "groups must be a positive integer"),
])
def test_bad_normalization_arguments_raise(call, match):
    assert NORMS == ("batch", "group", "layer", "instance", "none")
    with pytest.raises(ValueError, match=match):
        call(keras.Input((8, 8, 4)))


def _norm_layers(model):
    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.GroupNormalization))]


@pytest.mark.parametrize("name, norm, groups, trainable, count, last", [
    # torchvision's trainable counts: GroupNorm has BatchNorm's gamma and beta per channel
    ("resnet18", "group", lambda c: 32, 11_689_512, 20, "stage4_block2_conv2_bn"),
    ("mobilenet_v2", "instance", lambda c: c, 3_504_872, 52, "head_conv_bn"),
])
def test_create_model_swaps_every_batch_norm(name, norm, groups, trainable, count, last):
    model = catalog.create_model(name, norm=norm, input_shape=(64, 64, 3))
    swapped = _norm_layers(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert len(swapped) == count  # as many as the BatchNorm build has, under its names
    assert swapped[0].name == "stem_bn" and swapped[-1].name == last
    assert all(layer.name.endswith("_bn") and layer.groups == groups(layer.gamma.shape[0]) for layer in swapped)
    assert count_params(model) == trainable and not model.non_trainable_weights


def test_create_model_norm_none_removes_normalization_and_adds_default_conv_biases():
    model = catalog.create_model("resnet18", norm=None, width=16, depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    assert not _norm_layers(model)
    biased = {layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.use_bias}
    assert {"stem_conv", "stage1_block1_conv1_conv", "stage4_block1_conv2_conv"} <= biased
    assert "stage2_block1_shortcut_conv" not in biased  # the family's explicit use_bias=False stays


def test_group_norm_resnet_trains_a_step_at_batch_size_two():
    model = catalog.create_model("resnet18", norm="group", norm_groups=8, width=16, depths=(1, 1, 1, 1),
                                 input_shape=(32, 32, 3), num_classes=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x, y = random_input((32, 32, 3), batch=2, seed=5), np.array([1, 3])
    before = [np.asarray(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    loss = history.history["loss"][0]
    assert np.isfinite(loss) and 0.0 < loss < 20.0
    changed = [not np.array_equal(a, np.asarray(w)) for a, w in zip(before, model.trainable_weights)]
    assert all(changed)  # every conv kernel, gamma and beta of the GroupNorm net moved
    gn = model.get_layer("stage1_block1_conv1_bn")
    assert isinstance(gn, keras.layers.GroupNormalization) and gn.groups == 8
    keras_round_trip(model, x)


def test_create_model_norm_errors_name_the_problem():
    with pytest.raises(ValueError, match="norm='group' cannot be applied to vgg11: it has no normalization layers"):
        catalog.create_model("vgg11", norm="group", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="GroupNorm layer 'stem_bn' normalizes 16 channels, which 32 groups"):
        catalog.create_model("resnet18", norm="group", width=16, depths=(1, 1, 1, 1), input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="norm_groups must be a positive integer; got 0"):
        catalog.create_model("resnet18", norm="group", norm_groups=0)
    with pytest.raises(ValueError, match="norm must be True, False, None or one of batch, group"):
        catalog.create_model("resnet18", norm="gn")
    with pytest.raises(ValueError, match="cannot be applied to dcgan_32: it has BatchNormalization layers of its own"):
        catalog.create_model("dcgan_32", norm="layer")


def test_a_builder_with_its_own_norm_keyword_takes_a_kind():
    """U-Net's ``norm`` (default False, the paper's) goes to its conv_bn_act calls, which accept kinds."""
    model = catalog.create_model("unet", norm="instance", width=8, depth=2, input_shape=(32, 32, 3))
    norms = _norm_layers(model)
    assert norms and all(isinstance(layer, keras.layers.GroupNormalization) and layer.groups == layer.gamma.shape[0]
                         for layer in norms)
    assert not _norm_layers(catalog.create_model("unet", width=8, depth=2, input_shape=(32, 32, 3)))
