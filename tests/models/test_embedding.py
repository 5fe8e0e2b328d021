"""Siamese and triplet networks: metric losses and mining on hand-computed cases, counts, unit norm, pairs,
.keras round trips, a few training steps (TensorFlow and JAX), catalog.train's report; the slow AUC check."""

import json
import os

import keras
import numpy as np
import pytest

import catalog
from catalog.models.embedding import PairHalf, embedding_recipe, embedding_towers, pair_targets
from catalog.models.siamese import RESNET20_HEADLESS, embedding_params, headless_params
from catalog.registry import count_params, get_entry, model_info
from catalog.training.metric_losses import ContrastiveLoss, TripletLoss, contrastive_loss
from helpers import keras_round_trip, random_input

SMALL = {"backbone_options": {"width": 4, "depths": (1, 1, 1)}, "embedding_dim": 8, "input_shape": (16, 16, 3)}

# 1-D embeddings: labels 0, 0, 1, 1 at 0, 1, 1.5, 3. Distances: d01 = 1, d02 = 1.5, d03 = 3, d12 = 0.5,
# d13 = 2, d23 = 1.5.
LABELS = np.array([0, 0, 1, 1])
POINTS = np.array([[0.0], [1.0], [1.5], [3.0]], np.float32)


def loss_value(loss, labels, points):
    return float(np.asarray(loss(np.asarray(labels), np.asarray(points, np.float32))))


def test_contrastive_loss_hand_computed():
    # pairs: same at D 0.5 -> 0.5 * 0.25; different at 0.2 -> 0.5 * 0.8^2; different at 1.5 (beyond margin 1) -> 0
    loss = contrastive_loss(1.0)
    assert loss_value(loss, [1, 0, 0], [0.5, 0.2, 1.5]) == pytest.approx((0.125 + 0.32 + 0.0) / 3)
    assert loss_value(ContrastiveLoss(2.0), [[0]], [[0.5]]) == pytest.approx(0.5 * 1.5 ** 2)


@pytest.mark.jax
@pytest.mark.parametrize("mining, expected", [
    # per anchor, farthest positive vs nearest negative, margin 0.5:
    # a0: 1 - 1.5 + 0.5 = 0; a1: 1 - 0.5 + 0.5 = 1; a2: 1.5 - 0.5 + 0.5 = 1.5; a3: 1.5 - 2 + 0.5 = 0 -> 2.5 / 4
    ("batch_hard", 2.5 / 4),
    # per (anchor, positive): nearest negative farther than the positive, else the farthest negative:
    # (0,1): n at 1.5 -> 0; (1,0): 2 -> 0; (2,3): none beyond 1.5 (1.5 is not), farthest 1.5 -> 0.5; (3,2): 2 -> 0
    ("semi_hard", 0.5 / 4),
    # every (a, p, n): (1,0,2) 1, (2,3,0) 0.5, (2,3,1) 1.5, the other five 0 -> 3 / 8
    ("all", 3.0 / 8),
])
def test_triplet_mining_hand_computed(mining, expected):
    assert loss_value(TripletLoss(0.5, mining), LABELS, POINTS) == pytest.approx(expected)


@pytest.mark.parametrize("mining, expected", [
    ("batch_hard", 2.5 / 4),  # the lone label-2 anchor has no positive: left out of the mean
    ("semi_hard", 0.0),       # (2,3) now finds the negative at 8.5 beyond its positive: 0
    ("all", 3.0 / 12),        # four more triplets with the far negative, each 0
])
def test_triplet_anchor_without_positive(mining, expected):
    labels, points = np.r_[LABELS, 2], np.r_[POINTS, [[10.0]]]
    assert loss_value(TripletLoss(0.5, mining), labels, points) == pytest.approx(expected)
    # one label only: no negatives, no triplet, loss 0
    assert loss_value(TripletLoss(0.5, mining), [1, 1, 1], [[0.0], [1.0], [3.0]]) == 0.0


def test_losses_serialize_and_reject_bad_arguments():
    loss = keras.losses.deserialize(keras.losses.serialize(TripletLoss(0.3, "semi_hard")))
    assert (type(loss), loss.margin, loss.mining) == (TripletLoss, 0.3, "semi_hard")
    assert keras.losses.deserialize(keras.losses.serialize(ContrastiveLoss(0.7))).margin == 0.7
    with pytest.raises(ValueError, match="mining must be one of"):
        TripletLoss(mining="hardest")
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(-1.0)


