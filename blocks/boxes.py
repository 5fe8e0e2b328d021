"""Boxes for detection models in ``keras.ops``: formats, IoU/GIoU, RetinaNet anchors, box coding, anchor
matching and class-aware non-maximum suppression (TensorFlow and JAX backends, inside a model or not).

Formats (the last axis holds four numbers), the same names and meanings as ``catalog.evaluation.boxes``:

- ``xyxy``: (x_min, y_min, x_max, y_max), Pascal VOC and torchvision;
- ``xywh``: (x_min, y_min, width, height), COCO;
- ``cxcywh``: (x_center, y_center, width, height), YOLO and DETR;
- ``yxyx``: (y_min, x_min, y_max, x_max), TensorFlow's object-detection API.

Coordinates are continuous (a box from 0 to 10 is 10 wide, no "+1"). Every function here works on pixels;
:func:`to_normalized` and :func:`to_pixels` move a box tensor between pixels and [0, 1] coordinates.

Anchor order (:func:`anchors_for_level`): row ``y`` outermost, then column ``x``, then the anchor at that
position (aspect ratio outer, scale inner, torchvision's order). So a level's ``(H * W * A, 4)`` anchors line
up with a head's ``(B, H, W, A * K)`` output reshaped to ``(B, H * W * A, K)``, and :func:`anchors` is the
levels' anchors concatenated in level order, as the heads' reshaped outputs are.

Anchor labels (:func:`match_anchors`): a class id ``>= 0`` marks a positive anchor, :data:`IGNORE` (-1) an
anchor between the two IoU thresholds (no loss), :data:`BACKGROUND` (-2) a negative one. Ground-truth rows
whose label is negative are padding.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")
IGNORE = -1
BACKGROUND = -2
# torchvision's BoxCoder bbox_xform_clip: exp() of a width/height delta is capped at 1000 / 16.
DELTA_CLIP = math.log(1000.0 / 16)
RETINANET_SCALES = (2 ** 0, 2 ** (1 / 3), 2 ** (2 / 3))
RETINANET_RATIOS = (0.5, 1.0, 2.0)


def _check_format(fmt: str, argument: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"{argument} must be one of {', '.join(FORMATS)}; got {fmt!r}.")


def _as_float(boxes):
    """``boxes`` as a tensor of floats (integer input becomes float32)."""
    boxes = ops.convert_to_tensor(boxes)
    return boxes if "float" in keras.backend.standardize_dtype(boxes.dtype) else ops.cast(boxes, "float32")


# Each format's four columns from / to the corners (x1, y1, x2, y2).
_TO_XYXY = {
    "xyxy": lambda a, b, c, d: (a, b, c, d),
    "xywh": lambda a, b, c, d: (a, b, a + c, b + d),
    "cxcywh": lambda a, b, c, d: (a - c / 2, b - d / 2, a + c / 2, b + d / 2),
    "yxyx": lambda a, b, c, d: (b, a, d, c),
}
_FROM_XYXY = {
    "xyxy": lambda x1, y1, x2, y2: (x1, y1, x2, y2),
    "xywh": lambda x1, y1, x2, y2: (x1, y1, x2 - x1, y2 - y1),
    "cxcywh": lambda x1, y1, x2, y2: ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1),
    "yxyx": lambda x1, y1, x2, y2: (y1, x1, y2, x2),
}


def _to_xyxy_parts(boxes, box_format: str):
    """The four (..., 1) columns x1, y1, x2, y2 of ``boxes`` in ``box_format``."""
    _check_format(box_format, "box_format")
    return _TO_XYXY[box_format](*ops.split(_as_float(boxes), 4, axis=-1))


def convert_boxes(boxes, source: str, target: str):
    """Convert boxes (any leading shape, last axis 4) from format ``source`` to format ``target``."""
    _check_format(source, "source")
    _check_format(target, "target")
    boxes = _as_float(boxes)
    if source == target:
        return boxes
    return ops.concatenate(_FROM_XYXY[target](*_to_xyxy_parts(boxes, source)), axis=-1)


def _image_scale(image_shape, box_format: str):
    """The per-coordinate scale (4,) that takes [0, 1] boxes of ``box_format`` to pixels."""
    _check_format(box_format, "box_format")
    if len(image_shape) < 2:
        raise ValueError(f"image_shape must start with (height, width); got {image_shape!r}.")
    height, width = float(image_shape[0]), float(image_shape[1])
    return (height, width, height, width) if box_format == "yxyx" else (width, height, width, height)


def to_pixels(boxes, image_shape, box_format: str = "xyxy"):
    """Normalized ([0, 1]) boxes to pixels of an image of ``image_shape`` (height, width[, channels])."""
    boxes = _as_float(boxes)
    return boxes * ops.cast(_image_scale(image_shape, box_format), boxes.dtype)


def to_normalized(boxes, image_shape, box_format: str = "xyxy"):
    """Pixel boxes to [0, 1] coordinates of an image of ``image_shape`` (height, width[, channels])."""
    boxes = _as_float(boxes)
    return boxes / ops.cast(_image_scale(image_shape, box_format), boxes.dtype)


def box_area(boxes, box_format: str = "xyxy"):
    """Areas of ``boxes`` (..., 4) as (...); negative extents count as zero."""
    x1, y1, x2, y2 = _to_xyxy_parts(boxes, box_format)
    return ops.squeeze(ops.relu(x2 - x1) * ops.relu(y2 - y1), -1)


def _pair(a, b, box_format: str, aligned: bool):
    """xyxy columns of ``a`` and ``b``, broadcast to (..., M, N, 1) pairs unless ``aligned``."""
    a = _to_xyxy_parts(a, box_format)
    b = _to_xyxy_parts(b, box_format)
    if aligned:
        return a, b
    return [ops.expand_dims(c, -2) for c in a], [ops.expand_dims(c, -3) for c in b]


def _safe_divide(numerator, denominator):
    positive = denominator > 0
    return ops.where(positive, numerator / ops.where(positive, denominator, 1.0), 0.0)


def _iou_parts(a, b, box_format: str, aligned: bool):
    """(iou, union, enclosing area) of the box pairs, each (..., M, N) or aligned (...)."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pair(a, b, box_format, aligned)
    inter = (ops.relu(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1))
             * ops.relu(ops.minimum(ay2, by2) - ops.maximum(ay1, by1)))
    union = ops.relu(ax2 - ax1) * ops.relu(ay2 - ay1) + ops.relu(bx2 - bx1) * ops.relu(by2 - by1) - inter
    enclosing = ((ops.maximum(ax2, bx2) - ops.minimum(ax1, bx1))
                 * (ops.maximum(ay2, by2) - ops.minimum(ay1, by1)))
    return tuple(ops.squeeze(t, -1) for t in (_safe_divide(inter, union), union, enclosing))


