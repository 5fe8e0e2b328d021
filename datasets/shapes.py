"""Procedural "shapes" data: coloured shapes on textured backgrounds, deterministic by seed.

Each image carries class labels, bounding boxes and a segmentation mask drawn from the same shapes, so
classification, detection and segmentation can all train and evaluate on it without any download.
Shapes may overlap; a later shape occludes an earlier one, and every box is computed from the pixels of
its shape that stay visible in the final mask (a fully hidden shape is dropped). ``make_restoration_pairs``
derives noisy and low-resolution versions of the same images for denoising and super-resolution.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "star")


def _shape_mask(kind: str, size: int, cy: float, cx: float, r: float, angle: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy ** 2 + dx ** 2 <= r ** 2
    if kind == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if kind == "triangle":  # apex up, base at cy + 0.6 r
        inside_y = (dy >= -r) & (dy <= r * 0.6)
        half_width = (dy + r) / 1.6 * 0.9
        return inside_y & (np.abs(dx) <= half_width)
    if kind == "cross":
        arm = r * 0.3
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    if kind == "star":  # five points; the radius alternates between r and 0.45 r around the centre
        theta = np.arctan2(dy, dx) - angle
        sector = 2 * np.pi / 5
        t = np.abs(((theta % sector) / sector) - 0.5) * 2  # 1 at a point, 0 between two points
        inner = 0.45 * r
        # straight edges between the outer and inner vertices, approximated by linear radius in angle
        return np.sqrt(dy ** 2 + dx ** 2) <= inner + (r - inner) * t
    raise ValueError(f"shape kind must be one of {', '.join(SHAPE_CLASSES)}; got {kind!r}.")


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    """A dark textured background: a colour gradient, one of stripes / checks / blotches, and noise."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    base = rng.uniform(0, 100, size=3)
    direction = rng.uniform(-1, 1, size=2)
    img = base + 30 * (direction[0] * yy + direction[1] * xx)[..., None]
    texture = int(rng.integers(3))
    period = rng.uniform(3, 8)
    if texture == 0:
        angle = rng.uniform(0, np.pi)
        pattern = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * s * 2 * np.pi / period)
    elif texture == 1:
        pattern = np.sign(np.sin(xx * s * np.pi / period) * np.sin(yy * s * np.pi / period))
    else:
        coarse = rng.normal(0, 1, size=(s // 4 + 1, s // 4 + 1))
        pattern = np.kron(coarse, np.ones((4, 4)))[:s, :s]
    img = img + rng.uniform(5, 20) * pattern[..., None]
    return img + rng.normal(0, 10, size=(s, s, 3))


def make_shapes(num_images: int, image_size: int = 32, seed: int = 0, max_objects: int = 1,
                classes=SHAPE_CLASSES):
    """Generate ``num_images`` images with 1..``max_objects`` shapes each.

    Returns a dict: ``images`` uint8 (N, S, S, 3); ``labels`` int32 (N,) (class of the shape with the most
    visible pixels); ``boxes`` list of float32 (k, 4) arrays in pixel (x_min, y_min, x_max, y_max), the
    tight box of each shape's visible pixels (pixel (x, y) covers [x, x+1) x [y, y+1)); ``box_labels``
    list of int32 (k,); ``masks`` uint8 (N, S, S) with 0 for background and class+1 for a shape's
    pixels; ``class_names``. The same arguments always give the same arrays.
    """
    if not isinstance(num_images, int) or num_images <= 0:
        raise ValueError(f"num_images must be a positive integer; got {num_images!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16; got {image_size!r}.")
    if not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(f"max_objects must be a positive integer; got {max_objects!r}.")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if not classes or unknown:
        raise ValueError(f"classes must be a non-empty subset of {SHAPE_CLASSES}; got {classes!r}.")
    rng = np.random.default_rng(seed)
    s = image_size
    images = np.empty((num_images, s, s, 3), np.uint8)
    masks = np.zeros((num_images, s, s), np.uint8)
    labels = np.empty((num_images,), np.int32)
    boxes, box_labels = [], []
    for i in range(num_images):
        img = _background(rng, s)
        count = int(rng.integers(1, max_objects + 1))
        instances = np.zeros((s, s), np.int32)  # 1-based index of the shape that owns each pixel
        drawn = []
        while not drawn:  # a shape can in principle vanish at a tiny size; draw again until one shows
            for _ in range(count):
                cls = int(rng.integers(len(classes)))
                r = rng.uniform(0.18, 0.32) * s if count == 1 else rng.uniform(0.12, 0.28) * s
                cy, cx = rng.uniform(r, s - r, size=2)
                m = _shape_mask(classes[cls], s, cy, cx, r, angle=rng.uniform(0, 2 * np.pi))
                if not m.any():
                    continue
                color = rng.uniform(140, 255, size=3)
                img[m] = color + rng.normal(0, 8, size=(int(m.sum()), 3))
                drawn.append(cls)
                instances[m] = len(drawn)
        img_boxes, img_labels, areas = [], [], []
        for index, cls in enumerate(drawn, start=1):
            visible = instances == index
            if not visible.any():  # fully covered by later shapes
                continue
            ys, xs = np.nonzero(visible)
            img_boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            img_labels.append(cls)
            areas.append(int(visible.sum()))
            masks[i][visible] = cls + 1
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
        labels[i] = img_labels[int(np.argmax(areas))]
        boxes.append(np.asarray(img_boxes, np.float32).reshape(-1, 4))
        box_labels.append(np.asarray(img_labels, np.int32))
    return {"images": images, "labels": labels, "boxes": boxes, "box_labels": box_labels, "masks": masks,
            "class_names": classes}


def make_restoration_pairs(num_images: int, image_size: int = 64, scale: int = 2, noise_std: float = 15.0,
                           seed: int = 0, max_objects: int = 3):
    """Clean shapes images with noisy and low-resolution versions, for denoising and super-resolution.

    Returns a dict: ``clean`` uint8 (N, S, S, 3); ``noisy`` uint8 (N, S, S, 3), clean plus Gaussian noise of
    standard deviation ``noise_std`` (in 0..255 units), rounded and clipped; ``low_res`` uint8
    (N, S/scale, S/scale, 3), the mean of each ``scale`` x ``scale`` block of clean (box/area downsampling).
    """
    if not isinstance(scale, int) or scale < 1 or image_size % scale:
        raise ValueError(f"scale must be a positive integer dividing image_size={image_size}; got {scale!r}.")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0; got {noise_std!r}.")
    clean = make_shapes(num_images, image_size, seed=seed, max_objects=max_objects)["images"]
    rng = np.random.default_rng([seed, 1])
    noisy = np.clip(np.round(clean + rng.normal(0, noise_std, size=clean.shape)), 0, 255).astype(np.uint8)
    n, s = clean.shape[0], image_size // scale
    blocks = clean.reshape(n, s, scale, s, scale, 3).astype(np.float64)
    low_res = np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)
    return {"clean": clean, "noisy": noisy, "low_res": low_res}
