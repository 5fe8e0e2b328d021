"""catalog.train / `catalog train`: the run directory, exact resume after SIGKILL, guards and errors,
weight decay, EMA and the loss, on width-reduced models and a few hundred generated images."""

import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import catalog
from catalog.saving import load_model, read_record
from catalog.training.config import TrainConfig, make_config, validate
from catalog.training.optim import SparseCrossentropy, make_optimizer, no_decay_variables
from helpers import run_cli

TINY = ["--model-options", '{"width": 8, "depths": [1, 1, 1]}', "--data", "shapes", "--num-images", "256",
        "--batch-size", "32", "--verbose", "0"]
TINY_KW = dict(model_options={"width": 8, "depths": [1, 1, 1]}, data="shapes", num_images=256, batch_size=32,
               verbose=0)


def test_cli_train_writes_the_whole_run_directory(tmp_path):
    run = tmp_path / "r20"
    result = run_cli("train", "resnet20", *TINY, "--epochs", "2", "--out", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Run written to {run}" in result.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["epochs"] == 2 and config["resolved"]["steps_per_epoch"] == 8
    assert config["resolved"]["precision"] == "float32" and config["resolved"]["jit"] is False
    assert {"keras", "python", "numpy"} <= set(config["versions"])
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "accuracy", "val_loss", "learning_rate", "seconds", "images_per_second"} <= set(rows[0])
    assert (run / "checkpoints" / "last.keras").is_file() and os.listdir(run / "logs")
    report = json.loads((run / "report.json").read_text())
    assert report["history"]["loss"] == pytest.approx([float(r["loss"]) for r in rows])
    assert 'id="training"' in (run / "report.html").read_text()
    model, checkpoint = load_model(run / "model.keras"), load_model(run / "checkpoints" / "last.keras")
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), checkpoint.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    plain = keras.saving.load_model(str(run / "model.keras"), safe_mode=True)  # after catalog's registrations
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    record = read_record(run / "model.keras")
    assert record["trained_by"] == "catalog.train" and record["preprocessing"] == "torch"


def _weights(path):
    return load_model(path).get_weights()


def test_sigkill_mid_epoch_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    args = ["train", "resnet20", *TINY, "--epochs", "3", "--checkpoint-every", "3", "--deterministic"]
    assert run_cli(*args, "--out", str(tmp_path / "whole")).returncode == 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "catalog", *args, "--out", str(tmp_path / "cut")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "cut" / "checkpoints" / "last.keras"
    deadline, position = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        position = (read_record(checkpoint) or {}).get("checkpoint") if checkpoint.exists() else None
        if position and position["epoch"] >= 1 and position["step"] > 0:  # mid-epoch, after an epoch
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before a mid-epoch checkpoint was seen"
    result = run_cli("train", "--resume", str(tmp_path / "cut"), "--verbose", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    for a, b in zip(_weights(tmp_path / "whole" / "model.keras"), _weights(tmp_path / "cut" / "model.keras")):
        np.testing.assert_array_equal(a, b)
    with open(tmp_path / "cut" / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "lion"], "--optimizer"),  # argparse choices: bad usage
    (["--schedule", "zigzag"], "schedule must be one of fixed, step"),
    (["--batch-size", "4096"], "batch_size 4096 is larger than the 'train' split"),
    (["--num-classes", "7"], "num_classes 7 disagrees with shapes, which has 5 classes"),
    (["--image-size", "8"], "image_size must be an integer >= 16"),
    (["--ema", "2"], "ema must be a decay in (0, 1)"),
    (["--model-options", "{width: 8}"], "--model-options must be a JSON object"),
])
def test_bad_settings_fail_before_any_step_in_one_sentence(args, message, tmp_path):
    result = run_cli("train", "resnet20", *TINY, "--epochs", "1", "--out", str(tmp_path / "bad"), *args)
    assert result.returncode == (2 if args[0] == "--optimizer" else 1)
    assert message in result.stderr and "Traceback" not in result.stderr
    if result.returncode == 1:
        assert result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "bad" / "history.csv").exists()


