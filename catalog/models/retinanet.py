"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection", ICCV) on any ``features_only`` backbone.

Layout (torchvision ``retinanet_resnet50_fpn``, v1): the backbone's C3, C4, C5 (the stages at reductions 8, 16
and 32, read from its card's ``feature_reductions``) feed an FPN of 256 channels, P3 to P5, with
P6 = 3x3/2 conv of **P5** (torchvision's ``LastLevelP6P7(256, 256)`` of v1; the paper and torchvision's v2 take
C5) and P7 = 3x3/2 conv of ReLU(P6). Two subnets, each four 3x3 convs of 256 with ReLU, are shared by every
level (the same layer objects are called on P3..P7): the class subnet ends in a 3x3 conv to A * K logits whose
bias is -log((1 - 0.01) / 0.01) (the 0.01 prior), the box subnet in a 3x3 conv to A * 4 deltas; head convs
are initialized N(0, 0.01), biases 0. A = 9 anchors per position (``catalog.blocks.boxes.anchors``).

The training model's outputs are a dict ``{"classes": (B, N, K) logits, "boxes": (B, N, 4) deltas}`` with N
the number of anchors of :func:`catalog.blocks.boxes.anchors` for the input size, in the same order, so it
trains with ``model.fit(x, {"classes": labels, "boxes": box_targets})``, the two outputs of
``catalog.blocks.boxes.detection_targets``, and the losses ``FocalLoss`` and ``SmoothL1`` of
``catalog.training.losses``. :func:`retinanet_inference` (or ``inference=True``) appends
:class:`AnchorDecoder`, a sigmoid and ``NonMaxSuppression``: outputs ``boxes`` (xyxy pixels), ``scores``,
``labels``, ``num_detections``, the format ``catalog evaluate`` reads.

Input sizes: height and width must be multiples of 32 (torchvision pads to a multiple of 32 for the same
reason: every level is then exactly ceil(size / stride), as the anchors assume), or None for a training
model of any size (the inference model needs a fixed size for its anchors).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from catalog.blocks import boxes as box_ops
from catalog.blocks.fpn import fpn
from catalog.models.detection import (anchor_recipe, check_training_model, fixed_size, inference_model,
                                       training_model)
from catalog.registry import TrainingRecipe, create_model, get_entry, model_info, register_model

LIN2017 = "Lin et al. 2017, Focal Loss for Dense Object Detection, ICCV"
LEVELS = (3, 4, 5, 6, 7)
PRIOR = 0.01
SIZE_MULTIPLE = 32
TORCHVISION_PARAMS = 34_014_999  # torchvision retinanet_resnet50_fpn (COCO_V1 weights meta), 91 classes


@keras.saving.register_keras_serializable(package="catalog")
class AnchorDecoder(layers.Layer):
    """Box deltas (B, N, 4) to xyxy pixel boxes against RetinaNet's anchors of a fixed ``image_size``.

    The anchors are :func:`catalog.blocks.boxes.anchors` ``(image_size, levels)``, rebuilt from the config
    (nothing is stored as a weight); ``clip`` clips the boxes to the image, as torchvision does.
    """

    def __init__(self, image_size, levels=LEVELS, variances=(1.0, 1.0, 1.0, 1.0), clip: bool = True, **kwargs):
        super().__init__(**kwargs)
        size = tuple(image_size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f"image_size must be a fixed (height, width) of positive integers; got {image_size!r}.")
        self.image_size = size
        self.levels = tuple(int(level) for level in levels)
        self.variances = tuple(float(v) for v in variances)
        self.clip = bool(clip)
        self._anchors = np.asarray(box_ops.anchors(self.image_size, self.levels), np.float32)

    def call(self, deltas):
        if deltas.shape[-2] is not None and deltas.shape[-2] != len(self._anchors):
            raise ValueError(f"deltas have {deltas.shape[-2]} anchors but image_size {self.image_size} gives "
                             f"{len(self._anchors)}.")
        decoded = box_ops.decode(deltas, ops.convert_to_tensor(self._anchors), self.variances)
        if self.clip:
            height, width = self.image_size
            decoded = ops.clip(decoded, 0.0, ops.convert_to_tensor([width, height, width, height], decoded.dtype))
        return decoded

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "levels": self.levels,
                "variances": self.variances, "clip": self.clip}


def _check_shape(input_shape):
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels); got {input_shape!r}.")
    for size in shape[:2]:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0
                                 or size % SIZE_MULTIPLE):
            raise ValueError(f"input_shape height and width must be positive multiples of {SIZE_MULTIPLE} "
                             f"or None for retinanet; got {shape!r}.")
    return shape


