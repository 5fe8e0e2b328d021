"""Classification metrics: top-k accuracy, per-class precision/recall/F1, confusion matrix, ROC and PR.

Scores are (N, C) probabilities or logits (``from_logits=True`` applies a softmax first; accuracies do
not depend on it, the curves' thresholds do); labels are (N,) integers or (N, C) one-hot rows.
Conventions are those of keras.metrics and scikit-learn: a label is in the top k when fewer than k
classes score strictly higher (``tf.math.in_top_k``); a ratio with a zero denominator is 0; macro
averages are unweighted means over all classes, weighted ones use the support; one-vs-rest ROC AUC is
the trapezoidal area, average precision the step sum sum_n (R_n - R_{n-1}) P_n (undefined, NaN, for a
class without positives).
"""

from __future__ import annotations

import numpy as np


def softmax(logits, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _labels(y_true, num_classes: int | None = None) -> np.ndarray:
    t = np.asarray(y_true)
    if t.ndim == 2 and t.shape[1] > 1 and (num_classes is None or t.shape[1] == num_classes):
        t = np.argmax(t, axis=1)
    t = t.reshape(-1)
    if t.size and not np.all(np.equal(np.mod(t, 1), 0)):
        raise ValueError("y_true must hold integer class labels or one-hot rows.")
    return t.astype(np.int64)


def _scores(y_pred) -> np.ndarray:
    s = np.asarray(y_pred, np.float64)
    if s.ndim != 2:
        raise ValueError(f"y_pred must be an (N, classes) array of scores; got shape {s.shape}.")
    return s


def topk_accuracy(y_true, y_pred, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores (ties count as in)."""
    s = _scores(y_pred)
    t = _labels(y_true, s.shape[1])
    if len(t) != len(s):
        raise ValueError(f"y_true and y_pred must have the same number of samples; got {len(t)} and {len(s)}.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    if len(t) == 0:
        return float("nan")
    return float(np.mean(_in_top_k(t, s, k)))


def _in_top_k(t: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    target = s[np.arange(len(t)), t]
    return np.sum(s > target[:, None], axis=1) < k


def confusion_matrix(y_true, y_pred_labels, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows the true class, columns the predicted class."""
    t = _labels(y_true)
    p = np.asarray(y_pred_labels).reshape(-1).astype(np.int64)
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes}); got {v.min()}..{v.max()}.")
    return np.bincount(num_classes * t + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _binary_curve(positive: np.ndarray, score: np.ndarray):
    """Cumulative true/false positives at each distinct threshold, scores descending."""
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]   # last index of each distinct score
    tps = np.cumsum(positive)[last].astype(np.float64)
    fps = (last + 1) - tps
    return tps, fps, score[last]


def roc_curve(positive, score):
    """One binary ROC curve: (fpr, tpr, thresholds), starting at (0, 0), every distinct threshold kept."""
    tps, fps, thr = _binary_curve(np.asarray(positive, bool), np.asarray(score, np.float64))
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def pr_curve(positive, score):
    """One binary precision-recall curve: (precision, recall, thresholds) by decreasing threshold."""
    tps, fps, thr = _binary_curve(np.asarray(positive, bool), np.asarray(score, np.float64))
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / tps[-1] if len(tps) and tps[-1] > 0 else np.full_like(tps, np.nan)
    return precision, recall, thr


def _auc(x, y) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)) if len(x) > 1 else float("nan")


def _average_precision(precision, recall) -> float:
    if len(recall) == 0 or not np.isfinite(recall[-1]):
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _prf(cm: np.ndarray) -> dict:
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1).astype(np.float64), cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum()
    avg = lambda v, w=None: float(np.average(v, weights=w)) if (w is None or w.sum() > 0) else 0.0  # noqa: E731
    return {
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)},
        "macro": {"precision": avg(precision), "recall": avg(recall), "f1": avg(f1)},
        "weighted": {"precision": avg(precision, support), "recall": avg(recall, support), "f1": avg(f1, support)},
        "accuracy": float(tp.sum() / total) if total else float("nan"),
    }


