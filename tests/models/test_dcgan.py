"""DCGAN (catalog.models.dcgan), the GAN training model and its losses (catalog.training.gan), and the generation
recipe and scoring job (catalog.models.generation)."""

import json
import math
import os

import keras
import numpy as np
import pytest

import catalog
from catalog.models.dcgan import dcgan, dcgan_discriminator, dcgan_generator, dcgan_params
from catalog.registry import count_params, get_entry, recipe_of
from catalog.training.gan import (GAN, discriminator_accuracy, discriminator_loss, generator_loss,
                                  gradient_penalty)
from helpers import keras_round_trip

TINY = dict(input_shape=(16, 16, 3), filters=16)


def _data(n=16, size=16, channels=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (n, size, size, channels)).astype("float32"),
            (np.arange(n) % classes).astype("int32"))


def _values(model):
    return [np.array(v.numpy()) for v in model.trainable_variables]


# ------------------------------------------------------------------------------------------ architecture
def test_parameter_counts_at_paper_width_match_the_closed_form():
    # summed by hand from the layer table (module docstring): dense projection + BN, three transposed convs + BN,
    # the output conv with bias; the discriminator's first conv with bias, three convs + BN, the dense logit
    generator = 1_640_448 + 13_108_224 + 3_277_312 + 819_456 + 9_603
    discriminator = 9_728 + 819_712 + 3_277_824 + 13_109_248 + 16_385
    assert count_params(dcgan_generator()) == generator == dcgan_params(part="generator") == 18_855_043
    assert count_params(dcgan_discriminator()) == discriminator == dcgan_params(part="discriminator") == 17_232_897
    assert get_entry("dcgan").reference_params == generator + discriminator
    assert get_entry("dcgan_generator").reference_params == generator
    assert count_params(catalog.create_model("dcgan_32")) == get_entry("dcgan_32").reference_params == 4_926_595 + 4_115_457
    small = dcgan(input_shape=(32, 32, 1), filters=64, noise_dim=20)
    assert count_params(small) == dcgan_params(32, 64, noise_dim=20, channels=1)


def test_shapes_ranges_and_the_paper_layout():
    g = dcgan_generator(input_shape=(32, 32, 3), filters=32)
    out = g.get_layer("up3_conv")
    out.kernel.assign(out.kernel * 1e4)  # saturate the tanh
    images = np.asarray(g(np.random.default_rng(0).standard_normal((3, 100)).astype("float32"), training=False))
    assert images.shape == (3, 32, 32, 3) and np.abs(images).max() <= 1.0 and np.abs(images).max() > 0.9
    ups = [layer for layer in g.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(int(u.filters), u.strides) for u in ups] == [(16, (2, 2)), (8, (2, 2)), (3, (2, 2))]
    assert [u.use_bias for u in ups] == [False, False, True]  # bias only where no BatchNorm follows
    assert g.get_layer("project_reshape").output.shape[1:] == (4, 4, 32)
    d = dcgan_discriminator(input_shape=(64, 64, 1), filters=64)
    assert d(np.zeros((2, 64, 64, 1), "float32")).shape == (2, 1)
    convs = [layer for layer in d.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [int(c.filters) for c in convs] == [8, 16, 32, 64] and [c.use_bias for c in convs] == [True] + [False] * 3
    norms = [layer.name for layer in d.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms == ["down2_bn", "down3_bn", "down4_bn"]  # none on the input layer
    assert all(layer.negative_slope == pytest.approx(0.2) for layer in d.layers
               if isinstance(layer, keras.layers.LeakyReLU))


def test_conditional_models_take_labels():
    g = dcgan_generator(conditional=True, num_classes=4, **TINY)
    d = dcgan_discriminator(conditional=True, num_classes=4, **TINY)
    z, labels = np.zeros((2, 100), "float32"), np.array([0, 3], "int32")
    a, b = np.asarray(g([z, labels])), np.asarray(g([z, labels[::-1]]))
    assert a.shape == (2, 16, 16, 3) and not np.allclose(a[0], b[0])  # the label changes the image
    assert d([a, labels]).shape == (2, 1)
    assert count_params(d) == count_params(dcgan_discriminator(**TINY)) + 4 * 16 * 16 + 25 * 8  # plane, channel


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(48, 48, 3)), "4 \\* 2\\^n"), (dict(input_shape=(32, 16, 3)), "square"),
    (dict(input_shape=(32, 32, 2)), "1 or 3 channels"), (dict(input_shape=(64, 64, 3), filters=12), "divisible by 8"),
    (dict(conditional=True), "num_classes"), (dict(noise_dim=0), "noise_dim")])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dcgan_generator(**kwargs)


