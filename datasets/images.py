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


def inspect_image(path: str, exif: bool = True, full: bool = False) -> tuple[int | None, str | None]:
    """(decode mode, None) for a readable image, (None, reason) for a corrupt or unsupported one.

    Args:
        path: the image file.
        exif: route JPEGs with a non-upright EXIF orientation through Pillow, which rotates them.
        full: decode every file completely with Pillow (slow, thorough) instead of header + tail checks.
    """
    try:
        with Image.open(path) as img:
            fmt, mode = img.format, img.mode
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if exif and fmt == "JPEG" else 1
            if full or fmt not in ("JPEG", "PNG", "GIF", "BMP"):
                img.load()  # formats Pillow decodes in the pipeline: prove they decode now
    except Exception as e:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError...)
        return None, f"not a readable image ({type(e).__name__}: {e})"
    if _truncated(path, fmt):
        return None, f"truncated {fmt} file"
    if fmt == "JPEG" and mode in ("RGB", "L") and orientation == 1:
        return DECODE_JPEG, None
    if fmt in ("PNG", "GIF", "BMP") and mode in _TF_MODES:
        return DECODE_TF, None
    return DECODE_PIL, None


def validate_files(paths, exif: bool = True, full: bool = False):
    """Inspect ``paths``; returns (kept paths, their decode modes, {skipped path: reason}), warning per skip."""
    kept, modes, skipped = [], [], {}
    for path in paths:
        mode, reason = inspect_image(path, exif=exif, full=full)
        if mode is None:
            skipped[path] = reason
            warnings.warn(f"skipping {path}: {reason}.", stacklevel=3)
        else:
            kept.append(path)
            modes.append(mode)
    return kept, modes, skipped


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


def tf_decode(path, mode, min_side=None, exif: bool = True):
    """Decode inside tf.data: uint8 (H, W, 3). ``min_side`` lets JPEGs decode at 1/2, 1/4 or 1/8 scale
    (libjpeg's DCT scaling, like Pillow's draft mode) while the short side stays >= ``min_side``."""
    import tensorflow as tf

    def by_pillow():
        img = tf.numpy_function(lambda p: pil_decode(p, exif=exif), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(img, [None, None, 3])

    def by_tf():
        data = tf.io.read_file(path)
        return tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False), [None, None, 3])

    def by_jpeg():
        data = tf.io.read_file(path)
        if min_side is None:
            return tf.io.decode_jpeg(data, channels=3)
        short = tf.reduce_min(tf.io.extract_jpeg_shape(data)[:2])
        ratio_index = tf.cast(short >= 2 * min_side, tf.int32) + tf.cast(short >= 4 * min_side, tf.int32) \
            + tf.cast(short >= 8 * min_side, tf.int32)
        branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in (1, 2, 4, 8)]
        return tf.ensure_shape(tf.switch_case(ratio_index, branches), [None, None, 3])

    return tf.switch_case(tf.cast(mode, tf.int32), [by_tf, by_jpeg, by_pillow])
