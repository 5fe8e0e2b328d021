"""Semantic-segmentation metrics from an accumulated confusion matrix (one bincount per update).

IoU_c = TP / (TP + FP + FN); mIoU is the mean over classes present in prediction or ground truth;
frequency-weighted IoU weights IoU_c by the class's share of ground-truth pixels; pixel accuracy is
trace / total; Dice_c = 2 TP / (2 TP + FP + FN). Pixels whose label is ``ignore_index`` are skipped.
"""

from __future__ import annotations

import numpy as np


class SegmentationMetrics:
    """Streaming segmentation metrics: ``update(y_true, y_pred)`` per batch, ``result()`` at the end.

    Args:
        num_classes: number of classes; labels are 0..num_classes-1.
        ignore_index: a ground-truth label to skip (e.g. 255 for VOC's borders), or None.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, y_true, y_pred) -> None:
        """Add a batch: label maps of equal shape, or ``y_pred`` scores with a trailing class axis."""
        t = np.asarray(y_true)
        p = np.asarray(y_pred)
        if p.ndim == t.ndim + 1 and p.shape[-1] == self.num_classes:
            p = np.argmax(p, axis=-1)
        if t.shape != p.shape:
            raise ValueError(f"y_true and y_pred must be label maps of the same shape (or y_pred with a "
                             f"trailing axis of {self.num_classes} scores); got {t.shape} and {p.shape}.")
        t, p = t.reshape(-1).astype(np.int64), p.reshape(-1).astype(np.int64)
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            t, p = t[keep], p[keep]
        n = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= n):
            raise ValueError(f"y_true labels must lie in [0, {n}) or equal ignore_index; got {t.min()}..{t.max()}.")
        if p.size and (p.min() < 0 or p.max() >= n):
            raise ValueError(f"y_pred labels must lie in [0, {n}); got {p.min()}..{p.max()}.")
        self.confusion += np.bincount(n * t + p, minlength=n * n).reshape(n, n)

    def result(self) -> dict:
        """``iou``, ``dice`` (per class; NaN for classes absent from both), ``miou``, ``mean_dice``,
        ``fwiou``, ``pixel_accuracy``, ``mean_accuracy`` and the ``confusion_matrix`` (rows: truth)."""
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        truth, pred = cm.sum(axis=1), cm.sum(axis=0)
        union = truth + pred - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            dice = np.where(truth + pred > 0, 2 * tp / (truth + pred), np.nan)
            acc = np.where(truth > 0, tp / truth, np.nan)
        total = cm.sum()
        present = np.isfinite(iou)
        freq = truth / total if total else truth
        return {
            "iou": iou, "dice": dice,
            "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
            "mean_dice": float(np.mean(dice[present])) if present.any() else float("nan"),
            "fwiou": float(np.sum(freq[truth > 0] * iou[truth > 0])) if total else float("nan"),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "mean_accuracy": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
            "confusion_matrix": self.confusion.copy(),
        }


def segmentation_metrics(y_true, y_pred, num_classes: int, ignore_index: int | None = None) -> dict:
    """One-shot :class:`SegmentationMetrics` over whole arrays."""
    metrics = SegmentationMetrics(num_classes, ignore_index)
    metrics.update(y_true, y_pred)
    return metrics.result()


__all__ = ["SegmentationMetrics", "segmentation_metrics"]
