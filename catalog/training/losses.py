"""Losses of dense detectors (RetinaNet, SSD-lite) in ``keras.ops``, registered for ``.keras`` files.

``y_true`` layout, as ``catalog.blocks.boxes.detection_targets`` builds it for A anchors and K classes:

- classification, :class:`FocalLoss`: ``y_true`` (B, A) (or (B, A, 1)) anchor labels: a class id >= 0 for a
  positive anchor, ``IGNORE`` (-1) for an anchor left out of the loss, ``BACKGROUND`` (-2) for a negative
  one (any other negative value counts as background too); ``y_pred`` (B, A, K) logits (or probabilities
  with ``from_logits=False``), one sigmoid per class, no background column.
- box regression, :class:`SmoothL1`: ``y_true`` (B, A, 5), the encoded targets (dx, dy, dw, dh) followed by
  the anchor label; ``y_pred`` (B, A, 4) predicted deltas. :class:`GIoULoss`: ``y_true`` (B, A, 5), the gt
  box xyxy followed by the anchor label; ``y_pred`` (B, A, 4) predicted (decoded) xyxy boxes. Both count
  positive anchors (label >= 0) only; with 9 columns (gt box, label, anchor box) ``GIoULoss`` decodes predicted
  deltas itself.
- classification with a background column, :class:`HardNegativeCrossEntropy` (SSD): ``y_true`` (B, A) as for
  ``FocalLoss``; ``y_pred`` (B, A, K + 1) logits, column 0 the background; softmax cross-entropy of the
  positives and of the hardest negatives, ``neg_pos_ratio`` per positive.

Every loss sums over an image's anchors and divides by that image's number of positive anchors (at least
1), then the usual Keras reduction averages over images: torchvision's RetinaNet normalization.
"""

from __future__ import annotations

import keras
from keras import ops

from catalog.blocks.boxes import IGNORE, decode, giou


def _per_image(values, labels, mask):
    """Sum of ``values`` (B, A) where ``mask`` over each image's anchors, divided by its positives (>= 1)."""
    batch_axes = tuple(range(1, len(values.shape)))
    positives = ops.sum(ops.cast(labels >= 0, values.dtype), axis=batch_axes)
    total = ops.sum(ops.where(mask, values, 0.0), axis=batch_axes)
    return total / ops.maximum(positives, 1.0)


def _labels(y_true, y_pred):
    """Anchor labels (B, A) from a (B, A) or (B, A, 1) ``y_true`` for a (B, A, K) ``y_pred``."""
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, -1)
    return y_true


@keras.saving.register_keras_serializable(package="catalog")
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss (Lin et al. 2017), -alpha_t (1 - p_t)^gamma log(p_t) summed over classes.

    Ignored anchors add nothing; the sum is normalized by the number of positive anchors per image (see the
    module docstring for ``y_true``). ``alpha=None`` drops the class-balancing weight.
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, from_logits: bool = True,
                 name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] or None; got {alpha!r}.")
        if float(gamma) < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma!r}.")
        self.alpha = None if alpha is None else float(alpha)
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels = _labels(y_true, y_pred)
        classes = ops.arange(y_pred.shape[-1], dtype=y_pred.dtype)
        target = ops.cast(ops.expand_dims(labels, -1) == classes, y_pred.dtype)
        if self.from_logits:
            prob = ops.sigmoid(y_pred)
            # log(1 + exp(x)) - x t, stable: max(x, 0) - x t + log1p(exp(-|x|))
            ce = ops.relu(y_pred) - y_pred * target + ops.log1p(ops.exp(-ops.abs(y_pred)))
        else:
            prob = ops.clip(y_pred, keras.config.epsilon(), 1.0 - keras.config.epsilon())
            ce = -(target * ops.log(prob) + (1.0 - target) * ops.log(1.0 - prob))
        p_t = prob * target + (1.0 - prob) * (1.0 - target)
        loss = ce * (1.0 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1.0 - self.alpha) * (1.0 - target))
        return _per_image(ops.sum(loss, axis=-1), labels, labels != IGNORE)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="catalog")
