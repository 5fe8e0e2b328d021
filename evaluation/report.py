"""Evaluation reports: ``report.json`` (every number), ``report.md`` and a self-contained ``report.html``.

The HTML embeds its plots as base64 PNGs (matplotlib, Agg backend): confusion matrix, PR and ROC curves
for classification; per-class PR curves for detection; per-class IoU bars for segmentation; and a grid of
samples (input, prediction, ground truth) for every task. Classification reports with samples also show
the misclassified examples the caller found across the whole run (``samples["misclassified"]``, collected
with :class:`MisclassifiedCollector`), each titled "true → predicted" with its confidence. With a training
``history`` the report gets a "Training" section (loss, metric and learning-rate curves against epoch and a
per-epoch table); ``notes`` (sentences the reader must see) head every file. Every text that comes from the
data (class names, titles, settings, notes) is HTML-escaped; nothing is fetched when the page opens.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os

import numpy as np

TASKS = ("classification", "detection", "segmentation", "restoration", "embedding", "generation")
MAX_MISCLASSIFIED = 16  # images in the misclassified grid


def to_jsonable(value):
    """Arrays to lists, NumPy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


# ------------------------------------------------------------------------------------------ plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plain(text) -> str:
    """Text for matplotlib with mathtext switched off ('$' would start a formula)."""
    return str(text).replace("$", r"\$")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_confusion_matrix(cm, class_names) -> str:
    plt = _pyplot()
    cm = np.asarray(cm)
    n = len(class_names)
    size = min(2.5 + 0.45 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), [_plain(c) for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(n), [_plain(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        top = cm.max() if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    ax.set_title("Confusion matrix")
    return _png(fig)


def plot_curves(xs, ys, class_names, xlabel, ylabel, title, values=None, value_name="") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, (x, y, name) in enumerate(zip(xs, ys, class_names)):
        x, y = np.asarray(x, float), np.asarray(y, float)
        if x.size == 0 or not np.isfinite(x).any():
            continue
        label = _plain(name)
        if values is not None and np.isfinite(values[i]):
            label += f" ({value_name} {values[i]:.3f})"
        ax.plot(x, y, label=label, lw=1.3)
    if ylabel == "true positive rate":
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
    if len(class_names) <= 20:
        ax.legend(fontsize=7, loc="best")
    return _png(fig)


def plot_bars(values, class_names, ylabel, title) -> str:
    plt = _pyplot()
    values = np.nan_to_num(np.asarray(values, float), nan=0.0)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(values) + 2), 4))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), [_plain(c) for c in class_names], rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel=ylabel, title=title)
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
    return _png(fig)


def _show(ax, image):
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = img.astype(float)
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    ax.imshow(img.squeeze(), cmap="gray" if img.ndim == 2 or img.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_boxes(ax, boxes, labels, class_names, scores=None, color="lime"):
    from matplotlib.patches import Rectangle

    for k, (box, lab) in enumerate(zip(np.asarray(boxes, float).reshape(-1, 4), np.asarray(labels).reshape(-1))):
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.2))
        name = class_names[int(lab)] if 0 <= int(lab) < len(class_names) else str(lab)
        text = _plain(name) + (f" {scores[k]:.2f}" if scores is not None else "")
        ax.text(x1, y1, text, color="black", fontsize=6, va="bottom",
                bbox=dict(facecolor=color, alpha=0.7, pad=0.5, lw=0))


#: Detections drawn in the sample images: those scoring at least this, at most ``MAX_SHOWN_DETECTIONS`` each
#: (the metrics count every detection; a picture of a hundred low-score boxes shows nothing).
SHOWN_SCORE = 0.3
MAX_SHOWN_DETECTIONS = 10


def _shown_detections(prediction: dict) -> dict:
    scores = prediction.get("scores")
    if scores is None:
        return prediction
    scores = np.asarray(scores, float)
    keep = np.argsort(-scores, kind="stable")[:MAX_SHOWN_DETECTIONS]
    keep = keep[scores[keep] >= SHOWN_SCORE]
    return {"boxes": np.asarray(prediction["boxes"], float).reshape(-1, 4)[keep],
            "labels": np.asarray(prediction["labels"]).reshape(-1)[keep], "scores": scores[keep]}


def plot_samples(task: str, samples: dict, class_names) -> str:
    """A grid of samples: inputs with predicted/true labels (classification) or input | prediction |
    ground truth columns (detection boxes in xyxy pixels: the predictions scoring at least ``SHOWN_SCORE``,
    the ``MAX_SHOWN_DETECTIONS`` best; segmentation masks)."""
    plt = _pyplot()
    images = samples["images"]
    n = len(images)
    if task == "classification":
        cols = min(n, 6)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.3 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for i in range(n):
            ax = axes.flat[i]
            _show(ax, images[i])
            p, t = int(samples["predictions"][i]), int(samples["ground_truth"][i])
            conf = samples.get("confidences")
            conf = f" ({float(conf[i]):.2f})" if conf is not None else ""
            ax.set_title(f"pred: {_name(class_names, p)}{conf}\ntrue: {_name(class_names, t)}", fontsize=8,
                         color="green" if p == t else "red")
            ax.axis("on")
        return _png(fig)
    fig, axes = plt.subplots(n, 3, figsize=(6.5, 2.2 * n), squeeze=False)
    titles = ("input", "output", "target") if task == "restoration" else ("input", "prediction", "ground truth")
    for i in range(n):
        for j, title in enumerate(titles):
            ax = axes[i, j]
            if task == "restoration" and j > 0:  # images: output and target (uint8 or [0, 1])
                _show(ax, (samples["predictions"] if j == 1 else samples["ground_truth"])[i])
            elif task == "segmentation" and j > 0:  # the label map over the image; background and ignored clear
                mask = np.asarray((samples["predictions"] if j == 1 else samples["ground_truth"])[i])
                _show(ax, images[i])
                ax.imshow(np.ma.masked_where((mask == 0) | (mask == 255), mask), cmap="tab20", vmin=0, vmax=19,
                          alpha=0.6, interpolation="nearest")
            else:
                _show(ax, images[i])
            if task == "detection" and j == 1:
                p = _shown_detections(samples["predictions"][i])
                _draw_boxes(ax, p["boxes"], p["labels"], class_names, p.get("scores"), color="orange")
            if task == "detection" and j == 2:
                g = samples["ground_truth"][i]
                _draw_boxes(ax, g["boxes"], g["labels"], class_names)
            if i == 0:
                ax.set_title(title, fontsize=9)
    return _png(fig)