def test_pairs_from_a_batch():
    # pairs (i, i + B // 2) of an odd batch: (0, 2), (1, 3); item 4 unpaired
    np.testing.assert_array_equal(np.asarray(pair_targets(np.array([0, 1, 0, 0, 1], "int32"))), [1.0, 0.0])
    x = np.arange(5, dtype="float32")[:, None]
    np.testing.assert_array_equal(np.asarray(PairHalf(0)(x))[:, 0], [0, 1])
    np.testing.assert_array_equal(np.asarray(PairHalf(1)(x))[:, 0], [2, 3])


def test_parameter_counts_closed_form():
    # resnet20's card (269,722) less its 10-class classifier on 64 channels is the headless backbone
    assert RESNET20_HEADLESS == headless_params(model_info("resnet20").params, 64, 10) == 269_072
    backbone = catalog.create_model("resnet20", include_top=False, pooling="avg", input_shape=(16, 16, 3),
                                    **SMALL["backbone_options"])
    base, channels = count_params(backbone), int(backbone.output.shape[-1])
    triplet = catalog.create_model("triplet_net", num_classes=5, **SMALL)
    assert count_params(triplet) == embedding_params(base, channels, 8) == base + channels * 8 + 8
    assert count_params(catalog.create_model("siamese_net", **SMALL)) == count_params(triplet)
    pseudo = catalog.create_model("siamese_net", shared=False, **SMALL)
    assert count_params(pseudo) == 2 * count_params(triplet)
    tower_a, tower_b = embedding_towers(pseudo)
    assert tower_a is not tower_b and tower_a.name == "tower_a"
    assert get_entry("triplet_net").reference_params == 269_072 + 64 * 64 + 64


def test_outputs_unit_norm_distances_and_round_trip():
    x = random_input((16, 16, 3), batch=6)
    triplet = catalog.create_model("triplet_net", **SMALL)
    emb = np.asarray(triplet(x, training=False))
    assert emb.shape == (6, 8) and triplet.layers[-1].name == "embedding"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    keras_round_trip(triplet, x)
    for shared in (True, False):
        siamese = catalog.create_model("siamese_net", shared=shared, **SMALL)
        d = np.asarray(siamese(x, training=False))
        first, second = (np.asarray(t(x[s], training=False)) for t, s in zip(embedding_towers(siamese),
                                                                             (slice(0, 3), slice(3, 6))))
        np.testing.assert_allclose(d, np.linalg.norm(first - second, axis=1), rtol=1e-4, atol=1e-5)
        keras_round_trip(siamese, x)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="num_classes"):
        catalog.create_model("triplet_net", num_classes="five", **SMALL)
    with pytest.raises(ValueError, match="backbone must be a registered classification model"):
        catalog.create_model("triplet_net", backbone="unet", **{**SMALL, "backbone_options": None})
    with pytest.raises(ValueError, match="backbone_options must not set pooling"):
        catalog.create_model("triplet_net", **{**SMALL, "backbone_options": {"pooling": "max"}})
    with pytest.raises(ValueError, match="embedding_dim"):
        catalog.create_model("triplet_net", **{**SMALL, "embedding_dim": 0})
    with pytest.raises(ValueError, match="shared"):
        catalog.create_model("siamese_net", shared="no", **SMALL)
    with pytest.raises(ValueError, match="mining"):
        embedding_recipe(catalog.create_model("triplet_net", **SMALL), mining="hard")


def _shapes_batch(n=32, size=16):
    from catalog.datasets.shapes import make_shapes

    data = make_shapes(n, size, seed=0)
    return data["images"].astype("float32") / 127.5 - 1.0, data["labels"].astype("int32")


def _fit_losses(name, steps=6, **options):
    model = catalog.create_model(name, **SMALL, **options)
    recipe = embedding_recipe(model)
    x, y = _shapes_batch()
    y = np.asarray(recipe.targets(y)) if recipe.targets is not None else y
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=recipe.loss)
    history = [float(model.train_on_batch(x, y)) for _ in range(steps)]  # one batch: its pairs are in it
    assert np.all(np.isfinite(history))
    return history


@pytest.mark.parametrize("name, options", [("triplet_net", {}), ("siamese_net", {"shared": False})])
def test_few_steps_decrease_the_loss(name, options):
    losses = _fit_losses(name, **options)
    assert losses[-1] < losses[0], losses


