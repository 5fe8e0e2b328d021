"""Restoration models (SRCNN, ESPCN, EDSR baseline, DnCNN): counts against the papers, output sizes at several
(odd and None) input sizes, the sub-pixel layer against ``tf.nn.depth_to_space``, a few training steps with a
falling loss, ``.keras`` round trips, the recipe's data task, ``catalog.train`` into a restoration report, the
report's PSNR/SSIM against scikit-image on the same crops and channels, and the models on JAX."""

import json
import os

import keras
import numpy as np
import pytest

import catalog
from catalog.models.restoration import PixelShuffle, restoration_recipe, restoration_scale
from catalog.registry import TrainingRecipe, count_params, get_entry, recipe_of
from helpers import keras_round_trip

RESTORATION = catalog.list_models(task="restoration")
# name: tiny create_model keywords for quick tests
TINY = {
    "srcnn_915": dict(filters=(8, 4)),
    "srcnn_955": dict(filters=(8, 4)),
    "espcn": dict(filters=(8, 4)),
    "edsr_baseline_x2": dict(num_blocks=2, filters=8),
    "edsr_baseline_x3": dict(num_blocks=2, filters=8),
    "edsr_baseline_x4": dict(num_blocks=2, filters=8),
    "dncnn": dict(depth=4, filters=8),
}
# name: exact trainable parameters at the registered defaults (the cards' reference_params say how they compare
# with the papers: SRCNN 8,032 / 57,184 weights + 97 biases, EDSR baseline 1.5M, DnCNN 0.56M)
COUNTS = {"srcnn_915": 8_129, "srcnn_955": 57_281, "espcn": 21_284, "edsr_baseline_x2": 1_369_859,
          "edsr_baseline_x3": 1_554_499, "edsr_baseline_x4": 1_517_571, "dncnn": 556_097}


def _scale(name):
    return 1 if name == "dncnn" else get_entry(name).defaults.get("scale", 2)


def test_every_restoration_model_has_tiny_settings_and_a_count():
    assert sorted(TINY) == sorted(COUNTS) == RESTORATION


@pytest.mark.parametrize("name", RESTORATION)
def test_counts_match_the_papers(name):
    entry = get_entry(name)
    count = count_params(catalog.create_model(name))
    assert count == COUNTS[name]
    assert abs(count - entry.reference_params) <= entry.reference_params_rtol * entry.reference_params


def test_espcn_and_srcnn_counts_in_closed_form():
    from catalog.models.espcn import espcn_params

    for scale in (2, 3, 4):
        for channels in (1, 3):
            model = catalog.create_model("espcn", scale=scale, num_channels=channels)
            assert count_params(model) == espcn_params(scale, channels) == (
                5 * 5 * channels * 64 + 64 + 3 * 3 * 64 * 32 + 32 + (3 * 3 * 32 + 1) * channels * scale * scale)
    weights = 9 * 9 * 64 + 1 * 1 * 64 * 32 + 5 * 5 * 32  # the 2014 paper's 8,032
    assert weights == 8_032 and count_params(catalog.create_model("srcnn_915")) == weights + 64 + 32 + 1


@pytest.mark.parametrize("name", RESTORATION)
@pytest.mark.parametrize("size", [(17, 23), (32, 32), (None, None)])
def test_output_is_the_input_times_the_scale(name, size):
    for channels in (1, 3):
        model = catalog.create_model(name, num_channels=channels, input_shape=size, **TINY[name])
        h, w = (size[0] or 19, size[1] or 13)
        out = np.asarray(model(np.random.default_rng(0).random((2, h, w, channels), np.float32), training=False))
        s = _scale(name)
        assert out.shape == (2, h * s, w * s, channels) and np.all(np.isfinite(out))
        assert restoration_scale(model) == s


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_channels must be 1"):
        catalog.create_model("espcn", num_channels=2)
    with pytest.raises(ValueError, match="scale must be one of 2, 3, 4"):
        catalog.create_model("edsr_baseline_x2", scale=5)
    with pytest.raises(ValueError, match="input_shape has 3 channels but num_channels is 1"):
        catalog.create_model("dncnn", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="depth must be an integer >= 3"):
        catalog.create_model("dncnn", depth=2)
    with pytest.raises(ValueError, match="loss must be one of l1, l2"):
        restoration_recipe(catalog.create_model("espcn", **TINY["espcn"]), loss="l3")