# ------------------------------------------------------------------------------------------ losses
@pytest.mark.jax
def test_losses_on_hand_computed_logits():
    def f(x):
        return float(np.asarray(x))

    # logits 0: every cross-entropy term is log 2; logits +-log 3: softplus(-log 3) = log(4/3), softplus(log 3) = log 4
    zero = np.zeros(4, "float32")
    assert f(discriminator_loss(zero, zero)) == pytest.approx(2 * math.log(2), rel=1e-6)
    assert f(generator_loss(zero)) == pytest.approx(math.log(2), rel=1e-6)
    r, fake = np.full(2, math.log(3), "float32"), np.full(2, -math.log(3), "float32")
    assert f(discriminator_loss(r, fake)) == pytest.approx(2 * math.log(4 / 3), rel=1e-5)
    assert f(generator_loss(fake)) == pytest.approx(math.log(4), rel=1e-5)
    # LSGAN: ((r - 1)^2 + f^2) / 2 -> (0 + 4) / 2 / 2 + (0 + 4) / 2 / 2 = 2; G: (f - 1)^2 / 2 -> 0.5
    r, fake = np.array([1.0, 3.0], "float32"), np.array([0.0, 2.0], "float32")
    assert f(discriminator_loss(r, fake, "lsgan")) == pytest.approx(2.0)
    assert f(generator_loss(np.array([0.0, 2.0], "float32"), "lsgan")) == pytest.approx(0.5)
    # hinge: relu(1 - [2, 0.5]) = [0, 0.5], relu(1 + [-2, 0]) = [0, 1]: 0.25 + 0.5; G: -mean(f) = 1
    r, fake = np.array([2.0, 0.5], "float32"), np.array([-2.0, 0.0], "float32")
    assert f(discriminator_loss(r, fake, "hinge")) == pytest.approx(0.75)
    assert f(generator_loss(fake, "hinge")) == pytest.approx(1.0)
    # WGAN: mean(f) - mean(r) = -1 - 1.25; G: -mean(f)
    assert f(discriminator_loss(r, fake, "wgan_gp")) == pytest.approx(-2.25)
    assert f(generator_loss(fake, "wgan_gp")) == pytest.approx(1.0)
    # accuracy: real 2 right, -1 wrong; fake -3 right, 0 right (logit 0 is "not real"), 1 wrong -> 3 / 5
    assert f(discriminator_accuracy(np.array([2.0, -1.0]), np.array([-3.0, 0.0, 1.0]))) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="loss must be one of"):
        discriminator_loss(r, fake, "wasserstein")


@pytest.mark.jax
def test_gradient_penalty_of_a_linear_critic():
    # critic(x) = <w, x> + b: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2 = (5 - 1)^2 and its
    # gradient in w is 2 (||w|| - 1) w / ||w|| = 1.6 w
    critic = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1, name="fc")])
    w = np.array([[3.0], [0.0], [-4.0], [0.0]], "float32")
    critic.get_layer("fc").set_weights([w, np.array([0.7], "float32")])
    x = np.random.default_rng(0).standard_normal((5, 2, 2, 1)).astype("float32")
    assert float(np.asarray(gradient_penalty(critic, x))) == pytest.approx(16.0, rel=1e-5)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            penalty = gradient_penalty(critic, x)
        grad = tape.gradient(penalty, critic.get_layer("fc").kernel.value)
    else:
        import jax

        values = [v.value for v in critic.trainable_variables]

        def penalty(kernel):
            return gradient_penalty(lambda images: critic.stateless_call([kernel, values[1]], [], images)[0], x)

        grad = jax.grad(penalty)(values[0])
    np.testing.assert_allclose(np.asarray(grad), 1.6 * w, rtol=1e-5)


# ------------------------------------------------------------------------------------------ training
def _train(loss, conditional=False, epochs=1):
    model = dcgan(conditional=conditional, num_classes=3 if conditional else None, seed=1, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), loss=loss)
    before = _values(model)
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0).history
    return model, before, history


@pytest.mark.parametrize("loss", ["non_saturating", pytest.param("wgan_gp", marks=pytest.mark.jax)])
def test_train_steps_change_both_networks(loss):
    model, before, history = _train(loss)
    for key in ("d_loss", "g_loss", "loss", "d_accuracy"):
        assert np.isfinite(history[key]).all(), key
    assert 0.0 <= history["d_accuracy"][0] <= 1.0
    after = _values(model)
    moved = {v.path for v, a, b in zip(model.trainable_variables, before, after) if not np.allclose(a, b)}
    expected = {v.path for v in model.trainable_variables}
    if loss == "wgan_gp":  # mean(f) - mean(r) and the penalty do not depend on the logit's bias: its gradient is 0
        expected.discard(model.discriminator.get_layer("head_logit").bias.path)
    assert moved == expected
    assert int(model.optimizer.iterations) == 2  # one iteration per batch, two applications each


def test_conditional_training():  # lsgan trains in the catalog.train fixture below, hinge in the round trip
    model, _, history = _train("non_saturating", conditional=True)
    assert np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match="labels"):
        model.fit(_data()[0], batch_size=8, epochs=1, verbose=0)


