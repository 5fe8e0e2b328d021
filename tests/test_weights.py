"""Weight files into catalog models (catalog.weights): keras.applications legacy files with exact outputs,
a new head, other input channels, preprocessing built in, and one-sentence errors."""

import logging

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import catalog
from catalog import weights as W
from catalog.registry import get_entry

# (registered name, input size, include_top) small enough for CI: one or two per keras.applications family.
FAST = [("resnet50", 64, True), ("resnet50", 64, False), ("resnet50_v2", 64, False), ("inception_v3", 75, False),
        ("xception", 71, True), ("mobilenet_v1_0_25_224", 64, True), ("mobilenet_v2_0_35", 64, False),
        ("mobilenet_v3_small", 64, True), ("mobilenet_v3_small", 64, False), ("densenet121", 64, False),
        ("efficientnet_b0", 64, True), ("vgg16", 64, False)]
# Every architecture keras.applications ships, every alpha, with and without the top (slow).
ALL = [n for n in catalog.list_models(task="classification") if W.keras_applications_entry(n, get_entry(n).family)]


def keras_builder(name):
    fn, _, passed = W.keras_applications_entry(name, get_entry(name).family)
    kwargs = {k: get_entry(name).defaults[k] for k in passed if k in get_entry(name).defaults}
    if fn.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False
    return getattr(keras.applications, fn), kwargs