def _name(class_names, index) -> str:
    index = int(index)
    return _plain(class_names[index]) if 0 <= index < len(class_names) else str(index)


def plot_misclassified(examples: dict, class_names) -> str:
    """A grid of misclassified images, each titled "true → predicted" and its confidence when known."""
    plt = _pyplot()
    images = examples["images"]
    n = len(images)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    conf = examples.get("confidences")
    for i in range(n):
        ax = axes.flat[i]
        _show(ax, images[i])
        t, p = examples["ground_truth"][i], examples["predictions"][i]
        text = f"{_name(class_names, t)} →\n{_name(class_names, p)}"
        if conf is not None:
            text += f" ({float(conf[i]):.2f})"
        ax.set_title(text, fontsize=7, color="red")
        ax.axis("on")
    return _png(fig)


class MisclassifiedCollector:
    """Keeps the misclassified examples of a whole evaluation, batch by batch, for ``write_report``.

    It keeps the ``limit`` most confident mistakes (the highest score given to the wrong class; earlier
    examples first on ties), so memory holds at most ``limit`` images whatever the data's size::

        found = MisclassifiedCollector()
        for x, y in batches:
            found.update(x, y, model.predict_on_batch(x))  # (n, C) probabilities (logits: from_logits)
        write_report(..., samples={"images": ..., "predictions": ..., "ground_truth": ...,
                                   "misclassified": found.result()})
    """

    def __init__(self, limit: int = MAX_MISCLASSIFIED, from_logits: bool = False):
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer; got {limit!r}.")
        self.limit, self.from_logits = limit, from_logits
        self.seen = 0
        self.total = 0
        self._kept = None

    def update(self, images, ground_truth, scores, indices=None, from_logits: bool | None = None):
        """Add a batch: ``images`` (n, H, W[, C]); ``ground_truth`` (n,) labels or (n, C) one-hot;
        ``scores`` (n, C) probabilities, or logits with ``from_logits``; ``indices`` (n,) positions of the
        examples in the data (default: counted on from the previous batches)."""
        from catalog.evaluation.classification import _labels, softmax

        scores = np.asarray(scores, np.float64)
        if scores.ndim != 2:
            raise ValueError(f"scores must be an (n, classes) array; got shape {scores.shape}.")
        logits = self.from_logits if from_logits is None else from_logits
        probs = softmax(scores) if logits else scores
        truth = _labels(ground_truth, scores.shape[1])
        n = len(scores)
        if len(truth) != n or len(images) != n:
            raise ValueError(f"images, ground_truth and scores must have the same length; got "
                             f"{len(images)}, {len(truth)} and {n}.")
        index = np.arange(self.seen, self.seen + n) if indices is None else np.asarray(indices).reshape(-1)
        self.seen += n
        pred = probs.argmax(axis=1)
        wrong = np.flatnonzero(pred != truth)
        self.total += len(wrong)
        if not len(wrong) or not self.limit:
            return self
        new = {"images": np.asarray(images)[wrong], "predictions": pred[wrong], "ground_truth": truth[wrong],
               "confidences": probs[wrong, pred[wrong]], "indices": index[wrong]}
        if self._kept is not None:
            new = {k: np.concatenate([self._kept[k], v]) for k, v in new.items()}
        order = np.lexsort((new["indices"], -new["confidences"]))[:self.limit]
        self._kept = {k: v[order] for k, v in new.items()}
        return self

    def result(self) -> dict:
        """``{"images", "predictions", "ground_truth", "confidences", "indices", "total"}``, most confident
        first; ``total`` counts every mistake seen, kept or not."""
        if self._kept is None:
            return {"images": np.zeros((0,)), "predictions": np.zeros((0,), np.int64),
                    "ground_truth": np.zeros((0,), np.int64), "confidences": np.zeros((0,)),
                    "indices": np.zeros((0,), np.int64), "total": self.total}
        return {**self._kept, "total": self.total}


