"""Procedural "shapes" data: coloured shapes on noisy backgrounds, deterministic by seed.

Each image carries class labels, bounding boxes and a segmentation mask drawn from the same shapes, so
classification, detection and segmentation can all train and evaluate on it without any download.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")


def _shape_mask(kind: str, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy ** 2 + dx ** 2 <= r ** 2
    if kind == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if kind == "triangle":  # apex up, base at cy + r/2
        inside_y = (dy >= -r) & (dy <= r * 0.6)
        half_width = (dy + r) / 1.6 * 0.9
        return inside_y & (np.abs(dx) <= half_width)
    if kind == "cross":
        arm = r * 0.3
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    raise ValueError(f"shape kind must be one of {', '.join(SHAPE_CLASSES)}; got {kind!r}.")


def make_shapes(num_images: int, image_size: int = 32, seed: int = 0, max_objects: int = 1,
                classes=SHAPE_CLASSES):
    """Generate ``num_images`` images with 1..``max_objects`` shapes each.

    Returns a dict: ``images`` uint8 (N, S, S, 3); ``labels`` int32 (N,) (class of the largest shape);
    ``boxes`` list of float32 (k, 4) arrays in pixel (x_min, y_min, x_max, y_max); ``box_labels`` list
    of int32 (k,); ``masks`` uint8 (N, S, S) with 0 for background and class+1 for a shape's pixels.
    """
    if not isinstance(num_images, int) or num_images <= 0:
        raise ValueError(f"num_images must be a positive integer; got {num_images!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16; got {image_size!r}.")
    if not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(f"max_objects must be a positive integer; got {max_objects!r}.")
    rng = np.random.default_rng(seed)
    s = image_size
    images = np.empty((num_images, s, s, 3), np.uint8)
    masks = np.zeros((num_images, s, s), np.uint8)
    labels = np.empty((num_images,), np.int32)
    boxes, box_labels = [], []
    for i in range(num_images):
        base = rng.uniform(0, 120, size=3)
        img = base + rng.normal(0, 12, size=(s, s, 3))
        count = int(rng.integers(1, max_objects + 1))
        img_boxes, img_labels, areas = [], [], []
        for _ in range(count):
            cls = int(rng.integers(len(classes)))
            r = rng.uniform(0.18, 0.32) * s
            cy, cx = rng.uniform(r, s - r, size=2)
            m = _shape_mask(classes[cls], s, cy, cx, r)
            if not m.any():
                continue
            color = rng.uniform(140, 255, size=3)
            img[m] = color + rng.normal(0, 8, size=(int(m.sum()), 3))
            masks[i][m] = cls + 1
            ys, xs = np.nonzero(m)
            img_boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            img_labels.append(cls)
            areas.append(m.sum())
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
        labels[i] = img_labels[int(np.argmax(areas))]
        boxes.append(np.asarray(img_boxes, np.float32).reshape(-1, 4))
        box_labels.append(np.asarray(img_labels, np.int32))
    return {"images": images, "labels": labels, "boxes": boxes, "box_labels": box_labels, "masks": masks,
            "class_names": tuple(classes)}