def classification_report(y_true, y_pred, class_names=None, from_logits: bool = False,
                          top_k=(1, 5), curves: bool = True) -> dict:
    """Every classification number of one evaluation.

    Args:
        y_true: (N,) integer labels or (N, C) one-hot rows.
        y_pred: (N, C) scores (probabilities, or logits with ``from_logits=True``), or (N,) predicted
            labels (then no top-k beyond 1 and no curves).
        class_names: C names (default "0".."C-1").
        top_k: the k of the top-k accuracies reported as ``top{k}`` (k above C is skipped).
        curves: compute the one-vs-rest ROC and PR curves.

    Returns:
        ``{"num_samples", "class_names", "accuracy", "top_k": {"top1", "top5", ...}, "per_class":
        {"precision", "recall", "f1", "support"}, "macro", "weighted", "confusion_matrix"}``, plus
        ``"roc": {"fpr", "tpr", "auc"}``, ``"macro_auc"``, ``"pr": {"precision", "recall", "ap"}`` and
        ``"mean_ap"`` when curves are computed.
    """
    pred = np.asarray(y_pred)
    if pred.ndim == 1:
        num_classes = len(class_names) if class_names is not None else int(max(pred.max(initial=0),
                                                                                _labels(y_true).max(initial=0))) + 1
        labels, scores = pred.astype(np.int64), None
    else:
        scores = softmax(pred) if from_logits else _scores(pred)
        num_classes = scores.shape[1]
        labels = np.argmax(scores, axis=1)
    t = _labels(y_true, num_classes)
    if len(t) != len(labels):
        raise ValueError(f"y_true and y_pred must have the same number of samples; got {len(t)} and {len(labels)}.")
    names = [str(i) for i in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names must have {num_classes} entries; got {len(names)}.")
    cm = confusion_matrix(t, labels, num_classes)
    report = {"num_samples": int(len(t)), "class_names": names, **_prf(cm), "confusion_matrix": cm}
    report["top_k"] = {f"top{k}": (topk_accuracy(t, scores, k) if scores is not None else report["accuracy"])
                       for k in top_k if k <= num_classes and (scores is not None or k == 1)}
    if curves and scores is not None:
        roc = {"fpr": [], "tpr": [], "auc": np.full(num_classes, np.nan)}
        pr = {"precision": [], "recall": [], "ap": np.full(num_classes, np.nan)}
        for c in range(num_classes):  # one vectorized curve per class
            positive = t == c
            fpr, tpr, _ = roc_curve(positive, scores[:, c])
            precision, recall, _ = pr_curve(positive, scores[:, c])
            roc["fpr"].append(fpr)
            roc["tpr"].append(tpr)
            pr["precision"].append(precision)
            pr["recall"].append(recall)
            if positive.any() and not positive.all():
                roc["auc"][c] = _auc(fpr, tpr)
            if positive.any():
                pr["ap"][c] = _average_precision(precision, recall)
        report.update(roc=roc, pr=pr,
                      macro_auc=float(np.nanmean(roc["auc"])) if np.isfinite(roc["auc"]).any() else float("nan"),
                      mean_ap=float(np.nanmean(pr["ap"])) if np.isfinite(pr["ap"]).any() else float("nan"))
    return report


class ClassificationMetrics:
    """Streaming classification metrics: ``update(y_true, y_pred)`` per batch, ``result()`` at the end.

    Holds the confusion matrix and the top-k hit counts (bounded memory); with ``curves=True`` it also
    keeps the scores (N x C float32) for the ROC and PR curves.
    """

    def __init__(self, num_classes: int, class_names=None, from_logits: bool = False, top_k=(1, 5),
                 curves: bool = True):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
        self.num_classes, self.class_names = int(num_classes), class_names
        self.from_logits, self.top_k, self.curves = from_logits, tuple(top_k), curves
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes,) * 2, np.int64)
        self.hits = {k: 0 for k in self.top_k if k <= self.num_classes}
        self.count = 0
        self._labels, self._scores = [], []

    def update(self, y_true, y_pred) -> None:
        scores = softmax(y_pred) if self.from_logits else _scores(y_pred)
        if scores.shape[1] != self.num_classes:
            raise ValueError(f"y_pred must have {self.num_classes} columns; got {scores.shape[1]}.")
        t = _labels(y_true, self.num_classes)
        self.confusion += confusion_matrix(t, np.argmax(scores, axis=1), self.num_classes)
        for k in self.hits:
            self.hits[k] += int(np.sum(_in_top_k(t, scores, k)))
        self.count += len(t)
        if self.curves:
            self._labels.append(t)
            self._scores.append(scores.astype(np.float32))

    def result(self) -> dict:
        if self.curves and self._scores:
            out = classification_report(np.concatenate(self._labels), np.concatenate(self._scores).astype(np.float64),
                                        self.class_names, top_k=tuple(self.hits))
        else:
            names = self.class_names or [str(i) for i in range(self.num_classes)]
            out = {"num_samples": self.count, "class_names": [str(n) for n in names], **_prf(self.confusion),
                   "confusion_matrix": self.confusion.copy()}
        out["top_k"] = {f"top{k}": (h / self.count if self.count else float("nan")) for k, h in self.hits.items()}
        return out


__all__ = ["topk_accuracy", "classification_report", "confusion_matrix", "roc_curve", "pr_curve",
           "ClassificationMetrics", "softmax"]
