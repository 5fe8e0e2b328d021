"""``load(spec, ...)``: one entry point from a dataset spec to a batched, prefetched tf.data pipeline.

Specs: ``tfds:NAME`` (a tensorflow-datasets dataset already prepared in ``data_dir``), ``folder:PATH``
(class-per-subfolder images), ``coco:ANNOTATIONS.json:IMAGES_DIR``, ``voc:PATH``, ``shapes`` (generated;
``shapes:hard`` for a preset of ``catalog.datasets.shapes.PRESETS``, the demo's task), ``digits``
(scikit-learn's 8x8 handwritten digits, classification, a fixed 60/20/20 split).
Paths in specs (and ``data_dir``) may start with ``~``. ``evaluation_split(spec)`` names the split to
evaluate on for a spec.

Elements by task (images float32 (B, H, W, channels): RGB, or luminance with ``channels=1``, scaled by
``preprocessing``):
- classification: (image, label int32 (B,)); one-hot float32 (B, C) when mixup/cutmix is on;
- detection: (image, {"boxes": float32 (B, max_boxes, 4), "labels": int32 (B, max_boxes)}), boxes in pixel
  (x_min, y_min, x_max, y_max) of the returned image, padding rows -1; ragged (B, None, ...) when
  ``max_boxes=None``;
- segmentation: (image, mask int32 (B, H, W)): 0 background, class + 1, 255 ignore;
- denoising / super_resolution (``shapes`` only): (noisy or low-res image, clean image);
- video (``shapes`` only: ``catalog.datasets.video``'s moving shapes, label = direction of motion): (clips float32
  (B, frames, H, W, channels), label int32 (B,)).

Pipeline: file listing and a fast validation pass up front (corrupt files skipped, listed in
``info["skipped"]``), then shuffle by seed -> parallel decode (AUTOTUNE) -> [cache] -> augment with
per-element stateless seeds -> [RGB to luminance] -> normalize -> batch -> [mixup/cutmix] -> prefetch.
The same seed gives the same order and the same augmentations on every run.

Training stream (``epochs=N``, for ``model.fit`` with ``steps_per_epoch=info["steps_per_epoch"]`` and a
checkpoint of (epoch, step)): one finite dataset of the batches of epochs ``start_epoch`` .. N - 1 back to
back, the first epoch starting after ``skip_batches`` batches. Epoch e is a pure function of (seed, e), not
of the epochs before it, of how often the dataset was iterated, of the process or of the global TF seed: its
order is a stateless permutation of the element indices keyed by (seed, e); each element's augmentation
seed is keyed by (seed, e, its index in the source), each batch's mixup/cutmix seed by (seed, e, its
number in the epoch) (keys: ``_training_stream``). The skip cuts the permuted index list before anything is
decoded (tfds: the records, images still encoded), so resuming at (e, k) yields exactly what an
uninterrupted run yields from there, without decoding the skipped images. With ``cache`` the cache holds
the decoded images in source order, filled completely on first use; the permutation reads it by index.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import tensorflow as tf

from catalog.datasets import annotations as ann
from catalog.datasets import images as imgs
from catalog.datasets import transforms as T

TASKS = ("classification", "detection", "segmentation", "denoising", "super_resolution", "video")
AUTOTUNE = tf.data.AUTOTUNE
# The map functions branch with tf.cond/switch_case explicitly; AutoGraph has nothing to convert.
_plain = tf.autograph.experimental.do_not_convert
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test",)}


# ----------------------------------------------------------------------------------------------- sources
def _split_dirs(path):
    """{"train"/"val"/"test": the folder of ``path`` holding that split, or None}; FileNotFoundError if
    ``path`` is not a folder. The split folders count only when a train/ folder exists (else they are
    class folders)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"image folder {path} does not exist.")
    entries = sorted(e for e in os.listdir(path) if not e.startswith("."))
    return {k: next((e for e in entries if e in names and os.path.isdir(os.path.join(path, e))), None)
            for k, names in SPLIT_FOLDERS.items()}