def test_pixel_shuffle_is_depth_to_space():
    import tensorflow as tf

    x = np.random.default_rng(1).random((2, 5, 7, 3 * 9), np.float32)
    np.testing.assert_array_equal(np.asarray(PixelShuffle(3)(x)), tf.nn.depth_to_space(x, 3).numpy())
    assert PixelShuffle(2).compute_output_shape((None, None, 6, 8)) == (None, None, 12, 2)


def test_dncnn_predicts_the_noise():
    model = catalog.create_model("dncnn", input_shape=(16, 16), **TINY["dncnn"])
    assert model.get_layer("residual").__class__.__name__ == "Subtract"
    assert not model.get_layer("layer2_conv").use_bias and model.get_layer("layer1_conv").use_bias
    x = np.random.default_rng(0).random((1, 16, 16, 1), np.float32)
    noise = keras.Model(model.input, model.get_layer("layer4_conv").output)(x)
    np.testing.assert_allclose(np.asarray(model(x)), x - np.asarray(noise), atol=1e-6)


@pytest.mark.parametrize("name,task,options", [("espcn", "super_resolution", {"scale": 2}),
                                                ("edsr_baseline_x3", "super_resolution", {"scale": 3}),
                                                ("srcnn_915", "super_resolution", {"scale": 2}),
                                                ("dncnn", "denoising", {"noise_std": 25.0})])
def test_recipe_names_the_data_task(name, task, options):
    model = catalog.create_model(name, input_shape=(None, None), **TINY[name])
    recipe = recipe_of(model, name)
    assert isinstance(recipe, TrainingRecipe) and recipe.task == task and recipe.data_options == options
    assert isinstance(recipe.loss, keras.losses.MeanAbsoluteError)
    assert isinstance(recipe_of(model, name, loss="l2").loss, keras.losses.MeanSquaredError)


