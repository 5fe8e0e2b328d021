"""The segmentation loss: per-pixel cross-entropy from logits with an ignore label, Dice and focal options.

Targets are label maps (B, H, W) (or (B, H, W, 1)) of class indices, ``ignore_index`` (255, VOC's border
label) where a pixel is not scored; predictions are logits (B, H, W, C) at the same size.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="catalog")
class SegmentationCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy over the pixels not labelled ``ignore_index`` (torchvision's segmentation
    reference: ``CrossEntropyLoss(ignore_index=255)``, the mean over the batch's scored pixels).

    Options: ``focal_gamma`` > 0 weighs each pixel's term by (1 - p_t)^gamma (Lin et al. 2017, focal loss);
    ``dice_weight`` > 0 adds that multiple of the soft Dice loss (Milletari et al. 2016, V-Net), 1 - the mean
    over classes of 2|P.Y| / (|P| + |Y|) on the scored pixels' softmax probabilities and one-hot labels.
    ``weight`` scales the whole loss (0.5 for torchvision's auxiliary head, where a dict loss cannot carry
    ``loss_weights``). A batch without a scored pixel gives 0.

    Args:
        ignore_index: the label of pixels that contribute nothing (None: score every pixel).
        dice_weight: weight of the Dice term.
        focal_gamma: focusing parameter (0: plain cross-entropy).
        weight: a factor on the loss.
    """

    def __init__(self, ignore_index: int | None = 255, dice_weight: float = 0.0, focal_gamma: float = 0.0,
                 weight: float = 1.0, name: str = "segmentation_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        for argument, value in (("dice_weight", dice_weight), ("focal_gamma", focal_gamma), ("weight", weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{argument} must be a non-negative number; got {value!r}.")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"ignore_index must be an integer label or None; got {ignore_index!r}.")
        self.ignore_index = ignore_index
        self.dice_weight = float(dice_weight)
        self.focal_gamma = float(focal_gamma)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(logits.shape):
            labels = ops.squeeze(labels, axis=-1)
        num_classes = logits.shape[-1]
        valid = ops.ones_like(labels, dtype="bool") if self.ignore_index is None else ops.not_equal(
            labels, self.ignore_index)
        labels = ops.where(valid, labels, ops.zeros_like(labels))
        mask = ops.cast(valid, "float32")
        count = ops.maximum(ops.sum(mask), 1.0)
        log_probs = ops.log_softmax(logits, axis=-1)
        one_hot = ops.one_hot(labels, num_classes, dtype="float32")
        log_p_true = ops.sum(log_probs * one_hot, axis=-1)
        terms = -log_p_true
        if self.focal_gamma:
            terms = terms * ops.power(1.0 - ops.exp(log_p_true), self.focal_gamma)
        loss = ops.sum(terms * mask) / count
        if self.dice_weight:
            probs = ops.exp(log_probs) * mask[..., None]
            truth = one_hot * mask[..., None]
            axes = tuple(range(len(probs.shape) - 1))
            overlap = ops.sum(probs * truth, axis=axes)
            total = ops.sum(probs, axis=axes) + ops.sum(truth, axis=axes)
            dice = 1.0 - ops.mean((2.0 * overlap + 1.0) / (total + 1.0))
            loss = loss + self.dice_weight * dice
        return self.weight * loss

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index, "dice_weight": self.dice_weight,
                "focal_gamma": self.focal_gamma, "weight": self.weight}