def _split_root(path, split):
    """(the folder of ``split``, the train folder, whether the split is drawn by seed) of a ``folder:`` spec:
    existing train/ val/ test/ folders decide the split, else one seeded split of ``path``."""
    split_dirs = _split_dirs(path)
    if split_dirs["train"]:
        wanted = "val" if split in ("val", "validation") else split
        if wanted not in SPLIT_FOLDERS or not split_dirs[wanted]:
            found = [k for k, v in split_dirs.items() if v]
            raise ValueError(f"split must be one of {', '.join(found)} for {path}; got {split!r}.")
        return os.path.join(path, split_dirs[wanted]), os.path.join(path, split_dirs["train"]), False
    if split not in ("train", "val", "validation", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all' for a folder without train/ val/; got {split!r}.")
    return path, path, split != "all"


def _seeded_part(items, split, rng, validation_split):
    """The ``val`` (a ``validation_split`` share, drawn with the generator ``rng``) or ``train`` (the rest)
    part of items."""
    order = rng.permutation(len(items))
    n_val = int(round(len(items) * validation_split))
    chosen = order[:n_val] if split in ("val", "validation") else order[n_val:]
    return [items[i] for i in sorted(chosen)]


def _folder_source(path, split, seed, validation_split, validate):
    path = os.path.expanduser(path)
    root, class_root, by_seed = _split_root(path, split)
    class_names = tuple(sorted(e for e in os.listdir(class_root)
                               if not e.startswith(".") and os.path.isdir(os.path.join(class_root, e))))
    if not class_names:
        raise ValueError(f"image folder {class_root} must hold one subfolder per class; found none.")
    paths, labels, skipped = [], [], {}
    rng = np.random.default_rng(seed)
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        files = sorted(f for f in names if not f.startswith("."))
        files = [os.path.join(folder, f) for f in files if os.path.isfile(os.path.join(folder, f))]
        for f in files:
            if not imgs.is_image_file(f):
                skipped[f] = "not an image file (extension)"
                warnings.warn(f"skipping {f}: not an image file (extension).", stacklevel=3)
        files = [f for f in files if imgs.is_image_file(f)]
        if not files:
            warnings.warn(f"class folder {folder} holds no images.", stacklevel=3)
        if by_seed:  # stratified: each class splits by the same fraction
            files = _seeded_part(files, split, rng, validation_split)
        paths += files
        labels += [label] * len(files)
    kept, modes, sizes, bad = imgs.validate_files(paths, full=validate == "full")
    skipped.update(bad)
    label_of = dict(zip(paths, labels))
    files = {"path": kept, "mode": modes, "size": sizes, "label": [label_of[p] for p in kept]}
    return files, len(kept), class_names, skipped


def _file_dataset(files, **columns):
    return tf.data.Dataset.from_tensor_slices({"path": tf.constant(files["path"], tf.string),
                                               "mode": tf.constant(files["mode"], tf.int32),
                                               "ratio": tf.constant(files["ratio"], tf.int32), **columns})


def _coco_paths(spec_rest):
    """(annotation file, images folder) of a ``coco:`` spec's rest, ``~`` expanded; a ':' may sit in
    either path (the annotation file that exists decides where they part)."""
    parts = spec_rest.split(":")
    if len(parts) < 2:
        raise ValueError(f"spec must be 'coco:ANNOTATIONS.json:IMAGES_DIR'; got 'coco:{spec_rest}'.")
    home = os.path.expanduser
    annotation_file, images_dir = home(":".join(parts[:-1])), home(parts[-1])
    if not os.path.isfile(annotation_file) and os.path.isfile(home(parts[0])):
        annotation_file, images_dir = home(parts[0]), home(":".join(parts[1:]))
    return annotation_file, images_dir


def _mask_folder(path, split, seed, validation_split):
    """``ann.read_mask_folder`` of a ``folder:`` for segmentation: PATH/images and PATH/masks split by seed
    (``validation_split`` of them as ``val``), or PATH/train/, PATH/val/, PATH/test/ each holding both."""
    path = os.path.expanduser(path)
    root, _, by_seed = _split_root(path, split)
    select = (lambda stems: _seeded_part(stems, split, np.random.default_rng(seed), validation_split)) \
        if by_seed else None
    return ann.read_mask_folder(path, os.path.join(root, "images"), os.path.join(root, "masks"),
                                os.path.join(path, "classes.txt"), select)


def _image_files(path, split, seed, validation_split, validate):
    """Every image under a ``folder:`` (class subfolders or not) for restoration: its split by folders or seed."""
    path = os.path.expanduser(path)
    root, _, by_seed = _split_root(path, split)
    found, skipped = [], {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            if imgs.is_image_file(name):
                found.append(os.path.join(folder, name))
    if by_seed:
        found = _seeded_part(found, split, np.random.default_rng(seed), validation_split)
    kept, modes, sizes, bad = imgs.validate_files(found, full=validate == "full")
    skipped.update(bad)
    if not kept:
        raise ValueError(f"image folder {root} holds no images for split {split!r}.")
    return {"path": kept, "mode": modes, "size": sizes, "ratio": [1] * len(kept)}, len(kept), (), skipped


def _annotation_source(kind, spec_rest, split, task, validate, seed=0, validation_split=0.2):
    if kind == "coco":  # one annotation file: ``split`` does not apply
        records, class_names, skipped = ann.read_coco(*_coco_paths(spec_rest))
        mask_of = ann.coco_segmentation_mask
    elif kind == "folder":  # segmentation: images/ and masks/
        records, class_names, skipped = _mask_folder(spec_rest, split, seed, validation_split)
        mask_of = ann.voc_segmentation_mask
    else:
        records, class_names, skipped = ann.read_voc(os.path.expanduser(spec_rest), split=split, task=task)
        mask_of = ann.voc_segmentation_mask
    kept, modes, sizes, bad = imgs.validate_files([r["path"] for r in records], exif=False,
                                                  full=validate == "full")
    skipped.update(bad)
    keep = set(kept)
    records = [r for r in records if r["path"] in keep]
    lengths = [len(r["labels"]) for r in records]
    flat_boxes = np.concatenate([r["boxes"] for r in records] + [np.zeros((0, 4), np.float32)])
    flat_labels = np.concatenate([r["labels"] for r in records] + [np.zeros((0,), np.int32)])
    files = {"path": kept, "mode": modes, "size": sizes, "columns": {
        "index": tf.range(len(kept), dtype=tf.int32),
        "boxes": tf.RaggedTensor.from_row_lengths(flat_boxes.astype(np.float32), lengths),
        "box_labels": tf.RaggedTensor.from_row_lengths(flat_labels.astype(np.int32), lengths)}}

    def masks(index):
        return mask_of(records[int(index)])

    # what a COCO results file needs, in record order: the file's ids and each image's original size
    files["ids"] = {"image_ids": [r.get("image_id", i + 1) for i, r in enumerate(records)],
                    "image_sizes": [(int(r["height"]), int(r["width"])) for r in records],
                    "category_ids": list(records[0]["category_ids"]) if records and "category_ids" in records[0]
                    else list(range(1, len(class_names) + 1))}
    return files, len(records), class_names, skipped, masks


def _shapes_source(split, task, image_size, seed, num_images, max_objects, preset="", scale=2, noise_std=15.0,
                   frames=16):
    from catalog.datasets.shapes import PRESETS, make_restoration_pairs, make_shapes

    if preset not in PRESETS and preset:
        raise ValueError(f"spec must be 'shapes' or 'shapes:PRESET' with PRESET one of {', '.join(PRESETS)}; "
                         f"got 'shapes:{preset}'.")
    if split not in ("train", "val", "validation", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test' for spec 'shapes'; got {split!r}.")
    if image_size[0] != image_size[1]:
        raise ValueError(f"image_size must be square for spec 'shapes'; got {image_size!r}.")
    size = int(image_size[0])
    data_seed = seed if split == "train" else seed + 1
    if task == "video":
        return _video_source(split, size, data_seed, num_images, preset, frames)
    n = num_images or (2000 if split == "train" else 500)
    if task in ("denoising", "super_resolution"):
        pairs = make_restoration_pairs(n, size, scale=scale, noise_std=noise_std, seed=data_seed)
        x = pairs["noisy"] if task == "denoising" else pairs["low_res"]
        return tf.data.Dataset.from_tensor_slices({"image": x, "target": pairs["clean"]}), n, ()
    objects = max_objects or (1 if task == "classification" else 3)
    data = make_shapes(n, size, seed=data_seed, max_objects=objects, **PRESETS[preset or "easy"])
    lengths = [len(b) for b in data["box_labels"]]
    raw = tf.data.Dataset.from_tensor_slices({
        "image": data["images"], "label": data["labels"], "mask": data["masks"],
        "boxes": tf.RaggedTensor.from_row_lengths(np.concatenate(data["boxes"]), lengths),
        "box_labels": tf.RaggedTensor.from_row_lengths(np.concatenate(data["box_labels"]), lengths)})
    return raw, n, data["class_names"]


DIGITS_SPLITS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "validation": (0.6, 0.8), "test": (0.8, 1.0),
                 "all": (0.0, 1.0)}


def _digits_source(split):
    """scikit-learn's handwritten digits (1,797 8x8 images of 0-16 ink, 10 classes; shipped with scikit-learn,
    no download) as 8-bit RGB images: a fixed stratified split (the same for every run, so scores compare) of
    60% train, 20% val and 20% test of each class.
    The eval and augment paths resize them to the requested size like any other image."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("spec 'digits' needs scikit-learn (pip install scikit-learn); it reads the 8x8 digits "
                         "scikit-learn ships.") from None
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split must be one of {', '.join(DIGITS_SPLITS)} for spec 'digits'; got {split!r}.")
    data = load_digits()
    low, high = DIGITS_SPLITS[split]
    rng = np.random.default_rng(0)
    chosen = []
    for label in range(10):
        members = rng.permutation(np.flatnonzero(data.target == label))
        chosen.extend(members[int(round(low * len(members))):int(round(high * len(members)))])
    chosen = np.sort(np.asarray(chosen, dtype=np.int64))
    gray = np.round(data.images[chosen] * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(gray[..., None], 3, axis=-1)
    raw = tf.data.Dataset.from_tensor_slices({"image": images, "label": data.target[chosen].astype(np.int32)})
    return raw, len(chosen), [str(d) for d in range(10)]


VIDEO_CLIPS = {"train": 512, "val": 128, "validation": 128, "test": 128}


def _video_source(split, size, data_seed, num_images, preset, frames):
    """Moving-shapes clips (``catalog.datasets.video``): 512 for train, 128 for val/test unless ``num_images``."""
    from catalog.datasets.video import make_moving_shapes

    if preset:
        raise ValueError(f"spec must be 'shapes' for task 'video' (no presets); got 'shapes:{preset}'.")
    n = num_images or VIDEO_CLIPS[split]
    data = make_moving_shapes(n, frames, size, seed=data_seed)
    raw = tf.data.Dataset.from_tensor_slices({"image": data["clips"], "label": data["labels"]})
    return raw, n, data["class_names"]


def _video_flip(image, label, seed):
    """A horizontal flip of the whole clip (one coin per clip) with the label mirrored (left <-> right) among the
    loader's four directions."""
    from catalog.datasets.video import hflip_labels

    def flip():
        return tf.reverse(image, axis=[2]), tf.gather(tf.constant(hflip_labels(4)), label)

    return tf.cond(T._coin(seed), flip, lambda: (image, label))


def _tfds_builder(name, data_dir):
    """The TFDS builder of ``name`` prepared in ``data_dir``; ValueError (saying how to prepare it) if it is
    unknown or not prepared there. Reads dataset_info.json only, no data."""
    import tensorflow_datasets as tfds

    if name.split("/")[0] == "catalog_shapes":
        from catalog.datasets import tfds_shapes  # noqa: F401  (registers the builder)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and config/version errors
        raise ValueError(f"tfds dataset {name!r} is unknown to tensorflow-datasets "
                         f"({type(e).__name__}: {e}).") from e
    if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        if name.startswith("catalog_shapes"):
            how = f"catalog.datasets.prepare_shapes({str(data_dir)!r}, config=...)"
        else:
            how = f"`tfds build {name} --data_dir {data_dir or '~/tensorflow_datasets'}` on a machine with network"
        raise ValueError(f"tfds dataset {name!r} is not prepared in {builder.data_dir}; prepare it once with "
                         f"{how}, "
                         "then pass that data_dir (nothing is downloaded here).")
    return builder


def _tfds_source(name, split, task, data_dir, lazy=False):
    """(raw, count, class_names, decode). ``lazy``: raw holds the image features still encoded (TFDS
    ``SkipDecoding``) and ``decode`` turns one such element into the decoded one, so a stream can drop
    elements before paying for their decoding; else raw is decoded and ``decode`` is None."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    features = builder.info.features
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError) as e:
        raise ValueError(f"split must be one of {', '.join(builder.info.splits)} (or a TFDS slice of one) "
                         f"for tfds:{name}; got {split!r}.") from e
    if task == "classification":
        image_key, label_key = builder.info.supervised_keys or ("image", "label")
        if label_key not in features or not hasattr(features[label_key], "names"):
            raise ValueError(f"task 'classification' needs a class-label feature; tfds:{name} has "
                             f"{', '.join(features)}.")
        class_names = tuple(features[label_key].names)
        keys = (image_key, label_key)

        def convert(e):
            return {"image": _rgb(e[image_key]), "label": tf.cast(e[label_key], tf.int32)}
    elif task == "detection":
        class_names = tuple(features["objects"]["label"].names)
        keys = ("image", "objects")

        def convert(e):
            image = _rgb(e["image"])
            hw = tf.cast(tf.shape(image)[:2], tf.float32)
            y0, x0, y1, x1 = tf.unstack(e["objects"]["bbox"], axis=-1)
            boxes = tf.stack([x0 * hw[1], y0 * hw[0], x1 * hw[1], y1 * hw[0]], axis=-1)
            return {"image": image, "boxes": boxes, "box_labels": tf.cast(e["objects"]["label"], tf.int32)}
    elif task == "segmentation":
        key = next((k for k in ("segmentation_mask", "mask") if k in features), None)
        if key is None:
            raise ValueError(f"task 'segmentation' needs a 'segmentation_mask' feature; tfds:{name} has "
                             f"{', '.join(features)}.")
        class_names = tuple(features["label"].names) if "label" in features else ()
        keys = ("image", key)

        def convert(e):
            return {"image": _rgb(e["image"]), "mask": tf.cast(e[key][..., 0], tf.uint8)}
    else:
        x_key, y_key = builder.info.supervised_keys or (None, None)
        degraded = {"denoising": "noisy", "super_resolution": "low_res"}[task]
        if degraded in features and "clean" in features:  # e.g. catalog_shapes/restoration
            x_key, y_key = degraded, "clean"
        if x_key is None:
            raise ValueError(f"task {task!r} needs ({degraded}, clean) or supervised keys; tfds:{name} has "
                             f"{', '.join(features)}.")
        class_names = ()
        keys = (x_key, y_key)

        def convert(e):
            return {"image": _rgb(e[x_key]), "target": _rgb(e[y_key])}

    if not lazy:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        return ds.map(_plain(convert), num_parallel_calls=AUTOTUNE), count, class_names, None
    encoded = [k for k in keys if isinstance(features[k], tfds.features.Image)]
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={k: tfds.decode.SkipDecoding() for k in encoded})

    def select(e):  # only what convert reads (detection: the boxes and labels of "objects")
        out = {k: e[k] for k in keys}
        if task == "detection":
            out["objects"] = {"bbox": e["objects"]["bbox"], "label": e["objects"]["label"]}
        return out

    def decode(e):
        return convert({**e, **{k: features[k].decode_example(e[k]) for k in encoded}})

    return ds.map(_plain(select)), count, class_names, decode


def _rgb(image):
    return tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image


# ---------------------------------------------------------------------------------------------- pipeline
def _augment_fn(task, image_size, jitter=True):
    def classify(e, seed):
        s = T._split(seed, 3)
        image = T.random_resized_crop(e["image"], image_size, s[0])
        image = T.random_flip(image, s[1])
        return {**e, "image": T.color_jitter(image, s[2]) if jitter else image}

    def detect(e, seed):
        s = T._split(seed, 4)
        image, boxes = T.random_expand(e["image"], s[3], boxes=e["boxes"])
        image, boxes, labels = T.random_crop(image, s[0], boxes, e["box_labels"])
        image, boxes = T.random_flip(image, s[1], boxes=boxes)
        image, boxes = T.resize_with_targets(image, image_size, boxes=boxes)
        image = T.color_jitter(image, s[2]) if jitter else image
        return {"image": image, "boxes": boxes, "box_labels": labels}

    def segment(e, seed):
        s = T._split(seed, 4)
        image, mask = T.random_expand(e["image"], s[3], mask=e["mask"], fill_mask=ann.IGNORE_LABEL)
        image, mask = T.random_crop(image, s[0], mask=mask)
        image, mask = T.random_flip(image, s[1], mask=mask)
        image, mask = T.resize_with_targets(image, image_size, mask=mask)
        return {"image": T.color_jitter(image, s[2]) if jitter else image, "mask": mask}

    def video(e, seed):  # clips are generated at the output size: only the label-keeping flip
        image, label = _video_flip(e["image"], e["label"], seed)
        return {**e, "image": image, "label": label}

    return {"classification": classify, "detection": detect, "segmentation": segment, "video": video}[task]


def _restoration_pairs(task, image_size, scale, noise_std, seed):
    """(training transform, evaluation stage) making {"image": degraded, "target": clean} from a clean image.

    The clean target is an ``image_size`` crop: random, with a random flip, for training; central for
    evaluation (images smaller than the crop are first resized up to cover it). Super-resolution: the input
    is the target downscaled by ``scale`` with bicubic interpolation (Keys' a = -0.5) and antialiasing, as
    ``tf.image.resize(method="bicubic", antialias=True)`` and PIL's ``BICUBIC`` reduce, rounded to 0..255.
    Denoising: the target plus Gaussian noise of ``noise_std`` (0..255 units), rounded and clipped, as
    ``make_restoration_pairs``; evaluation noise is seeded by the image, so every evaluation is the same.
    """
    h, w = T._size(image_size)

    def cover(image):  # short side at least the crop's
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        factor = tf.maximum(1.0, tf.reduce_max(tf.constant([h, w], tf.float32) / shape))
        target = tf.cast(tf.math.ceil(shape * factor), tf.int32)
        image = tf.cast(image, tf.float32)
        return tf.cond(factor > 1.0, lambda: tf.image.resize(image, target, method="bicubic"), lambda: image)

    def pair(clean, noise_seed):
        clean = tf.ensure_shape(clean, [h, w, 3])
        if task == "super_resolution":
            degraded = T.resize(clean, (h // scale, w // scale), method="bicubic", antialias=True)
        else:
            degraded = clean + tf.random.stateless_normal(tf.shape(clean), noise_seed, stddev=noise_std)
        return {"image": tf.clip_by_value(tf.round(degraded), 0.0, 255.0), "target": clean}

    def train(e, element_seed):
        s = T._split(element_seed, 3)
        clean = tf.image.stateless_random_crop(cover(e["image"]), [h, w, 3], s[0])
        return pair(T.random_flip(clean, s[1]), s[2])

    def evaluate(e):
        image = cover(e["image"])
        top = (tf.shape(image)[0] - h) // 2
        left = (tf.shape(image)[1] - w) // 2
        noise_seed = _fold(tf.constant([seed, 25], tf.int64), e["key"])
        return pair(image[top:top + h, left:left + w], noise_seed)

    return train, evaluate


def _eval_fn(task, image_size, crop_fraction):
    def fn(e):
        image = e["image"]  # uint8: the resize reads it directly and returns float32 (no full-size cast)
        if task == "video":  # generated at the output size
            return {**e, "image": tf.cast(image, tf.float32)}
        if task == "classification":
            return {**e, "image": T.resize_short_then_center_crop(image, image_size, crop_fraction)}
        if task == "detection":
            image, boxes = T.resize_with_targets(image, image_size, boxes=e["boxes"])
            return {**e, "image": image, "boxes": boxes}
        if task == "segmentation":
            image, mask = T.resize_with_targets(image, image_size, mask=e["mask"])
            return {**e, "image": image, "mask": mask}
        return {"image": tf.cast(image, tf.float32), "target": tf.cast(e["target"], tf.float32)}

    return fn


def _resize_fn(size, antialias):
    def fn(e):
        return {**e, "image": T.resize(e["image"], size, antialias=antialias)}

    return fn


def _luminance(image):
    """RGB -> (H, W, 1) luminance with the ITU-R BT.601 weights (``tf.image.rgb_to_grayscale``)."""
    return tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))


def _output_fn(task, preprocessing, max_boxes, channels=3):
    def look(image):  # decoded and augmented in RGB; the channels a model wants, then its scaling
        return T.normalize(_luminance(image) if channels == 1 else image, preprocessing)

    def fn(e):
        image = look(e["image"])
        if task in ("classification", "video"):
            return image, tf.cast(e["label"], tf.int32)
        if task == "segmentation":
            return image, tf.cast(e["mask"], tf.int32)
        if task == "detection":
            boxes, labels = tf.cast(e["boxes"], tf.float32), tf.cast(e["box_labels"], tf.int32)
            if max_boxes is not None:
                boxes, labels = boxes[:max_boxes], labels[:max_boxes]
                pad = max_boxes - tf.shape(labels)[0]
                boxes = tf.pad(boxes, [[0, pad], [0, 0]], constant_values=-1.0)
                boxes = tf.ensure_shape(boxes, [max_boxes, 4])
                labels = tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=-1), [max_boxes])
            return image, {"boxes": boxes, "labels": labels}
        return image, look(e["target"])

    return fn


def _mix_fn(mixup, cutmix, num_classes):
    """(batch, seed) -> the batch with mixup or cutmix (one of them by a coin when both are on)."""
    def mix(batch, batch_seed):
        x, y = batch
        y = tf.one_hot(y, num_classes)
        s = T._split(batch_seed, 2)
        if mixup and cutmix:
            return tf.cond(T._coin(s[0]), lambda: T.mixup(x, y, s[1], mixup),
                           lambda: T.cutmix(x, y, s[1], cutmix))
        return T.mixup(x, y, s[1], mixup) if mixup else T.cutmix(x, y, s[1], cutmix)

    return mix


# Keys of the training stream. Every random choice of epoch e is a stateless function of
# epoch_key(seed, e) = fold_in([seed, _STREAM_SALT], e), folded once more with a purpose and a number:
#   order:    stateless_shuffle(range(count), fold_in(epoch_key, 0))
#   element:  fold_in(fold_in(epoch_key, 1), i), i = the element's index in the source (its listing order)
#   batch:    fold_in(fold_in(epoch_key, 2), b), b = the batch's number within the epoch (mixup/cutmix)
#   block:    fold_in(fold_in(epoch_key, 3), j), j = the block's number (tfds sources without cache)
_STREAM_SALT = 0x5EED_57EA
_TFDS_BLOCK = 10_000  # tfds without cache: the stream permutes within consecutive blocks of this many


def _map_targets(ds, targets):
    """``ds`` of (images, y) batches with ``targets(y)`` in place of y (see ``load``'s ``targets``)."""
    import keras

    if keras.backend.backend() == "tensorflow":  # keras.ops are TensorFlow ops: they run in the graph
        return ds.map(lambda x, y: (x, targets(y)), num_parallel_calls=AUTOTUNE)
    x_spec, y_spec = ds.element_spec
    example = tf.nest.map_structure(lambda t: np.zeros([1, *t.shape[1:]], t.dtype.as_numpy_dtype), y_spec)
    out = tf.nest.map_structure(np.asarray, targets(example))  # the output structure, shapes and dtypes
    flat = tf.nest.flatten(out)

    def apply(*values):
        y = tf.nest.pack_sequence_as(y_spec, list(values))
        return [np.asarray(v, o.dtype) for v, o in zip(tf.nest.flatten(targets(y)), flat)]

    def fn(x, y):
        values = tf.numpy_function(apply, tf.nest.flatten(y), [tf.as_dtype(o.dtype) for o in flat],
                                   stateful=False)
        values = [tf.ensure_shape(v, [None, *o.shape[1:]]) for v, o in zip(values, flat)]
        return x, tf.nest.pack_sequence_as(out, values)

    return ds.map(fn, num_parallel_calls=AUTOTUNE)


def _fold(key, *data):
    for d in data:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(d, tf.int64), alg="philox")
    return key


def _training_stream(raw, count, indexable, prepare, transform, finish, mix, *, seed, shuffle, cache,
                     skip_errors, batch_size, drop_remainder, ragged, epochs, start_epoch, skip_batches):
    """Epochs ``start_epoch`` .. ``epochs - 1`` of batches back to back, the first after ``skip_batches``
    batches; epoch e a pure function of (seed, e) (see the keys above).

    ``raw`` yields source elements in a fixed order; ``indexable``: it supports random access
    (``tf.data.experimental.at``: the in-memory tables of folder, coco, voc and shapes), so an epoch is
    the permuted index list, cut by the skip, then each index fetched and decoded. tfds (not indexable):
    the records stream in their stored order with images still encoded, are permuted within blocks of
    ``_TFDS_BLOCK`` and cut by the skip before decoding. With ``cache`` the decoded source elements
    (and their indices) are cached once in source order, and the cache is read by the permuted indices:
    a full permutation for every source; the cache fills completely on first use, skipped or not.
    """
    base = tf.constant([seed, _STREAM_SALT], tf.int64)
    skip_elements = skip_batches * batch_size

    def element(key, i, x, prepared=False):
        x = x if prepared else prepare(x)
        return finish(x if transform is None else transform(x, _fold(key, 1, i)))

    if cache:
        cached = raw.enumerate().map(_plain(lambda i, x: (i, prepare(x))), num_parallel_calls=AUTOTUNE)
        if skip_errors:
            cached = cached.ignore_errors(log_warning=True)
        cached = cached.cache()

    def epoch(e):
        key = _fold(base, e)
        skip = tf.where(tf.equal(e, start_epoch), tf.constant(skip_elements, tf.int64), 0)
        if cache or indexable:
            order = tf.range(count, dtype=tf.int64)
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(order, _fold(key, 0), alg="philox")
            ds = tf.data.Dataset.from_tensor_slices(order[skip:])
            if cache:
                ds = ds.map(_plain(lambda p: tf.data.experimental.at(cached, p)))
                if skip_errors:  # files that failed left the cache shorter: its last positions do not exist
                    ds = ds.ignore_errors()
                ds = ds.map(_plain(lambda i, x: element(key, i, x, prepared=True)), num_parallel_calls=AUTOTUNE)
            else:
                ds = ds.map(_plain(lambda p: element(key, p, tf.data.experimental.at(raw, p))),
                            num_parallel_calls=AUTOTUNE)
        else:
            ds = raw.enumerate()
            if shuffle:
                def permute(j, block):
                    n = tf.shape(block[0], out_type=tf.int64)[0]
                    order = tf.random.experimental.stateless_shuffle(tf.range(n), _fold(key, 3, j), alg="philox")
                    return tf.nest.map_structure(lambda c: tf.gather(c, order), block)

                ds = ds.ragged_batch(max(min(count, _TFDS_BLOCK), 1)).enumerate().map(_plain(permute)).unbatch()
            ds = ds.skip(skip).map(_plain(lambda i, x: element(key, i, x)), num_parallel_calls=AUTOTUNE)
        if skip_errors and not cache:
            ds = ds.ignore_errors(log_warning=True)
        if ragged:
            ds = ds.ragged_batch(batch_size, drop_remainder=drop_remainder)
        else:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
        if mix is not None:
            first = tf.where(tf.equal(e, start_epoch), tf.constant(skip_batches, tf.int64), 0)
            ds = ds.enumerate(start=first).map(_plain(lambda b, batch: mix(batch, _fold(key, 2, b))))
        return ds

    return tf.data.Dataset.range(start_epoch, epochs).flat_map(_plain(epoch))


def load(spec: str, split: str = "train", task: str = "classification", image_size=224, batch_size: int = 32,
         data_dir: str | None = None, seed: int = 0, augment: bool = False,
         preprocessing: str | None = "unit", shuffle: bool | None = None, cache: bool = False,
         validation_split: float = 0.2, mixup: float = 0.0, cutmix: float = 0.0, max_boxes: int | None = 100,
         crop_fraction: float = 0.875, color_jitter: bool = True,
         validate: str = "fast", num_images: int | None = None, max_objects: int | None = None,
         drop_remainder: bool = False, channels: int = 3, epochs: int | None = None, start_epoch: int = 0,
         skip_batches: int = 0, targets=None, scale: int = 2, noise_std: float = 15.0, frames: int = 16):
    """Build a batched tf.data pipeline for ``spec``; returns (dataset, info).

    Args:
        spec: ``tfds:NAME[/CONFIG]``, ``folder:PATH``, ``coco:ANNOTATIONS.json:IMAGES_DIR``, ``voc:PATH`` or
            ``shapes``. A ``folder:`` holds one subfolder per class (classification) or ``images/`` and
            ``masks/`` of class-index PNGs with the images' stems (segmentation: 0 background, k + 1 class k,
            255 ignored; names from ``classes.txt``, one per line), or any clean images (denoising and
            super-resolution: the degraded inputs are made here, see ``_restoration_pairs``), either under
            train/ val/ test/ or split by seed.
        split: ``train``/``val``/``test`` (folder: by existing train/ val/ folders, else a stratified
            seeded split; ``all`` for every image); TFDS split names and slices as TFDS takes them;
            ``evaluation_split(spec)`` names the one to evaluate on.
        task: one of ``TASKS``.
        image_size: output side (int) or (height, width).
        batch_size: examples per batch.
        data_dir: TFDS data folder holding prepared datasets (``~`` expanded).
        seed: order, folder split and augmentation seed; the same seed gives the same batches.
        augment: training augmentation (classification: random resized crop, flip, colour jitter;
            detection/segmentation: scale jitter (a zoom-out to up to 2x on half the images, then a random
            crop of 0.3-1 of the area), flip and colour jitter, boxes/masks moved along, boxes cut by the
            crop clipped and dropped below 30% visible; an image left without boxes stays, a negative).
            Without it: resize the short side to size / ``crop_fraction`` and center-crop
            (classification), or resize to ``image_size`` (detection, segmentation).
        preprocessing: a model card's ``preprocessing``: ``torch``, ``tf``, ``caffe``, ``unit`` or ``none``.
        shuffle: shuffle each epoch; defaults to ``split == "train"``.
        cache: cache decoded (and, without augment, resized) images in memory.
        validation_split: fraction of each class held out as ``val`` in folders without train/ val/.
        mixup, cutmix: Beta alphas (0 = off) for batch mixing in classification; labels become one-hot.
        max_boxes: detection boxes per image padded with -1 to this count; None for ragged batches.
        crop_fraction: eval center-crop fraction (0.875 = resize 256, crop 224).
        color_jitter: include colour jitter in ``augment``.
        validate: ``fast`` (headers and file ends) or ``full`` (decode every file with Pillow up front).
        num_images, max_objects: size of the generated ``shapes`` data.
        drop_remainder: drop the last partial batch (of every epoch, in a training stream).
        channels: 3 for RGB images (grayscale files expanded to RGB), 1 for grayscale: every source's
            images become luminance (ITU-R BT.601 weights, as ``tf.image.rgb_to_grayscale``) after
            decoding and augmentation, before ``preprocessing``; 1-channel ``torch`` and ``caffe``
            scaling use the mean of the three channel means (and stds), see ``transforms.normalize``.
            Restoration targets are converted alike.
        epochs: None (default): the dataset is one epoch, reshuffled on each iteration. An int: the
            dataset is the resumable training stream of epochs ``start_epoch`` .. ``epochs - 1`` (module
            docstring), each of ``info["steps_per_epoch"]`` batches: ceil(count / batch_size), floor with
            ``drop_remainder``. Files that fail to decode (corrupt after the validation pass, which
            removes most) are dropped: their epoch is shorter and its later batches shift by one example
            per dropped file, so a run resumed past d of them in its epoch sees d examples of that epoch
            again (each augmented as before: seeds follow the example, not the position); the epochs after
            it are unaffected.
            tfds sources without ``cache`` are permuted within consecutive blocks of 10,000 records
            (read in stored order; TFDS shuffles examples when preparing); with ``cache``, fully.
        start_epoch: the first epoch of the stream (needs ``epochs``; less than it).
        skip_batches: batches of ``start_epoch`` already seen, skipped before decoding (needs ``epochs``;
            less than ``steps_per_epoch``).
        targets: None, or a function in ``keras.ops`` mapping each batch's targets to what a loss takes
            (a task model's ``TrainingRecipe.targets``, e.g. anchor labels from padded boxes); applied in the
            graph on the TensorFlow backend, through ``tf.numpy_function`` on the others.
        scale, noise_std: the generated ``shapes`` restoration pairs (``make_restoration_pairs``): the
            super-resolution factor (the low-res input is ``image_size / scale``) and the denoising noise's
            standard deviation in 0..255 units.
        frames: frames per clip of the generated ``shapes`` video data (task ``video``: 512 train and 128
            val/test clips of one shape moving left, right, up or down, ``catalog.datasets.video``; ``augment``
            flips whole clips horizontally and swaps the left/right labels with them).

    Returns:
        (tf.data.Dataset, info dict): ``class_names``, ``num_classes``, ``task``, ``count`` (examples
        before skipping in the pipeline), ``skipped`` (files skipped, sorted), ``skipped_reasons``, ``spec``,
        ``split``, ``image_size``, ``channels``, ``preprocessing``, ``box_format`` and ``box_units`` (detection),
        ``ignore_label`` (segmentation), ``steps_per_epoch`` (batches per epoch, as above), ``epochs``,
        ``start_epoch`` and ``skip_batches`` (as given; ``epochs`` None without a stream), ``frames`` (video).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"spec must be 'tfds:NAME', 'folder:PATH', 'coco:ANN.json:IMAGES', 'voc:PATH', "
                         f"'shapes' or 'digits'; got {spec!r}.")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"image_size must be a positive int or (height, width); got {image_size!r}.")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels!r}.")
    channels = int(channels)
    for arg, value, least in (("epochs", epochs, 1), ("start_epoch", start_epoch, 0),
                              ("skip_batches", skip_batches, 0)):
        if value is None and arg == "epochs":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{arg} must be {'a positive' if least else 'a non-negative'} integer; "
                             f"got {value!r}.")
    epochs = None if epochs is None else int(epochs)
    start_epoch, skip_batches = int(start_epoch), int(skip_batches)
    if epochs is None and (start_epoch or skip_batches):
        raise ValueError(f"start_epoch and skip_batches resume a training stream and need epochs; got "
                         f"start_epoch={start_epoch}, skip_batches={skip_batches} without epochs.")
    if epochs is not None and start_epoch >= epochs:
        raise ValueError(f"start_epoch must be less than epochs ({epochs}); got {start_epoch}.")
    data_dir = None if data_dir is None else os.path.expanduser(data_dir)
    preprocessing = T.check_preprocessing(preprocessing)
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be between 0 and 1 (exclusive); got {validation_split!r}.")
    if validate not in ("fast", "full"):
        raise ValueError(f"validate must be 'fast' or 'full'; got {validate!r}.")
    if (mixup or cutmix) and task != "classification":
        raise ValueError(f"mixup/cutmix apply to task 'classification' only; got task {task!r}.")
    kind, _, rest = spec.partition(":")
    restoration = task in ("denoising", "super_resolution")
    if restoration and kind not in ("shapes", "tfds", "folder"):
        raise ValueError(f"task {task!r} needs spec 'shapes', 'folder:PATH' (clean images, degraded here) or a "
                         f"tfds restoration dataset; got {spec!r}.")
    if task == "super_resolution" and (size[0] % scale or size[1] % scale):
        raise ValueError(f"image_size {size} must be a multiple of scale {scale} for super-resolution.")
    if task == "detection" and kind == "folder":
        raise ValueError(f"spec 'folder:' holds classification or segmentation data (images/ and masks/); use "
                         f"coco:, voc:, tfds: or shapes for task {task!r}.")
    if task == "video":
        if kind != "shapes":
            raise ValueError(f"task 'video' needs spec 'shapes' (generated moving-shapes clips); got {spec!r}.")
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
            raise ValueError(f"frames must be an integer >= 2; got {frames!r}.")
    if kind in ("coco", "voc") and task not in ("detection", "segmentation"):
        raise ValueError(f"spec '{kind}:' gives task 'detection' or 'segmentation'; got task {task!r}.")

    skipped, decode, masks = {}, None, None
    if kind == "folder" and task == "classification":
        files, count, class_names, skipped = _folder_source(rest, split, seed, validation_split, validate)
        # eval: decode JPEGs at 1/2, 1/4, 1/8 scale while the short side stays >= what the crop needs
        min_side = None if augment else int(np.ceil(max(size) / crop_fraction))
        files["ratio"] = imgs.jpeg_ratios(files["mode"], files["size"], min_side)
        columns = {"label": tf.constant(files["label"], tf.int32)}
        if min_side and files["path"] and set(files["mode"]) == {imgs.DECODE_JPEG}:
            # all JPEG: decode just the center-crop window, at the DCT scale; then only a resize is left
            windows, antialias = imgs.center_crop_windows(files["size"], files["ratio"], size, crop_fraction)
            files["cropped"] = antialias
            columns["window"] = tf.constant(windows, tf.int32)
        raw = _file_dataset(files, **columns)
    elif kind == "folder" and restoration:
        files, count, class_names, skipped = _image_files(rest, split, seed, validation_split, validate)
        raw = _file_dataset(files, key=tf.range(count, dtype=tf.int64))
    elif kind in ("coco", "voc", "folder"):
        files, count, class_names, skipped, masks = _annotation_source(kind, rest, split, task, validate, seed,
                                                                       validation_split)
        files["ratio"] = [1] * count
        raw = _file_dataset(files, **files["columns"])
    elif kind == "shapes":
        raw, count, class_names = _shapes_source(split, task, size, seed, num_images, max_objects, rest, scale,
                                                 noise_std, frames)
    elif kind == "digits" and not rest:
        if task != "classification":
            raise ValueError(f"spec 'digits' holds classification data; got task {task!r}.")
        raw, count, class_names = _digits_source(split)
    elif kind == "tfds" and rest:
        raw, count, class_names, decode = _tfds_source(rest, split, task, data_dir, lazy=epochs is not None)
    else:
        raise ValueError(f"spec must start with tfds:, folder:, coco:, voc: or be 'shapes' or 'digits'; "
                         f"got {spec!r}.")

    if kind in ("folder", "coco", "voc"):
        cropped = "cropped" in files
        exif = kind == "folder" and task != "segmentation"  # a mask is stored as its image's pixels are
        decoder = imgs.make_decoder(files["mode"], files["ratio"], exif=exif, cropped=cropped)

        def decode(e):
            out = {k: v for k, v in e.items() if k not in ("path", "mode", "ratio", "index", "window")}
            window = (e["window"],) if cropped else ()
            out["image"] = decoder(e["path"], e["mode"], e["ratio"], *window)
            if task == "segmentation":
                mask = tf.numpy_function(masks, [e["index"]], tf.uint8, stateful=False)
                mask = tf.ensure_shape(mask, [None, None])
                tf.debugging.assert_equal(tf.shape(mask), tf.shape(out["image"])[:2],
                                          message="segmentation mask and image sizes differ")
                out["mask"] = mask
            return out

    shuffle = split == "train" if shuffle is None else shuffle
    degraded = kind == "folder" and restoration  # (degraded, clean) pairs made here from clean images
    augment = augment and (not restoration or degraded)
    # One fused map per side of the cache (tf.data does not fuse maps by default): decode and, without
    # augment, the eval resize before it; augment (seeded, one seed pair per element) and normalize after.
    if kind == "folder" and "cropped" in files:  # the decoder cut the eval crop already
        eval_fn = _resize_fn(size, antialias=files["cropped"])
    elif degraded:
        eval_fn = None if augment else _restoration_pairs(task, size, scale, noise_std, seed)[1]
    else:
        eval_fn = None if augment else _eval_fn(task, size, crop_fraction)
    stages = [f for f in (decode, eval_fn) if f is not None]

    def prepare(e):
        for stage in stages:
            e = stage(e)
        return e

    finish = _output_fn(task, preprocessing, max_boxes, channels)
    if augment:
        transform = (_restoration_pairs(task, size, scale, noise_std, seed)[0] if degraded
                     else _augment_fn(task, size, color_jitter))
    steps_per_epoch = count // batch_size if drop_remainder else -(-count // batch_size)
    if epochs is not None:
        if steps_per_epoch == 0:
            raise ValueError(f"epochs needs at least one batch per epoch, but {spec!r} ({split}) has {count} "
                             f"examples for batch_size {batch_size}"
                             f"{' with drop_remainder=True' if drop_remainder else ''}.")
        if skip_batches >= steps_per_epoch:
            raise ValueError(f"skip_batches must be less than steps_per_epoch ({steps_per_epoch}); "
                             f"got {skip_batches}.")
        ds = _training_stream(
            raw, count, indexable=kind != "tfds", prepare=prepare,
            transform=transform if augment else None, finish=finish,
            mix=_mix_fn(mixup, cutmix, len(class_names)) if mixup or cutmix else None, seed=seed,
            shuffle=shuffle, cache=cache, skip_errors=kind in ("folder", "coco", "voc"), batch_size=batch_size,
            drop_remainder=drop_remainder, ragged=task == "detection" and max_boxes is None, epochs=epochs,
            start_epoch=start_epoch, skip_batches=skip_batches)
    else:
        ds = raw
        if shuffle and not cache:
            ds = ds.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
        if cache:
            if stages:
                ds = ds.map(_plain(prepare), num_parallel_calls=AUTOTUNE).ignore_errors(log_warning=True)
            ds = ds.cache()
            if shuffle:
                ds = ds.shuffle(min(max(count, 1), 10_000), seed=seed, reshuffle_each_iteration=True)

            def prepare(e):  # already applied before the cache
                return e

        if augment:
            ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
            ds = ds.map(_plain(lambda e, s: finish(transform(prepare(e), s))), num_parallel_calls=AUTOTUNE)
        else:
            ds = ds.map(_plain(lambda e: finish(prepare(e))), num_parallel_calls=AUTOTUNE)
        if decode is not None and not cache:
            ds = ds.ignore_errors(log_warning=True)
        if task == "detection" and max_boxes is None:
            ds = ds.ragged_batch(batch_size, drop_remainder=drop_remainder)
        else:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
        if mixup or cutmix:
            mix = _mix_fn(mixup, cutmix, len(class_names))
            ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed + 1).batch(2))).map(_plain(mix))
    if targets is not None:
        ds = _map_targets(ds, targets)
    ds = ds.prefetch(AUTOTUNE)
    info = {"spec": spec, "task": task, "split": split, "class_names": tuple(class_names),
            "num_classes": len(class_names), "count": int(count), "skipped": sorted(skipped),
            "skipped_reasons": dict(skipped), "image_size": size, "channels": channels,
            "preprocessing": preprocessing,
            "ignore_label": ann.IGNORE_LABEL if task == "segmentation" else None,
            "steps_per_epoch": int(steps_per_epoch), "epochs": epochs, "start_epoch": start_epoch,
            "skip_batches": skip_batches}
    if task == "video":
        info["frames"] = int(frames)
    if task == "detection":
        info["box_format"] = "xyxy"  # (x_min, y_min, x_max, y_max), as catalog.evaluation names it
        info["box_units"] = "pixels of the returned image; padding rows -1"
        if kind in ("coco", "voc"):  # in the order of an unshuffled one-epoch dataset
            info.update(files["ids"])
    return ds, info


def evaluation_split(spec: str, data_dir: str | None = None) -> str:
    """The split of ``spec`` to evaluate on: held-out data when the dataset has some, every image when it
    does not. ``load(spec, split=evaluation_split(spec))`` accepts it.

    - ``folder:PATH``: ``test`` if PATH has train/ and test/ folders, else ``val`` if it has train/ and
      val/ (valid/, validation/), else ``train`` if it has train/ only (all its images), else ``all`` (a
      flat class-per-subfolder folder: every image).
    - ``shapes``: ``test``.
    - ``voc:PATH``: ``test`` if ImageSets/Main/ or ImageSets/Segmentation/ holds test.txt, else ``val``
      (read from val.txt, or every annotated image when there is none).
    - ``coco:ANN.json:IMAGES``: ``all``, the one annotation file (the coco source takes any split name).
    - ``tfds:NAME``: ``test``, else ``validation``, else ``train`` (else the first split), as the prepared
      builder's dataset_info in ``data_dir`` lists them; no data is read.

    Raises:
        ValueError: for a malformed spec or a tfds dataset not prepared in ``data_dir``.
        FileNotFoundError: for a folder or VOC path that does not exist.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"spec must be 'tfds:NAME', 'folder:PATH', 'coco:ANN.json:IMAGES', 'voc:PATH', "
                         f"'shapes' or 'digits'; got {spec!r}.")
    kind, _, rest = spec.partition(":")
    if kind == "folder" and rest:
        dirs = _split_dirs(os.path.expanduser(rest))
        if not dirs["train"]:  # the loader reads test/ or val/ without train/ as class folders
            return "all"
        return "test" if dirs["test"] else "val" if dirs["val"] else "train"
    if kind in ("shapes", "digits"):
        return "test"
    if kind == "voc" and rest:
        root = os.path.expanduser(rest)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"VOC folder {root} does not exist.")
        lists = [os.path.join(root, "ImageSets", d, "test.txt") for d in ("Main", "Segmentation")]
        return "test" if any(os.path.isfile(f) for f in lists) else "val"
    if kind == "coco" and rest:
        _coco_paths(rest)  # a malformed spec fails here, as in load
        return "all"
    if kind == "tfds" and rest:
        names = list(_tfds_builder(rest, None if data_dir is None else os.path.expanduser(data_dir)).info.splits)
        return next((n for n in ("test", "validation", "train") if n in names), names[0] if names else "train")
    raise ValueError(f"spec must start with tfds:, folder:, coco:, voc: or be 'shapes' or 'digits'; "
                     f"got {spec!r}.")
