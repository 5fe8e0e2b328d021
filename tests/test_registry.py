"""The registry: listing, lookup errors, keyword validation, cards, the keras.applications keywords."""

import keras
import numpy as np
import pytest

import catalog
from catalog.registry import register_model


def test_list_models_is_sorted_and_filters():
    names = catalog.list_models()
    assert names == sorted(names) and "lenet5" in names
    assert catalog.list_models("lenet*") == ["lenet5"]
    assert catalog.list_models("*", task="segmentation") == [] or all(
        catalog.registry.get_entry(n).task == "segmentation" for n in catalog.list_models(task="segmentation"))
    assert "lenet5" in catalog.list_models(task="classification")
    with pytest.raises(ValueError, match="task must be one of"):
        catalog.list_models(task="poetry")


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean lenet5"):
        catalog.create_model("lenet")


def test_unknown_keyword_names_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) colour; accepted: .*num_classes"):
        catalog.create_model("lenet5", colour="red")


def test_duplicate_registration_is_an_error():
    catalog.list_models()  # the families register when the registry is first queried
    with pytest.raises(ValueError, match="already registered"):
        register_model(lambda **kw: None, name="lenet5", family="x")


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=0), "num_classes must be a positive integer"),
    (dict(num_classes=-3), "num_classes must be a positive integer"),
    (dict(classes=3, num_classes=4), "disagree"),
    (dict(input_shape=(-32, 32, 1)), "input_shape height and width must be positive"),
    (dict(input_shape=(8, 8, 1)), "at least 32"),
    (dict(input_shape=(32, 32)), r"input_shape must be \(height, width, channels\)"),
    (dict(pooling="mean"), "pooling must be None, 'avg' or 'max'"),
    (dict(weights="imagenet"), "never does"),
    (dict(features_only=True, out_indices=(7,)), "out_indices must be stage indices in 0..2"),
])
def test_bad_values_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("lenet5", **kwargs)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        catalog.create_model("lenet5", weights=str(tmp_path / "nope.weights.h5"))


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="could not be loaded"):
        catalog.create_model("lenet5", weights=str(bad))


def test_weights_round_trip_from_local_file(tmp_path):
    model = catalog.create_model("lenet5", num_classes=3)
    path = tmp_path / "lenet.weights.h5"
    model.save_weights(path)
    again = catalog.create_model("lenet5", num_classes=3, weights=str(path))
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-6)


def test_keras_applications_keywords():
    top = catalog.create_model("lenet5", classes=5, classifier_activation=None)
    assert top.output.shape == (None, 5)
    assert top.get_layer("head_fc").units == 5
    assert top.layers[-1].name == "head_fc"  # logits: no activation layer
    soft = catalog.create_model("lenet5", num_classes=4)
    out = soft.predict(np.zeros((2, 32, 32, 1), "float32"), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    pooled = catalog.create_model("lenet5", include_top=False, pooling="avg")
    assert pooled.output.shape == (None, 120)
    maxed = catalog.create_model("lenet5", include_top=False, pooling="max", input_shape=(64, 64, 3))
    assert maxed.output.shape == (None, 120)
    bare = catalog.create_model("lenet5", include_top=False, input_shape=(None, None, 1))
    assert bare.output.shape == (None, None, None, 120)
    tensor = keras.Input((48, 48, 3))
    from_tensor = catalog.create_model("lenet5", input_tensor=tensor, num_classes=2)
    assert from_tensor.inputs[0] is tensor and from_tensor.output.shape == (None, 2)


def test_features_only_and_out_indices():
    feats = catalog.create_model("lenet5", features_only=True)
    assert [t.shape[-1] for t in feats.outputs] == [6, 16, 120]
    two = catalog.create_model("lenet5", features_only=True, out_indices=(0, 2))
    assert [t.shape[1:] for t in two.outputs] == [(28, 28, 6), (1, 1, 120)]


def test_model_info_card():
    card = catalog.model_info("lenet5")
    assert card.params == 61_706 == card.reference_params
    assert card.family == "lenet" and card.task == "classification"
    assert card.input_shape == (32, 32, 1) and card.num_classes == 10
    assert card.feature_channels == (6, 16, 120)
    assert "LeCun" in card.paper
    assert card.to_dict()["params"] == 61_706


@pytest.mark.jax
def test_model_info_and_evaluate_keep_the_callers_dtype_policy():
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        catalog.model_info("lenet5", measure=True)
        catalog.model_info("resnet20")
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        model = catalog.create_model("lenet5")
        assert model.get_layer("head_fc").dtype_policy.name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_model_info_reads_the_shipped_card_without_building(monkeypatch):
    from catalog import registry

    def refuse(name):
        raise AssertionError(f"built {name}")

    monkeypatch.setattr(registry, "measure_card", refuse)
    card = catalog.model_info("resnet50")
    assert card.params == 25_557_032 and card.macs > 4e9 and card.crop_fraction == 0.875
    assert catalog.model_info("resnet20").crop_fraction == 1.0


@pytest.mark.jax
def test_create_model_takes_a_model_name():
    assert catalog.create_model("lenet5", name="mynet").name == "mynet"


def test_channels_first_input_shape_is_pointed_out():
    with pytest.raises(ValueError, match=r"channels-first.*\(224, 224, 3\)"):
        catalog.create_model("resnet18", input_shape=(3, 224, 224))


def test_unknown_family_raises_like_an_unknown_task():
    with pytest.raises(ValueError, match="family must be one of .*resnet"):
        catalog.list_models(family="nope")
    assert "resnet50" in catalog.list_models(family="resnet")


@pytest.mark.jax
def test_every_name_takes_the_build_keywords():
    from catalog.registry import BUILD_KEYWORDS

    assert BUILD_KEYWORDS == ("norm", "norm_groups", "initializer")
    for name in catalog.list_models():
        assert set(BUILD_KEYWORDS) <= set(catalog.registry.accepted_kwargs(name)), name


@pytest.mark.jax
def test_build_keywords_leave_the_default_build_unchanged():
    """norm="batch" and the card's own initializer select what the default build has: the same weights."""
    keras.utils.set_random_seed(3)
    default = catalog.create_model("resnet20")
    keras.utils.set_random_seed(3)
    chosen = catalog.create_model("resnet20", norm="batch", norm_groups=8, initializer="he_normal_fan_out")
    assert default.get_config()["layers"] == chosen.get_config()["layers"]
    for a, b in zip(default.weights, chosen.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_model_info_card_names_the_initialization():
    card = catalog.model_info("lenet5")
    assert card.initialization == "he_normal_fan_out" and card.to_dict()["initialization"] == "he_normal_fan_out"
    assert catalog.model_info("srcnn_915").initialization == "glorot_uniform"