def misclassified_summary(metrics: dict, class_names, samples) -> dict | None:
    """What the report says about misclassified examples (None without classification samples).

    Returns ``{"total", "evaluated", "shown", "source", "examples": [{"index", "true", "true_name",
    "predicted", "predicted_name", "confidence"}], "text"}``; the examples carry the images under
    ``"_images"`` (dropped from the JSON). ``source`` is ``"run"`` when the caller passed
    ``samples["misclassified"]`` (found across the whole evaluation) and ``"samples"`` when they are the
    mistakes among the sample images, which the sample grid already shows.
    """
    if not samples:
        return None
    cm = metrics.get("confusion_matrix")
    total = evaluated = None
    if cm is not None:
        cm = np.asarray(cm)
        evaluated = int(cm.sum())
        total = evaluated - int(np.trace(cm))
    given = samples.get("misclassified")
    if given is not None:
        source = "run"
        pred, truth = np.asarray(given["predictions"]).reshape(-1), np.asarray(given["ground_truth"]).reshape(-1)
        keep = np.flatnonzero(pred != truth)[:MAX_MISCLASSIFIED]
        images = given["images"]
        index = given.get("indices")
        index = np.asarray(index).reshape(-1) if index is not None else None
        conf = given.get("confidences")
        if total is None and given.get("total") is not None:
            total = int(given["total"])
    else:
        source = "samples"
        if not len(samples.get("images", [])):
            return None
        pred, truth = np.asarray(samples["predictions"]).reshape(-1), np.asarray(samples["ground_truth"]).reshape(-1)
        keep = np.flatnonzero(pred != truth)[:MAX_MISCLASSIFIED]
        images = samples["images"]
        index = samples.get("indices")
        index = np.asarray(index).reshape(-1) if index is not None else np.arange(len(pred))
        conf = samples.get("confidences")
    conf = np.asarray(conf, np.float64).reshape(-1) if conf is not None else None
    examples = [{"index": int(index[k]) if index is not None else None, "true": int(truth[k]),
                 "true_name": class_names[int(truth[k])] if 0 <= truth[k] < len(class_names) else str(truth[k]),
                 "predicted": int(pred[k]),
                 "predicted_name": class_names[int(pred[k])] if 0 <= pred[k] < len(class_names) else str(pred[k]),
                 "confidence": float(conf[k]) if conf is not None else None} for k in keep]
    if total == 0 or (total is None and not examples):
        text = "No misclassified examples: every prediction is correct." if total == 0 else \
            "No misclassified examples."
    elif source == "run":
        of = f" of {total:,}" if total is not None else ""
        text = (f"{len(examples)}{of} misclassified examples shown"
                + (f" ({total / evaluated:.1%} of {evaluated:,} evaluated)" if total and evaluated else "")
                + ": true → predicted" + (", with the confidence of the prediction." if conf is not None else "."))
    else:
        n = len(pred)
        text = (f"{len(examples)} of the {n} samples shown are misclassified (marked red in the sample grid)"
                + (f"; {total:,} of {evaluated:,} evaluated examples are misclassified" if total is not None else "")
                + ". The caller passed no misclassified examples from the whole run.")
    return {"total": total, "evaluated": evaluated, "shown": len(examples), "source": source,
            "examples": examples, "text": text,
            "_images": np.asarray(images)[keep] if len(keep) else None,
            "_confidences": conf[keep] if conf is not None and len(keep) else None}


def figures_for(task: str, metrics: dict, class_names, samples=None) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs for a task's report."""
    figs = []
    if task == "generation":
        return generation_figures(metrics, samples)
    if task == "classification":
        figs.append(("Confusion matrix", plot_confusion_matrix(metrics["confusion_matrix"], class_names)))
        if "pr" in metrics:
            figs.append(("Precision-recall curves (one vs rest)", plot_curves(
                metrics["pr"]["recall"], metrics["pr"]["precision"], class_names, "recall", "precision",
                "Precision-recall", metrics["pr"]["ap"], "AP")))
            figs.append(("ROC curves (one vs rest)", plot_curves(
                metrics["roc"]["fpr"], metrics["roc"]["tpr"], class_names, "false positive rate",
                "true positive rate", "ROC", metrics["roc"]["auc"], "AUC")))
    elif task == "detection":
        curves = metrics.get("pr_curves")
        if curves is not None:
            figs.append(("Precision-recall per class (IoU 0.50, all areas, 100 detections)", plot_curves(
                [curves["recall"]] * len(class_names), curves["precision"], class_names, "recall", "precision",
                "Precision-recall at IoU 0.50", metrics.get("per_class_ap50"), "AP50")))
    elif task == "embedding":
        figs += embedding_figures(metrics)
    elif task == "segmentation":
        figs.append(("IoU per class", plot_bars(metrics["iou"], class_names, "IoU", "IoU per class")))
        if "confusion_matrix" in metrics:
            figs.append(("Confusion matrix (pixels; rows: truth)",
                         plot_confusion_matrix(metrics["confusion_matrix"], class_names)))
    if samples is not None and len(samples.get("images", [])):
        columns = "input, output, target" if task == "restoration" else "input, prediction, ground truth"
        caption = f"Samples: {columns}"
        figs.append((caption, plot_samples(task, samples, class_names)))
    if task == "classification":
        found = misclassified_summary(metrics, class_names, samples)
        if found is not None and found["source"] == "run" and found["shown"]:
            figs.append((MISCLASSIFIED_CAPTION + " " + found["text"], plot_misclassified(
                {"images": found["_images"], "ground_truth": [e["true"] for e in found["examples"]],
                 "predictions": [e["predicted"] for e in found["examples"]], "confidences": found["_confidences"]},
                class_names)))
    return figs


MISCLASSIFIED_CAPTION = "Misclassified:"


# ------------------------------------------------------------------------------------------ training history
MAX_HISTORY_ROWS = 50  # rows of the per-epoch table; longer runs show evenly spaced epochs and the last
LR_KEYS = ("learning_rate", "lr")
TIMING_KEYS = ("seconds", "images_per_second")  # and keys ending "_seconds" / "_per_second": table only


def _is_loss(key: str) -> bool:
    return key == "loss" or key.endswith("_loss")


def _is_timing(key: str) -> bool:
    return key in TIMING_KEYS or key.endswith("_seconds") or key.endswith("_per_second")


def _base(key: str) -> str:
    """The metric a key measures: ``val_accuracy`` and ``accuracy`` are both ``accuracy``."""
    return key[4:] if key.startswith("val_") and len(key) > 4 else key


