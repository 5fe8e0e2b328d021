"""The model registry: named architectures, their cards, and one-line construction.

Family modules register builders with :func:`register_model`; users call :func:`create_model`,
:func:`list_models` and :func:`model_info`. Family modules are discovered (every module of the
``catalog.models`` package is imported once, on the first registry query), so adding a family is adding
a file there.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import importlib
import inspect
import json
import math
import os
import pkgutil
from typing import Any, Callable

TASKS = ("classification", "detection", "segmentation", "restoration", "generation", "embedding",
         "video", "early_exit")
# The ``catalog.datasets`` task each model task trains and is scored on; None: chosen by the built model's recipe
# (restoration: ``super_resolution`` or ``denoising``), so ``catalog.train`` builds such a model before the data.
TASK_DATA = {"classification": "classification", "detection": "detection", "segmentation": "segmentation",
             "restoration": None, "generation": "classification", "embedding": "classification",
             "video": "video", "early_exit": "classification"}
# create_model's keywords for every name, applied to the whole build through catalog.blocks.layers' contexts
# (a builder with a keyword of the same name keeps its own).
BUILD_KEYWORDS = ("norm", "norm_groups", "initializer")
# The convolution initialization of the families whose code does not use catalog.blocks.layers' rule (their
# modules may pass ``initialization=`` to register_model instead); every other family's is "he_normal_fan_out".
FAMILY_INITIALIZATION = {
    "srcnn": "glorot_uniform", "espcn": "glorot_uniform", "edsr": "glorot_uniform",  # Keras' Conv2D default
    "dcgan": "normal_0.02",  # N(0, 0.02), Radford et al. 2016
}

@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about a name before anything is built."""

    name: str
    family: str
    task: str
    builder: Callable[..., Any]
    paper: str = ""
    input_shape: tuple = (224, 224, 3)
    num_classes: int = 1000
    defaults: dict = dataclasses.field(default_factory=dict)
    reference_params: int | None = None
    reference_params_source: str | None = None
    reference_params_rtol: float = 0.0
    reference_macs: float | None = None
    reference_macs_source: str | None = None
    min_input_size: int | None = None
    preprocessing: str | None = None
    crop_fraction: float | None = None
    description: str = ""
    recipe: Callable[..., Any] | None = None
    initialization: str = "he_normal_fan_out"