def test_compile_rejects_unknown_losses_and_metrics():
    model = dcgan(**TINY)
    with pytest.raises(ValueError, match="loss must be one of"):
        model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="metrics"):
        model.compile(optimizer="adam", metrics=["accuracy"])


@pytest.mark.jax
def test_keras_round_trip_keeps_generator_optimizer_and_loss(tmp_path):
    from catalog.saving import load_model, save_model

    model, _, _ = _train("hinge")
    z = np.random.default_rng(3).standard_normal((4, 100)).astype("float32")
    loaded = keras_round_trip(model, z)
    assert isinstance(loaded, GAN) and loaded.gan_loss == "hinge"
    path = save_model(model, str(tmp_path / "gan.keras"), preprocessing="tf", model_name="dcgan")
    again = load_model(path)
    np.testing.assert_array_equal(np.asarray(again.predict(z, verbose=0)), np.asarray(model.predict(z, verbose=0)))
    images = _data(4)[0]
    np.testing.assert_allclose(np.asarray(again.discriminator(images)), np.asarray(model.discriminator(images)),
                               rtol=1e-5, atol=1e-6)
    assert int(again.optimizer.iterations) == int(model.optimizer.iterations) == 2
    for a, b in zip(again.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def test_a_part_has_no_recipe_of_its_own():
    with pytest.raises(ValueError, match="trains inside a GAN"):
        recipe_of(catalog.create_model("dcgan_generator", **TINY), "dcgan_generator")
    with pytest.raises(ValueError, match="loss must be one of"):
        recipe_of(catalog.create_model("dcgan", **TINY), "dcgan", loss="l2")


# ------------------------------------------------------------------------------------------ catalog.train, evaluate
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny classifier and a tiny DCGAN, both trained through catalog.train on shapes."""
    root = tmp_path_factory.mktemp("gan")
    keras.utils.set_random_seed(0)
    clf = catalog.train("lenet5", "shapes", epochs=3, batch_size=32, num_images=256, image_size=32, optimizer="adam",
                        augment=False, weight_decay=0.0,
                        out_dir=str(root / "clf"), verbose=0, val_split="none")
    gan = catalog.train("dcgan", "shapes", epochs=2, batch_size=16, num_images=32, image_size=32, optimizer="adam",
                        lr=2e-4, model_options={"filters": 32}, task_options={"loss": "lsgan"},
                        out_dir=str(root / "gan"), verbose=0)
    return clf, gan


def test_catalog_train_writes_sample_grids_and_a_report(runs):
    _, gan = runs
    run = gan.run_dir
    assert sorted(os.listdir(os.path.join(run, "samples"))) == ["epoch_001.png", "epoch_002.png", "final.png"]
    report = json.load(open(os.path.join(run, "report.json")))
    assert report["task"] == "generation" and report["metrics"]["num_images"] == 500
    assert any("no classifier was named" in note for note in report["notes"])
    assert {"d_loss", "g_loss", "d_accuracy", "val_d_loss"} <= set(report["history"])
    assert "Samples after epoch 2" in open(os.path.join(run, "report.html")).read()
    assert gan.model.gan_loss == "lsgan" and int(gan.model.optimizer.iterations) == 4


def test_evaluate_scores_samples_with_a_named_classifier(runs, tmp_path):
    clf, gan = runs
    out = catalog.evaluate(os.path.join(gan.run_dir, "model.keras"), "shapes", task="generation",
                           out_dir=str(tmp_path / "eval"), verbose=0, classifier=os.path.join(clf.run_dir, "model.keras"),
                           num_images=40, splits=4)
    metrics = json.load(open(os.path.join(out, "report.json")))["metrics"]
    classes = len(json.load(open(os.path.join(out, "report.json")))["class_names"])
    for key in ("inception_score", "real_inception_score"):
        assert 1.0 <= metrics[key] <= classes + 1e-6, key  # exp(KL) lies in [1, number of classes]
    assert metrics["fid"] >= 0.0 and math.isfinite(metrics["fid"])
    assert metrics["classifier"] == "lenet5" and metrics["feature_layer"] == "input of head_fc"
    assert sum(metrics["sample_class_share"]) == pytest.approx(1.0)
    # the same classifier as a registered name with a weights file scores the same samples identically
    weights = str(tmp_path / "lenet5.weights.h5")
    clf.model.save_weights(weights)
    out = catalog.evaluate(os.path.join(gan.run_dir, "model.keras"), "shapes", task="generation",
                           out_dir=str(tmp_path / "by_name"), verbose=0, num_images=40, splits=4,
                           classifier="lenet5", classifier_weights=weights)
    again = json.load(open(os.path.join(out, "report.json")))["metrics"]
    for key in ("inception_score", "real_inception_score", "fid"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6), key
    with pytest.raises(ValueError, match="classifier_weights"):
        catalog.evaluate(gan.model, "shapes", task="generation", out_dir=str(tmp_path / "e2"), verbose=0,
                         classifier="lenet5", num_images=20, splits=2)
