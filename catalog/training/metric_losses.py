"""Metric-learning losses in ``keras.ops``, registered for ``.keras`` files: contrastive and triplet with mining.

- :class:`ContrastiveLoss` (Hadsell, Chopra and LeCun 2006, "Dimensionality Reduction by Learning an Invariant
  Mapping"): ``y_true`` (P,) or (P, 1), 1 for a pair of the same label and 0 otherwise; ``y_pred`` (P,) or (P, 1)
  the pair's distance D. Per pair ``same * D^2 / 2 + (1 - same) * max(0, margin - D)^2 / 2``, averaged over pairs.
- :class:`TripletLoss`: ``y_true`` (B,) (or (B, 1)) integer labels, ``y_pred`` (B, E) embeddings; triplets are
  mined inside the batch on Euclidean distances d, each scored ``max(0, d(a, p) - d(a, n) + margin)`` for an
  anchor a, a positive p (same label, p != a) and a negative n (another label):

  - ``batch_hard`` (Hermans, Beyer and Leibe 2017, "In Defense of the Triplet Loss for Person
    Re-Identification"): per anchor, its farthest positive and its nearest negative; the mean over anchors
    that have a positive and a negative.
  - ``semi_hard`` (Schroff, Kalenichenko and Philbin 2015, FaceNet): per (anchor, positive) pair, the nearest
    negative farther than the positive (d(a, p) < d(a, n): semi-hard, or easy); when there is none, the
    farthest negative (TensorFlow Addons' ``triplet_semihard_loss`` rule); the mean over such pairs.
  - ``all`` (the batch-all loss of Hermans et al.; the default): the mean over every valid triplet, easy ones
    included. From scratch on generated shapes it trained where batch-hard and semi-hard collapsed the embeddings
    (see :func:`catalog.models.embedding.embedding_recipe`).

Both losses return per-example shares (pairs; anchors) whose batch mean is the loss, so Keras' default
``sum_over_batch_size`` reduction gives it and the distributed loss scaling applies. Computation is float32.
"""

from __future__ import annotations

import keras
from keras import ops

MINING = ("all", "batch_hard", "semi_hard")
_FAR = 1e9  # a distance no real pair reaches (unit embeddings lie within 2 of each other)


def _check_margin(margin):
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise ValueError(f"margin must be a non-negative number; got {margin!r}.")
    return float(margin)


def safe_norm(squared):
    """sqrt of non-negative values with a zero (not NaN) gradient at 0."""
    squared = ops.maximum(squared, 0.0)
    positive = squared > 0.0
    return ops.where(positive, ops.sqrt(ops.where(positive, squared, 1.0)), 0.0)


def pairwise_distances(embeddings):
    """(B, B) Euclidean distances of the rows of ``embeddings`` (B, E), from the Gram matrix; the diagonal is 0."""
    e = ops.cast(embeddings, "float32")
    sq = ops.sum(ops.square(e), axis=1)
    d2 = ops.expand_dims(sq, 1) - 2.0 * ops.matmul(e, ops.transpose(e)) + ops.expand_dims(sq, 0)
    off_diagonal = 1.0 - ops.eye(ops.shape(e)[0], dtype="float32")
    return safe_norm(d2 * off_diagonal)


@keras.saving.register_keras_serializable(package="catalog")
class ContrastiveLoss(keras.losses.Loss):
    """Contrastive loss (Hadsell et al. 2006) on pair distances: same * D^2 / 2 + (1 - same) * max(0, m - D)^2 / 2.

    ``y_true``: 1 for a pair of one label, 0 otherwise; ``y_pred``: the pair's distance (see the module docstring).
    """

    def __init__(self, margin: float = 1.0, name: str = "contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = _check_margin(margin)

    def call(self, y_true, y_pred):
        d = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
        same = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        return 0.5 * (same * ops.square(d) + (1.0 - same) * ops.square(ops.relu(self.margin - d)))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def contrastive_loss(margin: float = 1.0) -> ContrastiveLoss:
    """The contrastive loss of Hadsell et al. 2006 with ``margin`` (see :class:`ContrastiveLoss`)."""
    return ContrastiveLoss(margin)


def _masks(y_true, batch):
    labels = ops.reshape(y_true, (-1,))
    same = ops.expand_dims(labels, 1) == ops.expand_dims(labels, 0)
    not_self = ops.logical_not(ops.cast(ops.eye(batch), "bool"))
    return ops.logical_and(same, not_self), ops.logical_not(same)


def _shares(per_anchor, count, batch):
    """Per-anchor values whose mean over the batch is ``sum(per_anchor) / max(count, 1)``."""
    return per_anchor * ops.cast(batch, "float32") / ops.maximum(ops.cast(count, "float32"), 1.0)


@keras.saving.register_keras_serializable(package="catalog")
class TripletLoss(keras.losses.Loss):
    """Triplet loss with in-batch mining (``batch_hard``, ``semi_hard`` or ``all``) on class labels and embeddings.

    See the module docstring for the mining rules and the averaging; ``margin`` is on Euclidean distances.
    """

    def __init__(self, margin: float = 0.2, mining: str = "all", name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = _check_margin(margin)
        if mining not in MINING:
            raise ValueError(f"mining must be one of {', '.join(MINING)}; got {mining!r}.")
        self.mining = mining

    def call(self, y_true, y_pred):
        batch = ops.shape(y_pred)[0]
        d = pairwise_distances(y_pred)
        pos, neg = _masks(y_true, batch)
        has_neg = ops.any(neg, axis=1)
        if self.mining == "batch_hard":
            hardest_pos = ops.max(ops.where(pos, d, 0.0), axis=1)
            hardest_neg = ops.min(ops.where(neg, d, _FAR), axis=1)
            valid = ops.logical_and(ops.any(pos, axis=1), has_neg)
            loss = ops.where(valid, ops.relu(hardest_pos - hardest_neg + self.margin), 0.0)
            return _shares(loss, ops.sum(ops.cast(valid, "int32")), batch)
        d_ap = ops.expand_dims(d, 2)             # [a, p, 1]
        d_an = ops.expand_dims(d, 1)             # [a, 1, n]
        neg_n = ops.expand_dims(neg, 1)          # [a, 1, n]
        if self.mining == "semi_hard":
            farther = ops.logical_and(neg_n, d_an > d_ap)                                   # [a, p, n]
            nearest_farther = ops.min(ops.where(farther, d_an, _FAR), axis=2)               # [a, p]
            farthest = ops.max(ops.where(neg, d, -_FAR), axis=1, keepdims=True)             # [a, 1]
            chosen = ops.where(ops.any(farther, axis=2), nearest_farther, farthest)
            valid = ops.logical_and(pos, ops.expand_dims(has_neg, 1))                       # [a, p]
            loss = ops.where(valid, ops.relu(d - chosen + self.margin), 0.0)
            return _shares(ops.sum(loss, axis=1), ops.sum(ops.cast(valid, "int32")), batch)
        valid = ops.logical_and(ops.expand_dims(pos, 2), neg_n)                            # [a, p, n]
        loss = ops.where(valid, ops.relu(d_ap - d_an + self.margin), 0.0)
        return _shares(ops.sum(loss, axis=(1, 2)), ops.sum(ops.cast(valid, "int32")), batch)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "mining": self.mining}
