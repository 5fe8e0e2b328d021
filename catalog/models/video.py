"""What every video classifier (C3D, R3D) shares: the clip input, the head, the training recipe.

Input: clips (N, frames, height, width, channels), channels last, pixels scaled by the card's
``preprocessing`` (``unit``: [0, 1]); default 16 x 112 x 112 x 3, C3D's and R3D's clip. Output (what
``catalog evaluate --task video`` reads): (N, classes), probabilities (``classifier_activation="softmax"``,
the default) or logits (``classifier_activation=None``), scored like classification (top-1/top-5, confusion
matrix) with each clip's middle frame in the report's sample grids.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.registry import TrainingRecipe

DEFAULT_INPUT_SHAPE = (16, 112, 112, 3)
POOLINGS = (None, "avg", "max")


def video_input(input_shape, fixed: bool = False):
    """The ``keras.Input`` of a clip model from ``input_shape`` (frames, height, width, channels), default
    :data:`DEFAULT_INPUT_SHAPE`; frames, height and width may be None unless ``fixed`` (a flattening head)."""
    shape = DEFAULT_INPUT_SHAPE if input_shape is None else input_shape
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else None
    valid = shape is not None and len(shape) == 4 and all(
        (s is None and i < 3 and not fixed) or (isinstance(s, int) and not isinstance(s, bool) and s > 0)
        for i, s in enumerate(shape))
    if not valid:
        sizes = "positive integers" if fixed else "positive integers (frames, height and width may be None)"
        raise ValueError(f"input_shape must be (frames, height, width, channels) of {sizes} for a video model; "
                         f"got {input_shape!r}.")
    return keras.Input(shape=shape, name="input")


def check_head(include_top, pooling, num_classes, classifier_activation):
    """Validate the keras.applications head keywords of a video model."""
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False; got {include_top!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")
    if include_top and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0):
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    if classifier_activation not in (None, "softmax", "sigmoid", "linear"):
        raise ValueError(f"classifier_activation must be 'softmax', 'sigmoid', 'linear' or None; got "
                         f"{classifier_activation!r}.")


def video_top(x, include_top: bool, pooling, classifier_activation):
    """The model's last step: the classifier's activation as ``predictions`` (float32) with the top, else
    ``pooling`` of the last feature map (``avg_pool`` / ``max_pool``) or the map itself."""
    if include_top:
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
        return x
    if pooling == "avg":
        return layers.GlobalAveragePooling3D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling3D(name="max_pool")(x)
    return x


def load_weights(model, weights):
    """A local weights file of the whole model (see :func:`catalog.models.classifier.load_weights`)."""
    from catalog.models.classifier import load_weights as load

    return load(model, weights)


def video_recipe(model, label_smoothing: float = 0.0) -> TrainingRecipe:
    """Training recipe of a video classifier: sparse categorical cross-entropy on its output (probabilities or
    logits, as the model ends), accuracy; trains on ``catalog.datasets`` task ``video`` (clips, int labels).

    Args:
        model: a clip classifier with (N, classes) output.
        label_smoothing: label smoothing of the cross-entropy (Szegedy et al. 2016).
    """
    from catalog.models.classifier import ends_in_softmax
    from catalog.training.optim import SparseCrossentropy

    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or \
            not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1); got {label_smoothing!r}.")
    output = model.output
    if isinstance(output, (list, dict)) or len(output.shape) != 2:
        raise ValueError(f"model {model.name!r} must output (N, classes) scores to train on clips; build it with "
                         f"include_top=True.")
    logits = not ends_in_softmax(model)
    frames = model.input_shape[1]
    notes = [f"video classification on clips of {frames or 'any number of'} frames; sparse categorical "
             f"cross-entropy on {'logits' if logits else 'probabilities'}"
             + (f", label smoothing {label_smoothing:g}" if label_smoothing else "")]
    return TrainingRecipe(task="video", loss=SparseCrossentropy(label_smoothing=label_smoothing, from_logits=logits),
                          num_classes=int(output.shape[-1]),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], notes=notes)
