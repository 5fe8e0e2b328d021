"""Reports per task: report.json/md/html, parsed with html.parser: every image an embedded PNG that
decodes, every table complete, data text escaped."""

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from catalog import evaluation as E
from catalog.evaluation import report as R

NASTY = ["<script>alert(1)</script>", "R&D", 'say "hi"', "$x$ | y"]


class ReportParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.tags, self.text = [], [], [], []
        self._row = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(tag)

    def handle_endtag(self, tag):
        if tag == "tr":
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)


def check_html(path, expected_images, names):
    source = path.read_text()
    parser = ReportParser()
    parser.feed(source)
    assert "script" not in parser.tags and "<script>" not in source
    assert len(parser.images) == expected_images
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert parser.tables
    for rows in parser.tables:
        assert len(rows) >= 2 and rows[0] and all(set(c) == {"th"} for c in rows[:1])
        assert all(len(r) == len(rows[0]) for r in rows), "a table row misses cells"
    text = "".join(parser.text)
    for name in names:
        assert name in text  # shown, after unescaping, as the literal name
    return parser


def test_classification_report_files(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 200)
    labels = rng.integers(0, 4, 200)
    metrics = E.classification_report(labels, probs, class_names=NASTY, top_k=(1, 2))
    images = rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
    samples = {"images": images, "predictions": probs[:8].argmax(1), "ground_truth": labels[:8]}
    out = R.write_report(str(tmp_path), "classification", metrics, NASTY, samples=samples,
                         model={"name": "tiny<net>", "params": 1234}, dataset={"name": "random & co"},
                         settings={"batch_size": 32}, seconds=1.5)
    check_html(tmp_path / "report.html", 4, NASTY + ["tiny<net>", "random & co"])
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metrics"]["top_k"]["top1"] == pytest.approx(np.mean(probs.argmax(1) == labels))
    assert data["class_names"] == NASTY and data["model"]["name"] == "tiny<net>"
    md = (tmp_path / "report.md").read_text()
    assert "top-1 accuracy" in md and "R&D" in md and "\\|" in md
    assert out == str(tmp_path)


def test_detection_report_files(tmp_path):
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100},
                          {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5, 5, 8, 6], "area": 48}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 10], "score": 0.9},
            {"image_id": 2, "category_id": 2, "bbox": [0, 0, 4, 4], "score": 0.8},
            {"image_id": 2, "category_id": 2, "bbox": [5, 5, 8, 7], "score": 0.3}]
    metrics = R.detection_report_metrics(E.coco_evaluate(gt, dets, return_details=True))
    assert metrics["per_class_ap50"][0] == pytest.approx(1.0)
    assert np.mean(metrics["per_class_ap50"]) == pytest.approx(metrics["AP50"])
    assert np.mean(metrics["per_class_ap"]) == pytest.approx(metrics["AP"])
    samples = {"images": np.zeros((2, 20, 20, 3), np.uint8),
               "predictions": [{"boxes": [[2, 3, 12, 13]], "labels": [0], "scores": [0.9]},
                               {"boxes": [[0, 0, 4, 4], [5, 5, 13, 12]], "labels": [1, 1], "scores": [0.8, 0.3]}],
               "ground_truth": [{"boxes": [[2, 2, 12, 12]], "labels": [0]}, {"boxes": [[5, 5, 13, 11]], "labels": [1]}]}
    R.write_report(str(tmp_path), "detection", metrics, NASTY[:2], samples=samples)
    check_html(tmp_path / "report.html", 2, NASTY[:2])
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metrics"]["AP50"] == pytest.approx(metrics["AP50"])


def test_segmentation_report_files(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, (3, 12, 12))
    pred = np.where(rng.random(truth.shape) < 0.7, truth, 0)
    metrics = E.segmentation_metrics(truth, pred, 3)
    samples = {"images": rng.random((3, 12, 12, 3)), "predictions": pred, "ground_truth": truth}
    R.write_report(str(tmp_path), "segmentation", metrics, NASTY[:3], samples=samples)
    check_html(tmp_path / "report.html", 3, NASTY[:3])  # IoU, confusion matrix, samples
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metrics"]["miou"] == pytest.approx(metrics["miou"])
    with pytest.raises(ValueError, match="task"):
        R.write_report(str(tmp_path), "captioning", metrics, NASTY[:3])


def _classification_case(rng, n=200, classes=4):
    probs = rng.dirichlet(np.ones(classes), n)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    return probs, labels, images


