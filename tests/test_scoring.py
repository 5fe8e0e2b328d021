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
    mistakes = int(np.sum(logits.argmax(1) != y))
    assert report["misclassified"]["total"] == mistakes
    assert html.count("data:image/png;base64,") == 4 + (mistakes > 0) and out == str(tmp_path / "cls")


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
    assert "does not exist" in err and err.strip().count("\n") == 0
    assert main(["evaluate", "--model", "nosuchnet", "--data", "shapes"]) == 1
    assert "registered name" in capsys.readouterr().err
    # a bad value is exit 1 with one sentence, whichever option it is; a malformed one is bad usage (2)
    for option in ("--batch-size", "--max-batches", "--image-size"):
        assert main(["evaluate", "--model", path, "--data", "shapes", option, "-3"]) == 1
        err = capsys.readouterr().err
        assert f"{option} must be a positive integer" in err and err.strip().count("\n") == 0
    assert main(["summary", "lenet5", "--num-classes", "-3"]) == 1
    assert "--num-classes must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", path, "--data", "shapes", "--batch-size", "many"])
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


def _trained_on_unit_pixels(tmp_path, num_classes):
    """A tiny classifier that separates the shapes by a cue that depends on the pixel scale: saved the way
    the jobs save (catalog.saving), with preprocessing "unit" and no crop."""
    from catalog.saving import save_model

    ds, _ = datasets.load("shapes", split="train", image_size=SIZE, batch_size=32, num_images=256,
                          preprocessing="unit")
    model = tiny_classifier(num_classes)
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds, epochs=3, verbose=0)
    path = str(tmp_path / "trained.keras")
    save_model(model, path, preprocessing="unit", crop_fraction=1.0, model_name="resnet20")
    return model, path


def test_evaluate_applies_the_preprocessing_and_crop_recorded_with_the_model(tmp_path, capsys):
    # Issue 11.1 / 11.9: the record wins over the card (resnet20's card says torch; the model says unit).
    _, info = datasets.load("shapes", split="test", image_size=SIZE, batch_size=8, num_images=8)
    model, path = _trained_on_unit_pixels(tmp_path, len(info["class_names"]))
    ds, _ = datasets.load("shapes", split="test", image_size=SIZE, batch_size=32, num_images=96,
                          preprocessing="unit", crop_fraction=1.0)
    x = np.concatenate([np.asarray(b[0]) for b in ds])
    y = np.concatenate([np.asarray(b[1]) for b in ds])
    direct = float(np.mean(model.predict(x, verbose=0).argmax(1) == y))
    evaluate(path, "shapes", out_dir=str(tmp_path / "rec"), num_images=96, verbose=0)
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert report["settings"]["preprocessing"] == "unit" and report["settings"]["crop_fraction"] == 1.0
    assert abs(report["metrics"]["top_k"]["top1"] - direct) <= 0.005
    assert report["settings"]["notes"] == []
    # Without a record the card's default applies, and the output and the report say so.
    plain = str(tmp_path / "plain.keras")
    model.save(plain)
    evaluate(plain, "shapes", out_dir=str(tmp_path / "card"), num_images=16, verbose=1)
    report = json.loads((tmp_path / "card" / "report.json").read_text())
    assert report["settings"]["preprocessing"] == "unit"  # no record, no card: a guess, said as one
    assert any("guess" in n for n in report["settings"]["notes"]) and "note: preprocessing" in capsys.readouterr().out
    evaluate(path, "shapes", out_dir=str(tmp_path / "arg"), num_images=16, preprocessing="torch", verbose=0)
    assert json.loads((tmp_path / "arg" / "report.json").read_text())["settings"]["preprocessing"] == "torch"


def test_registered_name_without_weights_is_refused_unless_allowed(tmp_path):
    # Issue 11.4
    with pytest.raises(ValueError, match="random weights.*--allow-random-weights"):
        evaluate("resnet20", "shapes", out_dir=str(tmp_path / "r"), num_images=8, verbose=0)
    evaluate("resnet20", "shapes", out_dir=str(tmp_path / "r"), num_images=8, image_size=SIZE,
             allow_random_weights=True, verbose=0)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["model"]["random_weights"] is True
    assert any("random weights" in n for n in report["settings"]["notes"])
    assert any("card of resnet20" in n for n in report["settings"]["notes"])


def test_max_batches_samples_the_whole_split_and_says_it_is_partial(tmp_path):
    # Issue 11.5: a class-sorted folder evaluated with max_batches covered only its first classes.
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(6):
        (tmp_path / "data" / f"class{c}").mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(
                tmp_path / "data" / f"class{c}" / f"{i}.png")
    model = tiny_classifier(6)
    evaluate(model, f"folder:{tmp_path / 'data'}", out_dir=str(tmp_path / "rep"), batch_size=8, max_batches=2,
             verbose=0)
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["dataset"]["split"] == "all" and report["dataset"]["examples"] == 16
    assert report["dataset"]["partial"] is True and len(report["dataset"]["classes_covered"]) >= 4
    assert any("partial result: 16 of 48" in n for n in report["settings"]["notes"])