def _per_epoch(values):
    """A 1-D float array of per-epoch values, or a reason why ``values`` is not one. ``None`` entries
    (a NaN that went through JSON) count as NaN; strings are not numbers."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            return None, f"not a per-epoch list (an array of shape {values.shape})"
        if values.dtype.kind not in "biuf":
            return None, f"not numeric (dtype {values.dtype})"
        return values.astype(np.float64), None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        return None, f"not a per-epoch list (type {type(values).__name__})"
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
            continue
        if isinstance(v, (str, bytes)):
            return None, f"not numeric (holds {v!r:.40})"
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            return None, f"not numeric (holds type {type(v).__name__})"
    return np.asarray(out, np.float64), None


def history_table(history) -> dict:
    """Check a training history for :func:`write_report`: ``{"epochs" (n,) floats, "columns": {key: (n,)
    float array}, "notes": [str], "n": n}``.

    ``history`` maps each key to a list of per-epoch numbers (Keras' ``History.history`` plus what the
    training job adds; a ``History`` object works too). Every column has the length ``n`` of ``loss`` when
    that is a valid list, else the most common length (the longest on ties); keys of another length, and
    keys that are not lists of numbers, are left out with a note. ``None`` entries are NaN. ``epoch``
    (optional) labels the rows; without it (or when invalid) the epochs are numbered 1..n, as Keras'
    progress log counts them (Keras' ``History.epoch`` is 0-based: pass ``[e + 1 for e in h.epoch]``).
    """
    notes, epochs = [], None
    if hasattr(history, "history") and isinstance(getattr(history, "history"), dict):  # a keras History
        epochs = [e + 1 for e in getattr(history, "epoch", None) or []] or None
        history = history.history
    if not isinstance(history, dict):
        return {"epochs": np.zeros(0), "columns": {}, "n": 0,
                "notes": [f"history is not a dict of per-epoch lists (type {type(history).__name__}); not shown."]}
    arrays = {}
    for key, values in history.items():
        key = str(key)
        arr, why = _per_epoch(values)
        if why:
            notes.append(f"{key!r} is {why}; left out.")
        elif key == "epoch":
            epochs = arr
        else:
            arrays[key] = arr
    lengths = [len(a) for a in arrays.values()]
    if "loss" in arrays:
        n = len(arrays["loss"])
    elif lengths:
        n = max(set(lengths), key=lambda m: (lengths.count(m), m))
    else:
        n = 0
    columns = {}
    for key, arr in arrays.items():
        if len(arr) == n:
            columns[key] = arr
        else:
            notes.append(f"{key!r} has {len(arr)} values, not one for each of the {n} epochs; left out.")
    if epochs is not None and (len(epochs) != n or not np.all(np.isfinite(epochs))):
        count = f"{len(epochs)} value{'s' * (len(epochs) != 1)}" + ("" if len(epochs) == n else f" for {n} epochs")
        finite = "" if np.all(np.isfinite(epochs)) else ", some not finite"
        notes.append(f"'epoch' has {count}{finite}; epochs numbered 1..{n}.")
        epochs = None
    epochs = np.arange(1, n + 1, dtype=np.float64) if epochs is None else np.asarray(epochs, np.float64)
    for key, arr in columns.items():
        bad = np.flatnonzero(~np.isfinite(arr))
        if len(bad):
            where = ", ".join(_sig4(epochs[i]) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            notes.append(f"{key!r} is not finite (nan/inf) at {len(bad)} epoch{'s' * (len(bad) > 1)} "
                         f"({where}): gaps in the plots.")
    if not n and not notes:
        notes.append("history has no epochs.")
    return {"epochs": epochs, "columns": columns, "notes": notes, "n": n}


def _sig4(v) -> str:
    """4 significant digits; ``nan``/``inf`` as such; whole epochs without a decimal point."""
    v = float(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v.is_integer() and abs(v) < 1e4:
        return str(int(v))
    if 1e4 <= abs(v) < 1e6:  # 12345.6 as 12350, not 1.235e+04
        return f"{float(f'{v:.4g}'):.0f}"
    return f"{v:.4g}"


def history_rows(table: dict, limit: int = MAX_HISTORY_ROWS) -> tuple[list[str], list[list[str]], str]:
    """(header, formatted rows, note) of the per-epoch table: every epoch, or for longer runs ``limit``
    evenly spaced epochs that include the first and the last (the note says so; else it is "")."""
    n, keys = table["n"], list(table["columns"])
    if not n or not keys:
        return ["epoch", *keys], [], ""
    rows = np.arange(n)
    note = ""
    if n > limit:
        rows = np.unique(np.round(np.linspace(0, n - 1, limit)).astype(int))
        note = (f"{len(rows)} of {n} epochs shown, evenly spaced, the last included; "
                "report.json has every epoch.")
    body = [[_sig4(table["epochs"][i]), *[_sig4(table["columns"][k][i]) for k in keys]] for i in rows]
    return ["epoch", *keys], body, note


def _lr_log_scale(values) -> bool:
    """Log scale for the learning rate when its finite values are all positive and span more than 10x."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return bool(v.size and np.all(v > 0) and v.max() > 10 * v.min())


def _draw_series(ax, epochs, columns: dict, keys, n):
    """Train keys solid, their ``val_`` partners dashed in the same colour; NaN/inf are gaps; with few
    epochs every value is a marker too (so one epoch is a point): filled circles, hollow squares for val."""
    marker = "o" if n <= 30 else None
    colours = {}
    for key in keys:
        colour = colours.setdefault(_base(key), f"C{len(colours) % 10}")
        y = np.where(np.isfinite(columns[key]), columns[key], np.nan)
        val = key.startswith("val_")
        ax.plot(epochs, y, color=colour, ls="--" if val else "-", marker=marker and ("s" if val else "o"),
                mfc="white" if val else colour, ms=4, lw=1.4, label=_plain(key))
    ax.set_xlabel("epoch")
    if n <= 12:
        ax.set_xticks(epochs)
    ax.grid(alpha=0.3)


def plot_history_losses(epochs, columns: dict, keys) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _draw_series(ax, epochs, columns, keys, len(epochs))
    ax.set(ylabel="loss", title="Loss (training solid, validation dashed)")
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def plot_history_metrics(epochs, columns: dict, keys) -> str:
    """One subplot for each metric (its training and validation keys together), three to a row."""
    plt = _pyplot()
    groups = {}
    for key in keys:
        groups.setdefault(_base(key), []).append(key)
    cols = min(len(groups), 3)
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, (name, members) in zip(axes.flat, groups.items()):
        _draw_series(ax, epochs, columns, members, len(epochs))
        ax.set_title(_plain(name), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def plot_learning_rate(epochs, values, key: str = "learning_rate") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3))
    _draw_series(ax, epochs, {key: np.asarray(values, np.float64)}, [key], len(epochs))
    if _lr_log_scale(values):
        ax.set_yscale("log")
    ax.set(ylabel=_plain(key), title="Learning rate")
    return _png(fig)