def test_misclassified_grid_from_the_whole_run(tmp_path):
    rng = np.random.default_rng(2)
    probs, labels, images = _classification_case(rng)
    metrics = E.classification_report(labels, probs, class_names=NASTY)
    found = R.MisclassifiedCollector()
    for start in range(0, 200, 64):  # batch by batch, as an evaluation loop sees them
        found.update(images[start:start + 64], labels[start:start + 64], probs[start:start + 64])
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    conf = probs[np.arange(200), pred]
    expected = wrong[np.argsort(-conf[wrong], kind="stable")][:R.MAX_MISCLASSIFIED]
    result = found.result()
    assert result["total"] == len(wrong) > R.MAX_MISCLASSIFIED
    np.testing.assert_array_equal(result["indices"], expected)
    np.testing.assert_array_equal(result["images"], images[expected])
    samples = {"images": images[:6], "predictions": pred[:6], "ground_truth": labels[:6],
               "confidences": conf[:6], "misclassified": result}
    R.write_report(str(tmp_path), "classification", metrics, NASTY, samples=samples)
    parser = check_html(tmp_path / "report.html", 5, NASTY)  # confusion, PR, ROC, samples, misclassified
    text = "".join(parser.text)
    assert f"{R.MAX_MISCLASSIFIED} of {len(wrong)} misclassified" in text
    data = json.loads((tmp_path / "report.json").read_text())["misclassified"]
    assert data["total"] == len(wrong) and data["evaluated"] == 200 and data["source"] == "run"
    assert data["shown"] == R.MAX_MISCLASSIFIED
    assert [e["index"] for e in data["examples"]] == expected.tolist()
    assert [e["true"] for e in data["examples"]] == labels[expected].tolist()
    assert [e["predicted"] for e in data["examples"]] == pred[expected].tolist()
    assert [e["true_name"] for e in data["examples"]] == [NASTY[i] for i in labels[expected]]
    assert data["examples"][0]["confidence"] == pytest.approx(conf[expected[0]])
    md = (tmp_path / "report.md").read_text()
    assert "## Misclassified examples" in md and 'grid "Misclassified" in report.html' in md
    assert f"| {expected[0]} | {NASTY[labels[expected[0]]].replace('|', chr(92) + '|')} |" in md


def test_collector_takes_logits_limits_and_counts():
    rng = np.random.default_rng(3)
    probs, labels, images = _classification_case(rng, n=50)
    logits = np.log(probs) + 7.0
    a = R.MisclassifiedCollector(limit=3, from_logits=True).update(images, labels, logits).result()
    b = R.MisclassifiedCollector(limit=3).update(images, labels, probs).result()
    np.testing.assert_array_equal(a["indices"], b["indices"])
    np.testing.assert_allclose(a["confidences"], b["confidences"])
    assert len(a["images"]) == 3 and a["total"] == np.sum(probs.argmax(1) != labels)
    assert np.all(np.diff(a["confidences"]) <= 0)
    empty = R.MisclassifiedCollector().update(images, probs.argmax(1), probs).result()
    assert empty["total"] == 0 and len(empty["images"]) == 0


def test_all_correct_says_no_misclassified_examples(tmp_path):
    rng = np.random.default_rng(4)
    probs, _, images = _classification_case(rng, n=40)
    labels = probs.argmax(1)
    metrics = E.classification_report(labels, probs, class_names=NASTY)
    found = R.MisclassifiedCollector().update(images, labels, probs).result()
    samples = {"images": images[:6], "predictions": labels[:6], "ground_truth": labels[:6], "misclassified": found}
    R.write_report(str(tmp_path), "classification", metrics, NASTY, samples=samples)
    parser = check_html(tmp_path / "report.html", 4, NASTY)  # no empty grid
    assert "No misclassified examples" in "".join(parser.text)
    assert "No misclassified examples" in (tmp_path / "report.md").read_text()
    data = json.loads((tmp_path / "report.json").read_text())["misclassified"]
    assert data["total"] == 0 and data["shown"] == 0 and data["examples"] == []


