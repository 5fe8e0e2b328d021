"""Video models (C3D, R3D-18) and their 3D blocks: counts (C3D's closed form, torchvision's r3d_18), feature-map
sizes, Conv3D/3D-pool MACs in closed form and r3d_18's against torchvision's figure, a few training steps with a
falling loss, ``.keras`` round trips, argument errors, ``catalog.train`` into a video report, and JAX."""

import json
import os

import keras
import numpy as np
import pytest
from keras import layers

import catalog
from catalog.blocks.conv3d import basic_3d, conv_bn_act_3d, max_pool3d_ceil
from catalog.flops import count_macs, layer_macs
from catalog.models.c3d import c3d_params
from catalog.registry import count_params, get_entry, recipe_of
from helpers import keras_round_trip

VIDEO = catalog.list_models(task="video")
TINY = {"c3d": dict(width=0.125, fc_units=32), "r3d_18": dict(width=8, depths=(1, 1, 1, 1))}
CLIP = (4, 16, 16, 3)


def test_every_video_model_has_tiny_settings():
    assert sorted(TINY) == VIDEO == ["c3d", "r3d_18"]
    for name in VIDEO:
        entry = get_entry(name)
        assert entry.task == "video" and entry.input_shape == (16, 112, 112, 3) and entry.preprocessing == "unit"


def test_c3d_count_in_closed_form_and_pool5_features():
    model = catalog.create_model("c3d")
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    conv = sum(27 * cin * cout + cout for cin, cout in convs)
    assert conv == 27_655_936
    expected = conv + (8192 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 487 + 487)  # 487 Sports-1M classes
    assert count_params(model) == expected == c3d_params() == get_entry("c3d").reference_params == 79_991_015
    # a 16x112x112 clip: pools to 16x56x56, 8x28x28, 4x14x14, 2x7x7 and (ceil mode) 1x4x4: 8,192 fc6 inputs
    sizes = [tuple(model.get_layer(f"pool{i}").output.shape[1:4]) for i in range(1, 6)]
    assert sizes == [(16, 56, 56), (8, 28, 28), (4, 14, 14), (2, 7, 7), (1, 4, 4)]
    assert model.get_layer("head_flatten").output.shape[-1] == 8192
    small = catalog.create_model("c3d", num_classes=5, input_shape=(8, 32, 32, 3), width=0.125, fc_units=16)
    # widths 8, 16, 32, 32, 64, 64, 64, 64; pool5 at 8x32x32 is 1x1x1
    assert count_params(small) == c3d_params(5, 0.125, 16, features=64) == (
        27 * (3 * 8 + 8 * 16 + 16 * 32 + 32 * 32 + 32 * 64 + 3 * 64 * 64) + (8 + 16 + 32 + 32 + 4 * 64)
        + (64 + 1) * 16 + (16 + 1) * 16 + (16 + 1) * 5)


def test_r3d_18_count_and_macs_equal_torchvision():
    model = catalog.create_model("r3d_18")
    # torchvision.models.video.r3d_18(): sum of trainable parameter sizes; its docs: 40.70 GFLOPS (= MACs)
    assert count_params(model) == 33_371_472 == get_entry("r3d_18").reference_params
    assert count_macs(model) == pytest.approx(40.697e9, rel=0.03)
    sizes = [tuple(model.get_layer(f"stage{i}_block2_out").output.shape[1:]) for i in range(1, 5)]
    assert sizes == [(16, 56, 56, 64), (8, 28, 28, 128), (4, 14, 14, 256), (2, 7, 7, 512)]
    assert tuple(model.get_layer("stem_act").output.shape[1:]) == (16, 56, 56, 64)


def _one_layer(layer, shape):
    x = keras.Input(shape)
    return keras.Model(x, layer(x))


def test_conv3d_and_3d_pool_macs_in_closed_form():
    # k_t * k_h * k_w * C_in * C_out * T_out * H_out * W_out
    conv = _one_layer(layers.Conv3D(4, (3, 5, 5), strides=(1, 2, 2), padding="same"), (6, 10, 10, 3))
    assert count_macs(conv) == 3 * 5 * 5 * 3 * 4 * 6 * 5 * 5
    valid = _one_layer(layers.Conv3D(2, 3, strides=2), (7, 9, 9, 5))
    assert count_macs(valid) == 27 * 5 * 2 * 3 * 4 * 4
    pool = _one_layer(layers.MaxPooling3D((1, 2, 2)), (4, 6, 6, 3))
    assert count_macs(pool) == 0 and count_macs(pool, include_elementwise=True) == 4 * (4 * 3 * 3 * 3)
    gap = _one_layer(layers.GlobalAveragePooling3D(), (4, 6, 6, 3))
    assert count_macs(gap, include_elementwise=True) == 4 * 6 * 6 * 3
    # a basic block with a projection: 27*Cin*F + 27*F*F on the output volume, + Cin*F for the shortcut
    x = keras.Input((4, 8, 8, 6))
    block = keras.Model(x, basic_3d(x, 10, 2, name="b"))
    out = 2 * 4 * 4
    assert count_macs(block) == (27 * 6 * 10 + 27 * 10 * 10 + 6 * 10) * out
    assert {n for n, _, m in layer_macs(block) if m} == {"b_shortcut_conv", "b_conv1_conv", "b_conv2_conv"}


