"""Losses of dense detectors (RetinaNet, SSD-lite) in ``keras.ops``, registered for ``.keras`` files.

``y_true`` layout, as ``catalog.blocks.boxes.detection_targets`` builds it for A anchors and K classes:

- classification, :class:`FocalLoss`: ``y_true`` (B, A) (or (B, A, 1)) anchor labels: a class id >= 0 for a
  positive anchor, ``IGNORE`` (-1) for an anchor left out of the loss, ``BACKGROUND`` (-2) for a negative
  one (any other negative value counts as background too); ``y_pred`` (B, A, K) logits (or probabilities
  with ``from_logits=False``), one sigmoid per class, no background column.
- box regression, :class:`SmoothL1`: ``y_true`` (B, A, 5), the encoded targets (dx, dy, dw, dh) followed by
  the anchor label; ``y_pred`` (B, A, 4) predicted deltas. :class:`GIoULoss`: ``y_true`` (B, A, 5), the gt
  box xyxy followed by the anchor label; ``y_pred`` (B, A, 4) predicted (decoded) xyxy boxes. Both count
  positive anchors (label >= 0) only.

Every loss sums over an image's anchors and divides by that image's number of positive anchors (at least
1), then the usual Keras reduction averages over images: torchvision's RetinaNet normalization.
"""

from __future__ import annotations

import keras
from keras import ops

from catalog.blocks.boxes import IGNORE, giou


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
    """1 - GIoU (Rezatofighi et al. 2019) between predicted and gt xyxy boxes of positive anchors."""

    def __init__(self, name: str = "giou_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = y_true[..., 4]
        loss = 1.0 - giou(y_pred, y_true[..., :4], aligned=True)
        return _per_image(loss, labels, labels >= 0)
