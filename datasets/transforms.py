"""Augmentations and preprocessing for tf.data pipelines, deterministic by seed (stateless random ops).

Images are uint8 or float32 in [0, 255] until ``normalize``; geometric transforms take either (resizing
uint8 directly saves a full-size cast) and resizes return float32. Boxes are pixel (x_min, y_min, x_max, y_max) of the
image they travel with; masks are integer (H, W) class maps that move with their image (nearest
resampling), so every geometric transform keeps image, boxes and mask consistent.
Every random function takes ``seed``: an int32/int64 tensor of shape (2,), as tf.random.stateless_* do.
"""

from __future__ import annotations

import tensorflow as tf

# Per-model input scaling, by the names model cards carry in ``preprocessing``.
PREPROCESSING = {
    "torch": "x / 255, minus ImageNet mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225); "
             "grayscale: their means, 0.449 and 0.226",
    "tf": "x / 127.5 - 1, in [-1, 1]",
    "caffe": "RGB -> BGR, minus the ImageNet BGR mean (103.939, 116.779, 123.68); grayscale: minus their "
             "mean, 114.799",
    "unit": "x / 255, in [0, 1]",
    "none": "unchanged, in [0, 255]",
}
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _mean(values):
    return sum(values) / len(values)


def check_preprocessing(name):
    name = "none" if name is None else name
    if name not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}; got {name!r}.")
    return name


def normalize(image, preprocessing="unit"):
    """Scale a float image in [0, 255] the way a model expects (``PREPROCESSING`` names).

    A 1-channel (grayscale) image takes ``unit``, ``tf`` and ``none`` as an RGB one does; for ``torch``
    and ``caffe`` it uses the mean of the three channel means (and of the three stds): torch
    (x / 255 - 0.449) / 0.226, caffe x - 114.799.
    """
    name = check_preprocessing(preprocessing)
    image = tf.cast(image, tf.float32)
    gray = image.shape.rank is not None and image.shape[-1] == 1
    if name == "torch":
        mean, std = (_mean(_TORCH_MEAN), _mean(_TORCH_STD)) if gray else (_TORCH_MEAN, _TORCH_STD)
        return (image / 255.0 - mean) / std
    if name == "tf":
        return image / 127.5 - 1.0
    if name == "caffe":
        return image - _mean(_CAFFE_MEAN_BGR) if gray else image[..., ::-1] - _CAFFE_MEAN_BGR
    if name == "unit":
        return image / 255.0
    return image


def _split(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), n))