@pytest.mark.jax
def test_blocks_pad_as_pytorch_and_pool_in_ceil_mode():
    x = keras.Input((5, 7, 7, 2))
    y = conv_bn_act_3d(x, 3, (3, 7, 7), (1, 2, 2), padding="symmetric", name="stem")
    assert tuple(y.shape[1:]) == (5, 4, 4, 3)  # PyTorch: floor((7 + 6 - 7) / 2) + 1 = 4
    assert tuple(max_pool3d_ceil(x, 2, name="p").shape[1:]) == (3, 4, 4, 2)  # ceil(5/2), ceil(7/2)
    # ceil mode on non-negative inputs: the far window holds the last row alone
    values = np.arange(1, 4, dtype="float32").reshape(1, 1, 1, 3, 1)
    inp = keras.Input((1, 1, 3, 1))
    model = keras.Model(inp, max_pool3d_ceil(inp, (1, 1, 2), name="p"))
    np.testing.assert_array_equal(np.asarray(model(values)).reshape(-1), [2.0, 3.0])
    with pytest.raises(ValueError, match="padding must be one of"):
        conv_bn_act_3d(x, 3, padding="full", name="c")
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        basic_3d(x, 4, 3, name="b")


def _clips(n=8, seed=0):
    """Clips whose class is the direction a bright square moves (right or down), on noise."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.random((n, *CLIP), np.float32)
    y = np.arange(n, dtype=np.int32) % 2
    for i in range(n):
        for t in range(CLIP[0]):
            r, c = (4, 2 + 3 * t) if y[i] == 0 else (2 + 3 * t, 4)
            x[i, t, r:r + 4, c:c + 4] = 1.0
    return x, y


@pytest.mark.parametrize("name", VIDEO)
def test_softmax_logits_and_headless_variants(name):
    model = catalog.create_model(name, num_classes=3, input_shape=CLIP, **TINY[name])
    x = np.random.default_rng(0).random((2, *CLIP), np.float32)
    np.testing.assert_allclose(np.asarray(model(x)).sum(axis=1), 1.0, rtol=1e-5)
    logits = catalog.create_model(name, num_classes=3, input_shape=CLIP, classifier_activation=None, **TINY[name])
    assert "probabilities" in recipe_of(model, name).notes[0] and "logits" in recipe_of(logits, name).notes[0]
    pooled = catalog.create_model(name, include_top=False, pooling="avg", input_shape=(None, None, None, 3),
                                  **TINY[name])
    assert np.asarray(pooled(np.zeros((1, 3, 20, 12, 3), np.float32))).shape == (1, pooled.output_shape[-1])


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"input_shape must be \(frames, height, width, channels\)"):
        catalog.create_model("r3d_18", input_shape=(112, 112, 3))
    with pytest.raises(ValueError, match="input_shape must be .* positive integers for a video model"):
        catalog.create_model("c3d", input_shape=(None, 112, 112, 3))  # fc6 flattens: fixed sizes
    with pytest.raises(ValueError, match="width must be a positive number"):
        catalog.create_model("c3d", width=0)
    with pytest.raises(ValueError, match="fc_units must be a positive integer"):
        catalog.create_model("c3d", fc_units=1.5)
    with pytest.raises(ValueError, match="depths must be a tuple"):
        catalog.create_model("r3d_18", depths=())
    with pytest.raises(ValueError, match="pooling must be None"):
        catalog.create_model("r3d_18", include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="label_smoothing must be"):
        recipe_of(catalog.create_model("r3d_18", input_shape=CLIP, **TINY["r3d_18"]), "r3d_18", label_smoothing=2)


def test_catalog_train_c3d_on_moving_shapes_into_a_video_report(tmp_path):
    run = catalog.train("c3d", "shapes", data_options={"frames": 4}, image_size=16, num_images=32, batch_size=8,
                        epochs=2, optimizer="adam", lr=1e-3, verbose=0, model_options=TINY["c3d"],
                        out_dir=str(tmp_path / "run"))
    assert run.model.input_shape == (None, 4, 16, 16, 3) and run.model.output_shape == (None, 4)
    assert [round(r["epoch"]) for r in run.history] == [1, 2]
    with open(os.path.join(run.run_dir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["task"] == "video" and report["settings"]["frames"] == 4
    assert report["class_names"] == ["left", "right", "up", "down"]
    assert report["dataset"]["examples"] == 128  # the held-out generated clips
    assert np.asarray(report["metrics"]["confusion_matrix"]).sum() == 128
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    # the saved model scores again through catalog.evaluate (frames from the model's input)
    out = catalog.evaluate(os.path.join(run.run_dir, "model.keras"), "shapes", task="video", batch_size=64,
                           out_dir=str(tmp_path / "eval"), num_images=16, verbose=0)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        again = json.load(f)
    assert again["task"] == "video" and again["settings"]["frames"] == 4 and again["dataset"]["examples"] == 16
    assert again["settings"]["image_size"] == [16, 16]


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.jax] if n == "r3d_18" else []) for n in VIDEO])
def test_trains_with_a_falling_loss_and_round_trips(name):
    # CI runs r3d_18's under KERAS_BACKEND=jax too (Conv3D, 3D pooling and BatchNorm; C3D adds no other op):
    # train steps on moving-square clips, then a .keras round trip
    keras.utils.set_random_seed(0)
    model = catalog.create_model(name, num_classes=2, input_shape=CLIP, **TINY[name])
    recipe = recipe_of(model, name)
    assert recipe.task == "video" and recipe.num_classes == 2
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=recipe.loss, metrics=list(recipe.metrics))
    x, y = _clips()
    losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(6)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    loaded = keras_round_trip(model, x)
    assert loaded.output_shape == (None, 2)