def iou(a, b, box_format: str = "xyxy", aligned: bool = False):
    """Intersection over union: (..., M, N) for every pair of ``a`` (..., M, 4) and ``b`` (..., N, 4).

    With ``aligned=True`` ``a`` and ``b`` have the same shape (..., 4) and the result is (...), box i of ``a``
    against box i of ``b``. An empty union gives 0.
    """
    return _iou_parts(a, b, box_format, aligned)[0]


def giou(a, b, box_format: str = "xyxy", aligned: bool = False):
    """Generalized IoU (Rezatofighi et al. 2019), IoU - (C - U) / C with C the enclosing box; as :func:`iou`."""
    value, union, enclosing = _iou_parts(a, b, box_format, aligned)
    return value - _safe_divide(enclosing - union, enclosing)


def anchor_shapes(size: float, scales=RETINANET_SCALES, aspect_ratios=RETINANET_RATIOS) -> np.ndarray:
    """(A, 2) anchor (width, height) at one position: area (size * scale)², height / width = ratio.

    Ratio outer, scale inner (torchvision's ``AnchorGenerator``), A = len(aspect_ratios) * len(scales).
    """
    ratios = np.sqrt(np.asarray(aspect_ratios, np.float64))[:, None]
    sides = float(size) * np.asarray(scales, np.float64)[None, :]
    return np.stack([(sides / ratios).reshape(-1), (sides * ratios).reshape(-1)], axis=-1)


