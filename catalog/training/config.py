"""The configuration of a training run: one dataclass, read from TOML/JSON and overridden by flags.

Every field is a ``catalog train`` flag (``--batch-size`` for ``batch_size``) and a keyword of
``catalog.train``; ``config.json`` in the run directory holds the resolved configuration, so
``catalog train --resume DIR`` knows everything the run was started with.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
JIT = ("auto", "on", "off")
DISTRIBUTE = ("none", "mirrored", "multi-worker", "data-parallel")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 0.01}


@dataclasses.dataclass
class TrainConfig:
    """What a run needs; ``None`` means "derive it" (from the model's card, the data or the optimizer)."""

    model: str | None = None            # a registered name or a .keras file (a keras.Model is passed aside)
    data: str = "shapes"                # a catalog.datasets spec
    model_options: dict = dataclasses.field(default_factory=dict)  # create_model keywords (width, alpha, ...)
    task: str | None = None             # default: the model's (a registered task model's, else classification)
    task_options: dict = dataclasses.field(default_factory=dict)  # its training recipe's keywords (box_loss, ...)
    epochs: int = 10
    batch_size: int = 64
    image_size: int | None = None       # default: the model's input (a registered name: its card's)
    num_classes: int | None = None      # default: the data's
    train_split: str = "train"
    val_split: str | None = None        # default: catalog.datasets.evaluation_split(val_data); "none" skips it
    val_data: str | None = None         # a spec to validate and report on (default: data), e.g. a coco: val file
    data_options: dict = dataclasses.field(default_factory=dict)  # more catalog.datasets.load keywords (frames, ...)
    teacher: str | None = None          # a trained classifier's .keras file: distil it into the model
    distill_temperature: float = 4.0    # Hinton et al.'s T
    distill_alpha: float = 0.5          # weight of the hard-label loss; 1 - alpha weights the teacher's
    preprocessing: str | None = None    # default: the card's, else "unit"
    augment: bool = True
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    optimizer: str = "sgd"
    lr: float | None = None             # base LR at reference_batch; default by optimizer (DEFAULT_LR)
    lr_scaling: str = "none"            # linear | sqrt: scale lr by global batch / reference_batch
    reference_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float | None = None          # Adam/AdamW first-moment decay (default Keras' 0.9; DCGAN uses 0.5)
    weight_decay: float | None = None   # decoupled; default 5e-5 (sgd), 0.05 (adamw), 0 otherwise
    decay_norm_and_bias: bool = False   # weight decay on BatchNorm and bias weights too
    layer_decay: float = 1.0            # LR x layer_decay^(stages after it) per stage: smaller towards the input
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    schedule_options: dict = dataclasses.field(default_factory=dict)
    clipnorm: float | None = None
    accumulate: int = 1                 # gradient accumulation steps (Caffe's iter_size)
    ema: float | None = None            # EMA decay of the weights (evaluated and saved), e.g. 0.999
    zero_init_residual: bool = False
    bn_momentum: float | None = None     # every BatchNorm's moving-average momentum (timm's --bn-momentum)
    precision: str = "float32"
    jit: str = "auto"
    distribute: str = "none"
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int | None = None  # also checkpoint every N optimizer steps (always at epoch end)
    num_images: int | None = None        # size of the generated training split (spec "shapes")
    out: str | None = None               # run directory; default runs/<model>-<timestamp>
    verbose: int | None = None           # default: a progress bar on a terminal, a line per epoch otherwise


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def validate(config: TrainConfig) -> TrainConfig:
    """Raise one-sentence ValueErrors for values no step should start with; return the config."""
    from catalog.training.schedules import SCALING_RULES, SCHEDULES

    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    _check_choice("schedule", config.schedule, SCHEDULES)
    _check_choice("lr_scaling", config.lr_scaling, SCALING_RULES)
    _check_choice("precision", config.precision, PRECISIONS)
    _check_choice("jit", config.jit, JIT)
    _check_choice("distribute", config.distribute, DISTRIBUTE)
    for name in ("epochs", "batch_size", "accumulate", "reference_batch"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    for name in ("image_size", "num_classes", "checkpoint_every", "num_images"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive integer or None; got {value!r}.")
    for name in ("lr", "clipnorm"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number or None; got {value!r}.")
    for name in ("mixup", "cutmix", "label_smoothing", "warmup_epochs", "weight_decay"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0; got {value!r}.")
    if config.label_smoothing >= 1:
        raise ValueError(f"label_smoothing must be in [0, 1); got {config.label_smoothing!r}.")
    if isinstance(config.layer_decay, bool) or not (isinstance(config.layer_decay, (int, float))
                                                    and 0 < config.layer_decay <= 1):
        raise ValueError(f"layer_decay must be in (0, 1] (1: one LR for every layer); got {config.layer_decay!r}.")
    if config.bn_momentum is not None and (isinstance(config.bn_momentum, bool) or not isinstance(
            config.bn_momentum, (int, float)) or not 0 <= config.bn_momentum < 1):
        raise ValueError(f"bn_momentum must be in [0, 1), e.g. 0.9 for a short run from scratch, or None (the "
                         f"model's); got {config.bn_momentum!r}.")
    if config.beta_1 is not None and (isinstance(config.beta_1, bool) or not isinstance(config.beta_1, (int, float))
                                      or not 0 <= config.beta_1 < 1):
        raise ValueError(f"beta_1 must be in [0, 1) (Adam's first-moment decay), or None; got {config.beta_1!r}.")
    if config.beta_1 is not None and config.optimizer not in ("adam", "adamw"):
        raise ValueError(f"beta_1 is an Adam/AdamW setting; the optimizer is {config.optimizer!r}.")
    if config.ema is not None and not 0 < config.ema < 1:
        raise ValueError(f"ema must be a decay in (0, 1), e.g. 0.999, or None; got {config.ema!r}.")
    if config.task is not None:
        from catalog.registry import TASKS

        _check_choice("task", config.task, TASKS)
    if not (isinstance(config.distill_temperature, (int, float)) and config.distill_temperature > 0):
        raise ValueError(f"distill_temperature must be a number > 0; got {config.distill_temperature!r}.")
    if not (isinstance(config.distill_alpha, (int, float)) and 0 <= config.distill_alpha <= 1):
        raise ValueError(f"distill_alpha must be in [0, 1]; got {config.distill_alpha!r}.")
    if config.teacher and (config.mixup or config.cutmix or config.label_smoothing):
        raise ValueError("teacher trains on hard labels and the teacher's soft ones; drop mixup, cutmix and "
                         "label_smoothing, or drop teacher.")
    for name in ("model_options", "task_options", "data_options", "schedule_options"):
        if not isinstance(getattr(config, name), dict):
            raise ValueError(f"{name} must be a dict of keywords such as {{'width': 8}}; got "
                             f"{getattr(config, name)!r}.")
    if not isinstance(config.data, str) or not config.data:
        raise ValueError(f"data must be a dataset spec such as 'shapes' or 'folder:PATH'; got {config.data!r}.")
    return config


def read_config_file(path) -> dict:
    """The keys of a TOML or JSON run configuration (unknown keys: one sentence naming them)."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist.")
    try:
        if path.endswith(".toml"):
            import tomllib

            with open(path, "rb") as f:
                values = tomllib.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
    except ValueError as err:
        raise ValueError(f"config file {path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: "
                         f"{err}.") from None
    values = values.get("train", values) if isinstance(values, dict) else values
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a table of settings; got {type(values).__name__}.")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - set(FIELDS) - {"resolved", "versions"})
    if unknown:
        raise ValueError(f"config file {path} has unknown setting(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(FIELDS)}.")
    return {k: v for k, v in values.items() if k in FIELDS}


def make_config(overrides: dict[str, Any] | None = None, config_file=None) -> TrainConfig:
    """A validated TrainConfig: defaults, then ``config_file``, then ``overrides`` (flags, keywords)."""
    values = read_config_file(config_file) if config_file else {}
    unknown = sorted(set(overrides or {}) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; accepted: {', '.join(FIELDS)}.")
    values.update({k: v for k, v in (overrides or {}).items()})
    return validate(TrainConfig(**values))