def test_an_input_size_the_model_cannot_take_fails_before_any_step(tmp_path):
    with pytest.raises(ValueError, match=r"input_shape \(32, 32, 3\) is too small for inception_v3: .*at least 75"):
        catalog.train("inception_v3", "shapes", image_size=32, num_images=64, batch_size=32, verbose=0,
                      out_dir=str(tmp_path / "small"))
    assert not (tmp_path / "small" / "history.csv").exists()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(catalog.training.loop.TrainingDiverged, match=r"loss was nan at step \d+ .*last.keras"):
        catalog.train("resnet20", **TINY_KW, epochs=2, optimizer="sgd", lr=1e9, out_dir=str(tmp_path / "nan"))
    assert not (tmp_path / "nan" / "model.keras").exists()
    checkpoint = tmp_path / "nan" / "checkpoints" / "last.keras"
    if checkpoint.exists():  # if an epoch finished before the loss blew up, its checkpoint is finite
        assert all(np.all(np.isfinite(w)) for w in load_model(checkpoint).get_weights())


def test_train_keeps_the_callers_dtype_policy_and_seeds(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    random.seed(123)
    before = random.getstate(), np.random.get_state()[1].copy()
    try:
        result = catalog.train("resnet20", **TINY_KW, epochs=1, precision="float32", val_split="none",
                               out_dir=str(tmp_path / "p"))
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert result.model.dtype_policy.name == "float32"
        assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    finally:
        keras.config.set_dtype_policy("float32")


def test_mixed_precision_runs_with_a_float32_output(tmp_path):
    result = catalog.train("resnet20", **TINY_KW, epochs=1, precision="mixed_bfloat16", val_split="none",
                           out_dir=str(tmp_path / "bf16"))
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["resolved"]["precision"] == "mixed_bfloat16"
    assert result.model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert result.model.output.dtype == "float32"
    assert math.isfinite(result.history[-1]["loss"])


@pytest.mark.jax
def test_weight_decay_skips_batchnorm_and_biases():
    model = catalog.create_model("resnet20", num_classes=3, width=8, depths=(1, 1, 1))
    config = TrainConfig(optimizer="sgd", momentum=0.0, weight_decay=0.5)
    optimizer = make_optimizer(config, 0.1, model)
    before = [np.array(w.numpy()) for w in model.trainable_weights]
    optimizer.apply([keras.ops.zeros(w.shape) for w in model.trainable_weights], model.trainable_weights)
    skipped = {id(w) for w in no_decay_variables(model)}
    assert skipped and len(skipped) < len(model.trainable_weights)
    for w, old in zip(model.trainable_weights, before):
        expected = old if id(w) in skipped else old * (1 - 0.1 * 0.5)
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6, err_msg=w.path)
    names = {w.path.split("/")[-1] for w in no_decay_variables(model)}
    assert names == {"gamma", "beta", "bias"}


def test_beta_1_reaches_adam_and_adamw_and_only_them():
    for name in ("adam", "adamw"):
        assert make_optimizer(make_config({"optimizer": name, "beta_1": 0.5}), 1e-3).beta_1 == 0.5
    assert make_optimizer(make_config({"optimizer": "adam"}), 1e-3).beta_1 == 0.9  # Keras' default
    with pytest.raises(ValueError, match="beta_1 is an Adam/AdamW setting; the optimizer is 'sgd'"):
        make_config({"optimizer": "sgd", "beta_1": 0.5})
    with pytest.raises(ValueError, match=r"beta_1 must be in \[0, 1\)"):
        make_config({"optimizer": "adam", "beta_1": 1.0})


