"""Compression: magnitude pruning on its schedule through catalog.train, L1 filter pruning that is exact when the
removed filters are dead, and SVD low-rank layers that are exact at the kernel's rank."""

import json

import keras
import numpy as np
import pytest

import catalog
from catalog.training.compress import (MagnitudePruning, low_rank, magnitude_masks, polynomial_sparsity,
                                       prunable_convolutions, prune_filters, sparsity)
from helpers import keras_round_trip


def test_the_cubic_schedule_and_the_masks_by_hand():
    assert polynomial_sparsity(0, 0.8, begin_step=10, end_step=110) == 0.0
    assert polynomial_sparsity(60, 0.8, begin_step=10, end_step=110) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert polynomial_sparsity(500, 0.8, begin_step=10, end_step=110) == 0.8
    a, b = np.array([[0.1, -3.0], [2.0, 0.5]]), np.array([0.2, -0.05, 4.0, 1.0])
    global_masks = magnitude_masks([a, b], 0.5, "global")  # 8 weights, the 4 smallest |w|: 0.1 0.2 0.05 0.5
    np.testing.assert_array_equal(global_masks[0], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(global_masks[1], [0, 0, 1, 1])
    per_layer = magnitude_masks([a, b], 0.25, "layer")  # one weight of four in each
    np.testing.assert_array_equal(per_layer[0], [[0, 1], [1, 1]])
    np.testing.assert_array_equal(per_layer[1], [1, 0, 1, 1])


@pytest.mark.jax
def test_pruning_reaches_its_sparsity_through_catalog_train_and_keeps_it(tmp_path):
    pruning = MagnitudePruning(0.7, begin_step=0, end_step=4, frequency=1, min_params=500)
    run = catalog.train("resnet20", model_options={"width": 8, "depths": [1, 1, 1]}, data="shapes", num_images=64,
                        batch_size=16, image_size=32, epochs=2, val_split="none", verbose=0, callbacks=[pruning],
                        out_dir=str(tmp_path))
    assert [round(t, 4) for _, t in pruning.history[-2:]] == [0.7, 0.7]
    assert sparsity(run.model, min_params=500) == pytest.approx(0.7, abs=0.01)  # after 4 more steps at 0.7
    saved = keras.saving.load_model(str(tmp_path / "model.keras"))
    assert sparsity(saved, min_params=500) == pytest.approx(0.7, abs=0.01)
    assert np.isfinite([row["loss"] for row in run.history]).all()


def _dead_filters(model, conv_name, count):
    """Zero ``count`` filters of a conv (the smallest L1 norms then) and their BatchNorm shift, so those
    channels are exactly 0 after BN + ReLU and removing them must not change the outputs."""
    conv = model.get_layer(conv_name)
    kernel = np.array(conv.kernel)
    kernel[..., :count] = 0.0
    conv.kernel.assign(kernel)
    bn = model.get_layer(conv_name[:-len("conv")] + "bn")
    gamma, beta, mean, var = (np.array(w) for w in bn.weights)
    beta[:count], mean[:count] = 0.0, 0.0
    for w, v in zip(bn.weights, (gamma, beta, mean, var)):
        w.assign(v)


def _tiny_depthwise_net():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="expand")(inputs)
    x = keras.layers.BatchNormalization(name="expand_bn")(x)
    x = keras.layers.ReLU(name="expand_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(name="dw_relu")(x)
    y = keras.layers.Conv2D(6, 1, name="project")(x)
    y = keras.layers.ReLU(name="project_relu")(y)
    y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
    return keras.Model(inputs, keras.layers.Dense(4, name="fc")(y), name="tiny")


def test_filter_pruning_removes_dead_filters_exactly_and_leaves_shortcut_paths_alone():
    keras.utils.set_random_seed(1)
    model = catalog.create_model("resnet20", num_classes=3, input_shape=(32, 32, 3), width=8, depths=(1, 1, 1))
    prunable = prunable_convolutions(model)
    assert "stage1_block1_conv1_conv" in prunable and "stage1_block1_conv2_conv" not in prunable  # conv2 -> Add
    _dead_filters(model, "stage1_block1_conv1_conv", 4)  # of 8
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    small, kept = prune_filters(model, 0.5, layers=["stage1_block1_conv1_conv"])
    assert kept == {"stage1_block1_conv1_conv": 4}
    assert small.get_layer("stage1_block1_conv1_conv").kernel.shape[-1] == 4
    assert small.get_layer("stage1_block1_conv2_conv").kernel.shape[2] == 4
    np.testing.assert_allclose(small.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)
    keras_round_trip(small, x)
    # through a depthwise convolution and a pooled Dense: the channels shrink all the way along
    net = _tiny_depthwise_net()
    dead = np.array(net.get_layer("expand").kernel)
    dead[..., :3] = 0
    net.get_layer("expand").kernel.assign(dead)
    bn = net.get_layer("expand_bn")
    bn.beta.assign(np.where(np.arange(8) < 3, 0.0, np.array(bn.beta)))
    x = np.random.default_rng(1).random((2, 16, 16, 3)).astype("float32")
    pruned, kept = prune_filters(net, 3 / 8, layers=["expand", "project"])
    assert kept == {"expand": 5, "project": 4} and pruned.get_layer("dw").kernel.shape[2] == 5
    assert pruned.get_layer("fc").kernel.shape[0] == 4
    whole, _ = prune_filters(net, 3 / 8, layers=["expand"])
    np.testing.assert_allclose(whole.predict_on_batch(x), net.predict_on_batch(x), atol=1e-5)
    with pytest.raises(ValueError, match="stage1_block1_conv2_conv cannot be pruned"):
        prune_filters(model, 0.5, layers=["stage1_block1_conv2_conv"])
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        prune_filters(model, 1.0)


def test_low_rank_is_exact_at_the_kernels_rank_and_smaller():
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 32))
    x = keras.layers.Conv2D(48, 1, name="pointwise")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(40, activation="relu", name="fc")(x))
    model.get_layer("pointwise").kernel.assign((rng.normal(size=(32, 3)) @ rng.normal(size=(3, 48)))[None, None])
    model.get_layer("fc").kernel.assign(rng.normal(size=(48, 5)) @ rng.normal(size=(5, 40)))
    x = rng.random((2, 8, 8, 32)).astype("float32")
    factored, ranks = low_rank(model, energy=1.0, min_params=100)
    assert ranks == {"pointwise": 3, "fc": 5}
    assert factored.count_params() == 3 * (32 + 48) + 48 + 5 * (48 + 40) + 40
    np.testing.assert_allclose(factored.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-4, atol=1e-4)
    assert [layer.name for layer in factored.layers][-2:] == ["fc_svd", "fc"]
    keras_round_trip(factored, x)
    with pytest.raises(ValueError, match="give exactly one of rank"):
        low_rank(model)


def test_a_compressed_model_keeps_its_record_and_fine_tunes_on_the_same_inputs(tmp_path):
    from catalog.saving import load_model, record_of, save_model

    model = catalog.create_model("resnet20", num_classes=5, input_shape=(32, 32, 3), width=8, depths=(1, 1, 1))
    save_model(model, tmp_path / "base.keras", preprocessing="tf", crop_fraction=0.875, model_name="resnet20")
    assert record_of(model)["preprocessing"] == "tf"  # the model in memory carries what was saved with it
    assert record_of(load_model(tmp_path / "base.keras"))["crop_fraction"] == 0.875
    small, _ = prune_filters(model, 0.5)
    assert record_of(small)["preprocessing"] == "tf"
    catalog.train(small, "shapes", num_images=32, batch_size=16, image_size=32, epochs=1, val_split="none",
                  verbose=0, out_dir=str(tmp_path / "run"))
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["preprocessing"] == "tf"  # not "unit": the pruned network sees the pixels it learned on
