"""SSDLite (Sandler et al. 2018, MobileNetV2, Sec. 6.2) on SSD (Liu et al. 2016) on any classification backbone.

Layout (the TF object-detection API's ``ssdlite_mobilenet_v2_coco``, which the MobileNetV2 paper reports):

- two backbone maps: at reduction 16, the input of the backbone's last stride-2 depthwise convolution (for
  MobileNetV2 ``stage6_block1_expand_act``: the 1x1 expansion, 576 channels, of block 15 in the paper's
  count, the first block of stride 32, the TF API's ``layer_15/expansion_output``; for a backbone without
  strided depthwise convs, its last ``features_only`` stage at reduction 16), and at reduction 32 the
  backbone's last map (MobileNetV2: the 1x1 conv to 1280, ``head_conv_act``);
- four extra layers, each a 1x1 conv to half its channels, a 3x3 stride-2 depthwise conv and a 1x1 conv to
  512, 256, 256, 128 channels (times ``width``), each conv followed by BatchNorm and ReLU6; so six maps,
  20, 10, 5, 3, 2, 1 at 320 px;
- per map two SSDLite predictors, 3x3 depthwise + BatchNorm + ReLU6 then a 1x1 conv (with bias) to
  boxes * (K + 1) class logits (column 0 the background, softmax) and to boxes * 4 box deltas;
- default boxes (:func:`catalog.blocks.boxes.ssd_anchors`, the TF API's ``ssd_anchor_generator``): scales
  0.2 to 0.95, 3 boxes on the first map ((0.1, 1), (0.2, 2), (0.2, 1/2)) and 6 on the others (ratios 1, 2,
  1/2, 3, 1/3 and a square of scale sqrt(s_k s_k+1)): 2,034 boxes at 320 px. Extras and heads use BatchNorm
  eps 1e-3, momentum 0.97 (the TF API's and torchvision's ssdlite).

The training model's outputs are ``{"classes": (B, A, K + 1) logits, "boxes": (B, A, 4) deltas}``, the deltas
encoded with variances (0.1, 0.1, 0.2, 0.2) against the default boxes, in their order; :func:`ssd_recipe`
gives the targets (IoU >= 0.5 positive, else background, each gt box keeps its best default box), the losses
(``HardNegativeCrossEntropy``, 3:1 hard negatives, and ``SmoothL1(beta=1)``) and :func:`ssd_inference` (or
``inference=True``): softmax without the background column, :class:`DefaultBoxDecoder` and class-aware
``NonMaxSuppression``, outputs ``boxes`` (xyxy pixels), ``scores``, ``labels``, ``num_detections``.

Input sizes: height and width multiples of 32 (so the backbone's maps at reductions 16 and 32 tile the image
exactly and the default boxes' centres, spread evenly over the image, sit on their cells; the extra maps are
halved rounding up, 5 -> 3 -> 2 -> 1, as the TF API's "same" convs do), or None for a training model of any
size (the inference model and the recipe need a fixed size for the default boxes).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from catalog.blocks import boxes as box_ops
from catalog.blocks.layers import conv_bn_act, make_divisible, norm_defaults
from catalog.models.detection import (anchor_recipe, check_training_model, fixed_size, inference_model,
                                       training_model)
from catalog.registry import TrainingRecipe, create_model, get_entry, model_info, register_model

SANDLER2018 = "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks (SSDLite), CVPR"
VARIANCES = (0.1, 0.1, 0.2, 0.2)
EXTRA_CHANNELS = (512, 256, 256, 128)
SIZE_MULTIPLE = 32
# The default boxes of the TF API's ssdlite_mobilenet_v2_coco config (ssd_anchor_generator).
DEFAULT_BOXES = dict(min_scale=0.2, max_scale=0.95, aspect_ratios=box_ops.SSD_ASPECT_RATIOS,
                     interpolated_scale_aspect_ratio=1.0, reduce_boxes_in_lowest_layer=True)
PAPER_PARAMS = 4_300_000  # Sandler et al. 2018, Table 6: SSDLite (MobileNetV2), 4.3M parameters
PAPER_MACS = 0.8e9        # the same row: 0.8B MAdds at 320 x 320


def ssd_feature_sizes(image_size, num_maps: int = 6) -> list[tuple[int, int]]:
    """(height, width) of SSDLite's maps for an input of ``image_size``: ceil(size / 16), ceil(size / 32), then
    each extra layer's stride-2 "same" conv halves rounding up (20, 10, 5, 3, 2, 1 at 320)."""
    height, width = (int(s) for s in tuple(image_size)[:2])
    sizes = [(-(-height // 16), -(-width // 16))]
    while len(sizes) < num_maps:
        h, w = sizes[-1]
        sizes.append((-(-h // 2), -(-w // 2)))
    return sizes


def default_boxes(image_size):
    """SSDLite's default boxes (A, 4) xyxy pixels for an input of ``image_size`` (height, width)."""
    return box_ops.ssd_anchors(image_size, ssd_feature_sizes(image_size), **DEFAULT_BOXES)


@keras.saving.register_keras_serializable(package="catalog")
class DefaultBoxDecoder(layers.Layer):
    """Box deltas (B, A, 4) to xyxy pixel boxes against SSD default boxes of a fixed ``image_size``.

    The boxes are :func:`catalog.blocks.boxes.ssd_anchors` of the config (``image_size``, ``feature_sizes`` and
    the generator's settings), rebuilt on load, never stored; ``variances`` as :func:`catalog.blocks.boxes.decode`;
    ``clip`` clips the boxes to the image (the TF API's and torchvision's post-processing).
    """

    def __init__(self, image_size, feature_sizes, min_scale: float = 0.2, max_scale: float = 0.95,
                 aspect_ratios=box_ops.SSD_ASPECT_RATIOS, interpolated_scale_aspect_ratio: float = 1.0,
                 reduce_boxes_in_lowest_layer: bool = True, variances=VARIANCES, clip: bool = True, **kwargs):
        super().__init__(**kwargs)
        size = tuple(image_size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f"image_size must be a fixed (height, width) of positive integers; got {image_size!r}.")
        self.image_size = size
        self.feature_sizes = tuple(tuple(int(v) for v in s) for s in feature_sizes)
        self.box_settings = dict(min_scale=float(min_scale), max_scale=float(max_scale),
                                 aspect_ratios=tuple(float(r) for r in aspect_ratios),
                                 interpolated_scale_aspect_ratio=float(interpolated_scale_aspect_ratio),
                                 reduce_boxes_in_lowest_layer=bool(reduce_boxes_in_lowest_layer))
        self.variances = tuple(float(v) for v in variances)
        self.clip = bool(clip)
        self._boxes = np.asarray(box_ops.ssd_anchors(size, self.feature_sizes, **self.box_settings), np.float32)

    def call(self, deltas):
        if deltas.shape[-2] is not None and deltas.shape[-2] != len(self._boxes):
            raise ValueError(f"deltas have {deltas.shape[-2]} boxes but image_size {self.image_size} and "
                             f"feature_sizes {self.feature_sizes} give {len(self._boxes)}.")
        decoded = box_ops.decode(deltas, ops.convert_to_tensor(self._boxes), self.variances)
        if self.clip:
            height, width = self.image_size
            decoded = ops.clip(decoded, 0.0, ops.convert_to_tensor([width, height, width, height], decoded.dtype))
        return decoded

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "feature_sizes": self.feature_sizes,
                **self.box_settings, "variances": self.variances, "clip": self.clip}


@keras.saving.register_keras_serializable(package="catalog")
class ForegroundSoftmax(layers.Layer):
    """Class probabilities (B, A, K) from logits (B, A, K + 1): softmax over all columns, column 0 (the
    background) dropped."""

    def call(self, logits):
        return ops.softmax(logits, axis=-1)[..., 1:]

    def compute_output_shape(self, input_shape):
        classes = input_shape[-1]
        return (*input_shape[:-1], None if classes is None else classes - 1)


def _check_shape(input_shape):
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels); got {input_shape!r}.")
    for size in shape[:2]:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0
                                 or size % SIZE_MULTIPLE):
            raise ValueError(f"input_shape height and width must be positive multiples of {SIZE_MULTIPLE} "
                             f"or None for ssdlite; got {shape!r}.")
    return shape


def _source(tensor):
    return tensor._keras_history.operation


def _backbone_maps(full, backbone: str):
    """The (reduction-16, reduction-32) tensors of a backbone built with ``include_top=False`` (see the module
    docstring): the input of its last stride-2 depthwise conv (behind any padding layer), else its last
    ``features_only`` stage at reduction 16; and its output."""
    strided = [layer for layer in full.layers if isinstance(layer, layers.DepthwiseConv2D)
               and tuple(layer.strides) == (2, 2)]
    if strided:
        tap = strided[-1].input
        while isinstance(_source(tap), layers.ZeroPadding2D):
            tap = _source(tap).input
        return tap, full.output
    reductions = list(model_info(backbone).feature_reductions)
    if 16 not in reductions:
        raise ValueError(f"backbone {backbone!r} has no stage at reduction 16 (its stages reduce by {reductions}); "
                         f"ssdlite needs one.")
    stage = full.catalog_stage_outputs[len(reductions) - 1 - reductions[::-1].index(16)]
    return full.get_layer(stage).output, full.output


def _extra_layer(x, channels: int, index: int):
    """SSDLite extra layer: 1x1 conv to channels / 2, 3x3 stride-2 depthwise, 1x1 conv to ``channels``."""
    x = conv_bn_act(x, channels // 2, 1, activation="relu6", name=f"extra{index}_reduce")
    x = conv_bn_act(x, 0, 3, 2, depthwise=True, activation="relu6", name=f"extra{index}_dw")
    return conv_bn_act(x, channels, 1, activation="relu6", name=f"extra{index}_project")


def _predictor(x, boxes: int, outputs: int, name: str):
    """SSDLite predictor: 3x3 depthwise + BN + ReLU6, 1x1 conv to boxes * outputs, reshaped (B, h * w * boxes,
    outputs) in (y, x, box) order."""
    x = conv_bn_act(x, 0, 3, depthwise=True, activation="relu6", name=f"{name}_dw")
    x = layers.Conv2D(boxes * outputs, 1, name=f"{name}_conv")(x)
    return layers.Reshape((-1, outputs), name=f"{name}_reshape")(x)


def ssdlite(backbone: str = "mobilenet_v2", num_classes: int = 80, input_shape=(320, 320, 3),
            backbone_options: dict | None = None, backbone_weights=None, width: float = 1.0, weights=None,
            inference: bool = False, score_threshold: float = 0.001, iou_threshold: float = 0.55,
            max_detections: int = 100, name: str = "ssdlite"):
    """SSDLite: a classification backbone's maps at reductions 16 and 32, four extra layers, six SSDLite heads.

    Args:
        backbone: a registered classification model name (built with ``include_top=False``).
        num_classes: object classes K; the class output has K + 1 columns, column 0 the background.
        input_shape: (height, width, channels); height and width multiples of 32, or None (training model).
        backbone_options: more keywords for ``create_model(backbone, include_top=False, ...)``, e.g.
            ``dict(alpha=0.35)``.
        backbone_weights: a local weights file of the backbone classifier (loaded by name).
        width: multiplier of the extra layers' channels (512, 256, 256, 128 at 1.0); the heads follow the maps.
        weights: a local weights file of this detector.
        inference: return :func:`ssd_inference` of the model (needs a fixed input size).
        score_threshold, iou_threshold, max_detections: the inference model's NMS settings (torchvision's
            ssdlite320 uses 0.001 and 0.55).
        name: model name.
    """
    shape = _check_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"width must be a positive number; got {width!r}.")
    if backbone_options is not None and not isinstance(backbone_options, dict):
        raise ValueError(f"backbone_options must be a dict of keywords; got {type(backbone_options).__name__}.")
    options = dict(backbone_options or {})
    clash = sorted(set(options) & {"include_top", "features_only", "out_indices", "input_shape", "weights",
                                   "input_tensor", "pooling"})
    if clash:
        raise ValueError(f"backbone_options must not set {', '.join(clash)}; ssdlite sets them.")
    entry = get_entry(backbone)
    if entry.task != "classification":
        raise ValueError(f"backbone must be a registered classification model; {backbone!r} is a {entry.task} "
                         f"model.")
    full = create_model(backbone, include_top=False, input_shape=shape, weights=backbone_weights, **options)
    features = keras.Model(full.input, list(_backbone_maps(full, backbone)), name="backbone")
    inputs = keras.Input(shape=shape, name="input")
    maps = list(features(inputs))
    with norm_defaults(epsilon=1e-3, momentum=0.97):
        for index, channels in enumerate(EXTRA_CHANNELS, start=1):
            maps.append(_extra_layer(maps[-1], max(16, make_divisible(channels * width)), index))
        if None not in shape[:2]:
            got = [tuple(m.shape[1:3]) for m in maps]
            if got != ssd_feature_sizes(shape):
                raise ValueError(f"input_shape {shape} gives backbone {backbone!r} maps of {got}, not "
                                 f"{ssd_feature_sizes(shape)} (reductions 16 and 32) as the default boxes need.")
        specs = box_ops.ssd_box_specs(len(maps), **DEFAULT_BOXES)
        classes, deltas = [], []
        for index, (feature, boxes) in enumerate(zip(maps, specs), start=1):
            classes.append(_predictor(feature, len(boxes), num_classes + 1, f"class_head{index}"))
            deltas.append(_predictor(feature, len(boxes), 4, f"box_head{index}"))
    return training_model(inputs, classes, deltas, name, weights, inference=None if not inference else (
        lambda model: ssd_inference(model, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                    max_detections=max_detections)))


def ssd_inference(model, image_size=None, score_threshold: float = 0.001, iou_threshold: float = 0.55,
                  max_detections: int = 100, pre_nms_top_k: int = 1000):
    """The detection model of an SSDLite training model: softmax (background dropped), decode, class-aware NMS.

    Shares the training model's layers and weights; outputs as :func:`catalog.models.detection.inference_model`.

    Args:
        model: the model :func:`ssdlite` returns (outputs ``classes`` and ``boxes``).
        image_size: (height, width) of the input; default the model's fixed input size.
        score_threshold, iou_threshold, max_detections, pre_nms_top_k: as ``NonMaxSuppression``.
    """
    check_training_model(model, "SSDLite")
    size = fixed_size(model, image_size, "SSDLite")
    return inference_model(model, DefaultBoxDecoder(size, ssd_feature_sizes(size), **DEFAULT_BOXES, name="decode"),
                           ForegroundSoftmax(dtype="float32", name="scores"), iou_threshold=iou_threshold,
                           score_threshold=score_threshold, max_detections=max_detections,
                           pre_nms_top_k=pre_nms_top_k)


def ssd_recipe(model, neg_pos_ratio: float = 3.0, score_threshold: float = 0.001, iou_threshold: float = 0.55,
               max_detections: int = 100) -> TrainingRecipe:
    """How ``catalog.train`` trains an SSDLite training model (Liu et al. 2016, Sec. 2.2): default-box targets
    (IoU >= 0.5 positive, the rest background, each gt box keeps its best box; deltas with variances 0.1, 0.2),
    softmax cross-entropy with ``neg_pos_ratio``:1 hard negatives and smooth-L1 (beta 1), each normalized by the
    image's positives; evaluated through :func:`ssd_inference`."""
    from catalog.training.losses import HardNegativeCrossEntropy, SmoothL1  # losses live with training

    anchors = default_boxes(fixed_size(model, None, "SSDLite"))
    losses = {"classes": HardNegativeCrossEntropy(neg_pos_ratio=neg_pos_ratio), "boxes": SmoothL1(beta=1.0)}

    def inference(trained):
        return ssd_inference(trained, score_threshold=score_threshold, iou_threshold=iou_threshold,
                             max_detections=max_detections)

    return anchor_recipe(model, anchors, losses, inference, background=True, variances=VARIANCES,
                         positive_iou=0.5, negative_iou=0.5)


_NOTE = ("Sandler et al. 2018, Table 6: SSDLite (MobileNetV2) 4.3M parameters at 320 px (rounded); this layout "
         "has 4,337,013 at 80 classes + background (the card), 4,500,543 at the TF API's 90 + background; "
         "trainable weights, BatchNorm gamma and beta included")
register_model(ssdlite, name="ssdlite_mobilenet_v2", family="ssd", task="detection", paper=SANDLER2018,
               input_shape=(320, 320, 3), num_classes=80,
               defaults=dict(backbone="mobilenet_v2", name="ssdlite_mobilenet_v2"),
               reference_params=PAPER_PARAMS, reference_params_rtol=0.012, reference_params_source=_NOTE,
               reference_macs=PAPER_MACS, reference_macs_source="Sandler et al. 2018, Table 6 (0.8B MAdds at 320, "
                                                                "rounded)",
               min_input_size=SIZE_MULTIPLE, preprocessing="tf", crop_fraction=1.0, recipe=ssd_recipe)
