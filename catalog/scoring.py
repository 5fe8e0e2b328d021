"""Evaluate a model on a dataset and write a report folder (``catalog evaluate``).

    from catalog.scoring import evaluate
    evaluate("runs/demo/model.keras", "shapes", task="classification", out_dir="runs/eval")

Model outputs by task: classification (N, C) probabilities or logits; segmentation (N, H, W, C) scores
at the label map's size; detection a dict ``{"boxes": (N, K, 4) xyxy pixels, "scores": (N, K),
"labels": (N, K)}`` (or that tuple), where rows with a negative label or a score <= 0 are padding; restoration
(N, H * scale, W * scale, C) images in [0, 1] (clipped), scored by PSNR and SSIM against a baseline; video (N, C)
on clips (N, frames, H, W, C), scored as classification, the report's grids showing each clip's middle frame.

Generative models: :func:`inception_score_of_images` and :func:`fid_of_images` run the catalog's
``inception_v3`` (weights from a local file) or any other network over images.
"""

from __future__ import annotations

import datetime
import json
import os
import time

import numpy as np

TASKS = ("classification", "detection", "segmentation", "restoration", "video", "generation", "embedding", "early_exit")


def _load_model(model, num_classes, image_size, weights, channels=3, allow_random_weights=False):
    """(keras.Model, card dict or None) from a model, a ``.keras`` path or a registered name."""
    import keras

    from catalog.registry import create_model, has_random_weights, list_models, model_info

    if isinstance(model, keras.Model):
        if has_random_weights(model) and not allow_random_weights:
            raise ValueError(_RANDOM.format(what=f"model {model.name!r}"))
        return model, None
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a keras.Model, a .keras file or a registered name; got {type(model).__name__}.")
    text = os.fspath(model)
    if _is_path(text):
        return load_keras_file(text), None
    if text not in list_models():
        raise ValueError(f"model must be a .keras file or a registered name (see `catalog list`); got {text!r}.")
    if weights is None and not allow_random_weights:
        raise ValueError(_RANDOM.format(what=f"registered name {text!r} without weights"))
    kwargs = {"num_classes": num_classes}
    if image_size is not None:
        kwargs["input_shape"] = (*image_size, channels)
    if weights is not None:
        kwargs["weights"] = weights
    return create_model(text, **kwargs), model_info(text).to_dict()


_RANDOM = ("{what} has random weights, so its scores would mean nothing; pass weights (a local file, "
           "--weights) or a trained model, or allow_random_weights=True (--allow-random-weights) to score "
           "it anyway.")


def task_model(model, weights, allow_random_weights, **build):
    """The model a task scorer evaluates, from a keras.Model, a ``.keras`` file or a registered name (built
    with ``weights`` and ``build`` keywords); refused while its weights are random unless
    ``allow_random_weights``. Returns (model, the file's record or None, the name's card or None, the
    registered name: the record's, the given one, else the model's own)."""
    import keras

    from catalog.registry import create_model, has_random_weights, list_models, model_info
    from catalog.saving import read_record

    record, card, name = None, None, None
    if isinstance(model, (str, os.PathLike)) and _is_path(model):
        record = read_record(os.path.expanduser(os.fspath(model)))
        model = load_keras_file(model)
        name = (record or {}).get("model_name")
    elif isinstance(model, str):
        if model not in list_models():
            raise ValueError(f"model must be a .keras file or a registered name (see `catalog list`); got {model!r}.")
        if weights is None and not allow_random_weights:
            raise ValueError(_RANDOM.format(what=f"registered name {model!r} without weights"))
        card, name = model_info(model).to_dict(), model
        model = create_model(model, **build, **({"weights": weights} if weights else {}))
    elif not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, a .keras file or a registered name; got "
                         f"{type(model).__name__}.")
    if has_random_weights(model) and not allow_random_weights:
        raise ValueError(_RANDOM.format(what=f"model {model.name!r}"))
    return model, record, card, name or model.name