def test_samples_without_misclassified_key_stay_as_before(tmp_path):
    """Callers that pass only images/predictions/ground_truth get the same four plots, and the mistakes
    among their samples listed (the sample grid marks them red)."""
    rng = np.random.default_rng(5)
    probs, labels, images = _classification_case(rng)
    pred = probs.argmax(1)
    metrics = E.classification_report(labels, probs, class_names=NASTY)
    samples = {"images": images[:8], "predictions": pred[:8], "ground_truth": labels[:8]}
    R.write_report(str(tmp_path), "classification", metrics, NASTY, samples=samples)
    check_html(tmp_path / "report.html", 4, NASTY)
    data = json.loads((tmp_path / "report.json").read_text())["misclassified"]
    wrong = np.flatnonzero(pred[:8] != labels[:8])
    assert data["source"] == "samples" and [e["index"] for e in data["examples"]] == wrong.tolist()
    assert data["total"] == int(np.sum(pred != labels)) and data["examples"][0]["confidence"] is None
    R.write_report(str(tmp_path / "none"), "classification", metrics, NASTY)
    assert "misclassified" not in json.loads((tmp_path / "none" / "report.json").read_text())


# ------------------------------------------------------------------------------------------ training history
HISTORY = {"loss": [1.25, 0.8123456, 0.5], "val_loss": [1.5, 1.0, 0.75], "accuracy": [0.3, 0.6, 0.7],
           "val_accuracy": [0.25, 0.5, 0.65], "top5": [0.5, 0.75, 0.875], "learning_rate": [0.1, 0.01, 0.001],
           "seconds": [12.5, 11.25, 11.0], "images_per_second": [4000.0, 4100.5, 4200.0]}


def _segmentation_case():
    truth = np.random.default_rng(6).integers(0, 3, (2, 8, 8))
    return E.segmentation_metrics(truth, truth, 3)  # two plots: IoU per class, confusion matrix