@dataclasses.dataclass
class TrainingRecipe:
    """How ``catalog.train`` trains and evaluates a task model (a registry entry's ``recipe(model)`` returns one).

    ``loss``: the Keras loss (a dict keyed like the model's outputs for a dict output). ``targets``: None, or a
    function in ``keras.ops`` from a batch's targets as ``catalog.datasets.load`` gives them for ``task``
    (detection: ``{"boxes": (B, M, 4) xyxy pixels padded with -1, "labels": (B, M) padded with -1}``) to
    the targets of ``loss``; the data pipeline applies it. ``metrics``: Keras metrics for ``compile``.
    ``inference``: None, or a function of the trained model returning the model ``catalog.evaluate`` scores
    (detection: outputs ``boxes``, ``scores``, ``labels``, ``num_detections``). ``task``: the
    ``catalog.datasets`` task of the data (the registry task, except for restoration: ``super_resolution`` or
    ``denoising``, chosen from the built model). ``data_options``: more keywords for ``catalog.datasets.load``
    and ``catalog.evaluate`` (restoration: ``scale`` or ``noise_std``). ``num_classes``: the object classes the
    model predicts (checked against the data; None: not checked). ``notes``: lines for the run's report.
    ``loss_weights``: for ``compile`` (a model of several outputs). ``evaluate``: the task's scoring job, for
    a task ``catalog.evaluate`` has no built-in scorer for (generation, embedding, early exit): called as
    ``evaluate(model, data, out_dir=..., **the other keywords of catalog.evaluate)``; returns the report folder.
    ``callbacks``: None, or a function of the run directory returning more Keras callbacks for ``fit``
    (generation: a grid of samples per epoch).
    """

    task: str
    loss: Any
    num_classes: int | None = None
    targets: Callable[..., Any] | None = None
    metrics: list = dataclasses.field(default_factory=list)
    inference: Callable[..., Any] | None = None
    notes: list = dataclasses.field(default_factory=list)
    data_options: dict = dataclasses.field(default_factory=dict)
    loss_weights: Any = None
    evaluate: Callable[..., Any] | None = None
    callbacks: Callable[[str], list] | None = None


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A model's card: the registry entry plus what is measured on the model built at its defaults.

    ``params`` counts trainable weights (BatchNorm moving statistics excluded), as torchvision and
    keras.applications publish. ``feature_channels`` and ``feature_reductions`` describe the stage
    outputs that ``features_only=True`` returns.
    """

    name: str
    family: str
    task: str
    paper: str
    input_shape: tuple
    num_classes: int
    params: int
    total_params: int
    reference_params: int | None
    reference_params_source: str | None
    macs: int | None
    reference_macs: float | None
    reference_macs_source: str | None
    feature_channels: tuple
    feature_reductions: tuple
    min_input_size: int | None
    preprocessing: str | None
    crop_fraction: float
    defaults: dict
    description: str
    initialization: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# What model_info measures on the model built at its defaults; shipped in models/cards.json.
MEASURED = ("params", "total_params", "macs", "feature_channels", "feature_reductions")
CARDS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "cards.json")


_REGISTRY: dict[str, ModelEntry] = {}
_DISCOVERED = False


def register_model(fn: Callable | None = None, *, name: str | None = None, family: str,
                   task: str = "classification", **facts):
    """Register a builder under ``name`` (default: the function's name).

    Usable as ``@register_model(family=...)`` on a function, or called directly,
    ``register_model(builder, name="resnet50", family="resnet", defaults=dict(depths=(3, 4, 6, 3)))``,
    to register rows of a variant table in a loop. ``facts`` are the other :class:`ModelEntry` fields:
    ``defaults`` (keywords bound into the builder; a caller's keywords override them), ``paper``,
    ``input_shape``, ``num_classes``, ``reference_params`` (the published trainable-parameter count,
    exact unless ``reference_params_rtol`` says how close the source is), ``reference_macs`` (published
    multiply-accumulates of one forward pass at ``input_shape``) with their ``*_source``,
    ``min_input_size``, ``preprocessing`` (the pixel scaling of the reference weights) and
    ``crop_fraction`` (their evaluation centre crop; default 0.875, ImageNet's 224 of 256, for inputs of
    96 px and more, else 1.0), ``recipe`` (task models: a function of the built model returning its
    :class:`TrainingRecipe`; classifiers train without one) and ``initialization`` (the reference's
    convolution initialization: one of ``catalog.blocks.layers.INITIALIZERS`` where the family's convolutions
    use that rule, default "he_normal_fan_out"; another name describes a family's own rule).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    fields = {f.name for f in dataclasses.fields(ModelEntry)} - {"name", "family", "task", "builder"}
    unknown = sorted(set(facts) - fields)
    if unknown:
        raise ValueError(f"register_model got unknown field(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(sorted(fields))}.")
    facts["input_shape"] = tuple(facts.get("input_shape", (224, 224, 3)))
    if facts.get("crop_fraction") is None:
        facts["crop_fraction"] = 0.875 if facts["input_shape"][0] >= 96 else 1.0
    facts["defaults"] = dict(facts.get("defaults") or {})
    facts.setdefault("initialization", FAMILY_INITIALIZATION.get(family, "he_normal_fan_out"))
    if not isinstance(facts["initialization"], str) or not facts["initialization"]:
        raise ValueError(f"initialization must be the name of a rule; got {facts['initialization']!r}.")

    def decorate(builder: Callable) -> Callable:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"A model named {key!r} is already registered (family "
                             f"{_REGISTRY[key].family!r}); registered names must be unique.")
        doc = (inspect.getdoc(builder) or "").split("\n\n")[0].replace("\n", " ")
        _REGISTRY[key] = ModelEntry(name=key, family=family, task=task, builder=builder,
                                    **{"description": doc, **facts})
        return builder

    return decorate(fn) if fn is not None else decorate


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import catalog.models

    for info in sorted(pkgutil.iter_modules(catalog.models.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"catalog.models.{info.name}")


def _entry(name: str) -> ModelEntry:
    _discover()
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else " `catalog list` shows them all."
        raise ValueError(f"Unknown model name {name!r}.{hint}")
    return _REGISTRY[name]


def list_models(pattern: str = "*", task: str | None = None, family: str | None = None) -> list[str]:
    """Sorted registered names matching the fnmatch ``pattern``, optionally of one task or family."""
    _discover()
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    families = sorted({e.family for e in _REGISTRY.values()})
    if family is not None and family not in families:
        raise ValueError(f"family must be one of {', '.join(families)}; got {family!r}.")
    return sorted(n for n, e in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (task is None or e.task == task)
                  and (family is None or e.family == family))


def _forwards_kwargs(entry: ModelEntry) -> bool:
    params = inspect.signature(entry.builder).parameters.values()
    return any(p.kind == p.VAR_KEYWORD for p in params)


def accepted_kwargs(name: str) -> list[str]:
    """The keywords ``create_model(name, ...)`` accepts.

    A builder with ``**kwargs`` forwards them to its task's assembly (for classification,
    :func:`catalog.models.classifier.build_classifier`), whose public keywords are accepted too; every name
    accepts :data:`BUILD_KEYWORDS`.
    """
    entry = _entry(name)
    params = inspect.signature(entry.builder).parameters
    accepted = {p for p, v in params.items() if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)}
    accepted |= set(BUILD_KEYWORDS)
    if _forwards_kwargs(entry):
        from catalog.models.classifier import PUBLIC_KEYWORDS
        accepted |= set(PUBLIC_KEYWORDS)
    return sorted(accepted)


def create_model(name: str, /, **kwargs):
    """Build the registered architecture ``name``; keywords override the registered defaults.

    Every name also takes :data:`BUILD_KEYWORDS`, which change the whole build (backbones of task models
    included) through :mod:`catalog.blocks.layers`:

    - ``norm``: the kind of every normalization layer, one of ``catalog.blocks.layers.NORMS`` ("batch",
      "group", "layer", "instance", "none"; True is "batch", False and None are "none"). An architecture
      without normalization stays without; layer names stay those of the BatchNorm build.
    - ``norm_groups``: GroupNorm's number of groups (default 32); it must divide every normalized layer's
      channels.
    - ``initializer``: the rule of every convolution kernel, one of ``catalog.blocks.layers.INITIALIZERS``
      (default: the card's ``initialization``, "he_normal_fan_out" for most families). Classifier heads keep
      their family's rule.

    Raises:
        ValueError: unknown name (with the closest registered names), an unknown keyword (with the
            accepted ones), or a bad value (naming the argument); a ``norm`` or ``initializer`` that would
            change nothing in this architecture.
    """
    entry = _entry(name)
    accepted = accepted_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"create_model({name!r}) got unknown keyword(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(accepted)}.")
    own = inspect.signature(entry.builder).parameters
    settings = {k: kwargs.pop(k) for k in BUILD_KEYWORDS if k in kwargs and k not in own}
    if not settings:
        return _build(entry, kwargs)
    from catalog.blocks import layers as blocks

    kind = blocks.norm_kind(settings["norm"]) if "norm" in settings else None
    groups, rule = settings.get("norm_groups"), settings.get("initializer")
    if groups is not None and (isinstance(groups, bool) or not isinstance(groups, int) or groups < 1):
        raise ValueError(f"norm_groups must be a positive integer; got {groups!r}.")
    if rule is not None and rule not in blocks.INITIALIZERS:
        raise ValueError(f"initializer must be one of {', '.join(blocks.INITIALIZERS)}; got {rule!r}.")
    with blocks.norm_defaults(kind=kind, groups=groups) as norms, blocks.init_defaults(rule) as inits:
        model = _build(entry, kwargs)
    if kind not in (None, "batch"):
        left = [layer.name for layer in _all_layers(model) if type(layer).__name__ == "BatchNormalization"]
        if left or not norms[kind]:
            what = f"BatchNormalization layers of its own ({', '.join(left[:3])})" if left else \
                "no normalization layers"
            raise ValueError(f"norm={settings['norm']!r} cannot be applied to {name}: it has {what}.")
    if rule is not None and rule != entry.initialization and not inits["kernels"]:
        raise ValueError(f"initializer={rule!r} cannot be applied to {name}: its convolutions use its own "
                         f"rule ({entry.initialization}), not catalog.blocks.layers'.")
    return model


def _all_layers(model):
    """The layers of ``model`` and of the models nested in it."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _build(entry: ModelEntry, kwargs: dict):
    """Build ``entry`` with the caller's keywords over its defaults (create_model after the checks)."""
    name = entry.name
    options = {**entry.defaults, **kwargs}
    if _forwards_kwargs(entry):
        options = {"name": name, "default_input_shape": entry.input_shape,
                   "min_input_size": entry.min_input_size, "default_num_classes": entry.num_classes,
                   "preprocessing": entry.preprocessing, **options}
    fmt = _foreign_weights(options.get("weights"))
    if fmt is not None:
        from catalog import weights as weight_files

        return weight_files.load_foreign(name, entry.family, options, entry.builder, fmt)
    model = entry.builder(**options)
    if options.get("weights") is None and getattr(model, "trainable_weights", None):
        model._catalog_initial_fingerprint = weights_fingerprint(model)
    return model


def _foreign_weights(weights) -> str | None:
    """The format of a weights file the builder cannot load by name (see :mod:`catalog.weights`), else None."""
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(os.path.expanduser(os.fspath(weights))):
        return None
    from catalog.weights import file_format

    fmt = file_format(weights)
    return None if fmt == "keras" else fmt


def weights_fingerprint(model) -> tuple:
    """A cheap signature of a model's weights (sums of its first and last trainable weights)."""
    import numpy as np

    chosen = model.trainable_weights[:2] + model.trainable_weights[-2:]
    return tuple(float(np.sum(np.asarray(w.numpy(), np.float64))) for w in chosen)


def has_random_weights(model) -> bool:
    """True for a model that ``create_model`` built without weights and that was neither trained nor
    loaded since (its weights still have their initial values); False for any other model."""
    initial = getattr(model, "_catalog_initial_fingerprint", None)
    return initial is not None and weights_fingerprint(model) == initial


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (nothing is built)."""
    return _entry(name)


def feature_reduction(input_size: int, feature_size: int) -> int:
    """A stage's reduction: the power of two nearest to input/feature size (227/55 -> 4, 224/13 -> 16)."""
    return 2 ** max(0, round(math.log2(input_size / feature_size)))


def count_params(model, trainable: bool = True) -> int:
    """Trainable (default) or all weights of ``model``, as torchvision and keras.applications count."""
    weights = model.trainable_weights if trainable else model.weights
    return int(sum(math.prod(w.shape) for w in weights))


@functools.lru_cache(maxsize=None)
def measure_card(name: str) -> dict:
    """Build ``name`` at its defaults and measure the :data:`MEASURED` fields of its card.

    Builds in the caller's Keras session without clearing it: a library function never resets the
    caller's dtype policy, seeds or session. Cached per process.
    """
    entry = _entry(name)
    model = create_model(name)
    measured = {"params": count_params(model), "total_params": int(model.count_params()), "macs": None,
                "feature_channels": (), "feature_reductions": ()}
    from catalog import flops

    measured["macs"] = int(flops.count_macs(model))
    del model
    if "features_only" in accepted_kwargs(name):
        outputs = create_model(name, features_only=True).outputs
        height = entry.input_shape[0]
        measured["feature_channels"] = tuple(int(t.shape[-1]) for t in outputs)
        measured["feature_reductions"] = tuple(feature_reduction(height, t.shape[1]) for t in outputs)
    return measured


@functools.lru_cache(maxsize=1)
def shipped_cards() -> dict:
    """The cards of the registered models as shipped in ``catalog/models/cards.json`` (name -> dict).

    Reading them imports neither Keras nor a family module: the CLI's ``list -v`` and ``info`` use them.
    A registry-driven test keeps the file equal to what :func:`measure_card` measures;
    ``python -m catalog.registry --write-cards`` rewrites it.
    """
    try:
        with open(CARDS_FILE, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def recipe_of(model, name: str | None = None, **options) -> TrainingRecipe | None:
    """The :class:`TrainingRecipe` of a built task model: its registered ``name``'s (default ``model.name``'s)
    entry's recipe applied to ``model`` with ``options``, or None (a classifier, or a name the registry does
    not know)."""
    _discover()
    entry = _REGISTRY.get(name or getattr(model, "name", None))
    if entry is None or entry.recipe is None:
        return None
    accepted = list(inspect.signature(entry.recipe).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"task_options {', '.join(unknown)} are not options of {entry.name}'s training recipe; "
                         f"accepted: {', '.join(accepted) or 'none'}.")
    return entry.recipe(model, **options)


def _card(entry: ModelEntry, measured: dict) -> ModelCard:
    facts = {f.name: getattr(entry, f.name) for f in dataclasses.fields(ModelEntry)
             if f.name not in ("builder", "reference_params_rtol", "recipe")}
    measured = {k: tuple(v) if isinstance(v, list) else v for k, v in measured.items() if k in MEASURED}
    return ModelCard(**facts, **measured)


def model_info(name: str, measure: bool = False) -> ModelCard:
    """The card of ``name``: registry facts plus params, MACs and feature info at its defaults.

    The measured fields come from the shipped cards file (nothing is built) unless ``measure`` is True
    or the name is not in it (a model registered in your own code): then the model is built once.
    """
    entry = _entry(name)
    measured = None if measure else shipped_cards().get(name)
    return _card(entry, measured if measured is not None else measure_card(name))


def write_cards(path: str = CARDS_FILE, names=None) -> str:
    """Measure every registered model (or ``names``) and write the shipped cards file; return its path."""
    cards = dict(shipped_cards()) if names is not None else {}
    for name in names or list_models():
        cards[name] = model_info(name, measure=True).to_dict()
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(dict(sorted(cards.items())), f, indent=1, sort_keys=True, default=repr)
        f.write("\n")
    os.replace(path + ".tmp", path)
    shipped_cards.cache_clear()
    return path


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["--write-cards"]:
        sys.exit("usage: python -m catalog.registry --write-cards [NAME ...]")
    from catalog import registry  # this file runs as __main__; the families register into catalog.registry

    print(registry.write_cards(names=sys.argv[2:] or None))
