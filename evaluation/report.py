"""Evaluation reports: ``report.json`` (every number), ``report.md`` and a self-contained ``report.html``.

The HTML embeds its plots as base64 PNGs (matplotlib, Agg backend): confusion matrix, PR and ROC curves
for classification; per-class PR curves for detection; per-class IoU bars for segmentation; and a grid of
samples (input, prediction, ground truth) for every task. Every text that comes from the data (class
names, titles, settings) is HTML-escaped; nothing is fetched when the page opens.
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

TASKS = ("classification", "detection", "segmentation")


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


def plot_samples(task: str, samples: dict, class_names) -> str:
    """A grid of samples: inputs with predicted/true labels (classification) or input | prediction |
    ground truth columns (detection boxes in xyxy pixels, segmentation masks)."""
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
            ax.set_title(f"pred: {_plain(class_names[p])}\ntrue: {_plain(class_names[t])}", fontsize=8,
                         color="green" if p == t else "red")
            ax.axis("on")
        return _png(fig)
    fig, axes = plt.subplots(n, 3, figsize=(6.5, 2.2 * n), squeeze=False)
    for i in range(n):
        for j, title in enumerate(("input", "prediction", "ground truth")):
            ax = axes[i, j]
            if task == "segmentation" and j > 0:
                mask = (samples["predictions"] if j == 1 else samples["ground_truth"])[i]
                ax.imshow(np.asarray(mask), cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                _show(ax, images[i])
            if task == "detection" and j == 1:
                p = samples["predictions"][i]
                _draw_boxes(ax, p["boxes"], p["labels"], class_names, p.get("scores"), color="orange")
            if task == "detection" and j == 2:
                g = samples["ground_truth"][i]
                _draw_boxes(ax, g["boxes"], g["labels"], class_names)
            if i == 0:
                ax.set_title(title, fontsize=9)
    return _png(fig)


def figures_for(task: str, metrics: dict, class_names, samples=None) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs for a task's report."""
    figs = []
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
    elif task == "segmentation":
        figs.append(("IoU per class", plot_bars(metrics["iou"], class_names, "IoU", "IoU per class")))
    if samples is not None and len(samples.get("images", [])):
        figs.append(("Samples: input, prediction, ground truth", plot_samples(task, samples, class_names)))
    return figs


# ------------------------------------------------------------------------------------------ tables
def summary_rows(task: str, metrics: dict) -> list[tuple[str, float]]:
    """The headline numbers of a task as (name, value)."""
    if task == "classification":
        rows = [(name.replace("top", "top-") + " accuracy", v) for name, v in metrics["top_k"].items()]
        rows += [(f"{avg} {k}", metrics[avg][k]) for avg in ("macro", "weighted") for k in ("precision", "recall", "f1")]
        rows += [(k.replace("_", " "), metrics[k]) for k in ("macro_auc", "mean_ap") if k in metrics]
        return rows
    if task == "detection":
        from catalog.evaluation.detection import COCO_STAT_NAMES

        return [(k, metrics[k]) for k in COCO_STAT_NAMES if k in metrics]
    return [(k.replace("_", " "), metrics[k]) for k in ("miou", "fwiou", "pixel_accuracy", "mean_accuracy", "mean_dice")
            if k in metrics]


def per_class_table(task: str, metrics: dict, class_names) -> tuple[list[str], list[list]]:
    if task == "classification":
        pc = metrics["per_class"]
        header = ["class", "precision", "recall", "F1", "support"]
        cols = [pc["precision"], pc["recall"], pc["f1"], pc["support"]]
        if "roc" in metrics:
            header += ["ROC AUC", "AP"]
            cols += [metrics["roc"]["auc"], metrics["pr"]["ap"]]
    elif task == "detection":
        header, cols = ["class", "AP", "AP50", "ground truth"], [metrics.get("per_class_ap", []),
                                                                  metrics.get("per_class_ap50", []),
                                                                  metrics.get("per_class_gt", [])]
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


def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------------------ writer
def write_report(out_dir: str, task: str, metrics: dict, class_names, samples: dict | None = None,
                 settings: dict | None = None, model: dict | None = None, dataset: dict | None = None,
                 seconds: float | None = None, title: str | None = None, extra: dict | None = None) -> str:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir``; return ``out_dir``.

    Args:
        task: "classification", "detection" or "segmentation".
        metrics: the task's result dict (``classification_report``, ``coco_evaluate`` plus optional
            ``per_class_ap``/``per_class_ap50``/``per_class_gt``/``pr_curves``, ``SegmentationMetrics.result``).
        class_names: names in class-index order.
        samples: ``{"images", "predictions", "ground_truth"}`` for the sample grid: labels
            (classification), ``{"boxes" (xyxy pixels), "labels", "scores"}`` dicts (detection) or masks.
        settings, model, dataset: what was evaluated and how (the model card as a dict); written as given.
        seconds: evaluation time. title: the page title. extra: more JSON fields.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    class_names = [str(c) for c in class_names]
    os.makedirs(out_dir, exist_ok=True)
    created = datetime.datetime.now().isoformat(timespec="seconds")
    title = title or f"{task.capitalize()} evaluation"
    report = {"title": title, "task": task, "created": created, "seconds": seconds, "class_names": class_names,
              "metrics": metrics, "settings": settings or {}, "model": model or {}, "dataset": dataset or {},
              **(extra or {})}
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
    md += [f"- {_md(k)}: {_md(v)}" for k, v in info]
    md += ["", "## Summary", "", "| metric | value |", "|---|---|"]
    md += [f"| {_md(k)} | {_fmt(v)} |" for k, v in summary]
    md += ["", "## Per class", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_md(c) if i == 0 else _fmt(c) for i, c in enumerate(row)) + " |" for row in rows]
    if task == "classification":
        cm = np.asarray(metrics["confusion_matrix"])
        md += ["", "## Confusion matrix (rows: truth, columns: prediction)", "",
               "| | " + " | ".join(_md(c) for c in class_names) + " |", "|---|" + "---|" * len(class_names)]
        md += [f"| {_md(n)} | " + " | ".join(str(v) for v in r) + " |" for n, r in zip(class_names, cm.tolist())]
    md += ["", "Plots and samples: report.html."]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    figures = figures_for(task, metrics, class_names, samples)
    esc = html.escape

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
        "figure{margin:1.5em 0}</style>", "</head>", "<body>", f"<h1>{esc(title)}</h1>",
        table(["field", "value"], [[k, str(v)] for k, v in info]),
        "<h2>Summary</h2>", table(["metric", "value"], summary),
        "<h2>Per class</h2>", table(header, rows),
    ]
    if task == "classification":
        cm = np.asarray(metrics["confusion_matrix"]).tolist()
        parts += ["<h2>Confusion matrix (rows: truth, columns: prediction)</h2>",
                  table(["", *class_names], [[n, *map(int, r)] for n, r in zip(class_names, cm)])]
    parts.append("<h2>Plots</h2>")
    for caption, png in figures:
        parts.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{png}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts += ["</body>", "</html>"]
    with open(os.path.join(out_dir, "report.html"), "w") as f:
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


__all__ = ["write_report", "to_jsonable", "detection_report_metrics", "figures_for"]