def history_figures(table: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs for the Training section: losses, other metrics, learning rate."""
    cols, epochs = table["columns"], table["epochs"]
    if not table["n"]:
        return []
    losses = [k for k in cols if _is_loss(k)]
    lrs = [k for k in cols if k in LR_KEYS]
    metrics = [k for k in cols if not _is_loss(k) and k not in LR_KEYS and not _is_timing(k)]
    figs = []

    def dashed(keys):
        return " (validation dashed)" if any(k.startswith("val_") for k in keys) else ""

    if losses:
        figs.append(("Loss: " + ", ".join(losses) + dashed(losses), plot_history_losses(epochs, cols, losses)))
    if metrics:
        figs.append(("Metrics: " + ", ".join(metrics) + dashed(metrics), plot_history_metrics(epochs, cols, metrics)))
    if lrs:
        log = _lr_log_scale(cols[lrs[0]])
        figs.append((f"Learning rate ({lrs[0]}, {'log' if log else 'linear'} scale)",
                     plot_learning_rate(epochs, cols[lrs[0]], lrs[0])))
    return figs


# ------------------------------------------------------------------------------------------ tables
def summary_rows(task: str, metrics: dict) -> list[tuple[str, float]]:
    """The headline numbers of a task as (name, value)."""
    if task == "generation":
        return generation_summary_rows(metrics)
    if task == "embedding":
        return embedding_summary_rows(metrics)
    if task == "classification":
        rows = [(name.replace("top", "top-") + " accuracy", v) for name, v in metrics["top_k"].items()]
        rows += [(f"{avg} {k}", metrics[avg][k]) for avg in ("macro", "weighted") for k in ("precision", "recall", "f1")]
        rows += [(k.replace("_", " "), metrics[k]) for k in ("macro_auc", "mean_ap") if k in metrics]
        return rows
    if task == "detection":
        from catalog.evaluation.detection import COCO_STAT_NAMES

        return [(k, metrics[k]) for k in (*COCO_STAT_NAMES, "VOC_AP50") if k in metrics]
    if task == "restoration":
        crop = f", {metrics.get('border_crop', 0)} px border cropped"
        rows = [(f"{k.split('_')[0].upper()} {k.split('_')[1].upper()}{' (dB)' if k.startswith('psnr') else ''}{crop}",
                 metrics[k]) for k in RESTORATION_KEYS if k in metrics]
        rows += [(f"baseline ({metrics.get('baseline_name', 'baseline')}) {k.split('_')[0].upper()} "
                  f"{k.split('_')[1].upper()}", v) for k, v in metrics.get("baseline", {}).items()]
        return rows + [("PSNR Y gain over the baseline (dB)", metrics["psnr_y_gain"])]
    return [(k.replace("_", " "), metrics[k]) for k in ("miou", "fwiou", "pixel_accuracy", "mean_accuracy", "mean_dice")
            if k in metrics]


RESTORATION_KEYS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


def per_class_table(task: str, metrics: dict, class_names) -> tuple[list[str], list[list]]:
    if task == "generation":  # the classes the scoring classifier sees among the samples and the real images
        return generation_table(metrics, class_names)
    if task == "embedding":  # no classes: verification rates at the requested FARs
        return embedding_table(metrics)
    if task == "restoration":  # no classes: the model against its baseline
        keys = [k for k in RESTORATION_KEYS if k in metrics]
        header = ["images", *(f"{k.split('_')[0].upper()} {k.split('_')[1].upper()}" for k in keys)]
        baseline = metrics.get("baseline", {})
        return header, [["model", *(metrics[k] for k in keys)],
                        [f"baseline: {metrics.get('baseline_name', '')}", *(baseline.get(k) for k in keys)]]
    if task == "classification":
        pc = metrics["per_class"]
        header = ["class", "precision", "recall", "F1", "support"]
        cols = [pc["precision"], pc["recall"], pc["f1"], pc["support"]]
        if "roc" in metrics:
            header += ["ROC AUC", "AP"]
            cols += [metrics["roc"]["auc"], metrics["pr"]["ap"]]
    elif task == "detection":
        header, cols = ["class", "AP", "AP50", "VOC AP50", "ground truth"], [
            metrics.get("per_class_ap", []), metrics.get("per_class_ap50", []),
            metrics.get("per_class_voc_ap50", []), metrics.get("per_class_gt", [])]
    else:
        header, cols = ["class", "IoU", "Dice"], [metrics["iou"], metrics["dice"]]
    n = len(class_names)
    cols = [list(c) + [None] * (n - len(c)) for c in cols]
    return header, [[name, *[c[i] for c in cols]] for i, name in enumerate(class_names)]


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return "n/a" if not math.isfinite(float(v)) or float(v) == -1.0 else f"{float(v):.4f}"
    return str(v)


def _history_text(table: dict) -> str:
    n, cols = table["n"], table["columns"]
    if not n or not cols:
        return "No per-epoch values to show."
    first, last = _sig4(table["epochs"][0]), _sig4(table["epochs"][-1])
    text = f"{n} epoch{'s' * (n > 1)} ({'epoch ' + first if n == 1 else f'epochs {first} to {last}'})"
    if "seconds" in cols and np.isfinite(cols["seconds"]).all():
        text += f", {float(np.sum(cols['seconds'])):.1f} s in all"
    last_vals = [f"{k} {_sig4(cols[k][-1])}" for k in cols if _is_loss(k) or not (_is_timing(k) or k in LR_KEYS)]
    return text + (". Last epoch: " + ", ".join(last_vals) + "." if last_vals else ".")


def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------------------ writer
def write_report(out_dir: str, task: str, metrics: dict, class_names, samples: dict | None = None,
                 settings: dict | None = None, model: dict | None = None, dataset: dict | None = None,
                 seconds: float | None = None, title: str | None = None, extra: dict | None = None,
                 history: dict | None = None, notes=None) -> str:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir``; return ``out_dir``.

    Args:
        task: "classification", "detection", "segmentation", "restoration" or "embedding" (metrics:
            ``catalog.evaluation.verification_metrics``; no classes, ``class_names`` may be empty).
        metrics: the task's result dict (``classification_report``, ``coco_evaluate`` plus optional
            ``per_class_ap``/``per_class_ap50``/``per_class_gt``/``pr_curves``, ``SegmentationMetrics.result``;
            restoration: ``psnr_y``, ``ssim_y``, [``psnr_rgb``, ``ssim_rgb``], ``baseline`` (the same keys),
            ``baseline_name``, ``border_crop``, ``psnr_y_gain``, as ``catalog.scoring`` writes them).
        class_names: names in class-index order.
        samples: ``{"images", "predictions", "ground_truth"}`` for the sample grid: labels
            (classification), ``{"boxes" (xyxy pixels), "labels", "scores"}`` dicts (detection) or masks.
            Classification takes optional keys too: ``confidences`` (n,) the probability of each
            predicted class; ``indices`` (n,) the samples' positions in the evaluated data (default
            0..n-1); ``misclassified``, the mistakes found across the whole run (``MisclassifiedCollector
            .result()``): ``{"images" (m, H, W[, C]), "predictions" (m,), "ground_truth" (m,),
            "confidences" (m,) optional, "indices" (m,) optional, "total" optional}``, of which the first
            ``MAX_MISCLASSIFIED`` are drawn in a "true → predicted" grid. Without ``misclassified`` the
            report lists the mistakes among the samples (the sample grid marks them red) and draws no extra
            grid. The total number of mistakes comes from ``metrics["confusion_matrix"]``; when it is 0 the
            report says there are no misclassified examples. ``report.json`` gets ``misclassified``:
            ``{"total", "evaluated", "shown", "source", "examples": [{"index", "true", "true_name",
            "predicted", "predicted_name", "confidence"}], "text"}``.
        settings, model, dataset: what was evaluated and how (the model card as a dict); written as given.
        seconds: evaluation time. title: the page title. extra: more JSON fields.
        history: the training run, ``{key: per-epoch list}`` of equal lengths (Keras'
            ``History.history`` plus e.g. ``learning_rate``, ``seconds``, ``images_per_second``), with an
            optional ``epoch`` list labelling the rows (default 1..n; see :func:`history_table`). The
            report gets a "Training" section: (a) every loss (``loss`` and keys ending ``_loss``) on one
            plot, (b) every other metric, one subplot each, (c) the learning rate (``learning_rate`` or
            ``lr``; log scale when it spans more than 10x), training solid and its ``val_`` partner dashed
            in the same colour, NaN/inf as gaps, one epoch as points; and a per-epoch table (4 significant
            digits, "nan"/"inf" as such, at most ``MAX_HISTORY_ROWS`` evenly spaced rows with the last).
            Timing keys (``seconds``, ``images_per_second``, ``*_seconds``, ``*_per_second``) are in the
            table only. Keys that are not lists of numbers or have another length are left out with a note,
            never an error. ``report.json`` gets ``history`` as given (NaN/inf as null) and
            ``history_notes``, the notes about it.
        notes: sentences the reader must see (a partial result, random weights, an assumed
            preprocessing): a notes box at the top of ``report.html``, a blockquote at the top of
            ``report.md``, and ``report.json["notes"]`` (always a list, ``[]`` when none). A single string
            is one note; blank ones are dropped.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    class_names = [str(c) for c in class_names]
    os.makedirs(out_dir, exist_ok=True)
    created = datetime.datetime.now().isoformat(timespec="seconds")
    title = title or f"{task.capitalize()} evaluation"
    found = misclassified_summary(metrics, class_names, samples) if task == "classification" else None
    notes = [notes] if isinstance(notes, str) else list(notes or [])
    notes = [str(n) for n in notes if n is not None and str(n).strip()]
    trained = history_table(history) if history is not None else None
    report = {"title": title, "task": task, "created": created, "seconds": seconds, "class_names": class_names,
              "metrics": metrics, "settings": settings or {}, "model": model or {}, "dataset": dataset or {},
              **(extra or {})}
    if found is not None:
        report["misclassified"] = {k: v for k, v in found.items() if not k.startswith("_")}
    report["notes"] = notes
    if trained is not None:
        report["history"] = getattr(history, "history", history)
        report["history_notes"] = trained["notes"]
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(to_jsonable(report), f, indent=2, allow_nan=False)

    summary = summary_rows(task, metrics)
    header, rows = per_class_table(task, metrics, class_names)
    info = [("task", task), ("created", created)]
    if model:
        info.append(("model", model.get("name", "")))
        if model.get("params") is not None:
            info.append(("trainable parameters", f"{model['params']:,}"))
    if dataset:
        info += [(f"dataset {k}", v) for k, v in dataset.items() if k != "class_names"]
    info += [(f"setting {k}", v) for k, v in (settings or {}).items()]
    if seconds is not None:
        info.append(("evaluation time", f"{seconds:.2f} s"))

    md = [f"# {_md(title)}", ""]
    if notes:
        md += ["> **Notes**", ">"] + [f"> - {_md(n)}" for n in notes] + [""]
    md += [f"- {_md(k)}: {_md(v)}" for k, v in info]
    md += ["", "## Summary", "", "| metric | value |", "|---|---|"]
    md += [f"| {_md(k)} | {_fmt(v)} |" for k, v in summary]
    per_class = {"restoration": "Model and baseline", "embedding": "TAR at FAR"}.get(task, "Per class")
    md += ["", f"## {per_class}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_md(c) if i == 0 else _fmt(c) for i, c in enumerate(row)) + " |" for row in rows]
    if task == "classification":
        cm = np.asarray(metrics["confusion_matrix"])
        md += ["", "## Confusion matrix (rows: truth, columns: prediction)", "",
               "| | " + " | ".join(_md(c) for c in class_names) + " |", "|---|" + "---|" * len(class_names)]
        md += [f"| {_md(n)} | " + " | ".join(str(v) for v in r) + " |" for n, r in zip(class_names, cm.tolist())]
    if found is not None:
        md += ["", "## Misclassified examples", "", _md(found["text"])]
        if found["examples"]:
            where = ("the grid \"Misclassified\" in report.html" if found["source"] == "run"
                     else "the red titles of the sample grid in report.html")
            md += ["", f"Images: {where}.", "", "| index | true | predicted | confidence |", "|---|---|---|---|"]
            md += [f"| {_fmt(e['index'])} | {_md(e['true_name'])} | {_md(e['predicted_name'])} | "
                   f"{_fmt(e['confidence'])} |" for e in found["examples"]]
    if trained is not None:
        train_figs = history_figures(trained)
        hist_head, hist_rows, rows_note = history_rows(trained)
        md += ["", "## Training", "", _md(_history_text(trained))]
        if trained["notes"]:
            md += [""] + [f"- {_md(n)}" for n in trained["notes"]]
        if train_figs:
            md += ["", "Plots in report.html, section Training: " + "; ".join(_md(c) for c, _ in train_figs) + "."]
        if hist_rows:
            md += ["", "| " + " | ".join(_md(h) for h in hist_head) + " |", "|" + "---|" * len(hist_head)]
            md += ["| " + " | ".join(row) + " |" for row in hist_rows]
            if rows_note:
                md += ["", rows_note]
    md += ["", "Plots and samples: report.html."]
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")

    figures = figures_for(task, metrics, class_names, samples)
    esc = html.escape

    def figure(caption, png):
        return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{png}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>")

    def table(head, body, first_is_name=True):
        out = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in head) + "</tr></thead>", "<tbody>"]
        for row in body:
            cells = [esc(str(c)) if (i == 0 and first_is_name) else esc(_fmt(c)) for i, c in enumerate(row)]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return "\n".join(out + ["</tbody>", "</table>"])

    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,"
        "th:first-child{text-align:left}img{max-width:100%;display:block;margin:0.5em 0}"
        "figure{margin:1.5em 0}.notes{border:1px solid #d9a400;background:#fff8e0;padding:0.5em 1em;"
        "margin:1em 0}.notes ul{margin:0.3em 0}</style>", "</head>", "<body>", f"<h1>{esc(title)}</h1>",
        *(['<div class="notes" role="note"><strong>Notes</strong><ul>'
           + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></div>"] if notes else []),
        table(["field", "value"], [[k, str(v)] for k, v in info]),
        "<h2>Summary</h2>", table(["metric", "value"], summary),
        f"<h2>{per_class}</h2>", table(header, rows),
    ]
    if task == "classification":
        cm = np.asarray(metrics["confusion_matrix"]).tolist()
        parts += ["<h2>Confusion matrix (rows: truth, columns: prediction)</h2>",
                  table(["", *class_names], [[n, *map(int, r)] for n, r in zip(class_names, cm)])]
    parts.append("<h2>Plots</h2>")
    for caption, png in figures:
        parts.append(figure(caption, png))
    if found is not None and not any(c.startswith(MISCLASSIFIED_CAPTION) for c, _ in figures):
        parts.append(f'<p class="misclassified">{esc(MISCLASSIFIED_CAPTION)} {esc(found["text"])}</p>')
    if trained is not None:
        parts += ['<h2 id="training">Training</h2>', f"<p>{esc(_history_text(trained))}</p>"]
        if trained["notes"]:
            parts.append('<ul class="history-notes">' + "".join(f"<li>{esc(n)}</li>" for n in trained["notes"])
                         + "</ul>")
        parts += [figure(caption, png) for caption, png in train_figs]
        if hist_rows:
            parts.append(table(hist_head, hist_rows))
            if rows_note:
                parts.append(f"<p>{esc(rows_note)}</p>")
    parts += ["</body>", "</html>"]
    with open(os.path.join(out_dir, "report.html"), "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    return out_dir


def detection_report_metrics(coco_result: dict, class_ids=None) -> dict:
    """Per-class AP, AP50, PR curves at IoU 0.50 from ``coco_evaluate(..., return_details=True)``,
    merged with the 12 COCO numbers (for :func:`write_report`)."""
    details = coco_result["details"]
    precision = np.asarray(details["precision"])            # T, R, K, A, M
    pr = precision[:, :, :, 0, -1]                          # all areas, 100 detections
    per_ap = np.array([np.mean(p[p > -1]) if np.any(p > -1) else np.nan for p in np.moveaxis(pr, 2, 0)])
    ap50 = pr[0]
    per_ap50 = np.array([np.mean(c[c > -1]) if np.any(c > -1) else np.nan for c in ap50.T])
    out = {k: v for k, v in coco_result.items() if k != "details"}
    out.update(per_class_ap=per_ap, per_class_ap50=per_ap50,
               pr_curves={"recall": np.asarray(details["recall_thresholds"]),
                          "precision": [np.where(c > -1, c, np.nan) for c in ap50.T]})
    return out


# ------------------------------------------------------------------------------------------ early exits
def write_early_exit_section(out_dir: str, summary: dict) -> None:
    """Append an "Early exits" section to the ``report.md`` and ``report.html`` that :func:`write_report` wrote in
    ``out_dir`` (``catalog.models.early_exit.evaluate_early_exit``'s summary; report.json holds it in
    ``metrics["early_exit"]``): per exit its threshold, accuracy, share of samples, accuracy of those that left there
    and MACs, then the early-exit accuracy, expected relative cost and the measured batch-1 latencies."""
    head = ["exit", "entropy threshold", "accuracy (all samples)", "share leaving here", "accuracy of those",
            "MACs to leave here"]
    rows = [[name, summary["thresholds"][k], summary["exit_accuracy"][k], summary["share"][k],
             summary["accuracy_of_exited"][k], summary["macs"][k]] for k, name in enumerate(summary["exits"])]
    lines = [f"early-exit accuracy {_fmt(summary['early_exit_accuracy'])} against the final exit's "
             f"{_fmt(summary['final_accuracy'])}; {_fmt(summary['share_early'])} of the samples leave early; "
             f"expected cost {_fmt(summary['relative_cost'])} of the full network's {summary['full_network_macs']:,} "
             f"MACs; thresholds: {summary['threshold_source']} (tolerance {_fmt(summary['tolerance'])})."]
    latency = summary.get("latency")
    if latency:
        lines.append(f"batch-1 latency ({latency['device']}, median of {latency['repeats']} passes over "
                     f"{latency['images']} images): early exit {latency['early_exit_ms']:.3f} ms, full network "
                     f"{latency['full_network_ms']:.3f} ms per image, speed-up {latency['speedup']:.2f}x.")
    md = ["", "## Early exits", "", *[_md(line) + "\n" for line in lines],
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(_md(c) if i == 0 else _fmt(c) for i, c in enumerate(row)) + " |" for row in rows]
    with open(os.path.join(out_dir, "report.md"), "a", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    esc = html.escape
    table = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    table += ["<tr>" + "".join(f"<td>{esc(str(c)) if i == 0 else esc(_fmt(c))}</td>" for i, c in enumerate(row))
              + "</tr>" for row in rows]
    section = "\n".join(['<h2 id="early-exits">Early exits</h2>', *[f"<p>{esc(line)}</p>" for line in lines],
                          *table, "</tbody>", "</table>"])
    path = os.path.join(out_dir, "report.html")
    with open(path, encoding="utf-8") as f:
        page = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", section + "\n</body>", 1))


# ------------------------------------------------------------------------------------------ embedding (verification)
def embedding_summary_rows(metrics: dict) -> list[tuple[str, float]]:
    """Headline numbers of ``catalog.evaluation.verification_metrics``: AUC, EER, best-threshold accuracy with its
    FAR/FRR, TAR at each FAR, recall@K."""
    rows = [("ROC AUC (all pairs)", metrics["auc"]), ("equal error rate", metrics["eer"]),
            (f"best-threshold accuracy (distance <= {metrics['best_threshold']:.4f})", metrics["best_accuracy"]),
            ("FAR at the best threshold", metrics["far_at_best"]),
            ("FRR at the best threshold", metrics["frr_at_best"])]
    rows += [(f"TAR at FAR {float(far):g}", v["tar"]) for far, v in metrics["tar_at_far"].items()]
    return rows + [(f"recall@{k}", v) for k, v in metrics["recall_at_k"].items()]


def embedding_table(metrics: dict) -> tuple[list[str], list[list]]:
    return (["requested FAR", "TAR", "FAR reached", "distance threshold"],
            [[f"{float(far):g}", v["tar"], v["far"], v["threshold"]] for far, v in metrics["tar_at_far"].items()])


def embedding_figures(metrics: dict) -> list[tuple[str, str]]:
    roc = metrics["roc"]
    return [("ROC of pair verification (accept a pair when its distance is at most the threshold)", plot_curves(
        [roc["far"]], [roc["tar"]], ["all pairs"], "false positive rate", "true positive rate", "ROC (FAR, TAR)",
        [metrics["auc"]], "AUC"))]


# ------------------------------------------------------------------------------------------ generation
MAX_EPOCH_GRIDS = 10  # per-epoch sample grids shown (evenly spaced, with the last)


def generation_summary_rows(metrics: dict) -> list[tuple[str, float]]:
    """Headline numbers of ``catalog.models.generation.evaluate_generation``: images scored, the Inception Score
    of the samples and of real images, FID between them (None when no classifier was named)."""
    rows = [("images scored", metrics["num_images"])]
    if metrics.get("inception_score") is None:
        return rows + [("Inception Score (no classifier named)", None)]
    return rows + [
        (f"Inception Score of the samples (classifier {metrics['classifier']}, {metrics['splits']} splits)",
         metrics["inception_score"]), ("  its std over the splits", metrics["inception_score_std"]),
        ("Inception Score of real images", metrics["real_inception_score"]),
        (f"FID samples vs real images (features: {metrics['feature_layer']})", metrics["fid"])]


def generation_table(metrics: dict, class_names) -> tuple[list[str], list[list]]:
    header = ["class (as the classifier sees it)", "share of samples", "share of real images"]
    if "sample_class_share" not in metrics:
        return header, []
    return header, [[name, s, r] for name, s, r in zip(class_names, metrics["sample_class_share"],
                                                         metrics["real_class_share"])]


def image_grid(images, columns: int = 8) -> np.ndarray:
    """Tile (N, H, W, C) images in [-1, 1] into one uint8 RGB image, ``columns`` wide, with 2-pixel gaps."""
    x = np.round((np.clip(np.asarray(images, np.float32), -1, 1) + 1) * 127.5).astype(np.uint8)
    x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    n, h, w, _ = x.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    grid = np.full((rows * (h + 2) + 2, columns * (w + 2) + 2, 3), 255, np.uint8)
    for k in range(n):
        r, q = divmod(k, columns)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + q * (w + 2):2 + q * (w + 2) + w] = x[k]
    return grid


def _grid_png(images, columns: int = 8) -> str:
    """Base64 PNG of (N, H, W, C) images in [-1, 1] tiled ``columns`` wide."""
    from PIL import Image

    grid = image_grid(images, columns)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def generation_figures(metrics: dict, samples: dict | None) -> list[tuple[str, str]]:
    """The final samples and the per-epoch grids (``samples["epoch_grids"]``: PNG paths ``.../epoch_NNN.png``)."""
    figs = []
    if samples is not None and len(samples.get("images", [])):
        figs.append((f"Samples (seed {metrics.get('seed', 0)})", _grid_png(samples["images"])))
    paths = list((samples or {}).get("epoch_grids") or [])
    if len(paths) > MAX_EPOCH_GRIDS:
        keep = np.unique(np.linspace(0, len(paths) - 1, MAX_EPOCH_GRIDS).round().astype(int))
        paths = [paths[k] for k in keep]
    for path in paths:
        with open(path, "rb") as f:
            epoch = os.path.splitext(os.path.basename(path))[0].split("_")[-1].lstrip("0") or "0"
            figs.append((f"Samples after epoch {epoch} (the same noise every epoch)",
                         base64.b64encode(f.read()).decode("ascii")))
    return figs


__all__ = ["write_report", "to_jsonable", "detection_report_metrics", "figures_for", "MisclassifiedCollector",
           "misclassified_summary", "MAX_MISCLASSIFIED", "history_table", "history_rows", "history_figures",
           "MAX_HISTORY_ROWS"]
