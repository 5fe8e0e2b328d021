"""Every Python example of the README runs as written, in order, in one namespace (as a reader pastes
them), against small data written where the examples look for it: ~/flowers, ~/weights, a COCO and a VOC
tree and a trained model under runs/demo, in a temporary HOME and working directory."""

import json
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def _write_fixtures(home, work):
    from catalog.datasets.shapes import make_shapes

    data = make_shapes(8, 48, seed=3, max_objects=2)
    for i, (image, label) in enumerate(zip(data["images"], data["labels"])):  # ~/flowers: class folders
        folder = home / "flowers" / data["class_names"][label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.jpg")
    images, annotations, detections, voc_ids = [], [], [], []
    for sub in ("images", "VOCdevkit/VOC2007/Annotations", "VOCdevkit/VOC2007/JPEGImages",
                "VOCdevkit/VOC2007/ImageSets/Main"):
        (work / sub).mkdir(parents=True)
    for i, image in enumerate(data["images"]):
        Image.fromarray(image).save(work / "images" / f"{i}.png")
        Image.fromarray(image).save(work / "VOCdevkit/VOC2007/JPEGImages" / f"{i:06d}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 48, "height": 48})
        objects = ""
        for box, label in zip(data["boxes"][i], data["box_labels"][i]):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
            detections.append({"image_id": i + 1, "category_id": int(label) + 1, "score": 0.9,
                               "bbox": [x0 + 1, y0, x1 - x0, y1 - y0]})
            objects += (f"<object><name>{data['class_names'][label]}</name><difficult>0</difficult><bndbox>"
                        f"<xmin>{x0 + 1:.0f}</xmin><ymin>{y0 + 1:.0f}</ymin><xmax>{x1:.0f}</xmax>"
                        f"<ymax>{y1:.0f}</ymax></bndbox></object>")
        (work / "VOCdevkit/VOC2007/Annotations" / f"{i:06d}.xml").write_text(
            f"<annotation><size><width>48</width><height>48</height><depth>3</depth></size>{objects}</annotation>")
        voc_ids.append(f"{i:06d}")
    (work / "VOCdevkit/VOC2007/ImageSets/Main/train.txt").write_text("\n".join(voc_ids) + "\n")
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(data["class_names"])]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (work / "annotations.json").write_text(json.dumps(coco))
    (work / "instances_val.json").write_text(json.dumps(coco))
    (work / "detections.json").write_text(json.dumps(detections))

    import catalog
    from catalog.saving import save_model

    (home / "weights").mkdir()
    catalog.create_model("lenet5").save_weights(str(home / "weights" / "lenet5.weights.h5"))
    from catalog.datasets.shapes import PRESETS

    classes = PRESETS["hard"]["classes"]  # what `make demo` trains on
    model = catalog.create_model("resnet20", num_classes=len(classes), input_shape=(32, 32, 3), width=8,
                                 depths=(1, 1, 1))
    save_model(model, str(work / "runs" / "demo" / "model.keras"), preprocessing="unit", class_names=classes,
               model_name="resnet20")


def test_readme_has_python_examples():
    blocks = readme_blocks()
    assert len(blocks) >= 3
    assert any("catalog.evaluate(" in b for b in blocks)


def test_readme_python_examples_run(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    _write_fixtures(home, work)
    script = "\n".join(f"# --- README block {i + 1}\n{block}" for i, block in enumerate(readme_blocks()))
    env = {**os.environ, "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "runs" / "eval" / "report.json").is_file()
    assert np.isfinite(json.loads((work / "runs" / "eval" / "report.json").read_text())["metrics"]["top_k"]["top1"])
