"""BatchNorm folding is exact; export writes .keras, SavedModel and TFLite (float32, float16, dynamic, int8)
files whose outputs match the Keras model, and a JSON report beside each; errors are one sentence."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

import catalog
from catalog.export import export, fold_batch_norm, foldable_pairs


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _models(model):
    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _models(layer)


def randomize_batch_norm(model, seed=0):
    """Non-trivial inference statistics, so a fold that ignores one of them shows."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.5, n).astype("float32"))


def _count_bn(model):
    return sum(isinstance(layer, layers.BatchNormalization) for layer in _all_layers(model))


def assert_folds_exactly(model, x):
    randomize_batch_norm(model)
    folded = fold_batch_norm(model)
    expected = keras.tree.flatten(model(x, training=False))
    found = keras.tree.flatten(folded(x, training=False))
    assert len(found) == len(expected)
    for a, b in zip(expected, found):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape
        assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(a)))
    assert all(not foldable_pairs(m) for m in _models(folded))  # no BatchNorm after a conv or dense is left
    assert len(folded.catalog_folded_bn) == _count_bn(model) - _count_bn(folded) > 0
    assert folded.count_params() < model.count_params()
    return folded


SMALL = dict(input_shape=(64, 64, 3), num_classes=10, classifier_activation=None)
FOLD_CASES = {  # name: (create_model keywords, BatchNorm layers that fold)
    "resnet18": (dict(SMALL, input_shape=(32, 32, 3)), 20),
    "resnet50": (SMALL, 53),
    "mobilenet_v2": (dict(SMALL, alpha=0.35), 52),
    "mobilenet_v3_small": (dict(SMALL, alpha=0.5), 34),
    "efficientnet_b0": (dict(SMALL, width=0.25, depth=0.25), 22),
    "densenet121": (SMALL, 59),  # its 62 pre-activation BatchNorms (after a concatenation) stay
    "resnext50_32x4d": (dict(SMALL, input_shape=(32, 32, 3), depths=(1, 1, 1, 1)), 17),  # GroupedConv2D folds
    "retinanet_mobilenet_v2_fpn": (dict(num_classes=5, input_shape=(64, 64, 3), fpn_channels=16,
                                        backbone_options={"alpha": 0.35}), 51),
}


@pytest.mark.parametrize("name", sorted(FOLD_CASES))
def test_fold_batch_norm_is_exact(name):
    kwargs, count = FOLD_CASES[name]
    model = catalog.create_model(name, **kwargs)
    x = np.random.default_rng(1).uniform(0, 1, (2, *kwargs["input_shape"])).astype("float32")
    folded = assert_folds_exactly(model, x)
    assert len(folded.catalog_folded_bn) == count
    if name.startswith("retinanet"):  # the features_only backbone nested inside is folded too
        assert all("/" in n for n in folded.catalog_folded_bn)
        assert isinstance(folded.output, dict) and set(folded.output) == {"classes", "boxes"}