def report_card(model, card, notes, consequence: str = "its scores mean nothing") -> dict:
    """The report's model card: ``card`` (a registered name's), else the model's name and trainable parameters;
    marked ``random_weights`` when the model's weights are random, with a note ending in ``consequence``
    appended to ``notes``."""
    from catalog.registry import has_random_weights

    if card is None:
        card = {"name": model.name, "params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))}
    if has_random_weights(model):
        card["random_weights"] = True
        notes.append(f"the model has random weights (allow_random_weights): {consequence}.")
    return card


def load_keras_file(path):
    """See :func:`catalog.saving.load_model`."""
    from catalog.saving import load_model

    return load_model(path)


def _is_path(text) -> bool:
    text = os.fspath(text)
    return text.endswith(".keras") or os.sep in text or os.path.exists(os.path.expanduser(text))


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


def _clip_size(model, image_size, frames):
    """(frames, (height, width) or None) of the clips to score a video model on: the arguments, else the model's
    input (a keras.Model's, or a registered name's card), else 16 frames."""
    shape = getattr(model, "input_shape", None)
    if isinstance(model, str):
        from catalog.registry import get_entry, list_models

        shape = (None, *get_entry(model).input_shape) if model in list_models() else None
    if not (isinstance(shape, tuple) and len(shape) == 5):
        shape = (None,) * 5
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size) if image_size else None
    if size is None and shape[2] and shape[3]:
        size = (int(shape[2]), int(shape[3]))
    return int(frames or shape[1] or 16), size