def _md_table(md, first_header="epoch"):
    """The rows of the markdown table that starts with ``| first_header |``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


def _section(text, start, end=None):
    text = text[text.index(start):]
    return text[:text.index(end)] if end else text


def test_history_adds_a_training_section(tmp_path):
    metrics = _segmentation_case()
    R.write_report(str(tmp_path), "segmentation", metrics, NASTY[:3], history=HISTORY)
    # IoU bars + confusion matrix + loss + metrics + learning rate
    parser = check_html(tmp_path / "report.html", 5, NASTY[:3] + ["Training", "3 epochs (epochs 1 to 3)"])
    source = (tmp_path / "report.html").read_text()
    training = _section(source, '<h2 id="training">Training</h2>')
    assert training.count("<img") == 3
    for caption in ("Loss: loss, val_loss (validation dashed)",
                    "Metrics: accuracy, val_accuracy, top5 (validation dashed)",
                    "Learning rate (learning_rate, log scale)"):
        assert f"<figcaption>{caption}</figcaption>" in training
    # the HTML table of the section: header and every value as the history has it
    table = _section(training, "<table>", "</table>")
    assert all(f"<th>{k}</th>" in table for k in ["epoch", *HISTORY])
    assert "<td>0.8123</td>" in table and "<td>4100</td>" in table and "<td>0.001</td>" in table
    md = (tmp_path / "report.md").read_text()
    assert "## Training" in md and "Plots in report.html, section Training: Loss: loss, val_loss" in md
    header, rows = _md_table(md)
    assert header == ["epoch", *HISTORY]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    for j, key in enumerate(HISTORY, start=1):
        assert [float(r[j]) for r in rows] == pytest.approx(HISTORY[key], rel=5e-4), key
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["history"] == HISTORY and data["history_notes"] == [] and data["notes"] == []
    assert len(parser.images) == 5


def test_history_number_format_and_epoch_labels():
    table = R.history_table({"loss": [1.0, 0.123456, 123456.7, 1234567.8], "epoch": [11, 12, 13, 14]})
    header, rows, note = R.history_rows(table)
    assert header == ["epoch", "loss"] and note == ""
    assert rows == [["11", "1"], ["12", "0.1235"], ["13", "123500"], ["14", "1.235e+06"]]
    assert R.history_rows(R.history_table({"seconds": [12345.6, 2e-7]}))[1] == [["1", "12350"], ["2", "2e-07"]]

    class History:  # keras.callbacks.History: 0-based epochs, numbered from 1 in the report
        history, epoch = {"loss": [0.5, 0.25]}, [0, 1]

    assert R.history_table(History())["epochs"].tolist() == [1, 2]


def test_learning_rate_log_scale_when_it_spans_more_than_10x(monkeypatch):
    assert R._lr_log_scale([0.1, 0.01, 0.001])
    assert R._lr_log_scale([0.1, float("nan"), 0.005])
    assert not R._lr_log_scale([0.1, 0.05, 0.02])      # 5x
    assert not R._lr_log_scale([0.1, 0.01])            # exactly 10x
    assert not R._lr_log_scale([0.0, 0.1, 0.001])      # a zero has no place on a log axis
    assert not R._lr_log_scale([float("nan")])
    scales = []
    real_png = R._png

    def spy(fig):  # the seam: every figure passes through _png
        scales.append(fig.axes[0].get_yscale())
        return real_png(fig)

    monkeypatch.setattr(R, "_png", spy)
    R.plot_learning_rate([1, 2, 3], [0.1, 0.01, 0.001])
    R.plot_learning_rate([1, 2, 3], [0.1, 0.05, 0.02])
    assert scales == ["log", "linear"]
    captions = [c for c, _ in R.history_figures(R.history_table({"lr": [0.1, 0.05, 0.02]}))]
    assert captions == ["Learning rate (lr, linear scale)"]


def test_history_with_nan_and_inf_stays_valid_json(tmp_path):
    history = {"loss": [1.0, float("nan"), np.float32("inf")], "val_loss": np.array([1.0, 2.0, np.nan]),
               "learning_rate": [0.1, 0.1, 0.1]}
    R.write_report(str(tmp_path), "segmentation", _segmentation_case(), NASTY[:3], history=history)
    raw = (tmp_path / "report.json").read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    data = json.loads(raw)
    assert data["history"]["loss"] == [1.0, None, None] and data["history"]["val_loss"] == [1.0, 2.0, None]
    assert any("'loss' is not finite (nan/inf) at 2 epochs (2, 3)" in n for n in data["history_notes"])
    header, rows = _md_table((tmp_path / "report.md").read_text())
    assert [r[1] for r in rows] == ["1", "nan", "inf"] and [r[2] for r in rows] == ["1", "2", "nan"]
    source = (tmp_path / "report.html").read_text()
    assert "<td>nan</td>" in source and "<td>inf</td>" in source
    check_html(tmp_path / "report.html", 2 + 2, NASTY[:3])  # IoU, confusion, loss, learning rate


def test_history_skips_wrong_keys_with_a_note(tmp_path):
    history = {"loss": [1.0, 0.5, 0.25], "accuracy": [0.5, 0.6], "phase": ["warmup", "main", "main"],
               "best_epoch": 3, "val_loss": [None, 0.75, 0.5], "epoch": [1, 2]}
    R.write_report(str(tmp_path), "segmentation", _segmentation_case(), NASTY[:3], history=history)
    data = json.loads((tmp_path / "report.json").read_text())
    notes = data["history_notes"]
    assert "'accuracy' has 2 values, not one for each of the 3 epochs; left out." in notes
    assert any(n.startswith("'phase' is not numeric") for n in notes)
    assert any(n.startswith("'best_epoch' is not a per-epoch list") for n in notes)
    assert any(n.startswith("'epoch' has 2 values for 3 epochs; epochs numbered 1..3") for n in notes)
    assert data["history"]["phase"] == ["warmup", "main", "main"]  # report.json keeps it as given
    md = (tmp_path / "report.md").read_text()
    header, rows = _md_table(md)
    assert header == ["epoch", "loss", "val_loss"] and [r[2] for r in rows] == ["nan", "0.75", "0.5"]
    assert "- 'accuracy' has 2 values" in md
    parser = check_html(tmp_path / "report.html", 2 + 1, NASTY[:3])  # IoU, confusion, loss: no metrics, no lr
    assert "'accuracy' has 2 values" in "".join(parser.text)
    R.write_report(str(tmp_path / "bad"), "segmentation", _segmentation_case(), NASTY[:3], history="not a dict")
    check_html(tmp_path / "bad" / "report.html", 2, NASTY[:3] + ["history is not a dict"])


def test_one_epoch_history(tmp_path):
    history = {"loss": [0.7], "val_loss": [0.8], "accuracy": [0.5], "lr": [0.01]}
    R.write_report(str(tmp_path), "segmentation", _segmentation_case(), NASTY[:3], history=history)
    check_html(tmp_path / "report.html", 2 + 3, NASTY[:3] + ["1 epoch (epoch 1)"])
    header, rows = _md_table((tmp_path / "report.md").read_text())
    assert rows == [["1", "0.7", "0.8", "0.5", "0.01"]]


def test_long_history_shows_evenly_spaced_rows_and_the_last(tmp_path):
    n = 203
    history = {"loss": list(np.linspace(2.0, 0.1, n)), "learning_rate": list(np.geomspace(0.1, 1e-5, n))}
    R.write_report(str(tmp_path), "segmentation", _segmentation_case(), NASTY[:3], history=history)
    md = (tmp_path / "report.md").read_text()
    header, rows = _md_table(md)
    epochs = [int(r[0]) for r in rows]
    assert len(rows) == R.MAX_HISTORY_ROWS and epochs[0] == 1 and epochs[-1] == n
    assert max(np.diff(epochs)) - min(np.diff(epochs)) <= 1  # evenly spaced
    assert f"{R.MAX_HISTORY_ROWS} of {n} epochs shown" in md
    for r in rows:
        assert float(r[1]) == pytest.approx(history["loss"][int(r[0]) - 1], rel=5e-4)
    assert len(json.loads((tmp_path / "report.json").read_text())["history"]["loss"]) == n
    check_html(tmp_path / "report.html", 2 + 2, NASTY[:3] + [f"{R.MAX_HISTORY_ROWS} of {n} epochs shown"])


def test_notes_head_every_file_escaped(tmp_path):
    notes = ["preprocessing 'torch' is the default of the card of resnet50 (the model carries no record)",
             "partial result: 64 of 500 examples", "<script>alert(1)</script> & the model has random weights"]
    R.write_report(str(tmp_path), "segmentation", _segmentation_case(), NASTY[:3], notes=notes)
    source = (tmp_path / "report.html").read_text()
    parser = check_html(tmp_path / "report.html", 2, NASTY[:3] + notes)
    box = _section(source, '<div class="notes"', "</div>")
    assert source.index(box) < source.index("<table>")  # at the top, before every table
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; the model" in box and box.count("<li>") == 3
    md = (tmp_path / "report.md").read_text().splitlines()
    assert md[2] == "> **Notes**" and md[4:7] == [f"> - {n}" for n in notes]
    assert md.index("> **Notes**") < next(i for i, line in enumerate(md) if line.startswith("- task:"))
    assert json.loads((tmp_path / "report.json").read_text())["notes"] == notes
    assert "script" not in parser.tags


def test_no_notes_no_history_shows_nothing_new(tmp_path):
    R.write_report(str(tmp_path), "segmentation", _segmentation_case(), NASTY[:3], notes=["", None])
    source = (tmp_path / "report.html").read_text()
    assert 'class="notes"' not in source and "Training" not in source
    md = (tmp_path / "report.md").read_text()
    assert "Notes" not in md and "## Training" not in md
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["notes"] == [] and "history" not in data and "history_notes" not in data
    R.write_report(str(tmp_path / "one"), "segmentation", _segmentation_case(), NASTY[:3], notes="a single note")
    assert json.loads((tmp_path / "one" / "report.json").read_text())["notes"] == ["a single note"]


def test_classification_report_with_history_and_samples(tmp_path):
    rng = np.random.default_rng(7)
    probs, labels, images = _classification_case(rng)
    metrics = E.classification_report(labels, probs, class_names=NASTY)
    samples = {"images": images[:6], "predictions": probs[:6].argmax(1), "ground_truth": labels[:6]}
    R.write_report(str(tmp_path), "classification", metrics, NASTY, samples=samples, history=HISTORY,
                   notes=["the model has random weights"])
    check_html(tmp_path / "report.html", 4 + 3, NASTY + ["the model has random weights"])
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Misclassified examples") < md.index("## Training") < md.index("Plots and samples")


def test_detection_samples_draw_the_confident_few():
    from catalog.evaluation.report import MAX_SHOWN_DETECTIONS, SHOWN_SCORE, _shown_detections

    scores = np.linspace(0.05, 0.95, 15)
    boxes = np.arange(60, dtype=float).reshape(15, 4)
    shown = _shown_detections({"boxes": boxes, "labels": np.arange(15), "scores": scores})
    expected = [i for i in np.argsort(-scores)[:MAX_SHOWN_DETECTIONS] if scores[i] >= SHOWN_SCORE]
    np.testing.assert_array_equal(shown["labels"], expected)
    np.testing.assert_array_equal(shown["boxes"], boxes[expected])
    assert len(expected) == MAX_SHOWN_DETECTIONS and shown["scores"].min() >= SHOWN_SCORE
