"""Image files: a fast up-front validation pass, Pillow decoding for what TensorFlow cannot, safe tf decoding.

The validation pass reads each file's header with Pillow (and the last bytes of JPEG/PNG files, where a
truncated file shows), so a corrupt file is found and skipped before a long run starts, never halfway.
It also decides per file how to decode: TensorFlow's native decoders for plain 8-bit JPEG/PNG/GIF/BMP, or
Pillow for TIFF, WebP, palette or 16-bit PNG, CMYK JPEG and JPEGs whose EXIF orientation is not upright.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")

# How a file is decoded in the pipeline.
DECODE_TF = 0    # tf.io.decode_image
DECODE_JPEG = 1  # tf.io.decode_jpeg (may decode at a reduced DCT scale when the target is small)
DECODE_PIL = 2   # Pillow through tf.numpy_function

_TF_MODES = {"RGB", "L", "RGBA", "LA"}
_EXIF_ORIENTATION = 0x0112


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _truncated(path: str, fmt: str) -> bool:
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(fmt)
    if marker is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        return marker not in f.read()


def inspect_image(path: str, exif: bool = True, full: bool = False):
    """(decode mode, (width, height), None) for a readable image, (None, None, reason) for a bad one.

    Args:
        path: the image file.
        exif: route JPEGs with a non-upright EXIF orientation through Pillow, which rotates them.
        full: decode every file completely with Pillow (slow, thorough) instead of header + tail checks.
    """
    try:
        with Image.open(path) as img:
            fmt, mode, size = img.format, img.mode, img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if exif and fmt == "JPEG" else 1
            if full or fmt not in ("JPEG", "PNG", "GIF", "BMP"):
                img.load()  # formats Pillow decodes in the pipeline: prove they decode now
    except Exception as e:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError...)
        return None, None, f"not a readable image ({type(e).__name__}: {e})"
    if _truncated(path, fmt):
        return None, None, f"truncated {fmt} file"
    if orientation in (5, 6, 7, 8):  # transposed: the decoded image is size[1] wide
        size = size[::-1]
    if fmt == "JPEG" and mode in ("RGB", "L") and orientation == 1:
        return DECODE_JPEG, size, None
    if fmt in ("PNG", "GIF", "BMP") and mode in _TF_MODES:
        return DECODE_TF, size, None
    return DECODE_PIL, size, None


def validate_files(paths, exif: bool = True, full: bool = False):
    """Inspect ``paths``; returns (kept paths, decode modes, (width, height) sizes, {skipped path: reason}),
    with a warning naming each skipped file."""
    kept, modes, sizes, skipped = [], [], [], {}
    for path in paths:
        mode, size, reason = inspect_image(path, exif=exif, full=full)
        if mode is None:
            skipped[path] = reason
            warnings.warn(f"skipping {path}: {reason}.", stacklevel=3)
        else:
            kept.append(path)
            modes.append(mode)
            sizes.append(size)
    return kept, modes, sizes, skipped


def jpeg_ratios(modes, sizes, min_side) -> list[int]:
    """Per file, the largest libjpeg DCT scale 1/r (r in 1, 2, 4, 8) that keeps the short side >= min_side."""
    ratios = []
    for mode, (w, h) in zip(modes, sizes):
        r = 1
        while mode == DECODE_JPEG and min_side and r < 8 and min(w, h) >= 2 * r * min_side:
            r *= 2
        ratios.append(r)
    return ratios


def pil_decode(path, exif: bool = True) -> np.ndarray:
    """Decode one file with Pillow into uint8 RGB (H, W, 3); 16-bit data scaled to 8 bits, EXIF applied."""
    if isinstance(path, np.ndarray):  # from tf.numpy_function: a 0-d bytes array
        path = path.item()
    if isinstance(path, bytes):
        path = path.decode()
    with Image.open(path) as img:
        if exif:
            img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(img).astype(np.float64)
            arr = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
            return np.repeat(arr[..., None], 3, axis=-1)
        if img.mode == "F":
            return np.repeat(np.clip(np.asarray(img), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
        return np.asarray(img.convert("RGB"), np.uint8)


def center_crop_windows(sizes, ratios, size, crop_fraction):
    """Per file, the (top, left, height, width) window of the eval center crop in the DCT-scaled image
    (``ratio`` r decodes ceil(w / r) x ceil(h / r)), so JPEGs decode only the pixels the crop keeps; and
    whether any window shrinks by more than 2x on its way to ``size`` (then resizing must antialias)."""
    h_out, w_out = size
    windows, shrink = [], 1.0
    for (w, h), r in zip(sizes, ratios):
        sw, sh = -(-w // r), -(-h // r)
        scale = (max(h_out, w_out) / crop_fraction) / min(sw, sh)
        ch, cw = max(1, min(sh, round(h_out / scale))), max(1, min(sw, round(w_out / scale)))
        windows.append([(sh - ch) // 2, (sw - cw) // 2, ch, cw])
        shrink = max(shrink, ch / h_out, cw / w_out)
    return windows, shrink > 2.0


def make_decoder(modes, ratios=None, exif: bool = True, cropped: bool = False):
    """A tf function (path, mode, ratio) -> uint8 (H, W, 3) for files with these decode ``modes`` and JPEG
    ``ratios`` (``jpeg_ratios``): the branches no file needs are left out of the graph, so a folder of plain
    JPEGs decodes with one ``decode_jpeg`` call, as fast as any TF pipeline. With ``cropped`` (JPEG-only
    files) the function takes a fourth argument, a ``center_crop_windows`` window, and decodes just it."""
    import tensorflow as tf

    modes, ratios = set(modes), sorted(set(ratios or [1]))

    def by_pillow(path):
        img = tf.numpy_function(lambda p: pil_decode(p, exif=exif), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(img, [None, None, 3])

    def by_tf(path, ratio):
        data = tf.io.read_file(path)
        if modes == {DECODE_JPEG}:
            if len(ratios) == 1:
                return tf.io.decode_jpeg(data, channels=3, ratio=ratios[0])
            branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in ratios]
            index = tf.reduce_sum(tf.cast(tf.constant(ratios) < ratio, tf.int32))
            return tf.ensure_shape(tf.switch_case(index, branches), [None, None, 3])
        return tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False), [None, None, 3])

    if cropped:
        if modes != {DECODE_JPEG}:
            raise ValueError(f"cropped decoding needs JPEG files only; got decode modes {sorted(modes)}.")

        def crop_decode(path, mode, ratio, window):
            data = tf.io.read_file(path)
            branches = [lambda r=r: tf.io.decode_and_crop_jpeg(data, window, channels=3, ratio=r)
                        for r in ratios]
            if len(branches) == 1:
                return branches[0]()
            index = tf.reduce_sum(tf.cast(tf.constant(ratios) < ratio, tf.int32))
            return tf.ensure_shape(tf.switch_case(index, branches), [None, None, 3])

        return crop_decode
    if modes == {DECODE_PIL}:
        return lambda path, mode, ratio: by_pillow(path)
    if DECODE_PIL not in modes:
        return lambda path, mode, ratio: by_tf(path, ratio)
    if modes & {DECODE_JPEG, DECODE_TF}:
        modes -= {DECODE_PIL}
        modes.add(DECODE_TF)  # mixed with Pillow files: the generic decoder for the rest, no DCT scaling
    return lambda path, mode, ratio: tf.cond(tf.equal(mode, DECODE_PIL), lambda: by_pillow(path),
                                             lambda: by_tf(path, ratio))


def tf_decode(path, mode, exif: bool = True):
    """Decode one file inside TF: uint8 (H, W, 3) (any decode mode, no DCT scaling)."""
    return make_decoder([DECODE_TF, DECODE_PIL], exif=exif)(path, mode, 1)
