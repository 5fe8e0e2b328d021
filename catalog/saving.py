"""Save a model with the record of how its inputs were prepared, and read that record back.

A model is only as good as the preprocessing it was trained with: the same weights give top-1 0.99 with
pixels / 255 and 0.36 with ImageNet mean/std. Every job that trains writes the model with
:func:`save_model`, which stores a small ``catalog.json`` inside the ``.keras`` archive (Keras ignores
members it does not know, so the file still loads everywhere); :func:`read_record` reads it back, and
``catalog evaluate`` applies it.

    from catalog.saving import load_model, read_record, save_model
    save_model(model, "runs/r20/model.keras", preprocessing="unit", crop_fraction=1.0,
               class_names=["circle", "square"], model_name="resnet20")
    read_record("runs/r20/model.keras")["preprocessing"]   # "unit"
"""

from __future__ import annotations

import json
import os
import zipfile

RECORD_MEMBER = "catalog.json"
RECORD_KEYS = ("preprocessing", "crop_fraction", "image_size", "channels", "class_names", "model_name",
               "task", "trained_by")


def save_model(model, path, *, preprocessing: str, crop_fraction: float = 1.0, class_names=None,
               model_name: str | None = None, task: str = "classification", trained_by: str | None = None,
               **extra) -> str:
    """Save ``model`` to ``path`` (``.keras``) with its input record; return the path.

    Args:
        preprocessing: the pixel scaling the model was trained with (``unit``, ``torch``, ``tf``, ``caffe``,
            ``none``; see ``catalog.datasets.transforms.PREPROCESSING``).
        crop_fraction: the evaluation centre-crop fraction it expects (1.0: resize only, no crop).
        class_names: class names in output order.
        model_name: the registered name it was built from, if any. task: its task.
        trained_by: the job that wrote it (``catalog.demo``, ``catalog.train``, ...).
        extra: more JSON-serializable facts to keep with the record.
    """
    from catalog.datasets.transforms import check_preprocessing

    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"path must end in .keras; got {path!r}.")
    check_preprocessing(preprocessing)
    if not 0.0 < float(crop_fraction) <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1]; got {crop_fraction!r}.")
    shape = tuple(model.input_shape)
    record = {"preprocessing": preprocessing, "crop_fraction": float(crop_fraction),
              "image_size": [shape[1], shape[2]] if len(shape) == 4 else None,
              "channels": shape[-1] if len(shape) == 4 else None,
              "class_names": [str(c) for c in class_names] if class_names is not None else None,
              "model_name": model_name, "task": task, "trained_by": trained_by, **extra}
    text = json.dumps(record, indent=2)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(path)}.partial.keras")
    model.save(partial)
    with zipfile.ZipFile(partial, "a") as archive:
        archive.writestr(RECORD_MEMBER, text)
    with open(partial, "rb") as f:  # on disk before the rename, so a crash leaves the old file or the new
        os.fsync(f.fileno())
    os.replace(partial, path)  # atomic: a reader never sees half a file
    object.__setattr__(model, RECORD_ATTRIBUTE, record)  # the model in memory says how it was trained too
    return path


# A model saved by save_model or loaded by load_model carries its record here (see record_of).
RECORD_ATTRIBUTE = "_catalog_record"


def record_of(model) -> dict | None:
    """The input record of ``model``: a ``.keras`` path's (:func:`read_record`), or the one a keras.Model
    carries since :func:`save_model` saved it or :func:`load_model` loaded it; None if it has none."""
    if isinstance(model, (str, os.PathLike)):
        return read_record(os.path.expanduser(os.fspath(model)))
    return getattr(model, RECORD_ATTRIBUTE, None)


def load_model(path):
    """Load a ``.keras`` file with ``safe_mode=True`` after registering the catalog's custom objects (its
    layers, schedules and losses); a missing, corrupt or foreign file is one sentence."""
    import importlib

    import keras

    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path} does not exist.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"model file {path} is not a Keras archive (a .keras file is a zip); it may be "
                         f"corrupt, truncated or another format.")
    for module in CUSTOM_OBJECT_MODULES:
        importlib.import_module(module)
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the file's fault here
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ValueError(f"model file {path} could not be loaded as a Keras model: {first[:200]}") from None
    record = read_record(path)
    if record is not None:
        object.__setattr__(model, RECORD_ATTRIBUTE, record)
    return model


# Modules that register custom Keras objects (importing them registers them).
CUSTOM_OBJECT_MODULES = ("catalog.blocks.layers", "catalog.blocks.shuffle", "catalog.blocks.attention",
                         "catalog.blocks.operators", "catalog.blocks.fractal",
                         "catalog.blocks.boxes", "catalog.models.alexnet", "catalog.models.retinanet",
                         "catalog.models.ssd", "catalog.blocks.segmentation", "catalog.training.segmentation_losses",
                         "catalog.training.schedules", "catalog.training.optim", "catalog.training.losses",
                         "catalog.models.restoration", "catalog.training.gan", "catalog.training.distill",
                         "catalog.models.embedding", "catalog.training.metric_losses")


def read_record(path) -> dict | None:
    """The input record stored in the ``.keras`` file at ``path``, or None if it has none."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if RECORD_MEMBER not in archive.namelist():
                return None
            return json.loads(archive.read(RECORD_MEMBER))
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
