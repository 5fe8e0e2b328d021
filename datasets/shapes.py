"""Procedural "shapes" data: coloured shapes on textured backgrounds, deterministic by seed.

Each image carries class labels, bounding boxes and a segmentation mask drawn from the same shapes, so
classification, detection and segmentation can all train and evaluate on it without any download.
Shapes may overlap; a later shape occludes an earlier one, and every box is computed from the pixels of
its shape that stay visible in the final mask (a fully hidden shape is dropped). ``make_restoration_pairs``
derives noisy and low-resolution versions of the same images for denoising and super-resolution.

The default task is easy (five large, bright shapes on dark backgrounds). Keywords make it harder, each
seeded and deterministic: more ``classes`` (``ALL_SHAPE_CLASSES``), ``rotate``, smaller objects
(``object_scale``), lower and varied ``contrast``, distractor strokes (``clutter``) and pixel ``noise``.
``PRESETS["hard"]`` is the setting ``catalog demo`` trains on. The harder options draw from their own
random stream, so the same seed places the same shapes of the same classes with or without them.
"""

from __future__ import annotations

import numbers

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "star")
ALL_SHAPE_CLASSES = SHAPE_CLASSES + ("hexagon", "ring", "crescent", "ellipse", "arrow")

#: Named settings of the difficulty keywords of :func:`make_shapes` (``"easy"`` is the default).
PRESETS = {
    "easy": {},
    "hard": {"classes": ALL_SHAPE_CLASSES, "rotate": True, "object_scale": (0.15, 0.32),
             "contrast": (0.45, 1.0), "clutter": (0, 3), "noise": (3.0, 15.0)},
}


def _shape_mask(kind: str, size: int, cy: float, cx: float, r: float, angle: float = 0.0,
                rotate: bool = False) -> np.ndarray:
    """Boolean (size, size) mask of one shape of radius ``r`` centred at (cy, cx). Only the star turns by
    ``angle`` unless ``rotate`` is set, which turns every kind."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if rotate:  # shape coordinates: turn the pixel offsets by -angle, then draw the upright shape
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dy, dx = c * dy - s * dx, s * dy + c * dx
        angle = 0.0
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
    if kind == "hexagon":  # regular, corners at distance r, flat top and bottom
        apothem = r * np.cos(np.pi / 6)
        return ((np.abs(dy) <= apothem) & (np.abs(dx * np.cos(np.pi / 6) + dy * 0.5) <= apothem)
                & (np.abs(dx * np.cos(np.pi / 6) - dy * 0.5) <= apothem))
    if kind == "ring":
        d2 = dy ** 2 + dx ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    if kind == "crescent":  # a disc less a disc of 0.8 r shifted right by 0.45 r
        return (dy ** 2 + dx ** 2 <= r ** 2) & (dy ** 2 + (dx - 0.45 * r) ** 2 > (0.8 * r) ** 2)
    if kind == "ellipse":  # semi-axes r and 0.55 r
        return (dx / r) ** 2 + (dy / (0.55 * r)) ** 2 <= 1.0
    if kind == "arrow":  # pointing right: a head from 0.05 r to r, a shaft back to -r
        head = (dx >= -0.05 * r) & (dx <= r) & (np.abs(dy) <= (r - dx) * 0.75)
        shaft = (dx >= -r) & (dx < -0.05 * r) & (np.abs(dy) <= 0.22 * r)
        return head | shaft
    raise ValueError(f"shape kind must be one of {', '.join(ALL_SHAPE_CLASSES)}; got {kind!r}.")


def _clutter(rng: np.random.Generator, s: int, count: int):
    """``count`` distractor strokes (straight segments and circular arcs, 0.5 to 1.3 pixels half-width) as a
    (count, s, s) boolean stack, computed for all strokes at once."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    p0 = rng.uniform(0, s, size=(count, 2))
    length = rng.uniform(0.25, 0.7, size=count) * s
    direction = rng.uniform(0, 2 * np.pi, size=count)
    half_width = rng.uniform(0.5, 1.3, size=count)[:, None, None]
    arc = rng.random(count) < 0.4
    span = rng.uniform(0.5, 1.6, size=count) * np.pi  # arcs: the angle they cover
    # straight segments: distance from each pixel to the segment p0 -> p1
    p1 = p0 + length[:, None] * np.stack([np.sin(direction), np.cos(direction)], axis=1)
    vy, vx = (p1 - p0)[:, 0, None, None], (p1 - p0)[:, 1, None, None]
    wy, wx = yy - p0[:, 0, None, None], xx - p0[:, 1, None, None]
    t = np.clip((wy * vy + wx * vx) / np.maximum(vy ** 2 + vx ** 2, 1e-6), 0.0, 1.0)
    segment = np.hypot(wy - t * vy, wx - t * vx)
    # arcs: circle of radius length / 2 around p0, between direction and direction + span
    radius = (length / 2)[:, None, None]
    dist = np.hypot(wy, wx)
    theta = (np.arctan2(wy, wx) - direction[:, None, None]) % (2 * np.pi)
    on_arc = np.where(theta <= span[:, None, None], np.abs(dist - radius), np.inf)
    return np.where(arc[:, None, None], on_arc, segment) <= half_width