def _backbone_indices(backbone: str) -> tuple[int, int, int]:
    """The ``out_indices`` of the stages at reductions 8, 16 and 32 of a classification backbone's card."""
    entry = get_entry(backbone)
    if entry.task != "classification":
        raise ValueError(f"backbone must be a registered classification model; {backbone!r} is a {entry.task} "
                         f"model.")
    reductions = list(model_info(backbone).feature_reductions)
    missing = [r for r in (8, 16, 32) if r not in reductions]
    if missing:
        raise ValueError(f"backbone {backbone!r} has no stage at reduction(s) {missing} (its stages reduce by "
                         f"{reductions}); retinanet needs stages at 8, 16 and 32.")
    return tuple(len(reductions) - 1 - reductions[::-1].index(r) for r in (8, 16, 32))


def _subnet(pyramid, outputs_per_anchor: int, num_anchors: int, prefix: str, bias_init, channels: int):
    """One head shared by every level: four 3x3 conv-ReLU of ``channels``, then a 3x3 conv to A * outputs, reshaped
    to (B, H * W * A, outputs) per level and concatenated over levels."""
    init = keras.initializers.RandomNormal(stddev=0.01)
    convs = [layers.Conv2D(channels, 3, padding="same", kernel_initializer=init, name=f"{prefix}_conv{i + 1}")
             for i in range(4)]
    relus = [layers.ReLU(name=f"{prefix}_relu{i + 1}") for i in range(4)]
    last = layers.Conv2D(num_anchors * outputs_per_anchor, 3, padding="same", kernel_initializer=init,
                         bias_initializer=bias_init, name=f"{prefix}_{'logits' if prefix == 'class' else 'deltas'}")
    per_level = []
    for key, x in pyramid.items():
        for conv, relu in zip(convs, relus):
            x = relu(conv(x))
        x = last(x)
        per_level.append(layers.Reshape((-1, outputs_per_anchor), name=f"{prefix}_reshape_{key.lower()}")(x))
    return per_level


def retinanet(backbone: str = "resnet50", num_classes: int = 80, input_shape=(512, 512, 3),
              backbone_options: dict | None = None, backbone_weights=None, freeze_backbone_norm: bool = False,
              fpn_channels: int = 256, weights=None, inference: bool = False,
              score_threshold: float = 0.05, iou_threshold: float = 0.5, max_detections: int = 100,
              name: str = "retinanet"):
    """RetinaNet: a ``features_only`` backbone, FPN P3-P7 and shared class and box subnets.

    Args:
        backbone: a registered classification model name with stages at reductions 8, 16, 32.
        num_classes: object classes K (sigmoid per class, no background column).
        input_shape: (height, width, channels); height and width multiples of 32, or None (training model).
        backbone_options: more keywords for ``create_model(backbone, features_only=True, ...)``, e.g.
            ``dict(alpha=0.35)`` or ``dict(include_preprocessing=True)``.
        backbone_weights: a local weights file of the backbone classifier (loaded by name).
        freeze_backbone_norm: the backbone's BatchNorm layers use their moving statistics and are not trained
            (torchvision's FrozenBatchNorm2d, used with pretrained backbones).
        fpn_channels: channels of every pyramid level and of the subnets' convs (256 in the paper).
        weights: a local weights file of this detector.
        inference: return :func:`retinanet_inference` of the model (needs a fixed input size).
        score_threshold, iou_threshold, max_detections: the inference model's NMS settings.
        name: model name.
    """
    shape = _check_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    if backbone_options is not None and not isinstance(backbone_options, dict):
        raise ValueError(f"backbone_options must be a dict of keywords; got {type(backbone_options).__name__}.")
    options = dict(backbone_options or {})
    clash = sorted(set(options) & {"features_only", "out_indices", "input_shape", "weights", "input_tensor"})
    if clash:
        raise ValueError(f"backbone_options must not set {', '.join(clash)}; retinanet sets them.")
    indices = _backbone_indices(backbone)
    features = create_model(backbone, features_only=True, out_indices=indices, input_shape=shape,
                            weights=backbone_weights, **options)
    if freeze_backbone_norm:
        for layer in features.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    inputs = keras.Input(shape=shape, name="input")
    c3, c4, c5 = features(inputs)
    for level, c in zip((3, 4, 5), (c3, c4, c5)):
        if None not in shape[:2] and tuple(c.shape[1:3]) != box_ops.feature_size(shape[:2], level):
            raise ValueError(f"input_shape {shape} gives backbone {backbone!r} a level-{level} map of "
                             f"{tuple(c.shape[1:3])}, not {box_ops.feature_size(shape[:2], level)} as the anchors "
                             f"need.")
    pyramid = fpn({"C3": c3, "C4": c4, "C5": c5}, channels=fpn_channels, extra_levels=2, extra_source="p5",
                  name="fpn")
    num_anchors = len(box_ops.RETINANET_SCALES) * len(box_ops.RETINANET_RATIOS)
    prior = keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR))
    classes = _subnet(pyramid, num_classes, num_anchors, "class", prior, fpn_channels)
    deltas = _subnet(pyramid, 4, num_anchors, "box", "zeros", fpn_channels)
    return training_model(inputs, classes, deltas, name, weights, inference=None if not inference else (
        lambda model: retinanet_inference(model, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                          max_detections=max_detections)))


