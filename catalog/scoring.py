"""Evaluate a model on a dataset and write a report folder (``catalog evaluate``).

    from catalog.scoring import evaluate
    evaluate("runs/demo/model.keras", "shapes", task="classification", out_dir="runs/eval")

Model outputs by task: classification (N, C) probabilities or logits; segmentation (N, H, W, C) scores
at the label map's size; detection a dict ``{"boxes": (N, K, 4) xyxy pixels, "scores": (N, K),
"labels": (N, K)}`` (or that tuple), where rows with a negative label or a score <= 0 are padding.

Generative models: :func:`inception_score_of_images` and :func:`fid_of_images` run the catalog's
``inception_v3`` (weights from a local file) or any other network over images.
"""

from __future__ import annotations

import datetime
import os
import time

import numpy as np

TASKS = ("classification", "detection", "segmentation")


def _load_model(model, num_classes, image_size, weights):
    """A keras.Model from a model, a ``.keras`` path or a registered name (and its card, if registered)."""
    import keras

    from catalog.registry import create_model, list_models, model_info

    if isinstance(model, keras.Model):
        return model, None
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a keras.Model, a .keras file or a registered name; got {type(model).__name__}.")
    text = os.fspath(model)
    if _is_path(text):
        if not os.path.isfile(text):
            raise FileNotFoundError(f"model file not found: {text!r}.")
        try:
            return keras.saving.load_model(text, safe_mode=True), None
        except Exception as err:  # noqa: BLE001 - any failure to read is the file's fault here
            raise ValueError(f"model file {text!r} could not be loaded as a Keras model: {err}") from None
    if text not in list_models():
        raise ValueError(f"model must be a .keras file or a registered name (see `catalog list`); got {text!r}.")
    kwargs = {"num_classes": num_classes}
    if image_size is not None:
        kwargs["input_shape"] = (*image_size, 3)
    if weights is not None:
        kwargs["weights"] = weights
    return create_model(text, **kwargs), model_info(text).to_dict()


def _is_path(text) -> bool:
    text = os.fspath(text)
    return text.endswith(".keras") or os.sep in text or os.path.exists(text)