def _pair(value, name: str, low: float, high: float, integer: bool = False):
    """A (lo, hi) range from a number or a pair, checked against [low, high]."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    kind = numbers.Integral if integer else numbers.Real
    if (len(pair) != 2 or not all(isinstance(v, kind) and not isinstance(v, (bool, np.bool_)) for v in pair)
            or not low <= pair[0] <= pair[1] <= high):
        what = "integers" if integer else "numbers"
        raise ValueError(f"{name} must be a value or a (low, high) pair of {what} with "
                         f"{low} <= low <= high <= {high}; got {value!r}.")
    return pair


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
                classes=SHAPE_CLASSES, *, rotate: bool = False, object_scale=None, contrast=1.0, clutter=0,
                noise=0.0):
    """Generate ``num_images`` images with 1..``max_objects`` shapes each.

    Returns a dict: ``images`` uint8 (N, S, S, 3); ``labels`` int32 (N,) (class of the shape with the most
    visible pixels); ``boxes`` list of float32 (k, 4) arrays in pixel (x_min, y_min, x_max, y_max), the
    tight box of each shape's visible pixels (pixel (x, y) covers [x, x+1) x [y, y+1)); ``box_labels``
    list of int32 (k,); ``masks`` uint8 (N, S, S) with 0 for background and class+1 for a shape's
    pixels; ``class_names``. The same arguments always give the same arrays.

    Difficulty (the defaults give the original easy data, unchanged; ``PRESETS`` names settings):
        classes: names from ``ALL_SHAPE_CLASSES`` (ten kinds; default the first five, ``SHAPE_CLASSES``).
        rotate: turn every shape by a random angle (by default only stars turn).
        object_scale: (low, high) shape radius as a fraction of ``image_size``, in (0, 0.5]; default
            (0.18, 0.32) for one object per image, (0.12, 0.28) for several.
        contrast: a factor or (low, high) range in [0, 1] drawn per shape: its colour is the background
            under it plus this fraction of the difference to a bright colour (1: the full contrast).
        clutter: a count or (low, high) range drawn per image of distractor strokes (segments and arcs in
            the shapes' colours and contrast), drawn behind the shapes: not in masks, boxes or labels.
        noise: a standard deviation or (low, high) range drawn per image of Gaussian pixel noise, in
            0..255 units, added to the whole image.
    """
    if not isinstance(num_images, int) or num_images <= 0:
        raise ValueError(f"num_images must be a positive integer; got {num_images!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16; got {image_size!r}.")
    if not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(f"max_objects must be a positive integer; got {max_objects!r}.")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in ALL_SHAPE_CLASSES]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty subset of {ALL_SHAPE_CLASSES} without repeats; "
                         f"got {classes!r}.")
    if not isinstance(rotate, bool):
        raise ValueError(f"rotate must be True or False; got {rotate!r}.")
    scale = None if object_scale is None else _pair(object_scale, "object_scale", 0.0, 0.5)
    if scale is not None and scale[0] <= 0:
        raise ValueError(f"object_scale must be above 0; got {object_scale!r}.")
    contrast = _pair(contrast, "contrast", 0.0, 1.0)
    clutter = _pair(clutter, "clutter", 0, 64, integer=True)
    noise = _pair(noise, "noise", 0.0, 255.0)
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 2])  # the difficulty options' own stream: the scene stays the same
    s = image_size
    images = np.empty((num_images, s, s, 3), np.uint8)
    masks = np.zeros((num_images, s, s), np.uint8)
    labels = np.empty((num_images,), np.int32)
    boxes, box_labels = [], []
    for i in range(num_images):
        img = _background(rng, s)
        if clutter[1] > 0:
            strokes = _clutter(extra, s, int(extra.integers(clutter[0], clutter[1] + 1)))
            for stroke in strokes:
                color, amount = extra.uniform(140, 255, size=3), extra.uniform(*contrast)
                if stroke.any():  # a stroke may run off the image
                    img[stroke] = _blend(img[stroke].mean(axis=0), color, amount)
        count = int(rng.integers(1, max_objects + 1))
        instances = np.zeros((s, s), np.int32)  # 1-based index of the shape that owns each pixel
        drawn = []
        while not drawn:  # a shape can in principle vanish at a tiny size; draw again until one shows
            for _ in range(count):
                cls = int(rng.integers(len(classes)))
                if scale is not None:
                    r = rng.uniform(*scale) * s
                else:
                    r = rng.uniform(0.18, 0.32) * s if count == 1 else rng.uniform(0.12, 0.28) * s
                cy, cx = rng.uniform(r, s - r, size=2)
                m = _shape_mask(classes[cls], s, cy, cx, r, angle=rng.uniform(0, 2 * np.pi), rotate=rotate)
                if not m.any():
                    continue
                color = rng.uniform(140, 255, size=3)
                if contrast != (1.0, 1.0):
                    color = _blend(img[m].mean(axis=0), color, extra.uniform(*contrast))
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
        if noise[1] > 0:
            img = img + extra.normal(0, extra.uniform(*noise), size=img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
        labels[i] = img_labels[int(np.argmax(areas))]
        boxes.append(np.asarray(img_boxes, np.float32).reshape(-1, 4))
        box_labels.append(np.asarray(img_labels, np.int32))
    return {"images": images, "labels": labels, "boxes": boxes, "box_labels": box_labels, "masks": masks,
            "class_names": classes}


def _blend(under, color, amount):
    """``amount`` of the way from the background colour ``under`` to ``color``."""
    return under + amount * (np.asarray(color) - under)


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