def input_settings(model, record=None, preprocessing=None, crop_fraction=None):
    """How to prepare images for ``model``: (preprocessing, crop_fraction, notes).

    Each comes from, in order: the argument; the record saved with the model (``catalog.saving``);
    the card of the registered name the model was built from; else ``unit`` and 1.0. Anything not
    from an argument or the model's record is said in ``notes`` (printed and written to the report).
    """
    from catalog.registry import get_entry, list_models

    from catalog.models.classifier import has_builtin_preprocessing

    from catalog.saving import record_of

    record = record or (None if isinstance(model, str) else record_of(model)) or {}
    if preprocessing is None and not isinstance(model, str) and has_builtin_preprocessing(model):
        preprocessing = "none"  # built in (include_preprocessing=True): the model takes raw pixels
    name = model if isinstance(model, str) else record.get("model_name")
    entry = get_entry(name) if name and name in list_models() else None
    notes, result = [], {}
    for key, value, fallback in (("preprocessing", preprocessing, "unit"), ("crop_fraction", crop_fraction, 1.0)):
        if value is not None:
            result[key] = value
        elif record.get(key) is not None:
            result[key] = record[key]
        elif entry is not None and getattr(entry, key) is not None:
            result[key] = getattr(entry, key)
            notes.append(f"{key} {result[key]!r} is the default of the card of {name} (the model carries no "
                         f"record of its own; pass {key} to override).")
        else:
            result[key] = fallback
            notes.append(f"{key} {fallback!r} is a guess: the model carries no record and no card; pass "
                         f"{key} to set it.")
    return result["preprocessing"], float(result["crop_fraction"]), notes


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
             split: str | None = None, image_size=None, batch_size: int = 32, weights: str | None = None,
             preprocessing: str | None = None, crop_fraction: float | None = None,
             max_batches: int | None = None, num_samples: int = 8, from_logits: bool | None = None,
             allow_random_weights: bool = False, seed: int = 0, history: dict | None = None,
             title: str | None = None, verbose: int = 1, notes: list | None = None,
             save_detections: str | None = None, **load_kwargs) -> str:
    """Evaluate ``model`` on ``data`` for ``task``; write report.json/md/html into ``out_dir``; return it.

    Args:
        model: a keras.Model, a path to a ``.keras`` file, or a registered name (built with ``weights``).
        data: a dataset spec for ``catalog.datasets.load`` (``shapes``, ``folder:PATH``, ``coco:...``,
            ``voc:PATH``, ``tfds:NAME``), or an iterable of (images, targets) batches in its layout.
        task: ``classification``, ``detection``, ``segmentation``, ``restoration`` (see
            :func:`_evaluate_restoration`: PSNR and SSIM against the bicubic or noisy input) or ``video`` (clips
            scored as classification; ``frames`` in ``load_kwargs``, default the model's).
        out_dir: the report folder (default ``runs/eval-TIMESTAMP``).
        class_names: names in class order (default: the dataset's).
        split: default ``catalog.datasets.evaluation_split(data)`` (a flat class folder is evaluated whole).
        image_size, batch_size: passed to ``catalog.datasets.load`` (image size defaults to the model's
            input; the number of channels is always the model's).
        preprocessing, crop_fraction: default to the record saved with the model (``catalog.saving``),
            else to the card of its registered name, else ``unit`` and 1.0; the report says which.
        max_batches: evaluate a seeded random sample of this many batches drawn from the whole split
            (the report marks the result partial and lists the classes it covers).
        num_samples: images in the sample grid.
        from_logits: whether classification outputs are logits (default: guessed from the first batch).
        allow_random_weights: score a registered name without weights (or an untrained model) anyway.
        seed: the sample drawn by ``max_batches``.
        history: per-epoch training history (``catalog.train``'s) to plot as training curves in the report.
        title: the report's title.
        notes: lines to state in the report (and print), before the ones this job adds.
        save_detections: detection: write the detections to this file in the COCO results format
            (``image_id``, ``category_id``, ``bbox`` xywh in original pixels, ``score``; a ``coco:`` spec's
            own image and category ids, else images numbered 1.. in evaluation order and classes 1..K).
        verbose: 1 shows a progress bar when there are more than a few batches, and the notes.
    """
    import keras

    from catalog.evaluation import ClassificationMetrics, SegmentationMetrics
    from catalog.evaluation.report import MisclassifiedCollector, write_report
    from catalog.registry import get_entry, list_models, recipe_of
    from catalog.saving import read_record

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches <= 0):
        raise ValueError(f"max_batches must be a positive integer or None; got {max_batches!r}.")
    out_dir = out_dir or os.path.join("runs", "eval-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    if task == "restoration":
        return _evaluate_restoration(model, data, out_dir, split=split, image_size=image_size, batch_size=batch_size,
                                     weights=weights, preprocessing=preprocessing, max_batches=max_batches,
                                     num_samples=num_samples, allow_random_weights=allow_random_weights, seed=seed,
                                     history=history, title=title, verbose=verbose, notes=notes, **load_kwargs)
    if task in ("generation", "embedding", "early_exit"):
        model, record, card, name = task_model(model, weights, allow_random_weights)
        recipe = recipe_of(model, name)
        entry = get_entry(name) if name in list_models() else None
        if recipe is None or recipe.evaluate is None or entry.task != task:
            raise ValueError(f"model {name!r} is not a {task} model; pick one from `catalog list --task {task}`.")
        return recipe.evaluate(model, data, out_dir=out_dir, record=record, card=card, split=split,
                               image_size=image_size, batch_size=batch_size, preprocessing=preprocessing,
                               max_batches=max_batches, num_samples=num_samples,
                               allow_random_weights=allow_random_weights, seed=seed, history=history, title=title,
                               verbose=verbose, notes=notes, **load_kwargs)
    record = None
    if isinstance(model, (str, os.PathLike)) and _is_path(model):
        record = read_record(os.path.expanduser(os.fspath(model)))
        model, _ = _load_model(model, None, None, None)
    size = _image_size(model, image_size)
    video = task == "video"  # clips (N, T, H, W, C), scored as classification
    if video:
        load_kwargs["frames"], size = _clip_size(model, image_size, load_kwargs.get("frames"))
    preprocessing, crop_fraction, settings_notes = input_settings(model, record, preprocessing, crop_fraction)
    notes = list(notes or []) + settings_notes
    channels = _channels(model)
    info = {}
    if isinstance(data, str):
        from catalog import datasets

        split = split or datasets.evaluation_split(data, data_dir=load_kwargs.get("data_dir"))
        sampled = max_batches is not None
        ds, info = datasets.load(data, split=split, task=task, image_size=size or 224, batch_size=batch_size,
                                 preprocessing=preprocessing, crop_fraction=crop_fraction, channels=channels,
                                 shuffle=sampled, seed=seed, **load_kwargs)
        names = list(class_names or info["class_names"])
        count = info.get("count")
        num_batches = -(-count // batch_size) if count else None
    else:
        ds, names, num_batches, count = data, list(class_names or []), None, None
        if not names:
            raise ValueError("class_names is required when data is not a dataset spec.")
    if max_batches is not None:
        num_batches = min(num_batches or max_batches, max_batches)
    if task == "segmentation" and len(names) and not (class_names and len(class_names)):
        names = ["background", *names]  # generated/annotated masks use 0 for background
    build_size = (load_kwargs["frames"], *size) if video and size else size
    model, card = _load_model(model, len(names), build_size, weights, channels, allow_random_weights)
    if task == "detection" and isinstance(model.output, dict) and "scores" not in model.output:
        from catalog.registry import recipe_of

        recipe = recipe_of(model, (record or {}).get("model_name"))
        if recipe is None or recipe.inference is None:
            raise ValueError(f"model {model.name!r} outputs {sorted(model.output)}, not detections; pass its "
                             f"inference model (outputs boxes, scores, labels) or a registered detector.")
        model = recipe.inference(model)  # a training model: its decoding and NMS appended
    card = report_card(model, card, notes, "its scores are chance level")
    if verbose:
        for note in notes:
            print(f"note: {note}")

    progress = keras.utils.Progbar(num_batches, verbose=1) if verbose and (num_batches or 4) > 3 else None
    classify = task in ("classification", "video")
    metric = ClassificationMetrics(len(names), names, top_k=(1, 5)) if classify else None
    if task == "segmentation":
        metric = SegmentationMetrics(len(names), ignore_index=info.get("ignore_label"))
    per_image, samples = [], None
    sample = {"images": [], "predictions": [], "ground_truth": []}
    image_offset, start, seen_classes, mistakes = 0, time.time(), set(), MisclassifiedCollector()
    for step, (x, y) in enumerate(ds):
        if max_batches is not None and step >= max_batches:
            break
        x = np.asarray(x)
        out = model.predict_on_batch(x)
        n = len(x)
        shown = x[:, x.shape[1] // 2] if video else x  # a clip's middle frame in the report's grids
        if classify:
            scores = np.asarray(out, np.float64)
            if scores.ndim != 2 or scores.shape[1] != len(names):
                raise ValueError(f"the model outputs {scores.shape[1:]} scores per image but the data has "
                                 f"{len(names)} classes; pass a model built for them.")
            if step == 0:
                guess = bool(np.any(scores < 0) or not np.allclose(scores.sum(1), 1, atol=1e-3))
                metric.from_logits = guess if from_logits is None else from_logits
            metric.update(np.asarray(y), scores)
            mistakes.update(shown, np.asarray(y), scores, from_logits=metric.from_logits)
            preds, truth = scores.argmax(1), np.asarray(y).reshape(-1)
            seen_classes.update(truth.tolist())
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
                b = boxes[i][keep]
                preds.append({"boxes": b, "labels": labels[i][keep], "scores": scores[i][keep]})
                truth.append({"boxes": gb[i][gkeep], "labels": gl[i][gkeep]})
            per_image += [(p["boxes"], p["labels"], p["scores"], t["boxes"], t["labels"]) for p, t in zip(preds, truth)]
        room = num_samples - len(sample["images"])
        if room > 0:
            sample["images"] += list(shown[:room])
            sample["predictions"] += list(preds[:room])
            sample["ground_truth"] += list(truth[:room])
        image_offset += n
        if progress is not None:
            progress.update(step + 1)
    if image_offset == 0:
        raise ValueError(f"data {data!r} gave no examples for split {split!r}.")
    seconds = time.time() - start

    if task == "detection":
        metrics, results, scaled = _detection_metrics(per_image, names, info, size, count)
        if scaled:
            notes.append("boxes were scored in each image's original pixels (the model saw it resized).")
        if save_detections:
            _write_json(save_detections, results)
            if verbose:
                print(f"Detections written to {save_detections} ({len(results)} boxes, COCO results format).")
    else:
        metrics = metric.result()
    samples = sample if sample["images"] else None
    if samples is not None and task != "detection":
        samples = {k: np.asarray(v) for k, v in samples.items()}
    if samples is not None and classify:
        samples["misclassified"] = mistakes.result()
    settings = {"split": split, "batch_size": batch_size, "image_size": list(size) if size else None,
                "channels": channels, "preprocessing": preprocessing, "crop_fraction": crop_fraction,
                "max_batches": max_batches, **({"frames": load_kwargs["frames"]} if video else {})}
    dataset = {"spec": data if isinstance(data, str) else type(data).__name__, "split": split,
               "examples": image_offset, "class_names": names}
    if max_batches is not None and (count is None or image_offset < count):
        covered = sorted(set(int(c) for c in seen_classes)) if classify else None
        dataset["partial"] = True
        notes.append(f"partial result: {image_offset} of {count if count else 'an unknown number of'} examples "
                     f"(a random sample, seed {seed}, of {max_batches} batches)"
                     + (f" covering {len(covered)} of {len(names)} classes" if covered is not None else "") + ".")
        if covered is not None:
            dataset["classes_covered"] = [names[c] for c in covered if c < len(names)]
        if verbose:
            print(f"note: {notes[-1]}")
    settings["notes"] = notes
    write_report(out_dir, "classification" if video else task, metrics, names, samples=samples, settings=settings,
                 model=card, dataset=dataset, seconds=round(seconds, 3), history=history, notes=notes,
                 extra={"task": "video"} if video else None,
                 title=title or f"{card.get('name', 'model')}: {task} on {dataset['spec']} ({split})")
    return out_dir


def _detection_metrics(per_image, names, info, size, count):
    """(report metrics, COCO results list, whether boxes were scaled back) of per-image (det boxes, labels,
    scores, gt boxes, labels) in the model's input pixels: COCO's 12 numbers, per-class AP and PR curves,
    and Pascal VOC AP at IoU 0.5. A ``coco:``/``voc:`` dataset read whole in order is scored in each
    image's original pixels with its own ids."""
    from catalog.evaluation import coco_evaluate, voc_evaluate
    from catalog.evaluation.report import detection_report_metrics

    original = info.get("image_sizes") is not None and count == len(per_image) == len(info["image_sizes"])
    image_ids = info["image_ids"] if original else list(range(1, len(per_image) + 1))
    category_ids = np.asarray(info.get("category_ids") or range(1, len(names) + 1))
    gt_anns, det_cols, voc = [], {"image_id": [], "category_id": [], "bbox": [], "score": []}, [[], [], [], [], []]
    for k, (boxes, labels, scores, gt_boxes, gt_labels) in enumerate(per_image):
        if original:  # the pipeline stretched each image to ``size``: undo it on every box
            (h, w), (h_in, w_in) = info["image_sizes"][k], size
            factor = np.array([w / w_in, h / h_in, w / w_in, h / h_in])
            boxes, gt_boxes = boxes * factor, gt_boxes * factor
        for column, value in zip(voc, (boxes, labels, scores, gt_boxes, gt_labels)):
            column.append(value)
        det_cols["image_id"].append(np.full(len(boxes), image_ids[k]))
        det_cols["category_id"].append(category_ids[labels])
        det_cols["bbox"].append(boxes)
        det_cols["score"].append(scores)
        wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
        gt_anns += [{"id": len(gt_anns) + j + 1, "image_id": image_ids[k], "category_id": int(category_ids[c]),
                     "bbox": box.tolist(), "area": float(bw * bh), "iscrowd": 0}
                    for j, (box, c, (bw, bh)) in enumerate(zip(gt_boxes, gt_labels, wh))]
    images = [{"id": i} for i in image_ids]
    cats = [{"id": int(c), "name": name} for c, name in zip(category_ids, names)]
    cols = {k: np.concatenate(v) if v else np.zeros((0, 4) if k == "bbox" else 0) for k, v in det_cols.items()}
    result = coco_evaluate({"images": images, "annotations": gt_anns, "categories": cats}, cols,
                           box_format="xyxy", return_details=True)
    metrics = detection_report_metrics(result)
    index = {int(c): i for i, c in enumerate(category_ids)}
    metrics["per_class_gt"] = np.bincount([index[a["category_id"]] for a in gt_anns], minlength=len(names))
    det_boxes, det_labels, det_scores, gt_boxes, gt_labels = voc
    pascal = voc_evaluate(gt_boxes, gt_labels, det_boxes, det_labels, det_scores, num_classes=len(names))
    metrics["VOC_AP50"], metrics["per_class_voc_ap50"] = pascal["map"], pascal["ap"]
    xywh = np.concatenate([cols["bbox"][:, :2], cols["bbox"][:, 2:] - cols["bbox"][:, :2]], axis=1)
    results = [{"image_id": _plain_id(i), "category_id": int(c), "bbox": [round(float(v), 3) for v in b],
                "score": round(float(s), 5)}
               for i, c, b, s in zip(cols["image_id"], cols["category_id"], xywh, cols["score"])]
    return metrics, results, original


def _plain_id(value):
    return value.item() if hasattr(value, "item") else value


def _write_json(path, value):
    path = os.path.expanduser(os.fspath(path))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def _channels(model) -> int:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and shape[-1] in (1, 3):
        return int(shape[-1])
    if isinstance(model, str):
        from catalog.registry import get_entry, list_models

        if model in list_models():
            return int(get_entry(model).input_shape[-1])
    return 3


def _network(model, weights, images, **kwargs):
    """The network that scores generated images: refused while its weights are random, built by name at
    the images' size (a too-small size is the card's one-sentence error)."""
    import keras

    from catalog.registry import create_model, has_random_weights

    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, height, width, channels) array; got shape {images.shape}.")
    if isinstance(model, (str, os.PathLike)) and _is_path(model):
        net = load_keras_file(model)
    elif isinstance(model, keras.Model):
        net = model
        if has_random_weights(net):
            raise ValueError(f"model {net.name!r} has random weights (built without weights and never trained "
                             f"or loaded), so the score would mean nothing; load weights into it first.")
    else:
        if weights is None:
            raise ValueError(f"model {model!r} needs weights=PATH (a local weights file): a network with "
                             f"random weights gives a meaningless score.")
        net = create_model(model, weights=weights, input_shape=tuple(int(v) for v in images.shape[1:]),
                           **kwargs)
    expected = tuple(net.input_shape[1:])
    got = tuple(int(v) for v in images.shape[1:])
    if any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(f"images are {got[0]}x{got[1]}x{got[2]} but {net.name} takes "
                         f"{'x'.join(str(e) for e in expected)}; resize the images to its input first.")
    return net


def _predict(net, images, batch_size):
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(net.predict_on_batch(images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def inception_score_of_images(images, model="inception_v3", weights: str | None = None, splits: int = 10,
                              batch_size: int = 32) -> tuple[float, float]:
    """Inception Score of generated ``images`` (already preprocessed for the network) from the class
    probabilities of ``model``: the catalog's ``inception_v3`` with ``weights`` from a local file (required),
    or a trained classifier (a keras.Model, a ``.keras`` file) ending in a softmax. A network whose
    weights are still random is refused."""
    from catalog.evaluation import inception_score

    net = _network(model, weights, images, classifier_activation="softmax")
    return inception_score(_predict(net, images, batch_size).astype(np.float64), splits=splits)


def fid_of_images(images_a, images_b, model="inception_v3", weights: str | None = None, batch_size: int = 32) -> float:
    """FID between two image sets from the pooled features of ``model`` (default: the catalog's
    ``inception_v3`` without its top, global average pooling, ``weights`` from a local file, required).
    A network whose weights are still random is refused."""
    from catalog.evaluation import fid

    net = _network(model, weights, images_a, include_top=False, pooling="avg")
    _network(net, None, images_b)  # the same size check for the second set
    return fid(_predict(net, images_a, batch_size), _predict(net, images_b, batch_size))


# ------------------------------------------------------------------------------------------ restoration
def bicubic_upscale(images, scale: int) -> np.ndarray:
    """Bicubic upscaling of (N, H, W, C) float images by ``scale`` with PIL (Keys a = -0.5, pixel-centre
    aligned, per channel in float32: no rounding), clipped to [0, 1]: the super-resolution baseline."""
    from PIL import Image

    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    out = np.empty((n, h * scale, w * scale, c), np.float32)
    for i in range(n):
        for k in range(c):
            up = Image.fromarray(images[i, :, :, k], mode="F").resize((w * scale, h * scale), Image.BICUBIC)
            out[i, :, :, k] = np.asarray(up)
    return np.clip(out, 0.0, 1.0)


def luma_bt601(images) -> np.ndarray:
    """ITU-R BT.601 luma of (N, H, W, 3) RGB in [0, 1], as MATLAB's ``rgb2ycbcr`` and the super-resolution papers
    compute it: Y = 16 + 65.481 R + 128.553 G + 24.966 B on 0..255, returned / 255 (so PSNR and SSIM with
    ``data_range=1`` equal theirs on 0..255 with peak 255). Shape (N, H, W, 1)."""
    rgb = np.asarray(images, np.float64)
    return ((16.0 + rgb @ np.array([65.481, 128.553, 24.966])) / 255.0)[..., None]


def restoration_scores(output, target, border: int) -> dict:
    """Per-image PSNR and SSIM (``catalog.evaluation``, ``data_range=1``) of images in [0, 1] after cropping
    ``border`` pixels from every side: ``psnr_y``/``ssim_y`` on the BT.601 luma (3 channels) or the single channel
    (1 channel), and ``psnr_rgb``/``ssim_rgb`` on RGB (3 channels only); each an (N,) array."""
    from catalog.evaluation import psnr, ssim

    out, ref = np.asarray(output, np.float64), np.asarray(target, np.float64)
    if border:
        out, ref = out[:, border:-border, border:-border], ref[:, border:-border, border:-border]
    scores = {}
    if out.shape[-1] == 3:
        scores["psnr_rgb"] = psnr(out, ref, 1.0, reduction="none")
        scores["ssim_rgb"] = ssim(out, ref, 1.0, reduction="none")
        out, ref = luma_bt601(out), luma_bt601(ref)
    scores["psnr_y"] = psnr(out, ref, 1.0, reduction="none")
    scores["ssim_y"] = ssim(out, ref, 1.0, reduction="none")
    return {k: np.atleast_1d(v) for k, v in scores.items()}


def _evaluate_restoration(model, data, out_dir, *, split=None, image_size=None, batch_size=32, weights=None,
                          preprocessing=None, max_batches=None, num_samples=8, allow_random_weights=False, seed=0,
                          history=None, title=None, verbose=1, notes=None, **load_kwargs):
    """``evaluate(task="restoration")``: a super-resolution model (output ``scale`` times its input) on the
    ``super_resolution`` pairs of ``data`` at ``scale``, a denoiser on its ``denoising`` pairs (``noise_std``,
    default 25 in 0..255 units); PSNR and SSIM (mean over images of the per-image values) on the BT.601 luma
    ("Y", as super-resolution papers report; the single channel of a 1-channel model) and on RGB, with a border
    of ``scale`` pixels cropped (none for a denoiser), for the model (its output clipped to [0, 1]) and the
    baseline (PIL bicubic upscaling of the low-res input; the noisy input); samples: input, output, target.
    ``image_size`` is the clean (target) image's size."""
    from catalog.evaluation.report import write_report
    from catalog.models.restoration import restoration_scale

    model, record, card, _ = task_model(model, weights, allow_random_weights, input_shape=(None, None))
    preprocessing, _, settings_notes = input_settings(model, record, preprocessing, None)
    if preprocessing != "unit":
        raise ValueError(f"restoration is scored on [0, 1] pixels: preprocessing must be 'unit'; got "
                         f"{preprocessing!r}.")
    notes = list(notes or []) + settings_notes
    scale = restoration_scale(model)
    if load_kwargs.get("scale", scale) != scale:
        raise ValueError(f"scale {load_kwargs['scale']} disagrees with the model, which upscales x{scale}; drop scale.")
    load_kwargs.pop("scale", None)
    noise_std = float(load_kwargs.pop("noise_std", 25.0))
    data_task = "super_resolution" if scale > 1 else "denoising"
    channels = int(model.input_shape[-1])
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    elif model.input_shape[1] and model.input_shape[2]:
        size = (int(model.input_shape[1]) * scale, int(model.input_shape[2]) * scale)
    else:
        size = (64, 64)
    border = scale if scale > 1 else 0
    card = report_card(model, card, notes)
    baseline_name = f"bicubic x{scale} (PIL)" if scale > 1 else f"noisy input (sigma {noise_std:g})"
    if isinstance(data, str):
        from catalog import datasets

        split = split or datasets.evaluation_split(data, data_dir=load_kwargs.get("data_dir"))
        extra = {"scale": scale} if scale > 1 else {"noise_std": noise_std}
        ds, info = datasets.load(data, split=split, task=data_task, image_size=size, batch_size=batch_size,
                                 preprocessing="unit", channels=channels, shuffle=max_batches is not None, seed=seed,
                                 **extra, **load_kwargs)
        count = info["count"]
    else:
        ds, count = data, None
    if verbose:
        for note in notes:
            print(f"note: {note}")
    per_image = {"model": {}, "baseline": {}}
    sample = {"images": [], "predictions": [], "ground_truth": []}
    seen, start = 0, time.time()
    for step, (x, y) in enumerate(ds):
        if max_batches is not None and step >= max_batches:
            break
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        out = np.clip(np.asarray(model.predict_on_batch(x), np.float32), 0.0, 1.0)
        if out.shape != y.shape:
            raise ValueError(f"the model's output {out.shape[1:]} must match the targets' {y.shape[1:]}.")
        base = bicubic_upscale(x, scale) if scale > 1 else np.clip(x, 0.0, 1.0)
        for which, images in (("model", out), ("baseline", base)):
            for key, values in restoration_scores(images, y, border).items():
                per_image[which].setdefault(key, []).extend(values.tolist())
        room = num_samples - len(sample["images"])
        if room > 0:
            to_uint8 = lambda a: np.round(np.clip(a[:room], 0, 1) * 255).astype(np.uint8)  # noqa: E731
            sample["images"] += list(to_uint8(x))
            sample["predictions"] += list(to_uint8(out))
            sample["ground_truth"] += list(to_uint8(y))
        seen += len(x)
    if seen == 0:
        raise ValueError(f"data {data!r} gave no examples for split {split!r}.")
    seconds = time.time() - start
    metrics = {k: float(np.mean(v)) for k, v in per_image["model"].items()}
    metrics["baseline"] = {k: float(np.mean(v)) for k, v in per_image["baseline"].items()}
    metrics["psnr_y_gain"] = metrics["psnr_y"] - metrics["baseline"]["psnr_y"]
    metrics.update(baseline_name=baseline_name, border_crop=border, scale=scale, data_task=data_task,
                   noise_std=noise_std if scale == 1 else None,
                   luma="ITU-R BT.601 (16 + 65.481 R + 128.553 G + 24.966 B)" if channels == 3
                   else "the model's single channel", per_image=per_image)
    notes.append(f"PSNR/SSIM: mean over {seen} images of the per-image values on [0, 1] pixels (data range 1), "
                 f"{border} px border cropped, Y = {metrics['luma']}; baseline: {baseline_name}.")
    settings = {"split": split, "batch_size": batch_size, "image_size": list(size), "channels": channels,
                "preprocessing": preprocessing, "max_batches": max_batches, "border_crop": border,
                "notes": notes}
    dataset = {"spec": data if isinstance(data, str) else type(data).__name__, "split": split, "examples": seen,
               "task": data_task}
    if max_batches is not None and (count is None or seen < count):
        dataset["partial"] = True
    samples = {k: np.asarray(v) for k, v in sample.items()} if sample["images"] else None
    write_report(out_dir, "restoration", metrics, [], samples=samples, settings=settings, model=card,
                 dataset=dataset, seconds=round(seconds, 3), history=history, notes=notes,
                 title=title or f"{card.get('name', 'model')}: restoration on {dataset['spec']} ({split})")
    return out_dir