def _pairs(name, channels, n=8, size=24, seed=0):
    """(degraded, clean) arrays in [0, 1]: blocky images, their 1/scale block means or a noisy copy."""
    rng = np.random.default_rng(seed)
    clean = rng.random((n, size // 4, size // 4, channels)).repeat(4, 1).repeat(4, 2).astype("float32")
    s = _scale(name)
    if s == 1:
        return np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype("float32"), clean
    return clean.reshape(n, size // s, s, size // s, s, channels).mean(axis=(2, 4)), clean


@pytest.mark.parametrize("name", RESTORATION)
def test_trains_a_few_steps_with_a_falling_loss(name):
    size = 24
    keras.utils.set_random_seed(0)
    model = catalog.create_model(name, input_shape=(None, None), **TINY[name])
    recipe = recipe_of(model, name, loss="l2")
    x, y = _pairs(name, model.input_shape[-1], size=size)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=recipe.loss, metrics=list(recipe.metrics))
    history = model.fit(x, y, batch_size=4, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert np.isfinite(history["psnr"][-1])


@pytest.mark.parametrize("name", ["srcnn_955", "espcn", "edsr_baseline_x4", "dncnn"])
def test_round_trip(name):
    model = catalog.create_model(name, num_channels=3, input_shape=(None, None), **TINY[name])
    model.compile(optimizer="adam", loss=recipe_of(model, name).loss, metrics=list(recipe_of(model, name).metrics))
    loaded = keras_round_trip(model, np.random.default_rng(0).random((2, 15, 21, 3), np.float32))
    assert loaded.input_shape == (None, None, None, 3)


def _report(path):
    with open(os.path.join(path, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def test_catalog_train_super_resolution_and_denoising_into_reports(tmp_path):
    run = catalog.train("espcn", "shapes", image_size=32, num_images=32, batch_size=8, epochs=2, verbose=0,
                        optimizer="adam", lr=3e-3, model_options={"num_channels": 3, **TINY["espcn"]},
                        out_dir=str(tmp_path / "sr"))
    assert [round(r["epoch"]) for r in run.history] == [1, 2]
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    report = _report(run.run_dir)
    metrics = report["metrics"]
    assert report["task"] == "restoration" and metrics["data_task"] == "super_resolution"
    assert metrics["scale"] == 2 and metrics["border_crop"] == 2 and metrics["baseline_name"] == "bicubic x2 (PIL)"
    assert {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"} <= set(metrics) == set(metrics) | set(metrics["baseline"])
    assert report["dataset"]["examples"] == 500  # the held-out generated split
    with open(os.path.join(run.run_dir, "report.html"), encoding="utf-8") as f:
        assert "Samples: input, output, target" in f.read()

    run = catalog.train("dncnn", "shapes", image_size=24, num_images=16, batch_size=8, epochs=1, verbose=0,
                        optimizer="adam", lr=1e-3, model_options=TINY["dncnn"], task_options={"noise_std": 50.0},
                        out_dir=str(tmp_path / "dn"))
    metrics = _report(run.run_dir)["metrics"]
    assert metrics["data_task"] == "denoising" and metrics["noise_std"] == 50.0 and metrics["border_crop"] == 0
    assert "psnr_rgb" not in metrics  # a 1-channel model: Y is its channel
    # the saved model scores again through catalog.evaluate, on the noise it was trained with
    out = catalog.evaluate(os.path.join(run.run_dir, "model.keras"), "shapes", task="restoration", image_size=24,
                           out_dir=str(tmp_path / "eval"), noise_std=50.0, verbose=0)
    again = _report(out)["metrics"]
    assert again["psnr_y"] == pytest.approx(metrics["psnr_y"], abs=1e-4)


def test_reported_psnr_and_ssim_equal_scikit_image(tmp_path):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from catalog import datasets
    from catalog.scoring import bicubic_upscale, luma_bt601

    keras.utils.set_random_seed(0)
    model = catalog.create_model("espcn", num_channels=3, input_shape=(None, None), **TINY["espcn"])
    out = catalog.evaluate(model, "shapes", task="restoration", image_size=32, num_images=6, batch_size=4,
                           allow_random_weights=True, out_dir=str(tmp_path), verbose=0)
    report = _report(out)
    ds, _ = datasets.load("shapes", split="val", task="super_resolution", image_size=32, num_images=6, batch_size=6,
                          preprocessing="unit", scale=2)
    x, y = (np.asarray(t, np.float64) for t in next(iter(ds)))
    pred = np.clip(np.asarray(model.predict_on_batch(x.astype("float32")), np.float64), 0, 1)
    base = bicubic_upscale(x, 2).astype(np.float64)
    b = report["metrics"]["border_crop"]
    assert b == 2

    def sk(a, ref):
        a, ref = a[:, b:-b, b:-b], ref[:, b:-b, b:-b]
        ya, yr = luma_bt601(a)[..., 0], luma_bt601(ref)[..., 0]
        ssim = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
        return {"psnr_rgb": np.mean([peak_signal_noise_ratio(r, p, data_range=1.0) for p, r in zip(a, ref)]),
                "ssim_rgb": np.mean([structural_similarity(r, p, channel_axis=-1, **ssim) for p, r in zip(a, ref)]),
                "psnr_y": np.mean([peak_signal_noise_ratio(r, p, data_range=1.0) for p, r in zip(ya, yr)]),
                "ssim_y": np.mean([structural_similarity(r, p, **ssim) for p, r in zip(ya, yr)])}

    for got, want in ((report["metrics"], sk(pred, y)), (report["metrics"]["baseline"], sk(base, y))):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # the luma is BT.601's studio range: white is 235/255, black 16/255
    np.testing.assert_allclose(luma_bt601(np.array([[[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]]))[..., 0],
                               [[[235 / 255, 16 / 255]]], rtol=1e-4)


@pytest.mark.jax
@pytest.mark.parametrize("name", RESTORATION)
def test_runs_and_trains_on_the_current_backend(name):
    # CI runs this under KERAS_BACKEND=jax too: forward at a None-size input, a train step, a round trip.
    keras.utils.set_random_seed(0)
    model = catalog.create_model(name, num_channels=3, input_shape=(None, None), **TINY[name])
    x = np.random.default_rng(0).random((2, 12, 10, 3), np.float32)
    s = _scale(name)
    assert np.asarray(model(x, training=False)).shape == (2, 12 * s, 10 * s, 3)
    recipe = recipe_of(model, name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=recipe.loss, metrics=list(recipe.metrics))
    y = np.random.default_rng(1).random((2, 12 * s, 10 * s, 3), np.float32)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    keras_round_trip(model, x)