def test_grayscale_model_is_evaluated_on_one_channel(tmp_path):
    # Issue 11.8
    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(inp))
    model = keras.Model(inp, keras.layers.Dense(5, name="head_fc")(x))
    evaluate(model, "shapes", out_dir=str(tmp_path / "g"), num_images=8, verbose=0)
    assert json.loads((tmp_path / "g" / "report.json").read_text())["settings"]["channels"] == 1


def test_weight_mismatch_is_one_sentence_naming_layer_shapes_and_cause(tmp_path):
    # Issue 11.7
    import catalog

    catalog.create_model("resnet20", num_classes=5).save_weights(str(tmp_path / "five.weights.h5"))
    catalog.create_model("resnet20", input_shape=(32, 32, 1)).save_weights(str(tmp_path / "gray.weights.h5"))
    catalog.create_model("lenet5").save_weights(str(tmp_path / "lenet.weights.h5"))
    cases = {"gray": r"layer stem_conv expects shapes \[\(3, 3, 3, 16\)\], the file holds \[\(3, 3, 1, 16\)\]; "
                     r".*1 input channels",
             "lenet": r"does not fit resnet20: .*another architecture"}
    for stem, pattern in cases.items():
        with pytest.raises(ValueError, match=pattern) as err:
            catalog.create_model("resnet20", weights=str(tmp_path / f"{stem}.weights.h5"))
        assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_corrupt_model_file_is_not_called_missing(tmp_path):
    # Issue 11.11
    path = tmp_path / "broken.keras"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a Keras archive"):
        evaluate(str(path), "shapes", verbose=0)


@pytest.mark.jax
def test_inception_score_and_fid_refuse_random_or_mismatched_networks():
    # Issue 11.3: an untrained network gave IS 1.0 / FID ~0 without a word.
    import catalog
    from catalog.scoring import fid_of_images, inception_score_of_images

    images = np.random.default_rng(0).random((4, 80, 80, 3)).astype("float32")
    with pytest.raises(ValueError, match="needs weights=PATH"):
        inception_score_of_images(images)
    with pytest.raises(ValueError, match="needs weights=PATH"):
        fid_of_images(images, images)
    fresh = catalog.create_model("resnet20", input_shape=(80, 80, 3))
    with pytest.raises(ValueError, match="random weights"):
        inception_score_of_images(images, fresh)
    fresh.get_layer("head_fc").kernel.assign(np.ones(fresh.get_layer("head_fc").kernel.shape, "float32"))
    assert inception_score_of_images(images, fresh, splits=2)[0] >= 1.0  # loaded/trained: accepted
    with pytest.raises(ValueError, match="images are 32x32x3 but .* takes 80x80x3"):
        inception_score_of_images(images[:, :32, :32], fresh)
    with pytest.raises(ValueError, match="at least 75"):  # the size is checked before the file is read
        inception_score_of_images(images[:, :40, :40], weights="inception_v3.weights.h5")


def test_detections_of_a_coco_spec_are_scored_and_saved_in_original_pixels_and_ids(tmp_path):
    from PIL import Image

    from catalog.scoring import _detection_metrics

    (tmp_path / "img").mkdir()
    written = {10: [(3, [4.0, 6.0, 20.0, 10.0]), (7, [30.0, 2.0, 12.0, 40.0])], 11: [(7, [8.0, 8.0, 40.0, 30.0])]}
    images, anns = [], []
    for i, (image_id, boxes) in enumerate(written.items()):
        Image.fromarray(np.full((48, 64, 3), 100, np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        images.append({"id": image_id, "file_name": f"{i}.jpg", "width": 64, "height": 48})
        anns += [{"id": len(anns) + 1, "image_id": image_id, "category_id": c, "bbox": b, "area": b[2] * b[3],
                  "iscrowd": 0} for c, b in boxes]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}))
    size = (24, 40)  # the model's input: boxes come back scaled by 48/24 and 64/40
    ds, info = datasets.load(f"coco:{path}:{tmp_path / 'img'}", task="detection", image_size=size, batch_size=2,
                             shuffle=False)
    assert info["image_ids"] == [10, 11] and info["category_ids"] == [3, 7]
    assert info["image_sizes"] == [(48, 64), (48, 64)]
    _, y = next(iter(ds))
    per_image = []
    for boxes, labels in zip(np.asarray(y["boxes"], np.float64), np.asarray(y["labels"])):
        keep = labels >= 0  # the ground truth itself as the detections: every number is perfect
        per_image.append((boxes[keep], labels[keep], np.ones(keep.sum()), boxes[keep], labels[keep]))
    metrics, results, scaled = _detection_metrics(per_image, ["cat", "dog"], info, size, info["count"])
    assert scaled and metrics["AP"] == pytest.approx(1.0) and metrics["VOC_AP50"] == pytest.approx(1.0)
    got = sorted((r["image_id"], r["category_id"], *r["bbox"]) for r in results)
    want = sorted((i, c, *b) for i, boxes in written.items() for c, b in boxes)
    np.testing.assert_allclose(np.array(got, float), np.array(want, float), atol=1e-3)