def _size(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def resize(image, size, method="bilinear", antialias=None):
    """Resize to ``size``. Bilinear antialiases only when shrinking by more than 2x (where aliasing shows),
    since the antialiased kernel costs several times more; ``antialias`` True/False decides it statically."""
    size = _size(size)
    if method == "nearest" or antialias is not None:
        return tf.image.resize(image, size, method=method, antialias=bool(antialias) and method != "nearest")
    factor = tf.reduce_max(tf.cast(tf.shape(image)[:2], tf.float32) / tf.constant(size, tf.float32))
    return tf.cond(factor > 2.0, lambda: tf.image.resize(image, size, method=method, antialias=True),
                   lambda: tf.image.resize(image, size, method=method))


def resize_short_then_center_crop(image, size, crop_fraction=0.875):
    """The standard eval transform: scale the short side to size / crop_fraction, then crop size centrally.
    Computed as crop-then-resize: the central window that maps onto the output is cut first."""
    h_out, w_out = _size(size)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (max(h_out, w_out) / crop_fraction) / tf.reduce_min(shape)
    crop = tf.minimum(tf.cast(tf.round(tf.constant([h_out, w_out], tf.float32) / scale), tf.int32),
                      tf.shape(image)[:2])
    crop = tf.maximum(crop, 1)
    top, left = (tf.shape(image)[0] - crop[0]) // 2, (tf.shape(image)[1] - crop[1]) // 2
    return resize(image[top:top + crop[0], left:left + crop[1]], (h_out, w_out))


def random_resized_crop(image, size, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crop: area fraction in ``scale``, aspect ratio in ``ratio``, resized to ``size``."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), seed=seed, area_range=scale, aspect_ratio_range=ratio,
        min_object_covered=0.0, max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop_size)
    return resize(image, size)


def color_jitter(image, seed, brightness=0.4, contrast=0.4, saturation=0.4):
    """Random brightness, contrast and saturation factors in [1 - s, 1 + s] (torchvision's ColorJitter)."""
    s1, s2, s3 = _split(seed, 3)
    x = image / 255.0
    factor = tf.random.stateless_uniform([], s1, 1 - brightness, 1 + brightness)
    x = x * factor
    x = tf.image.stateless_random_contrast(x, 1 - contrast, 1 + contrast, s2)
    x = tf.image.stateless_random_saturation(x, 1 - saturation, 1 + saturation, s3)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _coin(seed):
    return tf.random.stateless_uniform([], seed) < 0.5


def flip_boxes(boxes, width):
    """Horizontal flip of pixel xyxy boxes in an image ``width`` wide."""
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    return tf.stack([width - x1, y0, width - x0, y1], axis=-1)


def random_flip(image, seed, boxes=None, mask=None):
    """Horizontal flip with probability 1/2, applied alike to the image, its boxes and its mask."""
    flip = _coin(seed)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    out = [tf.cond(flip, lambda: image[:, ::-1], lambda: image)]
    if boxes is not None:
        out.append(tf.cond(flip, lambda: flip_boxes(boxes, width), lambda: boxes))
    if mask is not None:
        out.append(tf.cond(flip, lambda: mask[:, ::-1], lambda: mask))
    return out[0] if len(out) == 1 else tuple(out)


def crop_boxes(boxes, labels, top, left, height, width, min_visible=0.3):
    """Boxes after cropping the window (top, left, height, width): shifted, clipped, and dropped when less
    than ``min_visible`` of their area stays inside."""
    offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
    shifted = boxes - offset
    limit = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    clipped = tf.clip_by_value(shifted, 0.0, limit)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    keep = (area(clipped) > 0) & (area(clipped) >= min_visible * tf.maximum(area(shifted), 1e-6))
    return tf.boolean_mask(clipped, keep), tf.boolean_mask(labels, keep)


def random_crop(image, seed, boxes=None, labels=None, mask=None, scale=(0.3, 1.0), ratio=(0.5, 2.0)):
    """A random window (area fraction ``scale``, aspect ``ratio``) cut from the image, its boxes and mask."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), seed=seed, area_range=scale, aspect_ratio_range=ratio,
        min_object_covered=0.0, max_attempts=10, use_image_if_no_bounding_boxes=True)
    top, left, height, width = begin[0], begin[1], crop_size[0], crop_size[1]
    out = [tf.slice(image, begin, crop_size)]
    if boxes is not None:
        out.extend(crop_boxes(boxes, labels, top, left, height, width))
    if mask is not None:
        out.append(mask[top:top + height, left:left + width])
    return tuple(out)


def random_expand(image, seed, boxes=None, mask=None, max_ratio=2.0, probability=0.5, fill_mask=0):
    """Zoom out (SSD's "expand", the shrinking half of scale jitter): with ``probability``, place the image at a
    random spot of a canvas ``r`` times its size, r ~ U(1, ``max_ratio``), filled with the image's mean
    colour (masks: ``fill_mask``, background); boxes move along. Otherwise everything is returned unchanged."""
    s1, s2, s3 = _split(seed, 3)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ratio = tf.where(tf.random.stateless_uniform([], s1) < probability,
                     tf.random.stateless_uniform([], s2, 1.0, max_ratio), 1.0)
    height = tf.cast(tf.math.round(ratio * tf.cast(h, tf.float32)), tf.int32)
    width = tf.cast(tf.math.round(ratio * tf.cast(w, tf.float32)), tf.int32)
    offset = tf.random.stateless_uniform([2], s3) * tf.cast(tf.stack([height - h, width - w]), tf.float32)
    top, left = tf.cast(offset[0], tf.int32), tf.cast(offset[1], tf.int32)
    pad = [[top, height - h - top], [left, width - w - left]]
    mean = tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1])
    canvas = tf.pad(tf.cast(image, tf.float32) - mean, pad + [[0, 0]]) + mean
    out = [tf.cast(canvas, image.dtype)]
    if boxes is not None:
        out.append(boxes + tf.cast(tf.stack([left, top, left, top]), boxes.dtype))
    if mask is not None:
        out.append(tf.pad(mask, pad, constant_values=tf.cast(fill_mask, mask.dtype)))
    return out[0] if len(out) == 1 else tuple(out)


def resize_with_targets(image, size, boxes=None, mask=None):
    """Resize to ``size`` (stretching), scaling pixel boxes and resampling the mask with nearest."""
    h_out, w_out = _size(size)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    out = [resize(image, size)]
    if boxes is not None:
        sy, sx = h_out / shape[0], w_out / shape[1]
        out.append(boxes * tf.stack([sx, sy, sx, sy]))
    if mask is not None:
        out.append(tf.cast(resize(mask[..., None], size, method="nearest")[..., 0], mask.dtype))
    return out[0] if len(out) == 1 else tuple(out)


def _beta(seed, alpha):
    s1, s2 = _split(seed, 2)
    g1 = tf.random.stateless_gamma([], s1, alpha)
    g2 = tf.random.stateless_gamma([], s2, alpha)
    return g1 / (g1 + g2)


def mixup(images, labels, seed, alpha=0.2):
    """Mix each example with the batch reversed: lam ~ Beta(alpha, alpha) (Zhang et al., 2018).
    ``labels`` are one-hot / soft (B, C)."""
    lam = _beta(seed, alpha)
    return lam * images + (1 - lam) * images[::-1], lam * labels + (1 - lam) * labels[::-1]


def cutmix(images, labels, seed, alpha=1.0):
    """Paste a box of the batch reversed into each image; labels mixed by the pasted area (Yun et al., 2019)."""
    s1, s2 = _split(seed, 2)
    lam = _beta(s1, alpha)
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cut = tf.sqrt(1.0 - lam)
    cy, cx = tf.unstack(tf.random.stateless_uniform([2], s2) * tf.stack([hf, wf]))
    y0 = tf.cast(tf.clip_by_value(cy - cut * hf / 2, 0, hf), tf.int32)
    y1 = tf.cast(tf.clip_by_value(cy + cut * hf / 2, 0, hf), tf.int32)
    x0 = tf.cast(tf.clip_by_value(cx - cut * wf / 2, 0, wf), tf.int32)
    x1 = tf.cast(tf.clip_by_value(cx + cut * wf / 2, 0, wf), tf.int32)
    rows = (tf.range(h) >= y0) & (tf.range(h) < y1)
    cols = (tf.range(w) >= x0) & (tf.range(w) < x1)
    inside = tf.cast(rows[:, None] & cols[None, :], images.dtype)[None, :, :, None]
    mixed = images * (1 - inside) + images[::-1] * inside
    kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / (hf * wf)
    return mixed, kept * labels + (1 - kept) * labels[::-1]
