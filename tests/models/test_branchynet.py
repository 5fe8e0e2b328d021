"""BranchyNet early exits: counts in closed form, the output convention, the entropy exit rule and the threshold
calibration on hand-made probabilities, staged inference (segments equal the model's exits, thresholds inf and 0),
a few training steps with a falling joint loss, ``.keras`` round trips, ``catalog.train`` into an early-exit
report, and the model on JAX."""

import json
import math
import os

import keras
import numpy as np
import pytest

import catalog
from catalog.models.branchynet import branch_params, branchynet_params
from catalog.models.early_exit import (EarlyExitRunner, early_exit_outputs, entropy, exit_names, exit_taken,
                                       thresholds_for)
from catalog.registry import count_params, get_entry, recipe_of
from helpers import keras_round_trip

# a tiny BranchyNet: resnet20 cut to one block per stage at width 4 (stages of 4, 8, 16 channels), 8-filter
# branches, 16 x 16 inputs
TINY_BACKBONE = {"width": 4, "depths": (1, 1, 1)}
TINY = dict(num_classes=5, input_shape=(16, 16, 3), branch_filters=8, backbone_options=TINY_BACKBONE)


def _tiny(**overrides):
    return catalog.create_model("branchynet", **{**TINY, **overrides})


def test_default_count_is_resnet20_plus_the_branches():
    # 9 C F + 2 F + (F + 1) K at C = 16, 32; F = 32; K = 10
    assert branch_params(16, 10) == 4_608 + 64 + 330 == 5_002
    assert branch_params(32, 10) == 9_216 + 64 + 330 == 9_610
    model = catalog.create_model("branchynet")
    assert count_params(model) == 269_722 + 5_002 + 9_610 == get_entry("branchynet").reference_params
    assert branchynet_params() == 284_334
    assert exit_names(model) == ["exit1", "exit2", "final"] and model.output_names == exit_names(model)


def test_tiny_count_with_three_two_conv_branches():
    model = _tiny(exits=(0, 1, 2), branch_convs=2)
    backbone = count_params(catalog.create_model("resnet20", num_classes=5, **TINY_BACKBONE))
    # two convs: 9 C 8 + 16 + (9 * 64 + 16) + 9 * 5 on stages of 4, 4 and 8 channels (stem, stage 1, stage 2)
    assert [branch_params(c, 5, 8, 2) for c in (4, 4, 8)] == [941, 941, 1_229]
    assert count_params(model) == backbone + 941 + 941 + 1_229
    assert exit_names(model) == ["exit1", "exit2", "exit3", "final"]
    names = {layer.name for layer in model.layers}
    assert {"exit3_block1_conv", "exit3_block2_bn", "exit3_pool", "exit3_fc", "final", "stage3_block1_out"} <= names


def test_outputs_are_probabilities_in_exit_order():
    model = _tiny()
    out = model(np.random.default_rng(0).standard_normal((3, 16, 16, 3)).astype("float32"), training=False)
    assert isinstance(out, list) and [tuple(o.shape) for o in out] == [(3, 5)] * 3
    for o in out:
        np.testing.assert_allclose(np.sum(np.asarray(o), -1), 1.0, rtol=1e-5)
        assert o.dtype == "float32"


@pytest.mark.parametrize("options,message", [
    (dict(exits=(2, 1)), "exits must be increasing"), (dict(exits=(3,)), "exits must be increasing"),
    (dict(exits=()), "exits must be increasing"), (dict(backbone="espcn"), "backbone must be a classification"),
    (dict(backbone_options={"num_classes": 3}), "backbone_options may not set num_classes"),
    (dict(branch_filters=0), "branch_filters must be a positive integer"),
])
def test_argument_errors_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**options)


