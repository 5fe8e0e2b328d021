"""What the dense detectors (``retinanet``, ``ssd``) share: the fixed input size their anchors need, the
inference model appended to a training model (anchor decoding, scores, class-aware NMS) and the training
recipe over their anchors (targets in the data pipeline, the family's losses).

A training model outputs ``{"classes": (B, A, K or K + 1) logits, "boxes": (B, A, 4) deltas}`` over its A
anchors; its inference model outputs ``boxes`` (B, D, 4) xyxy pixels, ``scores`` (B, D), ``labels`` (B, D)
int32 (-1 for padding) and ``num_detections`` (B,), the format ``catalog evaluate`` reads.
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks import boxes as box_ops
from catalog.models.classifier import load_weights
from catalog.registry import TrainingRecipe


def training_model(inputs, classes: list, deltas: list, name: str, weights=None, inference=None):
    """The training model of per-level class logits and box deltas, each concatenated over the levels (as
    ``classes`` and ``boxes``), with ``weights`` loaded; ``inference(model)`` in its place when given."""
    classes = layers.Concatenate(axis=1, name="classes")(classes)
    deltas = layers.Concatenate(axis=1, name="boxes")(deltas)
    model = keras.Model(inputs, {"classes": classes, "boxes": deltas}, name=name)
    load_weights(model, weights)
    return inference(model) if inference is not None else model


def fixed_size(model, image_size=None, family: str = "the detector") -> tuple[int, int]:
    """(height, width): ``image_size``, else the model's input size, which anchors need fixed."""
    size = tuple(model.input_shape[1:3]) if image_size is None else tuple(image_size)
    if None in size:
        raise ValueError(f"{family} needs a fixed input size for its anchors; the model has input shape "
                         f"{model.input_shape}: build it with a fixed input_shape, or pass image_size to the "
                         f"inference model.")
    return size


def check_training_model(model, family: str) -> None:
    if not isinstance(model.output, dict) or set(model.output) != {"classes", "boxes"}:
        raise ValueError(f"model must be a {family} training model with outputs 'classes' and 'boxes'.")


def inference_model(model, decoder, scores, iou_threshold: float, score_threshold: float, max_detections: int,
                    pre_nms_top_k: int):
    """``model`` (a training model) followed by ``decoder`` on its deltas, ``scores`` on its logits and
    ``NonMaxSuppression``; shares the training model's layers and weights. Outputs ``boxes`` (B, D, 4) xyxy
    pixels, ``scores`` (B, D), ``labels`` (B, D) int32 (-1 for padding) and ``num_detections`` (B,),
    D = ``max_detections``."""
    inputs = keras.Input(shape=model.input_shape[1:], name="input")
    outputs = model(inputs)
    detections = box_ops.NonMaxSuppression(iou_threshold=iou_threshold, score_threshold=score_threshold,
                                           max_detections=max_detections, pre_nms_top_k=pre_nms_top_k,
                                           name="nms")(decoder(outputs["boxes"]), scores(outputs["classes"]))
    return keras.Model(inputs, detections, name=f"{model.name}_inference")


def anchor_recipe(model, anchors, losses: dict, inference, background: bool = False,
                  **target_options) -> TrainingRecipe:
    """A detection :class:`TrainingRecipe`: ``detection_targets(anchors, ..., **target_options)`` as the
    targets of ``losses`` (keyed ``classes`` and ``boxes``), ``inference`` for the evaluation; the class
    count is the logits' (less the background column when ``background``)."""
    if model.output["boxes"].shape[1] != anchors.shape[0]:
        raise ValueError(f"model has {model.output['boxes'].shape[1]} box outputs but its family's anchors at "
                         f"{tuple(model.input_shape[1:3])} are {anchors.shape[0]}; pass a model its builder made.")

    def targets(y):
        labels, box_targets = box_ops.detection_targets(anchors, y["boxes"], y["labels"], **target_options)
        return {"classes": labels, "boxes": box_targets}

    classes = int(model.output["classes"].shape[-1]) - (1 if background else 0)
    return TrainingRecipe(task="detection", loss=losses, targets=targets, inference=inference, num_classes=classes)
