"""Fine-tuning (``catalog.finetune``): freeze by stage or name, a new head on old weights, the two-stage recipe.

    import catalog
    run = catalog.finetune("resnet20", "folder:~/digits", weights="runs/r20/model.keras",
                           unfreeze_from="stage3", head_epochs=3, epochs=5, lr=0.01)

Stages. The stages of a model are the outputs of ``features_only=True`` (timm's convention): a layer
belongs to stage ``k`` when it feeds stage output ``k`` and no earlier one (found by walking the graph back
from each stage output to the input); layers that feed no stage output are the head (``head_pool``,
``head_fc``, ...). Stage ``k`` is named ``stage{k}`` in every family (the ``features_only`` outputs carry
these names), or by its number ``k``: for the ImageNet families stage0 .. stage4 end at reductions 2, 4,
8, 16 and 32, so ``unfreeze_from="stage4"`` means the same for a ResNet, a DenseNet or an Inception. The
family's own name of a stage (the first ``_``-part of its output layer: DenseNet's ``block3``,
Inception's ``mixed7``, GoogLeNet's ``inception4e``) is accepted too where it names one stage and is not
of the ``stage{k}`` form. So one mechanism serves every family and no per-family table can drift.
``build_classifier`` records the stage output layers on the model it builds; a model without that record
(loaded from a ``.keras`` file) is rebuilt from its registered name with ``features_only=True``.

Freezing sets ``layer.trainable``; a BatchNormalization with ``trainable=False`` runs in inference mode
in Keras 3, so a frozen part keeps its moving statistics too. Recompile after freezing (``catalog.train``
compiles the model it is given).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import json
import logging
import os
import re

from catalog.weights import ancestors, collected_lines, load_matching_weights, read_weights_by_layer  # noqa: F401

log = logging.getLogger("catalog.finetune")

STAGE_OUTPUTS = "catalog_stage_outputs"  # the attribute build_classifier sets: names of the stage output layers


# --------------------------------------------------------------------------------------------- stages


def stage_output_layers(model) -> list[str]:
    """Names of the layers whose outputs ``features_only=True`` returns, shallow to deep."""
    names = getattr(model, STAGE_OUTPUTS, None)
    if names:
        return list(names)
    from catalog.registry import create_model, list_models

    base = re.sub(r"_features$", "", model.name)
    if base in list_models():
        try:
            features = create_model(base, features_only=True, input_shape=tuple(model.input_shape[1:]))
            names = list(getattr(features, STAGE_OUTPUTS))
        except Exception:  # another size or option set than the card's: not a usable map
            names = []
        present = {layer.name for layer in model.layers}
        if names and all(n in present for n in names):
            return names
    raise ValueError(f"model {model.name} has no stage map (it was not built by catalog.create_model with "
                     f"its current options); pass a layer-name pattern such as 'stage1_*' instead of a stage.")


def stage_names(model) -> list[str]:
    """The stage names of ``model`` in order: ``stage0``, ``stage1``, ... (see the module docstring)."""
    return [f"stage{i}" for i in range(len(stage_output_layers(model)))]


def family_stage_names(model) -> list[str]:
    """The family's own names of the stages: the first ``_`` part of each stage output layer's name."""
    return [name.split("_")[0] for name in stage_output_layers(model)]


def layer_stages(model) -> dict[str, int]:
    """``{layer name: stage index}``; the head (layers feeding no stage output) gets ``len(stages)``."""
    outputs = stage_output_layers(model)
    stage = {}
    for index, name in enumerate(outputs):
        for ancestor in ancestors(model.get_layer(name)):
            stage.setdefault(ancestor, index)
    return {layer.name: stage.get(layer.name, len(outputs)) for layer in model.layers}


def _stage_index(model, stage) -> int:
    """The index of a stage given by name (``"stage3"``) or number (``3`` / ``"3"``)."""
    names = stage_names(model)
    if isinstance(stage, int) and not isinstance(stage, bool) or (isinstance(stage, str) and stage.isdigit()):
        index = int(stage)
        if not 0 <= index < len(names):
            raise ValueError(f"stage must be in 0..{len(names) - 1} for {model.name}; got {stage!r}.")
        return index
    if stage in names:
        return names.index(stage)
    own = family_stage_names(model)
    if own.count(stage) > 1:
        raise ValueError(f"stage {stage!r} names several stages of {model.name}; pass its stage name "
                         f"({', '.join(names[i] for i, n in enumerate(own) if n == stage)}).")
    return own.index(stage)


def _is_stage(model, value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    if not isinstance(value, str) or any(c in value for c in "*?["):
        return False
    if value.isdigit() or value in stage_names(model):
        return True
    return re.fullmatch(r"stage\d+", value) is None and value in family_stage_names(model)


def _apply(model, frozen: set[str]) -> list[str]:
    for layer in model.layers:
        layer.trainable = layer.name not in frozen
    return [layer.name for layer in model.layers if layer.name in frozen and layer.weights]


def freeze(model, until="all") -> list[str]:
    """Freeze part of ``model`` (every other layer becomes trainable); return the frozen layers with weights.

    Args:
        model: a functional catalog model.
        until: None (nothing frozen), ``"all"`` (every stage: only the head trains), a stage name or number
            (that stage and every earlier one, see the module docstring), or an fnmatch pattern over layer
            names (``"stage[12]_*"``: exactly the matching layers).
    """
    if until is None:
        return _apply(model, set())
    if until == "all":
        stages = layer_stages(model)
        head = len(stage_output_layers(model))
        return _apply(model, {n for n, s in stages.items() if s < head})
    if _is_stage(model, until):
        last = _stage_index(model, until)
        return _apply(model, {n for n, s in layer_stages(model).items() if s <= last})
    if not isinstance(until, str):
        raise ValueError(f"until must be None, 'all', a stage name or number, or a layer-name pattern; "
                         f"got {until!r}.")
    matched = {layer.name for layer in model.layers if fnmatch.fnmatchcase(layer.name, until)}
    if not matched:
        raise ValueError(f"until {until!r} is neither a stage of {model.name} ({', '.join(_safe_names(model))}) "
                         f"nor a pattern matching any of its layers.")
    return _apply(model, matched)


def unfreeze_from(model, stage="all") -> list[str]:
    """Make ``stage`` and everything after it trainable, freeze what comes before; return the frozen layers.

    ``stage``: ``"all"`` (nothing frozen), ``"head"`` (only the head trains), a stage name or number, or an
    fnmatch pattern (the first matching layer in ``model.layers`` and every later one train).
    """
    if stage == "all":
        return freeze(model, None)
    if stage == "head":
        return freeze(model, "all")
    if _is_stage(model, stage):
        first = _stage_index(model, stage)
        return _apply(model, {n for n, s in layer_stages(model).items() if s < first})
    if not isinstance(stage, str):
        raise ValueError(f"unfreeze_from must be 'all', 'head', a stage name or number, or a layer-name "
                         f"pattern; got {stage!r}.")
    names = [layer.name for layer in model.layers]
    hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, stage)]
    if not hits:
        raise ValueError(f"unfreeze_from {stage!r} is neither 'all', 'head', a stage of {model.name} "
                         f"({', '.join(_safe_names(model))}) nor a pattern matching any of its layers.")
    return _apply(model, set(names[:hits[0]]))


def _safe_names(model):
    try:
        return stage_names(model)
    except ValueError:
        return ["no stage map"]


# ------------------------------------------------------------------------------------------- the job


@dataclasses.dataclass
class FinetuneResult:
    """What ``catalog.finetune`` returns: the run directory, the model, both stages' results and history."""

    run_dir: str
    model: object
    stages: list          # the two catalog.train TrainResults
    history: list         # rows of both stages: stage, epoch (counted over both), the stage's columns
    skipped: list         # load_matching_weights' lines
    frozen: dict          # {"stage1": [...], "stage2": [...]}: the frozen layers with weights


