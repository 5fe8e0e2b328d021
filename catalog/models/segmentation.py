"""What every segmentation family shares: the backbone's stage maps, torchvision's FCN head, the output format
and the training recipe.

Output format (what ``catalog evaluate --task segmentation`` reads): logits (B, H, W, num_classes) at the input
size, no softmax, float32 under mixed precision; a model built with ``aux=True`` outputs
``{"logits": ..., "aux": ...}``, both at the input size. :func:`segmentation_recipe` trains either with
:class:`catalog.training.segmentation_losses.SegmentationCrossEntropy` (label 255 ignored; the auxiliary loss
weighted 0.5, torchvision's reference).
"""

from __future__ import annotations

import keras
from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.blocks.segmentation import ResizeLike
from catalog.registry import TrainingRecipe, accepted_kwargs, create_model, get_entry, model_info

RESERVED_BACKBONE_OPTIONS = ("features_only", "out_indices", "input_shape", "weights", "input_tensor",
                             "output_stride")


def check_common(num_classes, input_shape):
    """Validate ``num_classes`` and ``input_shape`` (height and width positive integers or None)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    shape = tuple(input_shape)
    if len(shape) != 3 or any(s is not None and (isinstance(s, bool) or not isinstance(s, int) or s <= 0)
                              for s in shape):
        raise ValueError(f"input_shape must be (height, width, channels) of positive integers (height and "
                         f"width may be None); got {input_shape!r}.")
    return shape


def backbone_features(backbone: str, reductions, input_shape, *, output_stride: int = 32,
                      backbone_options: dict | None = None, backbone_weights=None, model: str):
    """The ``features_only`` model of the registered classifier ``backbone`` returning its stages at the
    nominal ``reductions`` (read from its card; the last stage of each), built with ``output_stride``.

    Raises ValueError naming the argument for a backbone that is not a classifier, lacks a stage at one of
    the reductions, or has no ``output_stride`` knob when one other than 32 is asked for.
    """
    entry = get_entry(backbone)
    if entry.task != "classification":
        raise ValueError(f"backbone must be a registered classification model; {backbone!r} is a {entry.task} "
                         f"model.")
    if backbone_options is not None and not isinstance(backbone_options, dict):
        raise ValueError(f"backbone_options must be a dict of keywords; got {type(backbone_options).__name__}.")
    options = dict(backbone_options or {})
    clash = sorted(set(options) & set(RESERVED_BACKBONE_OPTIONS))
    if clash:
        raise ValueError(f"backbone_options must not set {', '.join(clash)}; {model} sets them.")
    if "features_only" not in accepted_kwargs(backbone):
        raise ValueError(f"backbone {backbone!r} has no features_only stages; pick another backbone.")
    if output_stride != 32:
        if "output_stride" not in accepted_kwargs(backbone):
            raise ValueError(f"output_stride {output_stride!r} needs a backbone with dilation (the resnet, "
                             f"resnet_v2, mobilenet_v2, mobilenet_v3 or xception families); got {backbone!r}.")
        options["output_stride"] = output_stride
    card = list(model_info(backbone).feature_reductions)
    missing = [r for r in reductions if r not in card]
    if missing:
        raise ValueError(f"backbone {backbone!r} has no stage at reduction(s) {missing} (its stages reduce by "
                         f"{card}); {model} needs stages at {tuple(reductions)}.")
    indices = tuple(len(card) - 1 - card[::-1].index(r) for r in reductions)
    return create_model(backbone, features_only=True, out_indices=indices, input_shape=tuple(input_shape),
                        weights=backbone_weights, **options)


def dilated_maps(backbone: str, input_shape, *, aux: bool, aux_reduction: int, output_stride: int,
                 backbone_options, backbone_weights, model: str):
    """(input, the backbone's last stage, the ``aux_reduction`` stage or None) of a head on a dilated backbone
    (FCN, PSPNet); ``aux`` adds the auxiliary head's stage."""
    if not isinstance(aux, bool):
        raise ValueError(f"aux must be True or False; got {aux!r}.")
    features = backbone_features(backbone, (32, aux_reduction) if aux else (32,), input_shape,
                                 output_stride=output_stride, backbone_options=backbone_options,
                                 backbone_weights=backbone_weights, model=model)
    inputs = keras.Input(shape=input_shape, name="input")
    maps = features(inputs)
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    return inputs, maps[0], maps[1] if aux else None


def fcn_head(x, num_classes: int, channels: int | None = None, dropout: float = 0.1, *, name: str):
    """torchvision's ``FCNHead``: 3x3 conv-BN-ReLU to ``channels`` (default C_in // 4), dropout, 1x1 conv to the
    classes (with bias). Parameters: 9*C_in*ch + 2ch + ch*K + K."""
    channels = int(x.shape[-1]) // 4 if channels is None else channels
    x = conv_bn_act(x, channels, 3, name=f"{name}_conv")
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return classifier_conv(x, num_classes, name=f"{name}_classifier")


def classifier_conv(x, num_classes: int, *, name: str):
    """The 1x1 conv with bias from features to class logits (PyTorch's default conv initialization)."""
    from catalog.models.classifier import head_initializers

    return layers.Conv2D(num_classes, 1, name=name, **head_initializers("torch", int(x.shape[-1])))(x)


def segmentation_outputs(inputs, logits, aux=None):
    """Bilinear resize of the logits (and ``aux``) to the input size, float32: the model's outputs
    (a tensor, or ``{"logits", "aux"}`` when there is an auxiliary head)."""
    logits = ResizeLike(name="logits", dtype="float32")([logits, inputs])
    if aux is None:
        return logits
    return {"logits": logits, "aux": ResizeLike(name="aux", dtype="float32")([aux, inputs])}


def load_weights(model, weights):
    """A local weights file of the whole segmentation model (see :func:`catalog.models.classifier.load_weights`)."""
    from catalog.models.classifier import load_weights as load

    return load(model, weights)


def segmentation_recipe(model, ignore_index: int = 255, dice_weight: float = 0.0, focal_gamma: float = 0.0,
                        aux_weight: float = 0.5) -> TrainingRecipe:
    """Training recipe of a segmentation model: :class:`SegmentationCrossEntropy` on the logits (and, for a
    model with an auxiliary head, ``aux_weight`` times the same loss on ``aux``: torchvision's 0.5), mean IoU.

    Args:
        model: a model with logits output(s) as :func:`segmentation_outputs` makes them.
        ignore_index: the mask label not scored (255).
        dice_weight: weight of the soft Dice term.
        focal_gamma: focal-loss focusing parameter (0: cross-entropy).
        aux_weight: weight of the auxiliary head's loss.
    """
    from catalog.training.segmentation_losses import SegmentationCrossEntropy

    options = dict(ignore_index=ignore_index, dice_weight=dice_weight, focal_gamma=focal_gamma)
    output = model.output
    has_aux = isinstance(output, dict)
    num_classes = int((output["logits"] if has_aux else output).shape[-1])
    iou = keras.metrics.MeanIoU(num_classes, ignore_class=ignore_index, sparse_y_pred=False, name="mean_iou")
    notes = [f"loss: softmax cross-entropy over pixels not labelled {ignore_index}"
             + (f", + {dice_weight} x Dice" if dice_weight else "")
             + (f", focal gamma {focal_gamma}" if focal_gamma else "")]
    if not has_aux:
        return TrainingRecipe(task="segmentation", loss=SegmentationCrossEntropy(**options), num_classes=num_classes,
                              metrics=[iou], notes=notes)
    loss = {"logits": SegmentationCrossEntropy(**options),
            "aux": SegmentationCrossEntropy(**options, weight=aux_weight, name="aux_cross_entropy")}
    notes.append(f"auxiliary head loss weighted {aux_weight} (inside its loss: the recipe has no loss_weights)")
    # A list of per-output lists in the model's output order (a dict would not survive list(recipe.metrics)).
    metrics = [[iou] if output_name == "logits" else [] for output_name in model.output_names]
    return TrainingRecipe(task="segmentation", loss=loss, num_classes=num_classes, targets=_both_outputs,
                          metrics=metrics, notes=notes)


def _both_outputs(mask):
    """The mask as the target of both outputs of a model with an auxiliary head."""
    return {"logits": mask, "aux": mask}