def test_fold_batch_norm_graph_cases():
    """Shared layers, a nested model, dict outputs, a keras.ops operation, every foldable layer kind, and
    a BatchNorm that is a model output (folds), and the pairs that must not fold (an activation inside the conv,
    a second consumer of the conv's output)."""
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, layers.BatchNormalization(name="inner_bn")(
        layers.Conv2D(4, 1, use_bias=False, name="inner_conv")(inner_in)), name="inner")
    image, vector = keras.Input((8, 8, 3), name="image"), keras.Input((5,), name="vector")
    shared_conv, shared_bn = layers.Conv2D(4, 3, padding="same", name="shared_conv"), \
        layers.BatchNormalization(name="shared_bn")
    a = shared_bn(shared_conv(image))
    b = shared_bn(shared_conv(image * 2.0))  # the pair called twice, together: folds once
    x = layers.Add(name="add")([a, b])
    x = layers.BatchNormalization(name="dw_bn")(layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                                                       name="dw")(x))
    x = layers.BatchNormalization(name="sep_bn")(layers.SeparableConv2D(6, 3, padding="same", name="sep")(x))
    x = layers.BatchNormalization(name="up_bn")(layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                                                       name="up")(x))
    x = layers.BatchNormalization(name="act_bn")(layers.Conv2D(4, 1, activation="relu", name="act_conv")(x))
    y = layers.Conv2D(4, 1, name="two_use_conv")(x)
    x = layers.Add(name="add2")([layers.BatchNormalization(name="two_use_bn")(y), y])
    x = inner(layers.AveragePooling2D(2, name="pool")(x))
    out_bn = layers.BatchNormalization(name="out_bn")(layers.Conv2D(4, 1, name="out_conv")(x))
    v = layers.BatchNormalization(name="fc_bn")(layers.Dense(7, name="fc")(vector))
    model = keras.Model({"image": image, "vector": vector},
                        {"map": out_bn, "pooled": layers.GlobalAveragePooling2D(name="gap")(x), "fc": v})
    rng = np.random.default_rng(0)
    inputs = {"image": rng.normal(size=(2, 8, 8, 3)).astype("float32"),
              "vector": rng.normal(size=(2, 5)).astype("float32")}
    folded = assert_folds_exactly(model, inputs)
    assert sorted(folded.catalog_folded_bn) == ["dw_bn", "fc_bn", "inner/inner_bn", "out_bn", "sep_bn",
                                                "shared_bn", "up_bn"]
    kept = {layer.name for layer in _all_layers(folded) if isinstance(layer, layers.BatchNormalization)}
    assert kept == {"act_bn", "two_use_bn"}
    assert folded.get_layer("shared_conv").use_bias and len(folded.get_layer("shared_conv")._inbound_nodes) == 2
    assert set(folded.output) == {"map", "pooled", "fc"}
    assert isinstance(folded.get_layer("inner"), keras.Model)


def test_fold_batch_norm_copies_and_refuses_non_functional():
    model = catalog.create_model("resnet20", width=8, depths=(1, 1, 1), num_classes=3)
    folded = fold_batch_norm(model)
    assert folded.get_layer("head_fc") is not model.get_layer("head_fc")  # a copy: the original is untouched
    assert _count_bn(model) == 7 and _count_bn(folded) == 0  # the original keeps its BatchNorm layers
    with pytest.raises(ValueError, match="functional"):
        fold_batch_norm(layers.Dense(3))


# ------------------------------------------------------------------------------------------------ export

