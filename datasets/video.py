"""Procedural "moving shapes" clips: one shape moving in a straight line; the label is its direction.

Each clip is a textured background (:mod:`catalog.datasets.shapes`' backgrounds, with fresh pixel noise in every
frame) and one circle, square or triangle of random colour, size and start position that moves at a constant
velocity in one of 4 or 8 directions, ending inside the frame. Recognizing the class needs motion: a single
frame shows a shape somewhere, never where it goes. Deterministic by seed, numpy only.

Directions: 4 classes ``left, right, up, down``; 8 add ``up_left, up_right, down_left, down_right`` ("up" is
toward row 0). A horizontal flip of a clip maps direction k to ``HFLIP[k]`` (left <-> right), which is how the
loader keeps labels right under flip augmentation.
"""

from __future__ import annotations

import numpy as np

from catalog.datasets.shapes import _background, _pair, _shape_mask

DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0),
              "up_left": (-1, -1), "up_right": (-1, 1), "down_left": (1, -1), "down_right": (1, 1)}
MOTION_CLASSES = {4: ("left", "right", "up", "down"), 8: tuple(DIRECTIONS)}
VIDEO_SHAPES = ("circle", "square", "triangle")


def hflip_labels(num_directions: int) -> np.ndarray:
    """The label permutation of a horizontal flip: index k -> the class of direction k mirrored left-right."""
    names = MOTION_CLASSES[num_directions]
    mirror = {n: n.replace("left", "@").replace("right", "left").replace("@", "right") for n in names}
    return np.array([names.index(mirror[n]) for n in names], np.int32)


def make_moving_shapes(num_clips: int, frames: int = 16, image_size: int = 32, seed: int = 0,
                       directions: int = 4, travel=(0.3, 0.5), radius=(0.1, 0.18), noise: float = 6.0):
    """Generate ``num_clips`` clips of one shape moving in a straight line.

    Returns a dict: ``clips`` uint8 (N, frames, S, S, 3); ``labels`` int32 (N,), the index of the direction in
    ``class_names``; ``centers`` float32 (N, frames, 2), the shape's (row, column) centre in each frame;
    ``shapes`` int32 (N,), the index of the shape in ``VIDEO_SHAPES``; ``class_names``. The same arguments always
    give the same arrays.

    Args:
        num_clips: number of clips.
        frames: frames per clip (>= 2).
        image_size: frame side S (>= 16).
        seed: the random seed.
        directions: 4 (left, right, up, down) or 8 (and the diagonals).
        travel: (low, high) distance the centre moves over the clip, as a fraction of S, drawn per clip
            (along each axis for a diagonal); 0.3-0.5 of 112 px over 16 frames is 2.2-3.7 px per frame.
        radius: (low, high) shape radius as a fraction of S, drawn per clip.
        noise: standard deviation of the Gaussian pixel noise of each frame (0..255 units).
    """
    for arg, value, least in (("num_clips", num_clips, 1), ("frames", frames, 2), ("image_size", image_size, 16)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{arg} must be an integer >= {least}; got {value!r}.")
    if directions not in MOTION_CLASSES or isinstance(directions, bool):
        raise ValueError(f"directions must be 4 or 8; got {directions!r}.")
    travel = _pair(travel, "travel", 0.0, 0.8)
    radius = _pair(radius, "radius", 0.02, 0.3)
    if radius[0] <= 0.02 or 2 * radius[1] + travel[1] > 1.0:
        raise ValueError(f"radius and travel must leave the shape inside the frame (2 * radius + travel <= 1, radius "
                         f"above 0.02); got radius {radius!r} and travel {travel!r}.")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"noise must be a non-negative number (0..255 units); got {noise!r}.")
    names = MOTION_CLASSES[directions]
    s = int(image_size)
    rng = np.random.default_rng([seed, 16])
    clips = np.empty((num_clips, frames, s, s, 3), np.uint8)
    labels = rng.integers(directions, size=num_clips).astype(np.int32)
    centers = np.empty((num_clips, frames, 2), np.float32)
    kinds = np.empty((num_clips,), np.int32)
    t = np.arange(frames, dtype=np.float64) / (frames - 1)
    for i in range(num_clips):
        background = _background(rng, s)
        kind = int(rng.integers(len(VIDEO_SHAPES)))
        r = rng.uniform(*radius) * s
        distance = rng.uniform(*travel) * s
        step = np.asarray(DIRECTIONS[names[labels[i]]], np.float64) * distance
        # the start lies where the whole path keeps the shape inside [r, s - r] on both axes
        low = r - np.minimum(step, 0.0)
        high = s - r - np.maximum(step, 0.0)
        start = rng.uniform(low, high)
        color = rng.uniform(140, 255, size=3)
        angle = rng.uniform(0, 2 * np.pi)
        path = start + t[:, None] * step
        for f, (cy, cx) in enumerate(path):
            frame = background + rng.normal(0, noise, size=(s, s, 3)) if noise else background.copy()
            mask = _shape_mask(VIDEO_SHAPES[kind], s, cy, cx, r, angle=angle)
            frame[mask] = color
            clips[i, f] = np.clip(frame, 0, 255).astype(np.uint8)
        centers[i] = path
        kinds[i] = kind
    return {"clips": clips, "labels": labels, "centers": centers, "shapes": kinds, "class_names": names}