@pytest.mark.jax
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_layer_decay_scales_each_stage_lr_towards_the_input(optimizer):
    model = catalog.create_model("resnet20", num_classes=3, width=8, depths=(1, 1, 1))
    config = TrainConfig(optimizer=optimizer, momentum=0.0, weight_decay=0.0, layer_decay=0.5)
    opt = make_optimizer(config, 0.1, model)
    assert type(opt).__name__ == f"LayerScaled{type(keras.optimizers.get(optimizer)).__name__}"
    before = [np.array(w.numpy()) for w in model.trainable_weights]
    opt.apply([keras.ops.ones(w.shape) for w in model.trainable_weights], model.trainable_weights)
    # stages of resnet20: stem 0, stage1..3, head 4: multiplier 0.5 ** (4 - stage); SGD and Adam's first
    # step both move each weight by lr x multiplier (Adam: the normalized gradient is 1)
    expected = {"stem_conv/kernel": 0.0625, "stage1_block1_conv1_conv/kernel": 0.125,
                "stage3_block1_conv2_bn/gamma": 0.5, "head_fc/kernel": 1.0}
    for w, old in zip(model.trainable_weights, before):
        if w.path in expected:
            np.testing.assert_allclose(old - w.numpy(), 0.1 * expected[w.path], rtol=1e-3, err_msg=w.path)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is type(opt) and again.lr_multipliers == opt.lr_multipliers
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        validate(TrainConfig(model="resnet20", data="shapes", layer_decay=1.5))


@pytest.mark.jax
def test_ema_weights_equal_the_closed_form():
    # w_t = 1 - lr * g * t under plain SGD with a constant gradient g; Keras' EMA starts at the first
    # updated value and then a_t = d * a_{t-1} + (1 - d) * w_t.
    w = keras.Variable(np.ones((1,), "float32"), name="w")
    decay, lr, steps = 0.9, 0.1, 7
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.0, ema=decay, weight_decay=0.0), lr)
    for _ in range(steps):
        optimizer.apply([keras.ops.ones((1,))], [w])
    values = [1 - lr * t for t in range(1, steps + 1)]
    average = values[0]
    for value in values[1:]:
        average = decay * average + (1 - decay) * value
    optimizer.finalize_variable_values([w])
    np.testing.assert_allclose(w.numpy(), [average], rtol=1e-5)


@pytest.mark.jax
def test_label_smoothing_loss_equals_keras_categorical_crossentropy_on_one_hot():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5)).astype("float32")
    labels = rng.integers(0, 5, 6)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(5)[labels], probs)
    ours = SparseCrossentropy(label_smoothing=0.1)(labels, probs)
    np.testing.assert_allclose(float(ours), float(reference), rtol=1e-5)
    from_logits = SparseCrossentropy(label_smoothing=0.1, from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(from_logits), float(reference), rtol=1e-4)


def test_suggest_lr_finds_the_steepest_descent_of_a_synthetic_curve():
    from catalog.training.lr_find import suggest_lr

    lrs = np.geomspace(1e-6, 10, 200)
    # flat, then falling fastest around 1e-2, then blowing up past 1
    losses = 2.0 - np.tanh((np.log10(lrs) + 2) * 1.5) + np.where(lrs > 1, (np.log10(lrs)) * 5, 0)
    assert 10 ** -2.5 < suggest_lr(lrs, losses, smoothing=0.5) < 10 ** -1.5
    with pytest.raises(ValueError, match="only 3 finite losses"):
        suggest_lr(lrs[:3], losses[:3])


def test_cli_lr_find_writes_the_curve_and_suggests_an_lr(tmp_path):
    out = tmp_path / "lrf"
    result = run_cli("lr-find", "resnet20", *TINY, "--steps", "24", "--start-lr", "1e-5", "--end-lr", "10",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    suggested = float(result.stdout.split("Suggested learning rate: ")[1].split()[0])
    with open(out / "lr_find.csv") as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["learning_rate"]) for r in rows]
    assert 10 <= len(rows) <= 24 and lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-5, rel=1e-4)
    assert lrs[0] <= suggested <= lrs[-1] and (out / "lr_find.png").stat().st_size > 1000
