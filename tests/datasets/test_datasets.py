"""catalog.datasets: folders, COCO/VOC annotations, generated shapes, the TFDS builder, transforms."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from catalog import datasets  # noqa: E402
from catalog.datasets import annotations as ann  # noqa: E402
from catalog.datasets import images as imgs  # noqa: E402
from catalog.datasets import transforms as T  # noqa: E402
from helpers import assert_boxes_tight_around_masks  # noqa: E402

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fox": (30, 30, 200)}


def _solid(colour, h=40, w=60):
    return Image.fromarray(np.full((h, w, 3), colour, np.uint8))


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture()
def folder(tmp_path):
    """cat: 3 JPEG + 1 non-image; dog: 2 PNG + 1 TIFF + 1 corrupt JPEG; fox: 2 JPEG + 1 truncated; empty."""
    root = tmp_path / "pets"
    for name in ("cat", "dog", "fox", "empty"):
        (root / name).mkdir(parents=True)
    for i in range(3):
        _solid(COLOURS["cat"]).save(root / "cat" / f"c{i}.jpg", quality=95)
    (root / "cat" / "notes.txt").write_text("not an image")
    for i in range(2):
        _solid(COLOURS["dog"], 50, 30).save(root / "dog" / f"d{i}.png")
    _solid(COLOURS["dog"], 30, 30).save(root / "dog" / "d2.tiff")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    for i in range(2):
        _solid(COLOURS["fox"]).save(root / "fox" / f"f{i}.jpg", quality=95)
    whole = (root / "fox" / "f0.jpg").read_bytes()
    (root / "fox" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def test_folder_counts_labels_class_names_and_skipped(folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds, info = datasets.load(f"folder:{folder}", split="all", image_size=24, batch_size=4,
                                 preprocessing="none")
    messages = " ".join(str(w.message) for w in caught)
    for name in ("notes.txt", "broken.jpg", "cut.jpg", str(folder / "empty")):
        assert name in messages
    assert info["class_names"] == ("cat", "dog", "empty", "fox")
    assert info["num_classes"] == 4 and info["task"] == "classification"
    assert info["count"] == 3 + 3 + 2
    assert info["skipped"] == sorted(str(folder / p) for p in ("cat/notes.txt", "dog/broken.jpg", "fox/cut.jpg"))
    assert "truncated" in info["skipped_reasons"][str(folder / "fox" / "cut.jpg")].lower()
    x, y = _collect(ds)
    assert x.shape == (8, 24, 24, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert np.bincount(y, minlength=4).tolist() == [3, 3, 0, 2]
    # each image's colour says its class: the label travels with the right file (TIFF included)
    for image, label in zip(x, y):
        colour = COLOURS[info["class_names"][label]]
        np.testing.assert_allclose(image.mean(axis=(0, 1)), colour, atol=4)


def test_folder_seeded_split_is_stratified_disjoint_and_deterministic(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(10):
            _solid((i * 20, 0, 0) if name == "a" else (0, i * 20, 0), 16, 16).save(tmp_path / name / f"{i}.png")
    spec = f"folder:{tmp_path}"
    _, train = datasets.load(spec, split="train", image_size=16, validation_split=0.3, seed=3)
    _, val = datasets.load(spec, split="val", image_size=16, validation_split=0.3, seed=3)
    assert (train["count"], val["count"]) == (14, 6)
    sums = [float(_collect(datasets.load(spec, split=s, image_size=16, validation_split=0.3, seed=3,
                                         preprocessing="none", shuffle=False)[0])[0].sum()) for s in ("train", "val")]
    _, whole = datasets.load(spec, split="all", image_size=16, preprocessing="none")
    total = float(_collect(datasets.load(spec, split="all", image_size=16, preprocessing="none")[0])[0].sum())
    assert whole["count"] == 20 and sums[0] + sums[1] == pytest.approx(total, rel=1e-6)  # disjoint, complete
    first = _collect(datasets.load(spec, split="train", image_size=16, seed=3, batch_size=5)[0])[1]
    again = _collect(datasets.load(spec, split="train", image_size=16, seed=3, batch_size=5)[0])[1]
    other = _collect(datasets.load(spec, split="train", image_size=16, seed=4, batch_size=5)[0])[1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    cached, _ = datasets.load(spec, split="train", image_size=16, seed=3, batch_size=5, cache=True, augment=True)
    epochs = [_collect(cached)[1] for _ in range(2)]
    np.testing.assert_array_equal(np.sort(epochs[0]), np.sort(first))  # same examples, reshuffled
    assert not np.array_equal(epochs[0], epochs[1])


def test_folder_existing_train_val_folders(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for name in ("x", "y"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                _solid((9, 9, 9), 8, 8).save(tmp_path / split / name / f"{i}.png")
    _, info = datasets.load(f"folder:{tmp_path}", split="val", image_size=8)
    assert info["count"] == 4 and info["class_names"] == ("x", "y")
    with pytest.raises(ValueError, match="split"):
        datasets.load(f"folder:{tmp_path}", split="test", image_size=8)


def test_pillow_formats_exif_and_16_bit(tmp_path):
    pal = Image.new("P", (10, 6))
    pal.putpalette([0, 0, 0, 250, 10, 20] + [0] * 762)
    pal.paste(1, (0, 0, 10, 6))
    pal.save(tmp_path / "pal.png")
    Image.fromarray(np.full((6, 10), 65535, np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((6, 10, 3), (10, 100, 250), np.uint8)).save(tmp_path / "pic.webp", lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 20 wide x 10 high, shown rotated 90 degrees: 10 wide x 20 high
    _solid((0, 0, 0), 10, 20).save(tmp_path / "rot.jpg", exif=exif)
    expected = {"pal.png": ((6, 10), (250, 10, 20)), "deep.png": ((6, 10), (255, 255, 255)),
                "pic.webp": ((6, 10), (10, 100, 250)), "rot.jpg": ((20, 10), (0, 0, 0))}
    for name, (hw, colour) in expected.items():
        mode, size, reason = imgs.inspect_image(str(tmp_path / name))
        assert mode == imgs.DECODE_PIL and size == hw[::-1], (name, reason)
        image = imgs.tf_decode(tf.constant(str(tmp_path / name)), tf.constant(mode)).numpy()
        assert image.shape == (*hw, 3), name
        np.testing.assert_allclose(image.mean(axis=(0, 1)), colour, atol=2)


def test_jpeg_reduced_scale_decode_keeps_the_short_side(tmp_path):
    _solid((50, 60, 70), 200, 300).save(tmp_path / "big.jpg")
    _solid((50, 60, 70), 100, 100).save(tmp_path / "small.jpg")
    modes, sizes = [imgs.DECODE_JPEG] * 2, [(300, 200), (100, 100)]
    assert imgs.jpeg_ratios(modes, sizes, 40) == [4, 2]
    assert imgs.jpeg_ratios(modes, sizes, 101) == [1, 1]
    decoder = imgs.make_decoder(modes, [4, 2])
    mode = tf.constant(imgs.DECODE_JPEG)
    assert decoder(tf.constant(str(tmp_path / "big.jpg")), mode, tf.constant(4)).shape == (50, 75, 3)
    assert decoder(tf.constant(str(tmp_path / "small.jpg")), mode, tf.constant(2)).shape == (50, 50, 3)
    windows, antialias = imgs.center_crop_windows([(300, 200), (300, 200)], [1, 2], (56, 56), 0.875)
    assert windows == [[12, 62, 175, 175], [6, 31, 88, 88]] and antialias is True  # 175 / 56 > 2
    # an all-JPEG folder decodes only the crop window, at reduced scale: same picture as the full route
    (tmp_path / "f" / "a").mkdir(parents=True)
    ramp = np.broadcast_to(np.linspace(0, 255, 300)[None, :, None], (200, 300, 3)).astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "f" / "a" / "ramp.jpg", quality=95)
    x, _ = _collect(datasets.load(f"folder:{tmp_path / 'f'}", split="all", image_size=56, preprocessing="none")[0])
    full = tf.io.decode_jpeg(tf.io.read_file(str(tmp_path / "f" / "a" / "ramp.jpg")), channels=3)
    want = T.resize_short_then_center_crop(tf.cast(full, tf.float32), 56).numpy()
    assert np.abs(x[0] - want).mean() < 1.5 and want[:, 0].mean() > 50  # the crop drops the dark left edge


def _write_coco(tmp_path, boxes_per_image, extra_images=()):
    (tmp_path / "img").mkdir()
    images, anns, k = [], [], 0
    for i, boxes in enumerate(boxes_per_image):
        Image.fromarray(np.full((48, 64, 3), 100, np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        images.append({"id": 10 + i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
        for cat, bbox in boxes:
            k += 1
            x, y, w, h = bbox
            anns.append({"id": k, "image_id": 10 + i, "category_id": cat, "bbox": bbox, "iscrowd": 0,
                         "area": w * h, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    for name in extra_images:
        images.append({"id": 99, "file_name": name, "width": 64, "height": 48})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_equal_written_ones(tmp_path):
    written = [[(3, (4.0, 6.0, 20.0, 10.0)), (7, (30.5, 2.0, 12.0, 40.0))], [(7, (0.0, 0.0, 64.0, 48.0))]]
    path = _write_coco(tmp_path, written, extra_images=("gone.jpg",))
    with pytest.warns(UserWarning, match="gone.jpg"):
        ds, info = datasets.load(f"coco:{path}:{tmp_path / 'img'}", task="detection", image_size=(48, 64),
                                 batch_size=2, max_boxes=3, shuffle=False)
    assert info["class_names"] == ("cat", "dog")  # categories sorted by id: 3 -> 0, 7 -> 1
    assert info["box_format"] == "xyxy" and info["box_units"].startswith("pixels")
    assert info["skipped"] == [str(tmp_path / "img" / "gone.jpg")] and info["count"] == 2
    x, y = next(iter(ds))
    boxes, labels = y["boxes"].numpy(), y["labels"].numpy()
    np.testing.assert_allclose(boxes[0, :2], [[4, 6, 24, 16], [30.5, 2, 42.5, 42]])
    np.testing.assert_array_equal(labels, [[0, 1, -1], [1, -1, -1]])
    np.testing.assert_allclose(boxes[1, 0], [0, 0, 64, 48])
    assert np.all(boxes[0, 2] == -1)
    # resizing to half size halves the pixel boxes
    with pytest.warns(UserWarning, match="gone.jpg"):
        ds, _ = datasets.load(f"coco:{path}:{tmp_path / 'img'}", task="detection", image_size=(24, 32),
                              batch_size=2, max_boxes=None, shuffle=False)
    x, y = next(iter(ds))
    np.testing.assert_allclose(y["boxes"][0].numpy(), [[2, 3, 12, 8], [15.25, 1, 21.25, 21]])


def test_coco_segmentation_and_rle_against_pycocotools(tmp_path):
    mask_utils = pytest.importorskip("pycocotools.mask")
    path = _write_coco(tmp_path, [[(3, (4.0, 6.0, 20.0, 10.0)), (7, (30.0, 2.0, 12.0, 40.0))]])
    ds, info = datasets.load(f"coco:{path}:{tmp_path / 'img'}", task="segmentation", image_size=(48, 64),
                             batch_size=1, shuffle=False)
    _, mask = next(iter(ds))
    mask = mask.numpy()[0]
    assert mask.dtype == np.int32 and set(np.unique(mask)) == {0, 1, 2}
    assert np.all(mask[7:15, 5:23] == 1) and np.all(mask[3:41, 31:41] == 2) and mask[30, 5] == 0
    rng = np.random.default_rng(0)
    truth = np.asfortranarray(rng.random((37, 23)) < 0.3)
    rle = mask_utils.encode(truth.astype(np.uint8))
    np.testing.assert_array_equal(ann.coco_mask({"counts": rle["counts"].decode(), "size": [37, 23]}, 37, 23),
                                  truth)


def test_coco_box_outside_image_warns_naming_the_file(tmp_path):
    path = _write_coco(tmp_path, [[(3, (50.0, 40.0, 30.0, 30.0))]])
    with pytest.warns(UserWarning, match=r"0\.jpg.*outside"):
        records, _, _ = ann.read_coco(str(path), str(tmp_path / "img"))
    np.testing.assert_allclose(records[0]["boxes"], [[50, 40, 64, 48]])


def test_bad_coco_file_and_missing_folder_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    (tmp_path / "img").mkdir()
    with pytest.raises(ValueError, match="bad.json"):
        datasets.load(f"coco:{bad}:{tmp_path / 'img'}", task="detection")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.load(f"folder:{tmp_path / 'nowhere'}")


def _write_voc(root, objects):
    for sub in ("Annotations", "JPEGImages", "SegmentationClass", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(root / "JPEGImages" / "000001.jpg")
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b in objects)
    (root / "Annotations" / "000001.xml").write_text(
        f"<annotation><filename>000001.jpg</filename><size><width>40</width><height>30</height>"
        f"<depth>3</depth></size>{objs}</annotation>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    seg = np.zeros((30, 40), np.uint8)
    seg[5:10, 3:20] = 12  # dog
    seg[4, 3:20] = 255
    mask = Image.fromarray(seg, mode="L").convert("P")
    mask.save(root / "SegmentationClass" / "000001.png")


def test_voc_boxes_equal_written_ones_after_conversion(tmp_path):
    _write_voc(tmp_path, [("dog", (4, 6, 20, 10)), ("person", (1, 1, 40, 30))])
    with pytest.warns(UserWarning, match="000002"):
        ds, info = datasets.load(f"voc:{tmp_path}", task="detection", image_size=(30, 40), batch_size=1,
                                 max_boxes=4)
    assert info["class_names"] == ann.VOC_CLASSES and info["count"] == 1
    assert info["skipped"] == [str(tmp_path / "JPEGImages" / "000002.jpg")]
    _, y = next(iter(ds))
    np.testing.assert_allclose(y["boxes"].numpy()[0, :2], [[3, 5, 20, 10], [0, 0, 40, 30]])  # 1-based inclusive
    np.testing.assert_array_equal(y["labels"].numpy()[0], [11, 14, -1, -1])
    ds, info = datasets.load(f"voc:{tmp_path}", task="segmentation", image_size=(30, 40), batch_size=1,
                             split="all-ids")
    _, mask = next(iter(ds))
    assert info["ignore_label"] == 255
    np.testing.assert_array_equal(np.unique(mask.numpy()), [0, 12, 255])
    assert np.all(mask.numpy()[0, 5:10, 3:20] == 12)


def test_shapes_deterministic_and_boxes_tight_around_masks():
    a = datasets.make_shapes(24, 40, seed=5, max_objects=4)
    b = datasets.make_shapes(24, 40, seed=5, max_objects=4)
    c = datasets.make_shapes(24, 40, seed=6, max_objects=4)
    for key in ("images", "labels", "masks"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])
    assert a["class_names"] == ("circle", "square", "triangle", "cross", "star")
    assert max(len(x) for x in a["boxes"]) > 1
    assert_boxes_tight_around_masks(a)


def test_restoration_pairs():
    p = datasets.make_restoration_pairs(3, 32, scale=4, noise_std=10.0, seed=1)
    assert p["low_res"].shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(p["low_res"][0, 0, 0], np.round(p["clean"][0, :4, :4].mean(axis=(0, 1))))
    noise = p["noisy"].astype(float) - p["clean"]
    assert 8.5 < noise.std() < 11


def test_tfds_builder_prepares_and_loads(tmp_path):
    datasets.prepare_shapes(str(tmp_path), config="small")
    ds, info = datasets.load("tfds:catalog_shapes/small", split="test", task="detection", data_dir=str(tmp_path),
                             image_size=32, batch_size=64, shuffle=False, preprocessing="none")
    assert info["count"] == 64 and info["class_names"] == datasets.SHAPE_CLASSES
    x, y = next(iter(ds))
    ref = datasets.make_shapes(64, 32, seed=1, max_objects=3)
    for image, boxes in zip(x.numpy()[:5], y["boxes"].numpy()[:5]):
        match = np.flatnonzero((ref["images"] == image.astype(np.uint8)).all(axis=(1, 2, 3)))
        assert len(match) == 1
        want = ref["boxes"][match[0]]
        np.testing.assert_allclose(boxes[:len(want)], want, atol=1e-4)
    cls, cls_info = datasets.load("tfds:catalog_shapes/small", split="test", data_dir=str(tmp_path),
                                  image_size=32, batch_size=64)
    labels = np.concatenate([y.numpy() for _, y in cls])
    assert cls_info["num_classes"] == 5
    np.testing.assert_array_equal(np.bincount(labels, minlength=5), np.bincount(ref["labels"], minlength=5))
    seg, _ = datasets.load("tfds:catalog_shapes/small", split="test", task="segmentation",
                           data_dir=str(tmp_path), image_size=32, batch_size=64, shuffle=False)
    assert next(iter(seg))[1].numpy().max() <= 5


def test_tfds_not_prepared_says_how_without_download(tmp_path):
    with pytest.raises(ValueError, match="not prepared.*prepare_shapes"):
        datasets.load("tfds:catalog_shapes/restoration", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="tfds build mnist"):
        datasets.load("tfds:mnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown"):
        datasets.load("tfds:no_such_dataset_here", data_dir=str(tmp_path))


def test_flip_moves_a_known_box_and_mask():
    image = np.zeros((10, 20, 3), np.float32)
    image[2:5, 3:8] = 255
    mask = (image[..., 0] > 0).astype(np.int32)
    boxes = tf.constant([[3.0, 2.0, 8.0, 5.0]])
    flips = []
    for s in range(8):
        out, b, m = T.random_flip(tf.constant(image), tf.constant([s, 0]), boxes=boxes, mask=tf.constant(mask))
        flips.append(not np.array_equal(out.numpy(), image))
        if flips[-1]:
            np.testing.assert_allclose(b.numpy(), [[12, 2, 17, 5]])
            np.testing.assert_array_equal(m.numpy()[2:5, 12:17], 1)
            assert m.numpy().sum() == 15
            np.testing.assert_array_equal(out.numpy()[..., 0] > 0, m.numpy() > 0)
        else:
            np.testing.assert_allclose(b.numpy(), boxes.numpy())
    assert any(flips) and not all(flips)


def test_crop_and_resize_keep_boxes_on_their_mask():
    mask = np.zeros((60, 80), np.int32)
    mask[10:30, 20:50] = 3
    image = np.repeat(mask[..., None].astype(np.float32) * 50, 3, axis=-1)
    boxes, labels = tf.constant([[20.0, 10.0, 50.0, 30.0]]), tf.constant([2])
    for s in range(6):
        img, b, lab, m = T.random_crop(tf.constant(image), tf.constant([s, 1]), boxes, labels, tf.constant(mask),
                                       scale=(0.5, 1.0))
        m = m.numpy()
        assert m.shape == img.shape[:2]
        if len(lab):
            ys, xs = np.nonzero(m)
            np.testing.assert_allclose(b.numpy()[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    img, b, m = T.resize_with_targets(tf.constant(image), (30, 160), boxes=boxes, mask=tf.constant(mask))
    np.testing.assert_allclose(b.numpy(), [[40, 5, 100, 15]])
    ys, xs = np.nonzero(m.numpy())
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (40, 5, 100, 15)


def test_zoom_out_moves_boxes_and_mask_with_the_image():
    mask = np.zeros((20, 30), np.uint8)
    mask[4:10, 6:16] = 2
    image = np.repeat(mask[..., None] * 100, 3, axis=-1)
    boxes = tf.constant([[6.0, 4.0, 16.0, 10.0]])
    expanded = 0
    for s in range(10):
        img, b, m = T.random_expand(tf.constant(image), tf.constant([s, 3]), boxes=boxes, mask=tf.constant(mask),
                                    max_ratio=2.0, fill_mask=255)
        img, b, m = img.numpy(), b.numpy()[0], m.numpy()
        assert img.shape[:2] == m.shape and 20 <= m.shape[0] <= 40 and 30 <= m.shape[1] <= 60
        ys, xs = np.nonzero(m == 2)
        np.testing.assert_allclose(b, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        np.testing.assert_array_equal(img[..., 0] == 200, m == 2)  # the shape's pixels moved with its mask
        expanded += m.shape != mask.shape
        assert np.all(m[m != 2] != 1) and (m.shape == mask.shape or (m == 255).any())
    assert 0 < expanded < 10  # half the images on average


def test_augmented_pipelines_are_deterministic_and_consistent():
    kw = dict(task="detection", image_size=48, batch_size=8, num_images=16, augment=True, max_boxes=5,
              preprocessing="none")
    (x1, y1), (x2, y2) = [next(iter(datasets.load("shapes", seed=2, **kw)[0])) for _ in range(2)]
    x3, _ = next(iter(datasets.load("shapes", seed=3, **kw)[0]))
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(y1["boxes"].numpy(), y2["boxes"].numpy())
    assert not np.array_equal(x1.numpy(), x3.numpy())
    boxes = y1["boxes"].numpy()
    real = boxes[..., 0] >= 0
    assert np.all(boxes[real][:, 2] > boxes[real][:, 0]) and np.all(boxes[real] <= 48 + 1e-4)
    seg, _ = datasets.load("shapes", task="segmentation", image_size=48, batch_size=4, num_images=4, augment=True)
    x, m = next(iter(seg))
    assert m.shape == (4, 48, 48) and set(np.unique(m.numpy())) <= set(range(6)) | {255}  # 255: zoomed-out border


def test_mixup_and_cutmix_labels_follow_the_pixels():
    images = tf.constant(np.stack([np.zeros((16, 16, 3)), np.ones((16, 16, 3))]).astype(np.float32))
    labels = tf.one_hot([0, 1], 2)
    for s in range(4):
        mixed, y = T.cutmix(images, labels, tf.constant([s, 7]), alpha=1.0)
        pasted = float(mixed.numpy()[0].mean())  # image 0 is 0 except where image 1 was pasted
        np.testing.assert_allclose(y.numpy()[0], [1 - pasted, pasted], atol=1e-6)
        mixed, y = T.mixup(images, labels, tf.constant([s, 7]), alpha=0.4)
        np.testing.assert_allclose(y.numpy()[0, 1], mixed.numpy()[0].mean(), atol=1e-6)
        np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_preprocessing_by_model_card_name():
    x = tf.constant([[[255.0, 0.0, 127.5]]])
    np.testing.assert_allclose(T.normalize(x, "unit").numpy().ravel(), [1, 0, 0.5])
    np.testing.assert_allclose(T.normalize(x, "tf").numpy().ravel(), [1, -1, 0])
    np.testing.assert_allclose(T.normalize(x, "torch").numpy().ravel(),
                               [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225], rtol=1e-5)
    np.testing.assert_allclose(T.normalize(x, "caffe").numpy().ravel(), [127.5 - 103.939, -116.779, 255 - 123.68],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="preprocessing"):
        datasets.load("shapes", preprocessing="imagenet")


def test_eval_transform_resizes_short_side_then_crops_centre():
    image = np.zeros((100, 200, 3), np.float32)
    image[:, 50:150] = 255  # the central half
    out = T.resize_short_then_center_crop(tf.constant(image), 56, crop_fraction=0.875).numpy()
    assert out.shape == (56, 56, 3)  # short side 100 -> 64, then 56 x 56 from the 64 x 128 middle
    np.testing.assert_allclose(out, 255, atol=1e-3)


def test_shapes_restoration_pairs_through_load():
    ds, info = datasets.load("shapes", task="super_resolution", image_size=32, batch_size=4, num_images=4, seed=2,
                             shuffle=False)
    x, y = next(iter(ds))
    want = datasets.make_restoration_pairs(4, 32, seed=2)
    np.testing.assert_allclose(x.numpy(), want["low_res"] / 255.0, atol=1e-6)
    np.testing.assert_allclose(y.numpy(), want["clean"] / 255.0, atol=1e-6)
    assert info["task"] == "super_resolution"


# ------------------------------------------------------------------------------------ grayscale (channels)
@pytest.fixture(scope="module")
def shapes_tfds(tmp_path_factory):
    """A data_dir holding the prepared ``catalog_shapes/small`` (train 256, test 64)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    datasets.prepare_shapes(str(data_dir), config="small")
    return data_dir