TINY = dict(width=8, depths=(1, 1, 1), input_shape=(32, 32, 3), num_classes=5, classifier_activation=None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny resnet20 trained briefly on shapes (a random model's int8 outputs say little about agreement).
    Adam and BatchNorm momentum 0.9: with a few hundred steps the default 0.99 leaves the moving statistics
    far from the batch statistics, and the model's inference outputs near uniform."""
    out = tmp_path_factory.mktemp("run")
    catalog.train("resnet20", "shapes", epochs=3, num_images=512, batch_size=32, image_size=32, val_split="none",
                  model_options={k: v for k, v in TINY.items() if k in ("width", "depths")}, verbose=0,
                  out_dir=str(out), jit="off", optimizer="adam", lr=1e-3, weight_decay=0.0, bn_momentum=0.9)
    return str(out / "model.keras")


def _check_report(report, path, fmt, quantize=None):
    with open(path + ".json") as f:
        written = json.load(f)
    assert written == report
    assert report["format"] == fmt and report["quantize"] == quantize and report["path"] == os.path.abspath(path)
    assert report["size_bytes"] > 0
    for key in ("max_abs_diff", "output_scale", "max_rel_diff", "top1_agreement", "compared_on", "bn_folded",
                "bn_folded_layers", "params", "float_ops", "random_weights", "notes"):
        assert key in report
    return report


@pytest.mark.parametrize("fmt, quantize, tolerance", [
    ("keras", None, 0.0), ("savedmodel", None, 1e-5), ("tflite", None, 1e-4),
    ("tflite", "float16", 5e-3), ("tflite", "dynamic", 5e-2)])
def test_export_float_formats_match_keras(tmp_path, fmt, quantize, tolerance):
    model = catalog.create_model("resnet20", **TINY)
    randomize_batch_norm(model)
    path = str(tmp_path / {"keras": "m.keras", "savedmodel": "m_saved", "tflite": "m.tflite"}[fmt])
    report = _check_report(export(model, fmt, path, quantize=quantize, num_compare=8, verbose=0), path, fmt, quantize)
    assert report["max_rel_diff"] <= tolerance
    assert report["bn_folded"] == (0 if fmt == "keras" else 7)
    assert report["compared_on"].startswith("8 generated")
    if fmt == "savedmodel":
        import tensorflow as tf

        x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
        loaded = tf.saved_model.load(path)  # held: its functions need the object alive
        reloaded = np.asarray(loaded.serve(tf.constant(x)))
        np.testing.assert_allclose(reloaded, np.asarray(model(x, training=False)), rtol=0, atol=1e-5)
    if fmt == "keras":
        from catalog.saving import read_record

        assert read_record(path)["preprocessing"] == "unit"


def test_export_tflite_of_grouped_convolutions_matches_keras(tmp_path):
    model = catalog.create_model("resnext50_32x4d", width=32, depths=(1, 1, 1, 1), input_shape=(32, 32, 3),
                                 num_classes=5, classifier_activation=None)
    grouped = [layer for layer in model.layers if getattr(layer, "groups", 1) > 1]
    assert grouped and all(layer.groups < layer.input.shape[-1] for layer in grouped)  # the per-group path
    randomize_batch_norm(model)
    path = str(tmp_path / "m.tflite")
    report = _check_report(export(model, "tflite", path, num_compare=4, verbose=0), path, "tflite", None)
    assert report["max_rel_diff"] <= 1e-4 and report["bn_folded"] == 17


def test_export_int8_of_a_trained_classifier(tmp_path, trained):
    float_path, int8_path = str(tmp_path / "f.tflite"), str(tmp_path / "q.tflite")
    common = dict(calibration="shapes", num_compare=32, verbose=0)
    float_report = export(trained, "tflite", float_path, **common)
    report = _check_report(export(trained, "tflite", int8_path, quantize="int8", num_calibration=32, **common),
                           int8_path, "tflite", "int8")
    assert float_report["max_rel_diff"] < 1e-4 and float_report["top1_agreement"] == 1.0
    assert report["compared_on"] == "32 images of shapes split test"
    assert report["top1_agreement"] >= 0.8
    assert report["max_rel_diff"] < 0.25
    assert report["float_ops"] == []  # every op of a resnet converts to int8
    assert report["size_bytes"] < 0.6 * float_report["size_bytes"]  # a tiny model: the flatbuffer's overhead
    from catalog.saving import read_record

    assert report["random_weights"] is False and report["preprocessing"] == read_record(trained)["preprocessing"]

    tensor_path = str(tmp_path / "t.tflite")
    per_tensor = export(trained, "tflite", tensor_path, quantize="int8", num_calibration=32, per_channel=False,
                        **common)
    assert per_tensor["top1_agreement"] >= 0.8 and "per tensor" in " ".join(per_tensor["notes"])
    import tensorflow as tf

    def scales(path):  # the quantization scales of the conv kernels
        interpreter = tf.lite.Interpreter(model_path=path)
        return [d["quantization_parameters"]["scales"].size for d in interpreter.get_tensor_details()
                if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][0] > 1 and "conv" in d["name"]]

    assert set(scales(tensor_path)) == {1} and max(scales(int8_path)) > 1
    assert per_tensor["size_bytes"] < report["size_bytes"]


def test_export_cli_end_to_end(tmp_path, trained):
    out = str(tmp_path / "model.tflite")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "catalog", "export", trained, "--format", "tflite",
                             "--quantize", "dynamic", "--calibration", "shapes", "--num-compare", "8", "--out", out],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "top-1 agreement" in result.stdout and f"report: {out}.json" in result.stdout
    with open(out + ".json") as f:
        assert json.load(f)["quantize"] == "dynamic"
    for args, words in ((["--format", "onnx", "--out", out], "format must be one of"),
                        (["--format", "tflite", "--quantize", "int8", "--out", out], "needs calibration"),
                        (["--format", "keras", "--out", str(tmp_path / "x.tflite")], "must end in .keras")):
        result = subprocess.run([sys.executable, "-m", "catalog", "export", trained, *args], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 1 and words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = subprocess.run([sys.executable, "-m", "catalog", "export", str(tmp_path / "missing.keras"), "--format",
                             "tflite", "--out", out], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_export_errors_are_one_sentence(tmp_path):
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras archive"):
        export(str(bad), "keras", str(tmp_path / "out.keras"), verbose=0)
    with pytest.raises(ValueError, match="registered name"):
        export("no_such_model", "keras", str(tmp_path / "out.keras"), verbose=0)
    with pytest.raises(ValueError, match="applies to format 'tflite' only"):
        export("resnet20", "savedmodel", str(tmp_path / "s"), quantize="float16")


class Singular(layers.Layer):
    """Singular values: ``tf.Svd``, which no TFLite builtin op implements."""

    def call(self, x):
        return keras.ops.svd(x, compute_uv=False)


def test_export_names_the_layer_the_converter_cannot_take(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = layers.Permute((3, 1, 2), name="channels_first")(layers.Conv2D(4, 3, name="conv")(inputs))
    model = keras.Model(inputs, layers.Flatten(name="flat")(Singular(name="singular_values")(x)), name="svd_net")
    with pytest.raises(ValueError, match=r"TFLite export of svd_net failed at layer singular_values \(Singular\): "
                                         r"'tf.Svd' op is neither a custom op nor a flex op\.$"):
        export(model, "tflite", str(tmp_path / "svd.tflite"), verbose=0)


def test_catalog_export_is_callable():
    assert callable(catalog.export) and catalog.export.fold_batch_norm is fold_batch_norm


def test_export_of_a_registered_name_without_weights_says_so(tmp_path, capsys):
    report = export("resnet20", "keras", str(tmp_path / "r.keras"), verbose=1)
    assert report["random_weights"] is True
    assert "weights are random" in capsys.readouterr().out


@pytest.mark.slow
def test_int8_mobilenet_v2_acceptance(tmp_path):
    """Issue 17: int8 of mobilenet_v2 trained briefly on generated data (~4 min on 2 CPU cores) agrees on top-1
    with the float model on at least 95% of held-out images (measured 0.995), and is about 30% of the float
    file: measured 30.6%, 2,719,352 of 8,893,264 bytes, where 410 KB are the per-channel scales (float32) and
    zero points (int64) of its 34,188 quantized channels, which the flatbuffer stores whatever the weights;
    with per-tensor weights (``per_channel=False``) 26.0%, 2,311,112 bytes, at the same agreement."""
    run = catalog.train("mobilenet_v2", "shapes", epochs=16, num_images=2048, batch_size=32, image_size=64,
                        val_split="none", verbose=0, out_dir=str(tmp_path / "run"), jit="off", optimizer="adam",
                        lr=1e-3, weight_decay=0.0, bn_momentum=0.9)
    path = os.path.join(run.run_dir, "model.keras")
    common = dict(calibration="shapes", num_compare=200, verbose=0)
    float_report = export(path, "tflite", str(tmp_path / "f.tflite"), **common)
    report = export(path, "tflite", str(tmp_path / "q.tflite"), quantize="int8", num_calibration=500, **common)
    assert float_report["max_rel_diff"] < 1e-4 and float_report["bn_folded"] == 52
    assert report["float_ops"] == []
    assert report["size_bytes"] <= 0.31 * float_report["size_bytes"]
    assert report["top1_agreement"] >= 0.95
    per_tensor = export(path, "tflite", str(tmp_path / "t.tflite"), quantize="int8", num_calibration=500,
                        per_channel=False, **common)
    assert per_tensor["size_bytes"] <= 0.30 * float_report["size_bytes"]  # measured 26.0%
    assert per_tensor["top1_agreement"] >= 0.95


def test_per_tensor_weights_apply_to_int8_only(tmp_path):
    from catalog.export import check_options

    with pytest.raises(ValueError, match="apply to quantize 'int8' only; got quantize 'dynamic'"):
        check_options("tflite", str(tmp_path / "m.tflite"), "dynamic", per_channel=False)
    assert check_options("tflite", str(tmp_path / "m.tflite"), "int8", "shapes", per_channel=False)
