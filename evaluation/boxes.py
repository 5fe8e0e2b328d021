"""Box formats and IoU matrices: the small typed seam shared by evaluation, datasets and detection models.

Formats (the last axis holds four numbers):

- ``xyxy``: (x_min, y_min, x_max, y_max), Pascal VOC and torchvision;
- ``xywh``: (x_min, y_min, width, height), COCO;
- ``cxcywh``: (x_center, y_center, width, height), YOLO and DETR;
- ``yxyx``: (y_min, x_min, y_max, x_max), TensorFlow's object-detection API.
"""

from __future__ import annotations

import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")


def _check_format(fmt: str, argument: str) -> None:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{argument} must be one of {', '.join(BOX_FORMATS)}; got {fmt!r}.")


def as_boxes(boxes) -> np.ndarray:
    """``boxes`` as a float64 array whose last axis has four entries (an empty input gives (0, 4))."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(*arr.shape[:-1], 4) if arr.ndim > 1 and arr.shape[-1] == 4 else np.zeros((0, 4))
    if arr.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 numbers on the last axis; got shape {arr.shape}.")
    return arr


def convert_boxes(boxes, source: str, target: str) -> np.ndarray:
    """Convert boxes between ``xyxy``, ``xywh``, ``cxcywh`` and ``yxyx`` (any leading shape)."""
    _check_format(source, "source")
    _check_format(target, "target")
    b = as_boxes(boxes)
    if source == target:
        return b.copy()
    a0, a1, a2, a3 = np.moveaxis(b, -1, 0)
    if source == "xyxy":
        x1, y1, x2, y2 = a0, a1, a2, a3
    elif source == "yxyx":
        y1, x1, y2, x2 = a0, a1, a2, a3
    elif source == "xywh":
        x1, y1, x2, y2 = a0, a1, a0 + a2, a1 + a3
    else:  # cxcywh
        x1, y1, x2, y2 = a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2
    if target == "xyxy":
        out = (x1, y1, x2, y2)
    elif target == "yxyx":
        out = (y1, x1, y2, x2)
    elif target == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return np.stack(out, axis=-1)


def box_area(boxes, box_format: str = "xyxy") -> np.ndarray:
    """Areas of ``boxes`` (negative extents count as zero)."""
    b = convert_boxes(boxes, box_format, "xywh")
    return np.maximum(b[..., 2], 0) * np.maximum(b[..., 3], 0)


def iou_matrix(boxes_a, boxes_b, box_format: str = "xyxy", crowd=None) -> np.ndarray:
    """IoU between every box of ``boxes_a`` (M, 4) and of ``boxes_b`` (N, 4): an (M, N) float64 matrix.

    ``crowd`` (N,) booleans mark boxes of ``boxes_b`` as crowd regions, for which the overlap is divided
    by the area of the ``boxes_a`` box instead of the union (pycocotools' convention). The arithmetic
    follows pycocotools' ``bbIou`` step by step, so values agree to the last bit.
    """
    a = convert_boxes(boxes_a, box_format, "xywh").reshape(-1, 4)
    b = convert_boxes(boxes_b, box_format, "xywh").reshape(-1, 4)
    return _iou_xywh(a[:, None, :], b[None, :, :],
                     None if crowd is None else np.asarray(crowd, bool)[None, :])


def _iou_xywh(d: np.ndarray, g: np.ndarray, crowd=None) -> np.ndarray:
    """Broadcasting IoU of xywh boxes ``d`` and ``g`` in pycocotools' order of operations."""
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da = d[..., 2] * d[..., 3]
    ga = g[..., 2] * g[..., 3]
    union = da + ga - inter
    if crowd is not None:
        union = np.where(crowd, da, union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)