class SmoothL1(keras.losses.Loss):
    """Smooth L1 (Huber / beta) on positive anchors' box deltas, summed over the 4 coordinates.

    0.5 d² / beta where |d| < beta, |d| - 0.5 beta elsewhere; ``beta=0`` is plain L1 (torchvision's RetinaNet
    default); the default 1/9 is Detectron's RetinaNet (0.11), SSD uses 1.
    """

    def __init__(self, beta: float = 1.0 / 9, name: str = "smooth_l1", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(beta) < 0:
            raise ValueError(f"beta must be >= 0; got {beta!r}.")
        self.beta = float(beta)

    def call(self, y_true, y_pred):
        labels = y_true[..., 4]
        diff = ops.abs(y_true[..., :4] - y_pred)
        if self.beta > 0:
            diff = ops.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)
        return _per_image(ops.sum(diff, axis=-1), labels, labels >= 0)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="catalog")
class GIoULoss(keras.losses.Loss):
    """1 - GIoU (Rezatofighi et al. 2019) between predicted and gt xyxy boxes of positive anchors.

    ``y_pred`` holds decoded xyxy boxes, or, when ``y_true`` has 9 columns (gt box, label, anchor box: the
    targets of ``detection_targets(..., box_target="giou")``), deltas decoded here against those anchors with
    ``variances``, so a dense detector trains its delta output with GIoU.
    """

    def __init__(self, variances=(1.0, 1.0, 1.0, 1.0), name: str = "giou_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.variances = tuple(float(v) for v in variances)

    def call(self, y_true, y_pred):
        labels = y_true[..., 4]
        if y_true.shape[-1] == 9:
            y_pred = decode(y_pred, y_true[..., 5:], self.variances)
        loss = 1.0 - giou(y_pred, y_true[..., :4], aligned=True)
        return _per_image(loss, labels, labels >= 0)

    def get_config(self):
        return {**super().get_config(), "variances": list(self.variances)}


@keras.saving.register_keras_serializable(package="catalog")
class HardNegativeCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy with hard-negative mining (Liu et al. 2016, SSD, Sec. 2.2 "Hard negative mining").

    ``y_true`` (B, A) (or (B, A, 1)) anchor labels as the module docstring says; ``y_pred`` (B, A, K + 1)
    logits whose column 0 is the background: a positive anchor's target is column label + 1, a background
    one's column 0, an ignored one (``IGNORE``) counts nowhere. Per image, every positive is kept, and of the
    negatives the ``max(neg_pos_ratio * positives, min_negatives)`` with the highest cross-entropy (the TF
    object-detection API's ``max_negatives_per_positive`` and ``min_negatives_per_image``; so an image
    without positives still learns from its ``min_negatives`` hardest negatives); the sum is divided by the
    image's positives (at least 1). The selection ranks each negative's loss by a double argsort, fixed
    shapes only (XLA, TensorFlow and JAX); it carries no gradient, the kept losses do.
    """

    def __init__(self, neg_pos_ratio: float = 3.0, min_negatives: int = 3, name: str = "hard_negative_ce",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if float(neg_pos_ratio) < 0:
            raise ValueError(f"neg_pos_ratio must be >= 0; got {neg_pos_ratio!r}.")
        if isinstance(min_negatives, bool) or not isinstance(min_negatives, int) or min_negatives < 0:
            raise ValueError(f"min_negatives must be an integer >= 0; got {min_negatives!r}.")
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.min_negatives = min_negatives

    def call(self, y_true, y_pred):
        labels = ops.cast(_labels(y_true, y_pred), "int32")
        positive = labels >= 0
        negative = (labels < 0) & (labels != IGNORE)
        target = ops.where(positive, labels + 1, 0)
        log_probs = ops.log_softmax(y_pred, axis=-1)
        ce = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(target, -1), axis=-1), -1)  # (B, A)
        positives = ops.sum(ops.cast(positive, ce.dtype), axis=-1, keepdims=True)
        budget = ops.maximum(ops.floor(self.neg_pos_ratio * positives), float(self.min_negatives))
        negative_ce = ops.where(negative, ops.stop_gradient(ce), -1.0)  # ce >= 0: non-negatives rank last
        rank = ops.argsort(ops.argsort(-negative_ce, axis=-1), axis=-1)  # 0 = hardest negative
        hard = negative & (ops.cast(rank, ce.dtype) < budget)
        total = ops.sum(ops.where(positive | hard, ce, 0.0), axis=-1)
        return total / ops.maximum(ops.squeeze(positives, -1), 1.0)

    def get_config(self):
        return {**super().get_config(), "neg_pos_ratio": self.neg_pos_ratio, "min_negatives": self.min_negatives}