@pytest.mark.jax
def test_pair_targets_in_the_pipeline_and_training_on_jax():
    if keras.backend.backend() != "jax":  # TensorFlow runs the same code: the tests above
        pytest.skip("the tf.numpy_function path of the targets runs on the JAX backend (CI's JAX pass)")
    from catalog import datasets

    load = dict(split="val", task="classification", image_size=16, batch_size=10, num_images=20, shuffle=False)
    plain, _ = datasets.load("shapes", **load)
    paired, _ = datasets.load("shapes", targets=pair_targets, **load)
    for (_, labels), (_, same) in zip(plain, paired):
        labels = np.asarray(labels)
        np.testing.assert_array_equal(np.asarray(same), (labels[:5] == labels[5:]).astype("float32"))
    losses = _fit_losses("siamese_net", steps=3)  # pair layers, towers, contrastive loss
    assert losses[-1] < losses[0], losses
    triplet = catalog.create_model("triplet_net", **SMALL)  # the triplet loss runs in the jax-marked case above
    np.testing.assert_allclose(np.linalg.norm(np.asarray(triplet(random_input((16, 16, 3)))), axis=1), 1.0, rtol=1e-5)


def test_evaluate_embedding_scores_the_towers(tmp_path):
    from catalog import datasets
    from catalog.evaluation import verification_metrics

    model = catalog.create_model("siamese_net", shared=False, **SMALL)
    out = embedding_recipe(model).evaluate(model, "shapes", out_dir=str(tmp_path), split="val", batch_size=16,
                                           preprocessing="tf", num_images=40, fars=(0.1,), ks=(1, 3))
    with open(tmp_path / "report.json") as f:
        report = json.load(f)
    ds, _ = datasets.load("shapes", split="val", task="classification", image_size=16, batch_size=40,
                          preprocessing="tf", num_images=40, shuffle=False)
    x, y = next(iter(ds))
    tower_a, tower_b = embedding_towers(model)
    # a pseudo-siamese pair (i, j): image i by tower_a, image j by tower_b, every ordered pair
    expected = verification_metrics(np.asarray(tower_a(x)), np.asarray(y), (0.1,), (1, 3),
                                    gallery=np.asarray(tower_b(x)))
    got = report["metrics"]
    assert out == str(tmp_path) and report["task"] == "embedding"
    assert got["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert got["recall_at_k"] == {str(k): v for k, v in expected["recall_at_k"].items()}
    assert got["genuine_pairs"] + got["impostor_pairs"] == 40 * 39
    assert any("random weights" in n for n in report["notes"])


def test_catalog_train_writes_a_verification_report(tmp_path):
    run = catalog.train("triplet_net", "shapes", image_size=16, num_images=64, batch_size=32, epochs=1, verbose=0,
                        model_options={k: v for k, v in SMALL.items() if k != "input_shape"},
                        task_options={"mining": "semi_hard"}, optimizer="adam", out_dir=str(tmp_path / "run"))
    with open(os.path.join(run.run_dir, "report.json")) as f:
        report = json.load(f)
    metrics = report["metrics"]
    assert report["task"] == "embedding" and report["dataset"]["examples"] == 500
    assert 0.0 <= metrics["auc"] <= 1.0 and set(metrics["recall_at_k"]) == {"1", "5"}
    assert metrics["genuine_pairs"] + metrics["impostor_pairs"] == 500 * 499 // 2
    assert any("semi-hard mining" in n for n in report["notes"])
    assert "ROC of pair verification" in open(os.path.join(run.run_dir, "report.html")).read()
    reloaded = keras.saving.load_model(os.path.join(run.run_dir, "model.keras"), safe_mode=True)
    x = random_input((16, 16, 3), batch=4)
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(run.model(x, training=False)), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_triplet_net_reaches_auc_095_on_held_out_shapes(tmp_path):
    # held-out: the report scores the shapes test split (another seed than the training split)
    # batch-all mining (the recipe's default); about 2 minutes on 2 CPU cores
    run = catalog.train("triplet_net", "shapes", image_size=32, num_images=2000, batch_size=64, epochs=8,
                        verbose=0, optimizer="adam", lr=3e-3, bn_momentum=0.9, out_dir=str(tmp_path / "run"))
    with open(os.path.join(run.run_dir, "report.json")) as f:
        metrics = json.load(f)["metrics"]
    print(f"AUC {metrics['auc']:.4f}, recall@1 {metrics['recall_at_k']['1']:.4f}")
    assert metrics["auc"] >= 0.95