def _gray(x):
    return tf.image.rgb_to_grayscale(tf.constant(x, tf.float32)).numpy()


def test_channels_1_yields_luminance_from_every_source(folder, tmp_path, shapes_tfds):
    coco = tmp_path / "coco"
    coco.mkdir()
    coco_path = _write_coco(coco, [[(3, (4.0, 6.0, 20.0, 10.0))], [(7, (0.0, 0.0, 64.0, 48.0))]])
    _write_voc(tmp_path / "voc", [("dog", (4, 6, 20, 10))])
    (tmp_path / "voc" / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    cases = [
        (f"folder:{folder}", dict(split="all")),
        (f"coco:{coco_path}:{coco / 'img'}", dict(task="detection", max_boxes=2)),
        (f"voc:{tmp_path / 'voc'}", dict(task="segmentation")),
        ("shapes", dict(split="test", task="detection", num_images=8, max_boxes=3, image_size=32)),
        ("tfds:catalog_shapes/small", dict(split="test", data_dir=str(shapes_tfds))),
        ("shapes", dict(task="denoising", num_images=4, image_size=32)),
    ]
    for spec, kw in cases:
        for augment in (False, True):
            if augment and kw.get("task") == "denoising":
                continue
            args = dict(image_size=(24, 32), batch_size=64, shuffle=False, preprocessing="none", seed=5,
                        augment=augment)
            args.update(kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb, _ = datasets.load(spec, **args)
                gray, info = datasets.load(spec, channels=1, **args)
            (x3, y3), (x1, y1) = next(iter(rgb)), next(iter(gray))
            assert info["channels"] == 1 and x1.shape == (*x3.shape[:3], 1), (spec, augment)
            # converted after decoding and augmentation: the same seed gives the luminance of the RGB batch
            np.testing.assert_allclose(x1.numpy(), _gray(x3.numpy()), atol=1e-3, err_msg=f"{spec} {augment}")
            if kw.get("task") == "denoising":
                assert y1.shape == (*y3.shape[:3], 1)
                np.testing.assert_allclose(y1.numpy(), _gray(y3.numpy()), atol=1e-3)
    # BT.601 weights on the known colours of the folder's classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture's bad files
        ds, info = datasets.load(f"folder:{folder}", split="all", image_size=24, preprocessing="none",
                                 channels=1)
    x, y = _collect(ds)
    for image, label in zip(x, y):
        colour = np.array(COLOURS[info["class_names"][label]], np.float64)
        np.testing.assert_allclose(image.mean(), colour @ [0.2989, 0.5870, 0.1140], atol=4)
    _, info = datasets.load("shapes", num_images=2, image_size=16)
    assert info["channels"] == 3


def test_grayscale_files_expand_to_rgb_and_stay_gray_with_channels_1(tmp_path):
    (tmp_path / "g").mkdir()
    Image.fromarray(np.full((12, 12), 77, np.uint8), mode="L").save(tmp_path / "g" / "a.png")
    x3, _ = _collect(datasets.load(f"folder:{tmp_path}", split="all", image_size=12, preprocessing="none")[0])
    x1, _ = _collect(datasets.load(f"folder:{tmp_path}", split="all", image_size=12, preprocessing="none",
                                   channels=1)[0])
    assert x3.shape == (1, 12, 12, 3) and x1.shape == (1, 12, 12, 1)
    np.testing.assert_allclose(x3, 77, atol=1e-3)
    np.testing.assert_allclose(x1, 77, atol=0.05)  # the BT.601 weights sum to 0.9999


def test_channels_1_normalization_uses_mean_channel_statistics():
    x = tf.constant([[[255.0], [0.0]]])
    np.testing.assert_allclose(T.normalize(x, "unit").numpy().ravel(), [1, 0])
    np.testing.assert_allclose(T.normalize(x, "tf").numpy().ravel(), [1, -1])
    np.testing.assert_allclose(T.normalize(x, "none").numpy().ravel(), [255, 0])
    mean, std = np.mean([0.485, 0.456, 0.406]), np.mean([0.229, 0.224, 0.225])
    np.testing.assert_allclose(T.normalize(x, "torch").numpy().ravel(), [(1 - mean) / std, -mean / std],
                               rtol=1e-5)
    np.testing.assert_allclose(T.normalize(x, "caffe").numpy().ravel(),
                               [255 - np.mean([103.939, 116.779, 123.68]), -np.mean([103.939, 116.779, 123.68])],
                               rtol=1e-5)
    kw = dict(num_images=4, image_size=16, shuffle=False, batch_size=4)
    plain, _ = next(iter(datasets.load("shapes", channels=1, preprocessing="none", **kw)[0]))
    torch, _ = next(iter(datasets.load("shapes", channels=1, preprocessing="torch", **kw)[0]))
    np.testing.assert_allclose(torch.numpy(), (plain.numpy() / 255 - mean) / std, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [2, 4, 0, "1", True, None])
def test_channels_must_be_1_or_3(channels):
    with pytest.raises(ValueError, match=r"^channels must be 1 .*or 3 .*; got"):
        datasets.load("shapes", channels=channels)


# ------------------------------------------------------------------------------------------- ~ in specs
def test_tilde_expands_in_spec_paths_and_data_dir(tmp_path, monkeypatch, shapes_tfds):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("a", "b"):
        (home / "flowers" / name).mkdir(parents=True)
        _solid((9, 9, 9), 8, 8).save(home / "flowers" / name / "0.png")
    _, info = datasets.load("folder:~/flowers", split="all", image_size=8)
    assert info["count"] == 2 and info["class_names"] == ("a", "b") and info["spec"] == "folder:~/flowers"
    (home / "coco").mkdir()
    _write_coco(home / "coco", [[(3, (4.0, 6.0, 20.0, 10.0))]])
    _, info = datasets.load("coco:~/coco/instances.json:~/coco/img", task="detection", image_size=8)
    assert info["count"] == 1
    _write_voc(home / "voc", [("dog", (4, 6, 20, 10))])
    (home / "voc" / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    _, info = datasets.load("voc:~/voc", task="detection", image_size=8)
    assert info["count"] == 1
    (home / "tfds").symlink_to(shapes_tfds, target_is_directory=True)
    _, info = datasets.load("tfds:catalog_shapes/small", split="test", data_dir="~/tfds", image_size=8)
    assert info["count"] == 64
    assert datasets.evaluation_split("folder:~/flowers") == "all"
    assert datasets.evaluation_split("voc:~/voc") == "val"
    assert datasets.evaluation_split("tfds:catalog_shapes/small", data_dir="~/tfds") == "test"


# -------------------------------------------------------------------------------------- evaluation_split
tfds = pytest.importorskip("tensorflow_datasets")
from etils import epath  # noqa: E402  (a tensorflow-datasets dependency)


class CatalogTestSplits(tfds.core.GeneratorBasedBuilder):
    """Two tiny classification datasets: ``val`` has train + validation splits, ``train_only`` train."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="val"), tfds.core.BuilderConfig(name="train_only")]
    pkg_dir_path = epath.Path(os.path.dirname(os.path.abspath(__file__)))

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):  # as in tfds_shapes: TFDS's own lookup of the module file fails here
        return epath.Path(os.path.abspath(__file__))

    def _info(self):
        features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 3)),
                                               "label": tfds.features.ClassLabel(names=["a", "b"])})
        return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        splits = ("train", "validation") if self.builder_config.name == "val" else ("train",)
        return {s: self._generate_examples(n) for s, n in zip(splits, (4, 2))}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.full((8, 8, 3), i, np.uint8), "label": i % 2}


def _flat_folder(root, classes=("a", "b"), n=2):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(n):
            _solid((9, 9, 9), 8, 8).save(root / name / f"{i}.png")


def _check_split(spec, want, count, **kw):
    split = datasets.evaluation_split(spec, data_dir=kw.get("data_dir"))
    assert split == want, spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = datasets.load(spec, split=split, **{"image_size": 8, **kw})  # load accepts it
    assert info["count"] == count and info["split"] == want


def test_evaluation_split_folders(tmp_path):
    _flat_folder(tmp_path / "flat")
    _check_split(f"folder:{tmp_path / 'flat'}", "all", 4)
    for val_name in ("val", "valid", "validation"):
        root = tmp_path / val_name
        _flat_folder(root / "train", n=3)
        _flat_folder(root / val_name, n=1)
        _check_split(f"folder:{root}", "val", 2)
    root = tmp_path / "three"
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        _flat_folder(root / split, n=n)
    _check_split(f"folder:{root}", "test", 2)
    _flat_folder(tmp_path / "only" / "train", n=3)
    _check_split(f"folder:{tmp_path / 'only'}", "train", 6)  # its whole data is train/
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.evaluation_split(f"folder:{tmp_path / 'nowhere'}")


def test_evaluation_split_annotations_and_generated(tmp_path):
    (tmp_path / "coco").mkdir()
    path = _write_coco(tmp_path / "coco", [[(3, (4.0, 6.0, 20.0, 10.0))], [(7, (0.0, 0.0, 64.0, 48.0))]])
    _check_split(f"coco:{path}:{tmp_path / 'coco' / 'img'}", "all", 2, task="detection")
    voc = tmp_path / "voc"
    _write_voc(voc, [("dog", (4, 6, 20, 10))])
    _check_split(f"voc:{voc}", "val", 1, task="detection")  # no val.txt: every annotated image
    (voc / "ImageSets" / "Main" / "val.txt").write_text("000001\n")
    _check_split(f"voc:{voc}", "val", 1, task="detection")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    _check_split(f"voc:{voc}", "test", 1, task="detection")
    _check_split("shapes", "test", 4, num_images=4, image_size=16)
    with pytest.raises(ValueError, match="spec"):
        datasets.evaluation_split("nonsense:x")


def test_evaluation_split_tfds_reads_the_prepared_split_names(tmp_path, shapes_tfds):
    _check_split("tfds:catalog_shapes/small", "test", 64, data_dir=str(shapes_tfds))
    for config, want, count in (("val", "validation", 2), ("train_only", "train", 4)):
        CatalogTestSplits(config=config, data_dir=str(tmp_path)).download_and_prepare()
        _check_split(f"tfds:catalog_test_splits/{config}", want, count, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not prepared"):
        datasets.evaluation_split("tfds:catalog_shapes/restoration", data_dir=str(tmp_path))


def test_import_catalog_datasets_stays_free_of_tensorflow():
    import subprocess
    import sys

    code = ("import sys, catalog.datasets as d; d.evaluation_split; d.load; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_segmentation_folder_of_image_and_mask_pairs(tmp_path):
    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(10):
        mask = np.zeros((24, 32), np.uint8)
        mask[4:12, 3 + i:13 + i] = 1 + i % 2
        mask[0, :] = 255
        image = np.repeat((mask[..., None] * 80).astype(np.uint8), 3, axis=-1)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i:02d}.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "images" / "lonely.png")  # no mask
    with pytest.warns(UserWarning, match="lonely.png: no mask"):
        ds, info = datasets.load(f"folder:{root}", task="segmentation", split="all", image_size=(24, 32),
                                 batch_size=10, shuffle=False, preprocessing="none")
    assert info["count"] == 10 and info["class_names"] == ("class_1", "class_2") and info["ignore_label"] == 255
    x, m = next(iter(ds))
    m = m.numpy()
    assert set(np.unique(m)) == {0, 1, 2, 255}
    np.testing.assert_array_equal(x.numpy()[..., 0] == 80, m == 1)  # every image lines up with its mask
    (root / "classes.txt").write_text("square\nstripe\n")
    with pytest.warns(UserWarning, match="lonely"):
        _, train = datasets.load(f"folder:{root}", task="segmentation", split="train", image_size=24, batch_size=4)
    with pytest.warns(UserWarning, match="lonely"):
        _, val = datasets.load(f"folder:{root}", task="segmentation", split="val", image_size=24, batch_size=4)
    assert (train["count"], val["count"]) == (8, 2) and train["class_names"] == ("square", "stripe")
    with pytest.raises(ValueError, match="classification or segmentation data"):
        datasets.load(f"folder:{root}", task="detection")


def test_restoration_pairs_from_a_folder_of_clean_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):  # smooth images of varied sizes, two of them smaller than the crop
        side = (40, 50) if i < 4 else (20, 28)
        base = rng.integers(0, 255, (side[0] // 4, side[1] // 4, 3), dtype=np.uint8)
        Image.fromarray(base).resize(side[::-1], Image.BICUBIC).save(tmp_path / f"{i}.png")
    spec = f"folder:{tmp_path}"
    kw = dict(split="all", image_size=32, batch_size=6, shuffle=False, preprocessing="none")
    (x, y), = datasets.load(spec, task="super_resolution", scale=2, **kw)[0].take(1)
    x, y = x.numpy(), y.numpy()
    assert x.shape == (6, 16, 16, 3) and y.shape == (6, 32, 32, 3)
    want = tf.clip_by_value(tf.round(tf.image.resize(y, (16, 16), method="bicubic", antialias=True)), 0, 255)
    np.testing.assert_allclose(x, want.numpy(), atol=1e-3)  # the input is the bicubic reduction of the target
    (n1, c1), = datasets.load(spec, task="denoising", noise_std=25.0, **kw)[0].take(1)
    (n2, _), = datasets.load(spec, task="denoising", noise_std=25.0, **kw)[0].take(1)
    np.testing.assert_array_equal(n1.numpy(), n2.numpy())  # evaluation noise is the same every time
    np.testing.assert_array_equal(c1.numpy(), y)  # the same central crops
    assert 22 < np.std(n1.numpy() - c1.numpy()) < 26  # sigma 25, less what clipping takes
    train, info = datasets.load(spec, task="super_resolution", scale=2, split="train", image_size=32, batch_size=2,
                                augment=True, validation_split=0.5)
    assert info["count"] == 3
    (a, b), = train.take(1)
    assert a.shape == (2, 16, 16, 3) and b.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="multiple of scale 3"):
        datasets.load(spec, task="super_resolution", scale=3, image_size=32)


def test_digits_spec_is_scikit_learns_digits_in_a_fixed_stratified_split():
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = {}
    for split in ("train", "val", "test"):
        ds, info = datasets.load("digits", split, image_size=16, batch_size=64, preprocessing="unit", shuffle=False)
        labels = np.concatenate([y.numpy() for _, y in ds])
        counts[split] = len(labels)
        assert info["count"] == len(labels) and list(info["class_names"]) == [str(d) for d in range(10)]
        assert set(np.unique(labels)) == set(range(10))
        per_class = np.bincount(labels, minlength=10) / np.bincount(digits.target, minlength=10)
        share = {"train": 0.6, "val": 0.2, "test": 0.2}[split]
        np.testing.assert_allclose(per_class, share, atol=0.01)
    assert sum(counts.values()) == len(digits.target) == 1797
    assert datasets.evaluation_split("digits") == "test"
    # at 8 px a test image is a scikit-learn image with its 0..16 ink scaled to 0..1, with its label
    ds, _ = datasets.load("digits", "test", image_size=8, batch_size=1, preprocessing="unit", shuffle=False,
                          crop_fraction=1.0)
    x, y = next(iter(ds))
    index = np.flatnonzero([np.array_equal(np.round(img * 255 / 16), np.round(x[0, ..., 0].numpy() * 255))
                            for img in digits.images])
    assert len(index) >= 1 and digits.target[index[0]] == int(y[0])
    with pytest.raises(ValueError, match="classification"):
        datasets.load("digits", task="detection")
    with pytest.raises(ValueError, match="split must be one of"):
        datasets.load("digits", "holdout")
