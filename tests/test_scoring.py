"""catalog.scoring (the evaluate job) end to end on generated shapes (tiny models), and the `catalog evaluate` command."""

import json
import keras
import numpy as np
import pytest

from catalog import datasets
from catalog.scoring import evaluate

SIZE = 32


def tiny_classifier(num_classes):
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="head_fc")(x), name="tiny_classifier")


def test_evaluate_classification_numbers_equal_direct_computation(tmp_path):
    ds, info = datasets.load("shapes", split="test", task="classification", image_size=SIZE, batch_size=16,
                             num_images=40, preprocessing="unit")
    model = tiny_classifier(len(info["class_names"]))
    x = np.concatenate([np.asarray(b[0]) for b in ds])
    y = np.concatenate([np.asarray(b[1]) for b in ds])
    logits = model.predict(x, verbose=0)
    out = evaluate(model, "shapes", "classification", str(tmp_path / "cls"), image_size=SIZE, batch_size=16,
                   num_images=40, verbose=0)
    report = json.loads((tmp_path / "cls" / "report.json").read_text())
    assert report["metrics"]["top_k"]["top1"] == pytest.approx(np.mean(logits.argmax(1) == y))
    cm = np.zeros((len(info["class_names"]),) * 2, int)
    np.add.at(cm, (y, logits.argmax(1)), 1)
    assert report["metrics"]["confusion_matrix"] == cm.tolist()
    assert report["dataset"]["examples"] == 40 and report["class_names"] == list(info["class_names"])
    html = (tmp_path / "cls" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and out == str(tmp_path / "cls")


def test_evaluate_segmentation_and_detection(tmp_path):
    _, info = datasets.load("shapes", split="test", task="segmentation", image_size=SIZE, batch_size=8, num_images=8)
    n = len(info["class_names"]) + 1  # background
    inp = keras.Input((SIZE, SIZE, 3))
    seg = keras.Model(inp, keras.layers.Conv2D(n, 1, name="head_conv")(inp))
    evaluate(seg, "shapes", "segmentation", str(tmp_path / "seg"), batch_size=8, num_images=8, verbose=0)
    report = json.loads((tmp_path / "seg" / "report.json").read_text())
    assert report["class_names"][0] == "background" and len(report["metrics"]["iou"]) == n
    assert 0.0 <= report["metrics"]["pixel_accuracy"] <= 1.0

    k = 6  # a "detector" with dict outputs: boxes (xyxy pixels), scores, labels
    x = keras.layers.GlobalAveragePooling2D()(inp)
    corners = keras.layers.Reshape((k, 2))(keras.layers.Dense(2 * k, activation="sigmoid")(x))
    boxes = keras.layers.Concatenate()([keras.layers.Rescaling(16.0)(corners), keras.layers.Rescaling(16.0, 16.0)(corners)])
    scores = keras.layers.Dense(k, activation="sigmoid")(x)
    labels = keras.layers.Rescaling(len(info["class_names"]) - 0.01)(keras.layers.Dense(k, activation="sigmoid")(x))
    det = keras.Model(inp, {"boxes": boxes, "scores": scores, "labels": labels})
    evaluate(det, "shapes", "detection", str(tmp_path / "det"), batch_size=4, num_images=8, verbose=0)
    report = json.loads((tmp_path / "det" / "report.json").read_text())
    assert set(report["metrics"]) >= {"AP", "AP50", "AR100", "per_class_ap50"}
    assert sum(report["metrics"]["per_class_gt"]) >= 8
    assert (tmp_path / "det" / "report.html").read_text().count("data:image/png;base64,") == 2


def test_cli_evaluate(tmp_path, capsys):
    from catalog.cli import main

    _, info = datasets.load("shapes", split="test", task="classification", image_size=SIZE, batch_size=8,
                            num_images=8)
    path = str(tmp_path / "tiny.keras")
    tiny_classifier(len(info["class_names"])).save(path)
    code = main(["evaluate", "--model", path, "--data", "shapes", "--task", "classification",
                 "--out", str(tmp_path / "rep"), "--max-batches", "2", "--batch-size", "8", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert str(tmp_path / "rep") in out.out
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["dataset"]["examples"] == 16
    assert main(["evaluate", "--model", str(tmp_path / "none.keras"), "--data", "shapes"]) == 1
    err = capsys.readouterr().err
    assert "model file not found" in err and err.strip().count("\n") == 0
    assert main(["evaluate", "--model", "nosuchnet", "--data", "shapes"]) == 1
    assert "registered name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", path, "--data", "shapes", "--batch-size", "0"])
    assert exit_info.value.code == 2


def test_inception_score_and_fid_of_images_through_any_network():
    from catalog.scoring import fid_of_images, inception_score_of_images
    from catalog.evaluation import fid, inception_score

    rng = np.random.default_rng(0)
    images = rng.random((40, SIZE, SIZE, 3)).astype("float32")
    others = (rng.random((40, SIZE, SIZE, 3)) ** 2).astype("float32")
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, name="conv")(inp))
    classifier = keras.Model(inp, keras.layers.Dense(7, activation="softmax", name="head_fc")(pooled))
    features = keras.Model(inp, pooled)
    probs = classifier.predict(images, verbose=0).astype(np.float64)
    assert inception_score_of_images(images, classifier, splits=4) == pytest.approx(inception_score(probs, 4), rel=1e-6)
    expected = fid(features.predict(images, verbose=0), features.predict(others, verbose=0))
    assert fid_of_images(images, others, features) == pytest.approx(expected, rel=1e-5)