def finetune(model, data=None, *, weights=None, num_classes=None, unfreeze_from="all", head_epochs=3,
             epochs=10, lr=None, finetune_lr=None, out_dir=None, model_options=None,
             **train_settings) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` with the two-stage recipe; write one run directory.

    Stage 1 trains the new head for ``head_epochs`` with every stage frozen (BatchNorm in inference mode);
    stage 2 trains from ``unfreeze_from`` on for ``epochs`` at ``finetune_lr``. Both go through
    ``catalog.train`` (which compiles the model afresh), into ``OUT/stage1`` and ``OUT/stage2``; ``OUT``
    gets ``history.csv`` (both stages' rows, a ``stage`` column, epochs counted over both), ``finetune.json``
    (the settings, the skipped and frozen layers) and the final ``model.keras``.

    Args:
        model: a registered name (built with ``num_classes`` from the data) or a ``keras.Model``.
        data: a ``catalog.datasets`` spec.
        weights: a ``.weights.h5`` / ``.keras`` file of the same architecture (any number of classes, or
            no top), loaded by :func:`load_matching_weights`; None keeps the model's weights.
        num_classes: default: the data's.
        unfreeze_from: what stage 2 trains (see :func:`unfreeze_from`): ``"all"``, ``"head"``, a stage
            name or number, or a layer-name pattern.
        head_epochs, epochs: the epochs of stage 1 and of stage 2.
        lr: stage 1's learning rate (default: the optimizer's). finetune_lr: stage 2's (default lr / 10).
        out_dir: the run directory (default ``runs/finetune-<model>-<timestamp>``).
        model_options: ``create_model`` keywords for a registered name (width, depths, ...).
        train_settings: more ``catalog.train`` settings for both stages (batch_size, optimizer, ...).
    """
    import datetime

    import keras

    from catalog import datasets
    from catalog.registry import create_model, get_entry
    from catalog.saving import save_model
    from catalog.training.config import DEFAULT_LR, FIELDS
    from catalog.training.loop import preserved_keras_state, train
    from catalog.training.recorder import write_atomic

    for name, value in (("head_epochs", head_epochs), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    unknown = sorted(set(train_settings) - set(FIELDS) | ({"model", "data", "out", "epochs", "lr"} & set(train_settings)))
    if unknown:
        raise ValueError(f"unknown fine-tuning setting(s) {', '.join(unknown)}; accepted: the catalog.train "
                         f"settings except model, data, out, epochs and lr.")
    if data is None:
        raise ValueError("data must be a dataset spec such as 'folder:PATH'; got None.")
    registered = isinstance(model, str)
    entry = get_entry(model) if registered else None
    settings = dict(train_settings)
    if registered:
        builtin = (model_options or {}).get("include_preprocessing")  # the model takes raw pixels
        settings.setdefault("preprocessing", "none" if builtin else entry.preprocessing or "unit")
        settings.setdefault("image_size", entry.input_shape[0])
    optimizer = settings.get("optimizer", "sgd")
    lr = float(lr if lr is not None else DEFAULT_LR.get(optimizer, 0.1))
    finetune_lr = float(finetune_lr if finetune_lr is not None else lr / 10)
    run_dir = os.fspath(out_dir) if out_dir is not None else os.path.join(
        "runs", f"finetune-{model if registered else model.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")

    with preserved_keras_state():
        if registered:
            if num_classes is None:
                _, info = datasets.load(data, split=settings.get("train_split", "train"), task="classification",
                                        image_size=settings["image_size"], batch_size=1)
                num_classes = info["num_classes"]
            keras.utils.set_random_seed(settings.get("seed", 0))
            size, channels = settings["image_size"], entry.input_shape[-1]
            with collected_lines() as skipped:  # what create_model logs of the file: skipped head, layout
                model = create_model(model, num_classes=num_classes, input_shape=(size, size, channels),
                                     weights=weights, **(model_options or {}))
        elif model_options:
            raise ValueError("model_options applies to a registered name only; got a built model.")
        elif not isinstance(model, keras.Model):
            raise ValueError(f"model must be a registered name or a keras.Model; got {type(model).__name__}.")
        else:
            skipped = load_matching_weights(model, weights) if weights is not None else []
        if num_classes is not None:
            settings["num_classes"] = num_classes

    frozen = {"stage1": freeze(model, "all")}
    findings = checkup(model, data, settings, card=entry, lr=lr, finetune_lr=finetune_lr)
    for line in findings:
        print(f"check-up: {line}")
    first = train(model, data, epochs=head_epochs, lr=lr, out_dir=os.path.join(run_dir, "stage1"), **settings)
    frozen["stage2"] = unfreeze_from_(model, unfreeze_from)
    second = train(first.model, data, epochs=epochs, lr=finetune_lr, out_dir=os.path.join(run_dir, "stage2"),
                   **settings)

    history = ([{"stage": 1, **row} for row in first.history]
               + [{"stage": 2, **row, "epoch": head_epochs + row["epoch"]} for row in second.history])
    _write_csv(os.path.join(run_dir, "history.csv"), history)
    record = read_record_safely(os.path.join(run_dir, "stage2", "model.keras"))
    save_model(second.model, os.path.join(run_dir, "model.keras"),
               **{**record, "model_name": entry.name if entry else record.get("model_name"),
                  "trained_by": "catalog.finetune"})
    val_split = second.config["resolved"].get("val_split")
    if val_split is not None:  # one report over both stages: the final model's scores, both stages' curves
        from catalog.scoring import evaluate as evaluate_job

        columns = {k: [row.get(k) for row in history] for k in history[0]} if history else {}
        evaluate_job(os.path.join(run_dir, "model.keras"), data, out_dir=run_dir, split=val_split,
                     image_size=settings.get("image_size"), batch_size=settings.get("batch_size", 32), verbose=0,
                     history=columns, notes=[f"check-up: {line}" for line in findings] + skipped,
                     title=f"{entry.name if entry else model.name} fine-tuned on {data} (stage 1: head, "
                           f"stage 2: from {unfreeze_from})", **_data_settings(settings))
    summary = {"model": entry.name if entry else model.name, "data": data, "weights": weights,
               "checkup": findings,
               "num_classes": num_classes, "unfreeze_from": unfreeze_from, "head_epochs": head_epochs,
               "epochs": epochs, "lr": lr, "finetune_lr": finetune_lr, "model_options": model_options or {},
               "train_settings": settings, "skipped": skipped, "frozen": frozen,
               "stages": {"stage1": first.run_dir, "stage2": second.run_dir}}
    write_atomic(os.path.join(run_dir, "finetune.json"), json.dumps(summary, indent=2, default=str))
    return FinetuneResult(run_dir=run_dir, model=second.model, stages=[first, second], history=history,
                          skipped=skipped, frozen=frozen)


unfreeze_from_ = unfreeze_from  # the job's keyword shadows the function's name inside finetune

# The range of the inputs a model expects, by the card's preprocessing names (ImageNet mean/std for torch).
EXPECTED_RANGE = {"unit": (0.0, 1.0), "tf": (-1.0, 1.0), "torch": (-2.12, 2.64), "caffe": (-123.68, 151.06),
                  "none": (0.0, 255.0)}
# Stage 2 learning rates above these wreck pretrained features more often than not (SGD-like / Adam-like).
HIGH_FINETUNE_LR = {"sgd": 0.05, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}


def _data_settings(settings) -> dict:
    return {k: settings[k] for k in ("num_images", "data_dir") if settings.get(k) is not None}


def checkup(model, data, settings, *, card=None, lr: float, finetune_lr: float) -> list[str]:
    """Findings on a fine-tuning run before its first step, one sentence each with the fix (empty: none).

    From the model (frozen as stage 1 will run it) and the first training batch: the inputs' value range
    against the preprocessing the card's weights expect, BatchNorm layers that would update in the frozen
    backbone, a stage 2 LR too high for unfreezing, labels against the number of classes, a training split
    too small for the batch size.
    """
    import numpy as np
    from keras import layers

    from catalog import datasets
    from catalog.models.classifier import has_builtin_preprocessing

    findings = []
    name = card.name if card is not None else model.name
    preprocessing = settings.get("preprocessing") or "unit"
    expects = "none" if has_builtin_preprocessing(model) else (card.preprocessing if card and card.preprocessing
                                                               else preprocessing)
    if card is not None and not has_builtin_preprocessing(model) and preprocessing != expects:
        findings.append(f"the data is scaled with preprocessing {preprocessing!r} but the weights of {name} expect "
                        f"{expects!r} (its card); pass preprocessing={expects!r}.")
    batch_size = int(settings.get("batch_size", 32))
    size = settings.get("image_size") or model.input_shape[1]
    dataset, info = datasets.load(data, split=settings.get("train_split", "train"), image_size=size,
                                  batch_size=batch_size, preprocessing=preprocessing, channels=model.input_shape[-1],
                                  seed=settings.get("seed", 0), **_data_settings(settings))
    images, labels = next(iter(dataset.take(1)))
    images, labels = np.asarray(images), np.asarray(labels)
    low, high = float(images.min()), float(images.max())
    lo, hi = EXPECTED_RANGE[expects]
    span = hi - lo
    if high > hi + 0.5 * span or low < lo - 0.5 * span or high - low < 0.05 * span:
        findings.append(f"the first batch spans [{low:.3g}, {high:.3g}] but {name} expects {expects!r} inputs, "
                        f"about [{lo:g}, {hi:g}]; scale the data with preprocessing={expects!r}.")
    try:
        stages = layer_stages(model)
        head = len(stage_output_layers(model))
        moving = [layer.name for layer in model.layers if isinstance(layer, layers.BatchNormalization)
                  and layer.trainable and stages.get(layer.name, head) < head]
    except ValueError:
        moving = []
    if moving:
        findings.append(f"{len(moving)} BatchNorm layer(s) of the frozen backbone would update their statistics "
                        f"({moving[0]}, ...); freeze them (trainable=False runs them in inference mode).")
    optimizer = settings.get("optimizer", "sgd")
    if finetune_lr >= lr:
        findings.append(f"stage 2's LR {finetune_lr:g} is not below stage 1's {lr:g}: unfreezing at full LR "
                        f"erases what the backbone learned; pass finetune_lr={lr / 10:g}.")
    elif finetune_lr > HIGH_FINETUNE_LR.get(optimizer, 1e-3):
        findings.append(f"stage 2's LR {finetune_lr:g} is high for unfreezing a pretrained backbone with "
                        f"{optimizer}; pass finetune_lr={HIGH_FINETUNE_LR.get(optimizer, 1e-3) / 5:g} or lower.")
    classes = int(model.output_shape[-1]) if len(model.output_shape) == 2 else None
    top = int(labels.max()) if labels.ndim == 1 else int(labels.shape[-1]) - 1
    if classes is not None and (top >= classes or info["num_classes"] != classes):
        findings.append(f"the model has {classes} classes but {data} has {info['num_classes']} (labels up to "
                        f"{top}); pass num_classes={info['num_classes']}.")
    if info["count"] < batch_size:
        findings.append(f"the training split has {info['count']} images, fewer than batch_size {batch_size}; "
                        f"pass batch_size={max(1, info['count'] // 4)} or fewer.")
    elif info["count"] // batch_size < 4:
        findings.append(f"the training split makes only {info['count'] // batch_size} steps per epoch at "
                        f"batch_size {batch_size}; pass a smaller batch_size for more updates.")
    return findings


def read_record_safely(path) -> dict:
    from catalog.saving import RECORD_KEYS, read_record

    record = read_record(path) or {}
    keep = {k: record[k] for k in RECORD_KEYS if k in record and k not in ("image_size", "channels")}
    keep.setdefault("preprocessing", "unit")
    return keep


def _write_csv(path, rows):
    import csv

    from catalog.training.recorder import write_atomic

    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in keys})
    write_atomic(path, out.getvalue())