def retinanet_inference(model, image_size=None, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                        max_detections: int = 100, pre_nms_top_k: int = 1000):
    """The detection model of a RetinaNet training model: decode, sigmoid, class-aware NMS.

    Shares the training model's layers and weights; outputs as :func:`catalog.models.detection.inference_model`.

    Args:
        model: the model :func:`retinanet` returns (outputs ``classes`` and ``boxes``).
        image_size: (height, width) of the input; default the model's fixed input size.
        score_threshold, iou_threshold, max_detections, pre_nms_top_k: as ``NonMaxSuppression``.
    """
    check_training_model(model, "RetinaNet")
    size = fixed_size(model, image_size, "RetinaNet")
    return inference_model(model, AnchorDecoder(size, name="decode"),
                           layers.Activation("sigmoid", dtype="float32", name="scores"), iou_threshold=iou_threshold,
                           score_threshold=score_threshold, max_detections=max_detections,
                           pre_nms_top_k=pre_nms_top_k)


def retinanet_recipe(model, box_loss: str = "smooth_l1", score_threshold: float = 0.05,
                     iou_threshold: float = 0.5, max_detections: int = 100) -> TrainingRecipe:
    """How ``catalog.train`` trains a RetinaNet training model: anchor targets (IoU >= 0.5 positive, < 0.4
    negative, each gt box keeps its best anchor), focal loss (alpha 0.25, gamma 2) and smooth-L1 (beta 1/9)
    or GIoU box loss, each normalized by the image's positive anchors; evaluated through
    :func:`retinanet_inference`."""
    from catalog.training.losses import FocalLoss, GIoULoss, SmoothL1  # losses live with training

    if box_loss not in ("smooth_l1", "giou"):
        raise ValueError(f"box_loss must be 'smooth_l1' or 'giou'; got {box_loss!r}.")
    anchors = box_ops.anchors(fixed_size(model, None, "RetinaNet"), LEVELS)
    losses = {"classes": FocalLoss(), "boxes": GIoULoss() if box_loss == "giou" else SmoothL1()}

    def inference(trained):
        return retinanet_inference(trained, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                   max_detections=max_detections)

    return anchor_recipe(model, anchors, losses, inference, box_target="giou" if box_loss == "giou" else "deltas")


_NOTE = ("torchvision retinanet_resnet50_fpn: 34,014,999 (91 classes, FrozenBatchNorm2d, P6 from P5); this "
         "layout has exactly that with num_classes=91 and freeze_backbone_norm=True; the card counts 80 classes "
         "and trainable backbone BatchNorm")
register_model(retinanet, name="retinanet", family="retinanet", task="detection", paper=LIN2017,
               input_shape=(512, 512, 3), num_classes=80,
               defaults=dict(backbone="resnet50", name="retinanet"),
               reference_params=TORCHVISION_PARAMS, reference_params_rtol=0.01, reference_params_source=_NOTE,
               preprocessing="torch", crop_fraction=1.0, recipe=retinanet_recipe)
register_model(retinanet, name="retinanet_resnet50_fpn", family="retinanet", task="detection", paper=LIN2017,
               input_shape=(512, 512, 3), num_classes=80,
               defaults=dict(backbone="resnet50", name="retinanet_resnet50_fpn"),
               reference_params=TORCHVISION_PARAMS, reference_params_rtol=0.01, reference_params_source=_NOTE,
               preprocessing="torch", crop_fraction=1.0, recipe=retinanet_recipe)
register_model(retinanet, name="retinanet_mobilenet_v2_fpn", family="retinanet", task="detection",
               paper=LIN2017, input_shape=(512, 512, 3), num_classes=80,
               defaults=dict(backbone="mobilenet_v2", name="retinanet_mobilenet_v2_fpn"),
               preprocessing="tf", crop_fraction=1.0, recipe=retinanet_recipe)