def perturbed(model, seed=0):
    """Random BatchNorm statistics, gammas, betas and biases, so every weight matters to the output."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, c))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.2, c))
        elif getattr(layer, "bias", None) is not None and layer.weights:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape))
    return model


def keras_file(tmp_path, name, include_top, size, classes=1000):
    """A keras.applications model of ``name`` with perturbed statistics, and its legacy HDF5 weights file."""
    builder, kwargs = keras_builder(name)
    shape = None if include_top and name.startswith("vgg") else (size, size, 3)
    reference = perturbed(builder(weights=None, include_top=include_top, input_shape=shape,
                                  **({"classes": classes, "classifier_activation": None} if include_top else {}),
                                  **kwargs))
    path = tmp_path / f"{name}_{'top' if include_top else 'notop'}.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    return reference, str(path)


def assert_same_outputs(reference, model, seed=1):
    x = np.random.default_rng(seed).uniform(0, 255, (2,) + tuple(reference.input_shape[1:])).astype("float32")
    expected, got = reference.predict(x, verbose=0), model.predict(x, verbose=0)
    assert expected.shape == got.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(expected - got).max()) <= 1e-4 * scale, (float(np.abs(expected - got).max()), scale)


def check_keras_applications(tmp_path, name, size, include_top):
    reference, path = keras_file(tmp_path, name, include_top, size)
    shape = tuple(reference.input_shape[1:])
    model = catalog.create_model(name, weights=path, include_top=include_top, input_shape=shape,
                                 **({"classifier_activation": None} if include_top else {}))
    assert_same_outputs(reference, model)


@pytest.mark.parametrize("name,size,include_top", FAST, ids=[f"{n}-{'top' if t else 'notop'}" for n, _, t in FAST])
def test_keras_applications_file_gives_keras_applications_outputs(tmp_path, name, size, include_top):
    check_keras_applications(tmp_path, name, size, include_top)


@pytest.mark.slow
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
@pytest.mark.parametrize("name", ALL)
def test_every_keras_applications_architecture_and_alpha(tmp_path, name, include_top):
    size = 75 if name.startswith(("inception", "xception")) else 64
    check_keras_applications(tmp_path, name, size, include_top)


def test_every_listed_keras_applications_model_is_covered():
    listed = {"vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50_v2", "resnet101_v2", "resnet152_v2",
              "inception_v3", "inception_resnet_v2", "xception", "mobilenet_v3_small", "mobilenet_v3_large",
              "densenet121", "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
              "efficientnet_b3"}
    assert listed <= set(ALL)
    # Every alpha; not the Shallow MobileNet (its depth is no keras.applications keyword).
    assert {n for n in ALL if n.startswith("mobilenet_v1")} == set(catalog.list_models("mobilenet_v1*")) - {
        "mobilenet_v1_shallow"}
    assert {n for n in ALL if n.startswith("mobilenet_v2")} == set(catalog.list_models("mobilenet_v2*"))


def test_family_member_keras_applications_cannot_build_refuses_its_files(tmp_path):
    _, path = keras_file(tmp_path, "mobilenet_v1_0_25_224", False, 64)
    with pytest.raises(ValueError, match=r"keras.applications file, but keras.applications has no "
                                         r"mobilenet_v1_shallow; it has .*mobilenet_v1, "):
        catalog.create_model("mobilenet_v1_shallow", weights=path, include_top=False, input_shape=(64, 64, 3))


def test_layout_change_and_bias_fold_are_said(tmp_path, caplog):
    reference, path = keras_file(tmp_path, "resnet50", False, 64)
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("resnet50", weights=path, include_top=False, input_shape=(64, 64, 3))
    said = [r.getMessage() for r in caplog.records if r.name == "catalog.weights"]
    assert any("ResNet50 layout" in line and "stride_on_1x1=True" in line for line in said)
    assert any(line.startswith("53 conv biases of the file folded exactly") for line in said)
    assert not model.get_layer("stem_conv").use_bias


def test_new_head_skips_only_the_head_and_says_so(tmp_path, caplog):
    reference, path = keras_file(tmp_path, "mobilenet_v2_0_35", True, 64)
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("mobilenet_v2_0_35", weights=path, num_classes=5, input_shape=(64, 64, 3))
    said = [r.getMessage() for r in caplog.records if r.name == "catalog.weights"]
    assert said == ["head_fc: 1000 -> 5 classes, not loaded"]
    assert model.output_shape == (None, 5)
    body = keras.Model(reference.input, reference.get_layer("out_relu").output)
    features = keras.Model(model.input, model.get_layer("head_conv_act").output)
    assert_same_outputs(body, features)


def test_catalog_file_with_another_head_loads_the_body(tmp_path, caplog):
    source = catalog.create_model("resnet20", num_classes=5, width=8, input_shape=(32, 32, 3))
    source.save_weights(tmp_path / "five.weights.h5")
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("resnet20", weights=str(tmp_path / "five.weights.h5"), width=8,
                                     input_shape=(32, 32, 3))
    assert [r.getMessage() for r in caplog.records if r.name == "catalog.weights"] == [
        "head_fc: 5 -> 10 classes, not loaded"]
    np.testing.assert_array_equal(source.get_layer("stem_conv").kernel, model.get_layer("stem_conv").kernel)


def test_file_of_another_architecture_names_layer_and_shapes(tmp_path):
    _, path = keras_file(tmp_path, "mobilenet_v2_0_35", False, 64)
    with pytest.raises(ValueError, match=r"not a keras.applications DenseNet121 file: its layer \w+ expects shapes "
                                         r"\[\(7, 7, 3, 64\)\], the file's layer \w+ holds \[\(3, 3, 3, 16\)\]") as err:
        catalog.create_model("densenet121", weights=path, include_top=False)
    assert "\n" not in str(err.value)


def test_corrupt_and_truncated_files_fail_in_one_sentence(tmp_path):
    _, path = keras_file(tmp_path, "mobilenet_v2_0_35", False, 64)
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n not really")
    for bad in (truncated, garbage):
        with pytest.raises(ValueError, match=rf"weights file {bad} could not be") as err:
            catalog.create_model("mobilenet_v2_0_35", weights=str(bad), include_top=False)
        assert "\n" not in str(err.value) and len(str(err.value)) < 400
    with pytest.raises(ValueError, match=r"must end in .keras, .weights.h5, .h5"):
        (tmp_path / "w.npz").write_bytes(b"x")
        catalog.create_model("mobilenet_v2_0_35", weights=str(tmp_path / "w.npz"))


def test_grayscale_model_from_rgb_weights_equals_rgb_model_on_gray_images(tmp_path, caplog):
    _, path = keras_file(tmp_path, "mobilenet_v2_0_35", False, 64)
    rgb = catalog.create_model("mobilenet_v2_0_35", weights=path, include_top=False, input_shape=(64, 64, 3))
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        gray = catalog.create_model("mobilenet_v2_0_35", weights=path, include_top=False, input_shape=(64, 64, 1))
    assert "stem_conv: weights for 3 input channels adapted to 1 (summed over the channels)" in caplog.messages
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(gray.predict(x, verbose=0), rgb.predict(np.repeat(x, 3, -1), verbose=0),
                               rtol=1e-4, atol=1e-4)
    four = catalog.create_model("mobilenet_v2_0_35", weights=path, include_top=False, input_shape=(64, 64, 4))
    kernel = np.asarray(rgb.get_layer("stem_conv").kernel)
    np.testing.assert_allclose(four.get_layer("stem_conv").kernel, np.concatenate([kernel, kernel[:, :, :1]], 2) * 0.75)


def test_efficientnet_file_storing_std_as_variance_is_squared(tmp_path, caplog):
    reference, _ = keras_file(tmp_path, "efficientnet_b0", False, 64)
    norm = next(layer for layer in reference.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign([0.485, 0.456, 0.406])
    norm.adapt_variance.assign([0.229, 0.224, 0.225])  # what keras.applications' ImageNet files hold
    path = tmp_path / "official_like.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("efficientnet_b0", weights=str(path), include_top=False, input_shape=(64, 64, 3))
    np.testing.assert_allclose(model.get_layer("preprocess_normalize").adapt_variance,
                               np.square([0.229, 0.224, 0.225]), rtol=1e-6)
    assert any("std as the variance" in m for m in caplog.messages)


# ---------------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2_0_35", "resnet50_v2", "nin_cifar", "nin"])
def test_include_preprocessing_equals_the_datasets_scaling(name):
    from catalog.datasets.transforms import normalize

    size = 64 if name != "nin" else 224
    plain = catalog.create_model(name, input_shape=(size, size, 3), classifier_activation=None)
    raw = catalog.create_model(name, input_shape=(size, size, 3), classifier_activation=None,
                               include_preprocessing=True)
    for layer in plain.layers:
        if layer.weights:
            raw.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    preprocessing = get_entry(name).preprocessing
    expected = plain.predict(np.asarray(normalize(x, preprocessing)), verbose=0)
    np.testing.assert_allclose(raw.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_preprocessing_constants_agree_with_the_datasets_ones():
    from catalog.datasets import transforms
    from catalog.models import classifier

    assert classifier.IMAGENET_MEAN == transforms._TORCH_MEAN
    assert classifier.IMAGENET_STD == transforms._TORCH_STD
    assert classifier.CAFFE_MEAN_BGR == transforms._CAFFE_MEAN_BGR


def test_model_with_preprocessing_round_trips_and_trains_on_raw_pixels(tmp_path):
    model = catalog.create_model("resnet20", width=8, include_preprocessing=True, input_shape=(32, 32, 3))
    from catalog.models.classifier import has_builtin_preprocessing

    assert has_builtin_preprocessing(model)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    run = catalog.train("resnet20", "shapes", epochs=1, batch_size=8, image_size=32, num_images=32, verbose=0,
                        model_options={"width": 8, "include_preprocessing": True}, out_dir=str(tmp_path / "run"))
    assert run.config["resolved"]["preprocessing"] == "none"