def test_entropy_and_the_exit_rule_on_hand_made_probabilities():
    np.testing.assert_allclose(entropy([[0.25] * 4, [0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),
                               [math.log(4), math.log(2), 0.0])
    np.testing.assert_allclose(entropy([0.9, 0.1]), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    # 3 samples, 3 exits; entropies exit1: [0, ln2, ln2], exit2: [ln2, 0, ln2]
    exit1 = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    exit2 = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    final = np.array([[0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    probs = [exit1, exit2, final]
    np.testing.assert_array_equal(exit_taken(probs, (0.1, 0.1)), [0, 1, 2])
    np.testing.assert_array_equal(exit_taken(probs, (1.0, 0.1)), [0, 0, 0])  # the first qualifying exit wins
    np.testing.assert_array_equal(exit_taken(probs, (math.inf, -math.inf)), [0, 0, 0])
    np.testing.assert_array_equal(exit_taken(probs, (0.0, 0.0)), [2, 2, 2])  # entropy < 0 never holds
    np.testing.assert_array_equal(exit_taken(probs, (-math.inf, math.inf)), [1, 1, 1])
    taken, chosen = early_exit_outputs(probs, (0.1, 0.1))
    np.testing.assert_array_equal(chosen, [exit1[0], exit2[1], final[2]])
    with pytest.raises(ValueError, match="thresholds must be 2 numbers"):
        exit_taken(probs, (0.1,))


def test_thresholds_keep_the_accuracy_within_the_tolerance():
    # label 0 everywhere; the final exit is always right; exit1 right on the two most confident samples
    exit1 = np.array([[0.99, 0.01], [0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    final = np.tile([[0.7, 0.3]], (4, 1))
    labels = np.zeros(4, int)
    e = entropy(exit1)
    assert list(np.argsort(e)) == [0, 1, 2, 3]
    assert thresholds_for([exit1, final], labels, 0.0) == pytest.approx(((e[1] + e[2]) / 2,))  # 2 leave: 100%
    assert thresholds_for([exit1, final], labels, 0.25) == pytest.approx(((e[2] + e[3]) / 2,))  # 3 leave: 75%
    assert thresholds_for([exit1, final], labels, 0.5) == (math.inf,)  # all leave: 50%
    wrong = np.tile([[0.01, 0.99]], (4, 1))  # a confident, always wrong exit: nothing may leave there
    assert thresholds_for([wrong, final], labels, 0.2) == (0.0,)
    # random scores, the later exits surer of the true class: the calibrated early-exit accuracy keeps the bound,
    # and a looser bound lets more out
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    probs = []
    for strength in (1.0, 2.0, 4.0):
        logits = rng.standard_normal((400, 4)) * 1.5 + strength * np.eye(4)[labels]
        probs.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    final_accuracy = np.mean(np.argmax(probs[-1], -1) == labels)
    shares = []
    for tolerance in (0.0, 0.02, 0.1):
        thresholds = thresholds_for(probs, labels, tolerance)
        taken, chosen = early_exit_outputs(probs, thresholds)
        assert np.mean(np.argmax(chosen, -1) == labels) >= final_accuracy - tolerance - 1e-9
        shares.append(np.mean(taken < 2))
    assert shares[0] <= shares[1] <= shares[2] and shares[2] > shares[0]


def test_runner_segments_equal_the_model_and_stop_early():
    model = _tiny()
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype("float32")
    want = [np.asarray(o) for o in model(x, training=False)]
    runner = EarlyExitRunner(model, (math.inf, math.inf))
    for got, expected in zip(runner.all_exits(x), want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    probabilities, k = runner.predict(x[1])
    assert k == 0
    np.testing.assert_allclose(probabilities, want[0][1], rtol=1e-5, atol=1e-6)
    probabilities, k = EarlyExitRunner(model, (0.0, 0.0)).predict(x[2:3])
    assert k == 2
    np.testing.assert_allclose(probabilities, want[2][2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runner.predict_full(x[3]), want[2][3], rtol=1e-5, atol=1e-6)
    # a segment holds its own branch only; the full network holds none
    first = {layer.name for layer in runner.segments[0].layers}
    assert "exit1_fc" in first and "exit2_fc" not in first and "stage3_block1_conv1_conv" not in first
    assert not any(layer.name.startswith("exit") for layer in runner.full_network.layers)
    # MACs: the branches' 3x3 stride-2 convs and FCs: 8 x 8 x 9 x 4 x 8 + 8 x 5 and 4 x 4 x 9 x 8 x 8 + 8 x 5
    cost, full = runner.exit_macs()
    assert cost[-1] - full == 18_472 + 9_256
    assert cost[0] < cost[1] < full < cost[2]


def _shapes_like(n, seed=0):
    """Separable little images: class c is a bright square in quadrant c (a few noisy pixels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.1, (n, 16, 16, 3)).astype("float32")
    for i, c in enumerate(y):
        x[i, 8 * (c // 2):8 * (c // 2) + 8, 8 * (c % 2):8 * (c % 2) + 8] += 1.0
    return x, y


def test_recipe_replicates_the_labels_and_weights_the_exits():
    model = _tiny(num_classes=4)
    recipe = recipe_of(model, "branchynet")
    assert recipe.task == "classification" and recipe.num_classes == 4 and recipe.loss_weights == [1.0, 1.0, 1.0]
    assert len(recipe.loss) == 3 and recipe.evaluate.__name__ == "evaluate_early_exit"
    assert recipe_of(model, "branchynet", exit_weights=[0.5, 0.5, 1]).loss_weights == [0.5, 0.5, 1.0]
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0], [0, 0, 0]):
        with pytest.raises(ValueError, match="exit_weights must be 3 non-negative numbers"):
            recipe_of(model, "branchynet", exit_weights=bad)
    y = np.array([3, 0, 2])
    targets = recipe.targets(keras.ops.convert_to_tensor(y))
    assert len(targets) == 3 and all(np.array_equal(np.asarray(t), y) for t in targets)


def test_round_trip_keeps_outputs_and_the_cut_points():
    model = _tiny()
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype("float32")
    loaded = keras_round_trip(model, x)
    runner = EarlyExitRunner(loaded, (0.0, 0.0))
    for got, expected in zip(runner.all_exits(x), model(x, training=False)):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)


def _report(path):
    with open(os.path.join(path, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def test_catalog_train_writes_an_early_exit_report(tmp_path):
    run = catalog.train("branchynet", "shapes", image_size=16, num_images=32, batch_size=16, epochs=1, verbose=0,
                        optimizer="adam", lr=3e-3, jit="off",
                        model_options={"branch_filters": 8, "backbone_options": TINY_BACKBONE},
                        out_dir=str(tmp_path / "run"))
    assert {"exit1_loss", "exit2_loss", "final_loss", "val_final_accuracy"} <= set(run.history[0])
    report = _report(run.run_dir)
    early = report["metrics"]["early_exit"]
    assert early["exits"] == ["exit1", "exit2", "final"] and early["thresholds"][-1] is None
    examples = report["dataset"]["examples"]
    assert sum(early["count"]) == examples and sum(early["share"]) == pytest.approx(1.0)
    assert early["share_early"] == pytest.approx(1 - early["share"][-1])
    # the classification part scores the early-exit predictions: one accuracy, two ways
    assert report["metrics"]["accuracy"] == pytest.approx(early["early_exit_accuracy"])
    assert early["early_exit_accuracy"] == pytest.approx(sum(
        s * (a or 0.0) for s, a in zip(early["share"], early["accuracy_of_exited"])))
    assert early["latency"]["images"] > 0 and early["latency"]["full_network_ms"] > 0
    assert early["relative_cost"] == pytest.approx(np.dot(early["share"], early["macs"]) / early["full_network_macs"])
    with open(os.path.join(run.run_dir, "report.md"), encoding="utf-8") as f:
        assert "## Early exits" in f.read()
    # given thresholds through catalog.evaluate: inf sends everything out at exit 1
    out = catalog.evaluate(os.path.join(run.run_dir, "model.keras"), "shapes", task="early_exit", image_size=16,
                           num_images=24, out_dir=str(tmp_path / "eval"), thresholds=[math.inf, math.inf],
                           latency_images=2, verbose=0)
    early = _report(out)["metrics"]["early_exit"]
    assert early["share"] == [1.0, 0.0, 0.0] and early["early_exit_accuracy"] == early["exit_accuracy"][0]
    assert early["threshold_source"] == "given"


@pytest.mark.jax
def test_trains_a_few_steps_with_a_falling_loss_on_the_current_backend():
    # CI runs this under KERAS_BACKEND=jax too: a few fit steps, the staged runner, a round trip.
    model = _tiny(num_classes=4)
    recipe = recipe_of(model, "branchynet")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=recipe.loss, loss_weights=recipe.loss_weights,
                  metrics=recipe.metrics)
    x, y = _shapes_like(32)
    history = model.fit(x, (y, y, y), batch_size=8, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert {"exit1_loss", "exit2_loss", "final_loss", "exit1_accuracy", "final_accuracy"} <= set(history)
    # the joint loss is the weighted sum of the exits' losses
    assert history["loss"][-1] == pytest.approx(sum(history[f"{n}_loss"][-1] for n in ("exit1", "exit2", "final")),
                                                rel=1e-3)
    runner = EarlyExitRunner(model, (0.0, 0.0))
    for got, expected in zip(runner.all_exits(x[:2]), model.predict_on_batch(x[:2])):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)
    keras_round_trip(model, x[:2])
