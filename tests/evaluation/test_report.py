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
    check_html(tmp_path / "report.html", 2, NASTY[:3])
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metrics"]["miou"] == pytest.approx(metrics["miou"])
    with pytest.raises(ValueError, match="task"):
        R.write_report(str(tmp_path), "captioning", metrics, NASTY[:3])