def anchors_for_level(height: int, width: int, stride: float, size: float, scales=RETINANET_SCALES,
                      aspect_ratios=RETINANET_RATIOS):
    """(height * width * A, 4) xyxy pixel anchors of a ``height`` x ``width`` feature map.

    Centres at ((x + 0.5) * stride, (y + 0.5) * stride); ordered (y, x, anchor) as the module docstring says.
    """
    shapes = anchor_shapes(size, scales, aspect_ratios)
    cy, cx = np.meshgrid((np.arange(height) + 0.5) * stride, (np.arange(width) + 0.5) * stride, indexing="ij")
    centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
    half = shapes[None, :, :] / 2
    boxes = np.concatenate([centres - half, centres + half], axis=-1).reshape(-1, 4)
    return ops.convert_to_tensor(boxes.astype(np.float32))


def feature_size(image_size, level: int) -> tuple[int, int]:
    """The (height, width) of pyramid level ``level`` (stride 2**level): ceil(size / stride), "same" padding."""
    stride = 2 ** level
    return -(-int(image_size[0]) // stride), -(-int(image_size[1]) // stride)


def anchors(image_size, levels=(3, 4, 5, 6, 7), sizes=None, scales=RETINANET_SCALES,
            aspect_ratios=RETINANET_RATIOS):
    """All anchors of an image of ``image_size`` (height, width): (sum of H * W * A over levels, 4) xyxy.

    Args:
        image_size: (height, width) in pixels; level l has the map size :func:`feature_size` gives.
        levels: pyramid levels, stride 2**l each; RetinaNet's P3 to P7.
        sizes: the base anchor size of each level; default 4 * stride (32 on P3 up to 512 on P7, Lin et al.).
        scales: size multipliers per position (RetinaNet: 2**0, 2**(1/3), 2**(2/3)).
        aspect_ratios: height / width ratios per position (RetinaNet: 0.5, 1, 2).
    """
    levels = tuple(levels)
    sizes = tuple(4 * 2 ** level for level in levels) if sizes is None else tuple(sizes)
    if len(sizes) != len(levels):
        raise ValueError(f"sizes must have one entry per level ({len(levels)}); got {len(sizes)}.")
    parts = [anchors_for_level(*feature_size(image_size, level), 2 ** level, size, scales, aspect_ratios)
             for level, size in zip(levels, sizes)]
    return ops.concatenate(parts, axis=0)


def _centre_form(boxes):
    return _FROM_XYXY["cxcywh"](*_to_xyxy_parts(boxes, "xyxy"))


def encode(boxes, anchors, variances=(1.0, 1.0, 1.0, 1.0)):
    """Regression targets (dx, dy, dw, dh) of xyxy ``boxes`` against xyxy ``anchors`` (broadcasting, last axis 4).

    Girshick et al.'s parametrization: dx = (x - xa) / wa / v0, dy = (y - ya) / ha / v1,
    dw = log(w / wa) / v2, dh = log(h / ha) / v3. ``variances`` (1, 1, 1, 1) is RetinaNet / torchvision's
    plain form; SSD uses (0.1, 0.1, 0.2, 0.2). Zero-sized boxes are taken as 1e-6 wide.
    """
    boxes = _as_float(boxes)
    anchors = ops.cast(anchors, boxes.dtype)
    x, y, w, h = _centre_form(boxes)
    xa, ya, wa, ha = _centre_form(anchors)
    v = [float(value) for value in variances]
    eps = 1e-6
    return ops.concatenate([(x - xa) / wa / v[0], (y - ya) / ha / v[1],
                            ops.log(ops.maximum(w, eps) / wa) / v[2],
                            ops.log(ops.maximum(h, eps) / ha) / v[3]], axis=-1)


def decode(deltas, anchors, variances=(1.0, 1.0, 1.0, 1.0)):
    """xyxy boxes from ``deltas`` (dx, dy, dw, dh) and xyxy ``anchors``; inverse of :func:`encode`.

    dw and dh are clipped at log(1000 / 16) before exp (torchvision's ``bbox_xform_clip``).
    """
    deltas = _as_float(deltas)
    anchors = ops.cast(anchors, deltas.dtype)
    dx, dy, dw, dh = ops.split(deltas, 4, axis=-1)
    xa, ya, wa, ha = _centre_form(anchors)
    v = [float(value) for value in variances]
    x, y = xa + dx * v[0] * wa, ya + dy * v[1] * ha
    w = wa * ops.exp(ops.minimum(dw * v[2], DELTA_CLIP))
    h = ha * ops.exp(ops.minimum(dh * v[3], DELTA_CLIP))
    return ops.concatenate([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)


def match_anchors(anchors, gt_boxes, gt_labels, positive_iou: float = 0.5, negative_iou: float = 0.4,
                  allow_low_quality: bool = True):
    """Assign ground truth to anchors (RetinaNet's rule); returns (matched_index, labels), each (..., A) int32.

    Args:
        anchors: (A, 4) xyxy.
        gt_boxes: (G, 4) or a padded batch (B, G, 4), xyxy, same units as ``anchors``.
        gt_labels: (G,) or (B, G) class ids; a negative label marks a padding row, which matches nothing.
        positive_iou: an anchor whose best IoU is >= this is positive.
        negative_iou: an anchor whose best IoU is < this is background; in between it is ignored.
        allow_low_quality: every gt box also gets its best anchor(s) (all ties, IoU > 0) as positives, as
            torchvision's ``allow_low_quality_matches``; unlike torchvision the anchor is matched to the gt
            box it is best for (the one with the highest IoU among those), so that box keeps it.

    Returns:
        ``matched_index``: the gt row of each positive anchor, -1 elsewhere. ``labels``: that row's class id
        for positives, :data:`IGNORE` (-1) or :data:`BACKGROUND` (-2) for the others.
    """
    if not negative_iou <= positive_iou:
        raise ValueError(f"negative_iou must be <= positive_iou ({positive_iou}); got {negative_iou}.")
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_labels = ops.cast(gt_labels, "int32")
    if gt_boxes.shape[-2] == 0:  # no gt rows at all: one padding row keeps the reductions defined
        gt_boxes = ops.zeros((*gt_boxes.shape[:-2], 1, 4), "float32")
        gt_labels = ops.full((*gt_labels.shape[:-1], 1), -1, "int32")
    valid = ops.expand_dims(gt_labels >= 0, -1)                              # (..., G, 1)
    overlaps = ops.where(valid, iou(gt_boxes, anchors), -1.0)                # (..., G, A)
    best_iou = ops.max(overlaps, axis=-2)
    matched = ops.cast(ops.argmax(overlaps, axis=-2), "int32")
    positive = best_iou >= positive_iou
    ignore = (best_iou >= negative_iou) & ~positive
    if allow_low_quality:
        highest = ops.max(overlaps, axis=-1, keepdims=True)                  # (..., G, 1)
        is_best = (overlaps == highest) & (highest > 0) & valid
        forced = ops.any(is_best, axis=-2)
        forced_gt = ops.cast(ops.argmax(ops.where(is_best, overlaps, -1.0), axis=-2), "int32")
        matched = ops.where(forced, forced_gt, matched)
        positive = positive | forced
        ignore = ignore & ~forced
    class_ids = ops.take_along_axis(gt_labels, matched, axis=-1) if len(gt_labels.shape) > 1 else \
        ops.take(gt_labels, matched)
    labels = ops.where(positive, class_ids, ops.where(ignore, IGNORE, BACKGROUND))
    return ops.where(positive, matched, -1), ops.cast(labels, "int32")


def gather_boxes(gt_boxes, matched_index):
    """The gt box (..., A, 4) of each anchor's ``matched_index`` (..., A) (rows with -1 give gt row 0)."""
    gt_boxes = ops.convert_to_tensor(gt_boxes)
    index = ops.maximum(ops.cast(matched_index, "int32"), 0)
    if len(gt_boxes.shape) == 2:
        return ops.take(gt_boxes, index, axis=0)
    index = ops.broadcast_to(ops.expand_dims(index, -1), (*ops.shape(index), 4))
    return ops.take_along_axis(gt_boxes, index, axis=-2)


def detection_targets(anchors, gt_boxes, gt_labels, variances=(1.0, 1.0, 1.0, 1.0), box_target: str = "deltas",
                      **match_kwargs):
    """Training targets for a dense detector: (labels (..., A), box_targets (..., A, 5 or 9)).

    ``labels`` is :func:`match_anchors`' (class id, IGNORE or BACKGROUND), the ``y_true`` of
    ``catalog.training.losses.FocalLoss``. ``box_target="deltas"``: ``box_targets`` is the :func:`encode` deltas
    of each anchor's gt box followed by that label, the ``y_true`` of ``SmoothL1``; ``"giou"``: the gt box
    (xyxy), the label and the anchor (xyxy), the ``y_true`` of ``GIoULoss`` on predicted deltas. Only positive
    anchors count in either.
    """
    if box_target not in ("deltas", "giou"):
        raise ValueError(f"box_target must be 'deltas' or 'giou'; got {box_target!r}.")
    matched, labels = match_anchors(anchors, gt_boxes, gt_labels, **match_kwargs)
    positive = ops.expand_dims(labels >= 0, -1)
    label_column = ops.cast(ops.expand_dims(labels, -1), "float32")
    if box_target == "giou":
        gt = ops.where(positive, _as_float(gather_boxes(gt_boxes, matched)), 0.0)
        anchor_columns = ops.broadcast_to(ops.cast(anchors, "float32"), ops.shape(gt))
        return labels, ops.concatenate([gt, label_column, anchor_columns], axis=-1)
    deltas = encode(gather_boxes(gt_boxes, matched), anchors, variances)
    deltas = ops.where(positive, deltas, 0.0)
    return labels, ops.concatenate([deltas, ops.cast(label_column, deltas.dtype)], axis=-1)



def batched_non_max_suppression(boxes, scores, labels, iou_threshold: float = 0.5, score_threshold: float = 0.05,
                                max_detections: int = 100, class_aware: bool = True):
    """Greedy NMS per image of a batch, in fixed shapes (fit for a Keras model, XLA and export).

    Args:
        boxes: (B, N, 4) xyxy; N must be static. scores: (B, N). labels: (B, N) class ids.
        iou_threshold: a box overlapping a higher-scored kept box by more than this is dropped.
        score_threshold: boxes scoring below this are dropped first.
        max_detections: the size of the outputs.
        class_aware: only boxes of the same label suppress each other (coordinate-offset trick).

    Returns:
        dict of ``boxes`` (B, D, 4), ``scores`` (B, D), ``labels`` (B, D) int32 and ``num_detections`` (B,)
        int32, D = max_detections, kept boxes first by descending score; padding rows are boxes 0, scores 0,
        labels -1.
    """
    boxes = ops.cast(boxes, "float32")
    scores = ops.cast(scores, "float32")
    labels = ops.cast(labels, "int32")
    n = boxes.shape[-2]
    if n is None:
        raise ValueError("boxes must have a static number of boxes (axis -2) for non_max_suppression.")
    if n < max_detections:  # pad so that every top_k below is defined; padding scores -1 never pass
        pad = max_detections - n
        boxes = ops.pad(boxes, ((0, 0), (0, pad), (0, 0)))
        scores = ops.pad(scores, ((0, 0), (0, pad)), constant_values=-1.0)
        labels = ops.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
        n = max_detections
    order = ops.argsort(-scores, axis=-1)
    scores = ops.take_along_axis(scores, order, axis=-1)
    labels = ops.take_along_axis(labels, order, axis=-1)
    boxes = ops.take_along_axis(boxes, ops.broadcast_to(ops.expand_dims(order, -1), ops.shape(boxes)), axis=-2)
    valid = scores >= score_threshold
    shifted = boxes
    if class_aware:  # boxes of different labels never overlap once each label has its own region
        extent = ops.max(ops.abs(boxes)) * 2 + 1
        shifted = boxes + ops.expand_dims(ops.cast(labels, "float32") * extent, -1)
    later = np.triu(np.ones((n, n), bool), k=1)                             # j after i in score order
    suppresses = (iou(shifted, shifted) > iou_threshold) & later            # (B, N, N): i can suppress j

    def step(i, suppressed):
        keep_i = ops.take(valid & ~suppressed, i, axis=1)                    # (B,)
        return suppressed | (ops.expand_dims(keep_i, -1) & ops.take(suppresses, i, axis=1))

    suppressed = ops.fori_loop(0, n, step, ops.zeros_like(valid))
    keep = valid & ~suppressed
    num = ops.minimum(ops.sum(ops.cast(keep, "int32"), axis=-1), max_detections)
    priority = ops.where(keep, n - ops.arange(n, dtype="int32"), 0)      # kept boxes first, in score order
    _, pick = ops.top_k(priority, max_detections)
    slot = ops.arange(max_detections, dtype="int32")[None, :] < ops.expand_dims(num, -1)
    out_boxes = ops.take_along_axis(boxes, ops.broadcast_to(ops.expand_dims(pick, -1),
                                                            (*ops.shape(pick), 4)), axis=-2)
    return {"boxes": ops.where(ops.expand_dims(slot, -1), out_boxes, 0.0),
            "scores": ops.where(slot, ops.take_along_axis(scores, pick, axis=-1), 0.0),
            "labels": ops.where(slot, ops.take_along_axis(labels, pick, axis=-1), -1),
            "num_detections": num}


def non_max_suppression(boxes, scores, labels, iou_threshold: float = 0.5, score_threshold: float = 0.05,
                        max_detections: int = 100, class_aware: bool = True):
    """:func:`batched_non_max_suppression` of one image: boxes (N, 4), scores (N,), labels (N,).

    Returns the same dict without the batch axis (``num_detections`` a scalar).
    """
    out = batched_non_max_suppression(ops.expand_dims(boxes, 0), ops.expand_dims(scores, 0),
                                      ops.expand_dims(labels, 0), iou_threshold, score_threshold,
                                      max_detections, class_aware)
    return {key: value[0] for key, value in out.items()}


@keras.saving.register_keras_serializable(package="catalog")
class NonMaxSuppression(keras.layers.Layer):
    """Detections from per-anchor boxes (B, N, 4) xyxy and class scores (B, N, K) (probabilities).

    The ``pre_nms_top_k`` highest (anchor, class) scores go through class-aware
    :func:`batched_non_max_suppression`; the output is its dict (``boxes``, ``scores``, ``labels``,
    ``num_detections``), the detection format ``catalog evaluate`` reads.
    """

    def __init__(self, iou_threshold: float = 0.5, score_threshold: float = 0.05, max_detections: int = 100,
                 pre_nms_top_k: int = 1000, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold!r}.")
        for key, value in (("max_detections", max_detections), ("pre_nms_top_k", pre_nms_top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer; got {value!r}.")
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.max_detections = max_detections
        self.pre_nms_top_k = pre_nms_top_k

    def call(self, boxes, scores):
        num_anchors, num_classes = scores.shape[-2], scores.shape[-1]
        if num_anchors is None or num_classes is None:
            raise ValueError(f"scores must have static anchor and class axes; got shape {scores.shape}.")
        flat = ops.reshape(scores, (-1, num_anchors * num_classes))
        k = min(self.pre_nms_top_k, num_anchors * num_classes)
        top_scores, index = ops.top_k(flat, k)
        anchor = index // num_classes
        top_boxes = ops.take_along_axis(boxes, ops.broadcast_to(ops.expand_dims(anchor, -1),
                                                                (*ops.shape(anchor), 4)), axis=-2)
        return batched_non_max_suppression(top_boxes, top_scores, index % num_classes, self.iou_threshold,
                                           self.score_threshold, self.max_detections)

    def compute_output_spec(self, boxes, scores):
        batch, d = boxes.shape[0], self.max_detections
        return {"boxes": keras.KerasTensor((batch, d, 4), "float32"),
                "scores": keras.KerasTensor((batch, d), "float32"),
                "labels": keras.KerasTensor((batch, d), "int32"),
                "num_detections": keras.KerasTensor((batch,), "int32")}

    def get_config(self):
        return {**super().get_config(), "iou_threshold": self.iou_threshold,
                "score_threshold": self.score_threshold, "max_detections": self.max_detections,
                "pre_nms_top_k": self.pre_nms_top_k}


# SSD default boxes (Liu et al. 2016), in the TF object-detection API's ``ssd_anchor_generator`` convention.
SSD_ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3)


def ssd_box_specs(num_layers: int, min_scale: float = 0.2, max_scale: float = 0.95,
                  aspect_ratios=SSD_ASPECT_RATIOS, interpolated_scale_aspect_ratio: float = 1.0,
                  reduce_boxes_in_lowest_layer: bool = True, scales=None) -> list[list[tuple[float, float]]]:
    """Per layer, the (scale, aspect_ratio) of each default box at a position (Liu et al. 2016, Sec. 2.2).

    The TF object-detection API's ``create_ssd_anchors``: scales s_k linear from ``min_scale`` to ``max_scale``
    over the layers (or the given ``scales``), then s_{num_layers} = 1; each layer has one box per aspect ratio
    at s_k, plus a box of scale sqrt(s_k s_{k+1}) and ratio ``interpolated_scale_aspect_ratio`` (SSD's extra
    square; none when that ratio is <= 0). With ``reduce_boxes_in_lowest_layer`` the first layer has just
    (0.1, 1), (s_0, 2), (s_0, 1/2). Aspect ratio is width / height.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer; got {num_layers!r}.")
    if scales:
        scales = [float(s) for s in scales]
        if len(scales) != num_layers:
            raise ValueError(f"scales must have one entry per layer ({num_layers}); got {len(scales)}.")
    elif num_layers == 1:
        scales = [float(min_scale)]
    else:
        scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)]
    if any(s <= 0 for s in scales) or any(float(r) <= 0 for r in aspect_ratios):
        raise ValueError(f"scales and aspect_ratios must be positive; got {scales} and {tuple(aspect_ratios)}.")
    scales = scales + [1.0]
    specs = []
    for layer, (scale, scale_next) in enumerate(zip(scales[:-1], scales[1:])):
        if layer == 0 and reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        boxes = [(scale, float(ratio)) for ratio in aspect_ratios]
        if interpolated_scale_aspect_ratio > 0:
            boxes.append((math.sqrt(scale * scale_next), float(interpolated_scale_aspect_ratio)))
        specs.append(boxes)
    return specs


def ssd_anchors(image_size, feature_sizes, min_scale: float = 0.2, max_scale: float = 0.95,
                aspect_ratios=SSD_ASPECT_RATIOS, interpolated_scale_aspect_ratio: float = 1.0,
                reduce_boxes_in_lowest_layer: bool = True, scales=None):
    """SSD default boxes of an image of ``image_size`` (height, width): (sum of h * w * boxes, 4) xyxy pixels.

    Layer k of size ``feature_sizes[k]`` = (h, w) has the boxes of :func:`ssd_box_specs` at the centres
    ((x + 0.5) W / w, (y + 0.5) H / h), so the grid spans the image whatever the network's stride (the TF API's
    ``MultipleGridAnchorGenerator`` and torchvision's ``DefaultBoxGenerator``); a box of scale s and ratio r is
    s * min(H, W) * sqrt(r) wide and s * min(H, W) / sqrt(r) high (square in pixels for r = 1, as the TF API
    scales its base size by the shorter side); boxes are not clipped to the image (the TF API's default).
    Ordered (y, x, box) within a layer, layers in order: a head's (B, h, w, boxes * K) output reshaped to
    (B, h * w * boxes, K) and concatenated over layers lines up with it.
    """
    height, width = (float(s) for s in tuple(image_size)[:2])
    sizes = [tuple(int(v) for v in size) for size in feature_sizes]
    if not sizes or any(len(size) != 2 or min(size) < 1 for size in sizes):
        raise ValueError(f"feature_sizes must be a non-empty list of (height, width) of positive integers; "
                         f"got {feature_sizes!r}.")
    specs = ssd_box_specs(len(sizes), min_scale, max_scale, aspect_ratios, interpolated_scale_aspect_ratio,
                          reduce_boxes_in_lowest_layer, scales)
    shorter = min(height, width)
    parts = []
    for (h, w), boxes in zip(sizes, specs):
        scale = np.asarray([s for s, _ in boxes], np.float64)
        root = np.sqrt(np.asarray([r for _, r in boxes], np.float64))
        half = np.stack([scale * shorter * root, scale * shorter / root], axis=-1) / 2     # (boxes, 2) w/2, h/2
        cy, cx = np.meshgrid((np.arange(h) + 0.5) * height / h, (np.arange(w) + 0.5) * width / w, indexing="ij")
        centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        parts.append(np.concatenate([centres - half, centres + half], axis=-1).reshape(-1, 4))
    return ops.convert_to_tensor(np.concatenate(parts, axis=0).astype(np.float32))