def _image_size(model_or_name, image_size):
    if image_size is not None:
        return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    shape = getattr(model_or_name, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[2]:
        return int(shape[1]), int(shape[2])
    if isinstance(model_or_name, str):
        from catalog.registry import get_entry, list_models

        if model_or_name in list_models():
            return tuple(get_entry(model_or_name).input_shape[:2])
    return None


def _detections(output):
    if isinstance(output, dict):
        boxes, scores = output["boxes"], output["scores"]
        labels = output.get("labels", output.get("classes"))
    elif isinstance(output, (list, tuple)) and len(output) == 3:
        boxes, scores, labels = output
    else:
        raise ValueError("a detection model must return {'boxes', 'scores', 'labels'} (xyxy pixels) or that tuple.")
    return np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(labels).astype(np.int64)


def evaluate(model, data, task: str = "classification", out_dir: str | None = None, class_names=None,
             split: str = "test", image_size=None, batch_size: int = 32, weights: str | None = None,
             preprocessing: str | None = None, max_batches: int | None = None, num_samples: int = 8,
             from_logits: bool | None = None, verbose: int = 1, **load_kwargs) -> str:
    """Evaluate ``model`` on ``data`` for ``task``; write report.json/md/html into ``out_dir``; return it.

    Args:
        model: a keras.Model, a path to a ``.keras`` file, or a registered name (built with ``weights``).
        data: a dataset spec for ``catalog.datasets.load`` (``shapes``, ``folder:PATH``, ``coco:...``,
            ``voc:PATH``, ``tfds:NAME``), or an iterable of (images, targets) batches in its layout.
        task: ``classification``, ``detection`` or ``segmentation``.
        out_dir: the report folder (default ``runs/eval-TIMESTAMP``).
        class_names: names in class order (default: the dataset's).
        split, image_size, batch_size, preprocessing: passed to ``catalog.datasets.load`` (image size
            defaults to the model's input; preprocessing to the model card's, else ``unit``).
        max_batches: stop after this many batches. num_samples: images in the sample grid.
        from_logits: whether classification outputs are logits (default: guessed from the first batch).
        verbose: 1 shows a progress bar when there are more than a few batches.
    """
    import keras

    from catalog.evaluation import ClassificationMetrics, SegmentationMetrics, coco_evaluate
    from catalog.evaluation.report import detection_report_metrics, write_report

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    out_dir = out_dir or os.path.join("runs", "eval-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    if isinstance(model, (str, os.PathLike)) and _is_path(model):
        model, _ = _load_model(model, None, None, None)
    size = _image_size(model, image_size)
    card = None
    if isinstance(model, str) and preprocessing is None:
        from catalog.registry import get_entry, list_models

        if model in list_models():
            preprocessing = get_entry(model).preprocessing
    info = {}
    if isinstance(data, str):
        from catalog import datasets

        ds, info = datasets.load(data, split=split, task=task, image_size=size or 224, batch_size=batch_size,
                                 preprocessing=preprocessing or "unit", **load_kwargs)
        names = list(class_names or info["class_names"])
        count = info.get("count")
        num_batches = -(-count // batch_size) if count else None
    else:
        ds, names, num_batches = data, list(class_names or []), None
        if not names:
            raise ValueError("class_names is required when data is not a dataset spec.")
    if max_batches is not None:
        num_batches = min(num_batches or max_batches, max_batches)
    if task == "segmentation" and len(names) and not (class_names and len(class_names)):
        names = ["background", *names]  # generated/annotated masks use 0 for background
    model, card = _load_model(model, len(names), size, weights)
    if card is None:
        card = {"name": model.name, "params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))}

    progress = keras.utils.Progbar(num_batches, verbose=1) if verbose and (num_batches or 4) > 3 else None
    metric = ClassificationMetrics(len(names), names, top_k=(1, 5)) if task == "classification" else None
    if task == "segmentation":
        metric = SegmentationMetrics(len(names), ignore_index=info.get("ignore_label"))
    gt_anns, det_cols, samples = [], {"image_id": [], "category_id": [], "bbox": [], "score": []}, None
    sample = {"images": [], "predictions": [], "ground_truth": []}
    image_offset, start = 0, time.time()
    for step, (x, y) in enumerate(ds):
        if max_batches is not None and step >= max_batches:
            break
        x = np.asarray(x)
        out = model.predict_on_batch(x)
        n = len(x)
        if task == "classification":
            scores = np.asarray(out, np.float64)
            if scores.ndim != 2 or scores.shape[1] != len(names):
                raise ValueError(f"the model outputs {scores.shape[1:]} scores per image but the data has "
                                 f"{len(names)} classes; pass a model built for them.")
            if step == 0:
                guess = bool(np.any(scores < 0) or not np.allclose(scores.sum(1), 1, atol=1e-3))
                metric.from_logits = guess if from_logits is None else from_logits
            metric.update(np.asarray(y), scores)
            preds, truth = scores.argmax(1), np.asarray(y).reshape(-1)
        elif task == "segmentation":
            pred = np.argmax(np.asarray(out), axis=-1)
            mask = np.asarray(y)
            if pred.shape != mask.shape:
                raise ValueError(f"the model's label map {pred.shape[1:]} must match the masks' {mask.shape[1:]}.")
            metric.update(mask, pred)
            preds, truth = pred, mask
        else:
            boxes, scores, labels = _detections(out)
            gb, gl = np.asarray(y["boxes"], np.float64), np.asarray(y["labels"]).astype(np.int64)
            preds, truth = [], []
            for i in range(n):  # per image bookkeeping (not per detection); the metric itself is vectorized
                keep, gkeep = (labels[i] >= 0) & (scores[i] > 0), gl[i] >= 0
                image_id = image_offset + i + 1
                b = boxes[i][keep]
                det_cols["image_id"].append(np.full(len(b), image_id))
                det_cols["category_id"].append(labels[i][keep] + 1)
                det_cols["bbox"].append(b)
                det_cols["score"].append(scores[i][keep])
                g = gb[i][gkeep]
                wh = g[:, 2:] - g[:, :2]
                gt_anns += [{"id": len(gt_anns) + j + 1, "image_id": image_id, "category_id": int(c) + 1,
                             "bbox": box.tolist(), "area": float(w * h), "iscrowd": 0}
                            for j, (box, c, (w, h)) in enumerate(zip(g, gl[i][gkeep], wh))]
                preds.append({"boxes": b, "labels": labels[i][keep], "scores": scores[i][keep]})
                truth.append({"boxes": g, "labels": gl[i][gkeep]})
        room = num_samples - len(sample["images"])
        if room > 0:
            sample["images"] += list(x[:room])
            sample["predictions"] += list(preds[:room])
            sample["ground_truth"] += list(truth[:room])
        image_offset += n
        if progress is not None:
            progress.update(step + 1)
    if image_offset == 0:
        raise ValueError(f"data {data!r} gave no examples for split {split!r}.")
    seconds = time.time() - start

    if task == "detection":
        images = [{"id": i + 1} for i in range(image_offset)]
        cats = [{"id": c + 1, "name": name} for c, name in enumerate(names)]
        cols = {k: np.concatenate(v) if v else np.zeros((0, 4) if k == "bbox" else 0) for k, v in det_cols.items()}
        result = coco_evaluate({"images": images, "annotations": gt_anns, "categories": cats}, cols,
                               box_format="xyxy", return_details=True)
        metrics = detection_report_metrics(result)
        metrics["per_class_gt"] = np.bincount([a["category_id"] - 1 for a in gt_anns], minlength=len(names))
    else:
        metrics = metric.result()
    samples = sample if sample["images"] else None
    if samples is not None and task != "detection":
        samples = {k: np.asarray(v) for k, v in samples.items()}
    settings = {"split": split, "batch_size": batch_size, "image_size": list(size) if size else None,
                "preprocessing": preprocessing or info.get("preprocessing"), "max_batches": max_batches}
    dataset = {"spec": data if isinstance(data, str) else type(data).__name__, "examples": image_offset,
               "class_names": names}
    write_report(out_dir, task, metrics, names, samples=samples, settings=settings, model=card, dataset=dataset,
                 seconds=round(seconds, 3), title=f"{card.get('name', 'model')}: {task} on "
                 f"{dataset['spec']} ({split})")
    return out_dir


def _network(model, weights, **kwargs):
    import keras

    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, os.PathLike)) and _is_path(model):
        return _load_model(model, None, None, None)[0]
    from catalog.registry import create_model

    return create_model(model, weights=weights, **kwargs)


def _predict(net, images, batch_size):
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(net.predict_on_batch(images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def inception_score_of_images(images, model="inception_v3", weights: str | None = None, splits: int = 10,
                              batch_size: int = 32) -> tuple[float, float]:
    """Inception Score of generated ``images`` (already preprocessed for the network) from the class
    probabilities of ``model``: the catalog's ``inception_v3`` with ``weights`` from a local file by
    default, or any classifier (a keras.Model, a ``.keras`` file, a registered name) ending in a softmax."""
    from catalog.evaluation import inception_score

    net = _network(model, weights, classifier_activation="softmax")
    return inception_score(_predict(net, images, batch_size).astype(np.float64), splits=splits)


def fid_of_images(images_a, images_b, model="inception_v3", weights: str | None = None, batch_size: int = 32) -> float:
    """FID between two image sets from the pooled features of ``model`` (default: the catalog's
    ``inception_v3`` without its top, global average pooling, ``weights`` from a local file)."""
    from catalog.evaluation import fid

    net = _network(model, weights, include_top=False, pooling="avg")
    return fid(_predict(net, images_a, batch_size), _predict(net, images_b, batch_size))
