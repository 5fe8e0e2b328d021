"""The resumable training stream of ``catalog.datasets.load(..., epochs=...)``: epoch e is a pure function of
(seed, e); a stream resumed at (start_epoch, skip_batches) yields exactly the rest of the full stream and
does not decode what it skips."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from catalog import datasets  # noqa: E402


def _arrays(t):
    """A tensor as a tuple of arrays (a ragged one: its flat values and row lengths)."""
    if isinstance(t, tf.RaggedTensor):
        return (t.flat_values.numpy(), *(r.numpy() for r in t.nested_row_lengths()))
    return (t.numpy(),)


def _batches(ds):
    """[(x, y)] as numpy: an array, or for ragged / detection targets a tuple of arrays."""
    out = []
    for x, y in ds:
        y = tuple(a for k in sorted(y) for a in _arrays(y[k])) if isinstance(y, dict) else _arrays(y)
        x = _arrays(x)
        out.append((x[0] if len(x) == 1 else x, y[0] if len(y) == 1 else y))
    return out


def _assert_same(a, b):
    """Batch for batch, array for array, pixel for pixel."""
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b):
        for part_a, part_b in zip(batch_a, batch_b):
            part_a, part_b = [p if isinstance(p, tuple) else (p,) for p in (part_a, part_b)]
            assert len(part_a) == len(part_b)
            for xa, xb in zip(part_a, part_b):
                np.testing.assert_array_equal(xa, xb)


def _check_resume(spec, epochs=3, start_epoch=1, skip_batches=2, **kw):
    """Two fresh full streams agree; the resumed one equals the full one after its first
    start_epoch * steps + skip_batches batches. Returns (full batches, info)."""
    full_ds, info = datasets.load(spec, epochs=epochs, **kw)
    steps = info["steps_per_epoch"]
    full = _batches(full_ds)
    assert len(full) == epochs * steps
    _assert_same(full, _batches(datasets.load(spec, epochs=epochs, **kw)[0]))
    resumed, rinfo = datasets.load(spec, epochs=epochs, start_epoch=start_epoch, skip_batches=skip_batches, **kw)
    assert (rinfo["epochs"], rinfo["start_epoch"], rinfo["skip_batches"]) == (epochs, start_epoch, skip_batches)
    _assert_same(_batches(resumed), full[start_epoch * steps + skip_batches:])
    return full, info


SHAPES = dict(image_size=16, batch_size=5, num_images=23, seed=3, split="train")


def test_resumed_stream_equals_the_rest_of_the_full_stream():
    full, info = _check_resume("shapes", augment=True, **SHAPES)
    assert info["steps_per_epoch"] == 5 and info["count"] == 23  # ceil(23 / 5): the last batch holds 3
    assert [len(y) for _, y in full[:5]] == [5, 5, 5, 5, 3]
    # the same dataset object iterated again gives the same stream (no state carried between iterations)
    ds, _ = datasets.load("shapes", epochs=3, augment=True, **SHAPES)
    _assert_same(_batches(ds), _batches(ds))
    # resuming at an epoch start, and the last epoch alone
    _assert_same(_batches(datasets.load("shapes", epochs=3, start_epoch=2, augment=True, **SHAPES)[0]), full[10:])
    _, dropped = _check_resume("shapes", epochs=2, start_epoch=1, skip_batches=3, augment=True,
                               drop_remainder=True, **SHAPES)
    assert dropped["steps_per_epoch"] == 4


def test_another_process_resumes_the_same_stream(tmp_path):
    """The resumed half in a fresh process, with another global seed and another dataset iterated first."""
    out = tmp_path / "resumed.npz"
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        from catalog import datasets
        tf.random.set_seed(1234)
        list(tf.data.Dataset.random().take(3))
        ds, _ = datasets.load("shapes", epochs=3, start_epoch=1, skip_batches=2, augment=True, mixup=0.4,
                              **{SHAPES!r})
        batches = list(ds.as_numpy_iterator())
        np.savez({str(out)!r}, x=np.concatenate([x for x, _ in batches]), y=np.concatenate([y for _, y in batches]))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    full = _batches(datasets.load("shapes", epochs=3, augment=True, mixup=0.4, **SHAPES)[0])[5 + 2:]
    saved = np.load(out)
    np.testing.assert_array_equal(saved["x"], np.concatenate([x for x, _ in full]))
    np.testing.assert_array_equal(saved["y"], np.concatenate([y for _, y in full]))


def test_epochs_differ_in_order_and_augmentation():
    full, info = datasets.load("shapes", epochs=3, augment=True, **SHAPES)
    steps = info["steps_per_epoch"]
    batches = _batches(full)
    labels = [np.concatenate([y for _, y in batches[e * steps:(e + 1) * steps]]) for e in range(3)]
    for e in (1, 2):
        np.testing.assert_array_equal(np.sort(labels[e]), np.sort(labels[0]))  # every example once per epoch
        assert not np.array_equal(labels[e], labels[0])  # in another order
    # without shuffling the order repeats and the augmentation still changes by epoch
    plain = _batches(datasets.load("shapes", epochs=2, augment=True, shuffle=False, **SHAPES)[0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in plain[:steps]]),
                                  np.concatenate([y for _, y in plain[steps:]]))
    assert not np.array_equal(plain[0][0], plain[steps][0])
    # another seed, another stream
    other = _batches(datasets.load("shapes", epochs=1, augment=True, **{**SHAPES, "seed": 4})[0])
    assert not np.array_equal(np.concatenate([y for _, y in other]), labels[0])


def test_cache_and_mixup_resume_exactly():
    full, _ = _check_resume("shapes", augment=True, cache=True, **SHAPES)
    # the cache holds decoded examples; the order and augmentation applied after it are the uncached ones
    _assert_same(full, _batches(datasets.load("shapes", epochs=3, augment=True, **SHAPES)[0]))
    mixed, info = _check_resume("shapes", augment=True, mixup=0.4, cutmix=1.0, **SHAPES)
    y = mixed[0][1]
    assert y.shape == (5, info["num_classes"]) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    _check_resume("shapes", epochs=2, cache=True, mixup=0.4, **SHAPES)


def _folder(root, n=24, size=16):
    """Two classes of lossless PNGs, each one solid colour that names its file."""
    colours = {}
    for i in range(n):
        label = "ab"[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        colour = (8 * i + 4, 255 - 8 * i, 100 + i)
        path = root / label / f"{i:02d}.png"
        Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path)
        colours[colour] = path
    return colours


def _files_of(batches, colours):
    return [colours[tuple(int(round(v)) for v in image[0, 0])] for x, _ in batches for image in x]


def test_folder_stream_does_not_decode_skipped_files(tmp_path):
    colours = _folder(tmp_path)
    kw = dict(split="all", image_size=16, batch_size=4, preprocessing="none", shuffle=True, seed=5)
    spec = f"folder:{tmp_path}"
    full, info = _check_resume(spec, epochs=2, start_epoch=1, skip_batches=2, **kw)
    steps = info["steps_per_epoch"]
    assert steps == 6
    order = _files_of(full, colours)
    assert sorted(order[:24]) == sorted(order[24:]) == sorted(colours.values()) and order[:24] != order[24:]
    skipped, kept = order[24:24 + 8], order[24 + 8:]
    # Build the resumed stream (its listing and validation pass read every file), then spoil the files it
    # skips: were they decoded, ignore_errors would drop them before the skip and shift the stream.
    resumed, _ = datasets.load(spec, epochs=2, start_epoch=1, skip_batches=2, **kw)
    originals = {path: path.read_bytes() for path in skipped}
    for path in skipped:
        path.write_bytes(b"\x89PNG\r\n\x1a\n but no longer an image")
    _assert_same(_batches(resumed), full[steps + 2:])
    for path, data in originals.items():
        path.write_bytes(data)
    # the check can fail: a spoiled file the stream does read is dropped (with a logged warning)
    resumed, _ = datasets.load(spec, epochs=2, start_epoch=1, skip_batches=2, **kw)
    kept[0].write_bytes(b"not an image either")
    got = _files_of(_batches(resumed), colours)
    assert got == kept[1:]


def test_folder_with_augment_cache_and_a_file_that_fails_after_listing(tmp_path):
    colours = _folder(tmp_path, n=16)
    kw = dict(split="all", image_size=12, batch_size=4, shuffle=True, seed=1, augment=True)
    spec = f"folder:{tmp_path}"
    _check_resume(spec, epochs=2, start_epoch=1, skip_batches=1, cache=True, **kw)
    _check_resume(spec, epochs=2, start_epoch=1, skip_batches=1, **kw)
    # a file spoiled after the listing: each epoch is one example shorter, every other one still there once
    ds, info = datasets.load(spec, epochs=2, cache=True, **{**kw, "augment": False, "preprocessing": "none"})
    spoiled = sorted(colours.values())[3]
    spoiled.write_bytes(b"garbage")
    batches = _batches(ds)
    seen = _files_of(batches, colours)
    assert len(seen) == 2 * 15 and spoiled not in seen and sorted(seen[:15]) == sorted(seen[15:])
    assert len(set(seen[:15])) == 15


def _coco(root, n=12):
    (root / "img").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        Image.fromarray(np.full((24, 32, 3), 10 * i, np.uint8)).save(root / "img" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 24})
        x, y, w, h = 2.0 + i, 3.0, 10.0, 8.0 + i % 4
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [x, y, w, h],
                     "iscrowd": 0, "area": w * h, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return f"coco:{path}:{root / 'img'}"


def test_annotation_and_tfds_sources_resume(tmp_path):
    spec = _coco(tmp_path / "coco")
    kw = dict(image_size=16, batch_size=4, seed=2, shuffle=True, augment=True)
    _check_resume(spec, task="detection", max_boxes=3, **kw)
    _check_resume(spec, task="detection", max_boxes=None, cache=True, **kw)
    _check_resume(spec, task="segmentation", epochs=2, start_epoch=1, skip_batches=1, **kw)
    datasets.prepare_shapes(str(tmp_path / "tfds"), config="small")
    tfds_kw = dict(split="test", data_dir=str(tmp_path / "tfds"), **{**kw, "batch_size": 16})  # 64 examples
    full, info = _check_resume("tfds:catalog_shapes/small", epochs=2, start_epoch=1, skip_batches=2, **tfds_kw)
    labels = [np.concatenate([y for _, y in full[e * 4:(e + 1) * 4]]) for e in range(2)]
    assert info["count"] == 64 and not np.array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(np.sort(labels[0]), np.sort(labels[1]))
    _check_resume("tfds:catalog_shapes/small", task="detection", max_boxes=4, epochs=2, start_epoch=1,
                  skip_batches=1, **tfds_kw)
    # with the cache, the tfds stream is a full permutation: the same batches as the shapes it holds
    _check_resume("tfds:catalog_shapes/small", task="segmentation", cache=True, epochs=2, start_epoch=1,
                  skip_batches=3, **tfds_kw)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(epochs=-2), "epochs must be a positive integer"),
    (dict(epochs=2.0), "epochs must be a positive integer"),
    (dict(epochs=3, start_epoch=-1), "start_epoch must be a non-negative integer"),
    (dict(epochs=3, skip_batches=-1), "skip_batches must be a non-negative integer"),
    (dict(epochs=3, start_epoch=3), r"start_epoch must be less than epochs \(3\)"),
    (dict(epochs=3, skip_batches=5), r"skip_batches must be less than steps_per_epoch \(5\)"),
    (dict(start_epoch=1), "need epochs"),
    (dict(skip_batches=1), "need epochs"),
    (dict(epochs=1, batch_size=30, drop_remainder=True), "at least one batch per epoch"),
])
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match) as caught:
        datasets.load("shapes", **{**SHAPES, **kwargs})
    assert str(caught.value).count(". ") == 0  # one sentence
