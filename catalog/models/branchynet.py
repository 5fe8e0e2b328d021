"""BranchyNet (Teerapittayanon, McDanel & Kung 2016, "BranchyNet: Fast Inference via Early Exiting from Deep
Neural Networks", ICPR): side classifiers ("exits") on a classification backbone, trained with a joint loss; at
inference a sample leaves at the first exit whose softmax entropy is below that exit's threshold.

Structure: any registered classifier (``backbone``, default the CIFAR ResNet-20) built whole, its stage outputs
(the maps ``features_only`` returns, indexed the same way: for resnet20 0 = stem, 1..3 = stages 1..3) feeding one
side branch each for the chosen ``exits``. A branch, after the paper's pattern of a few convolutions, pooling and a
fully connected layer: ``branch_convs`` x [3x3 conv (no bias) -> BatchNorm -> ReLU] to ``branch_filters``
channels (the first with stride ``branch_stride``, default 2: a quarter of the MACs of stride 1), global average
pooling, FC to the classes, softmax. Outputs: a list of class probabilities in exit
order, each a float32 softmax layer named ``exit1``, ``exit2``, ..., and the backbone's own classifier last,
named ``final``. Branch layers are named ``exit{k}_block{j}_conv/_bn/_act``, ``exit{k}_pool``, ``exit{k}_fc``.

Parameters (trainable): the backbone classifier's, plus per exit on a stage of C channels, with F filters, n convs
and K classes: 9 C F + 2 F + (n - 1) (9 F^2 + 2 F) + (F + 1) K. The paper gives no count for this layout; the
card's reference is that closed form: resnet20 (269,722 at 10 classes) with exits after stages 1 and 2 (16 and 32
channels), F = 32, n = 1: 269,722 + 5,002 + 9,610 = 284,334.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from catalog.blocks.layers import conv_bn_act, positive_int
from catalog.models.early_exit import early_exit_recipe
from catalog.registry import count_params, create_model, get_entry, register_model

TEERAPITTAYANON2016 = ("Teerapittayanon, McDanel & Kung 2016, BranchyNet: Fast Inference via Early Exiting from "
                       "Deep Neural Networks, ICPR")
DEFAULT_BACKBONE = "resnet20"
DEFAULT_EXITS = (1, 2)


def branch_params(channels: int, num_classes: int, filters: int = 32, convs: int = 1) -> int:
    """Closed-form trainable parameters of one side branch on a stage of ``channels`` channels."""
    return 9 * channels * filters + 2 * filters + (convs - 1) * (9 * filters * filters + 2 * filters) \
        + (filters + 1) * num_classes


def side_branch(x, num_classes: int, *, filters: int, convs: int, stride: int, name: str):
    """One exit: ``convs`` x (3x3 conv-BN-ReLU to ``filters``, the first with ``stride``), global average pooling,
    FC, float32 softmax."""
    from catalog.models.classifier import dense

    for j in range(1, convs + 1):
        x = conv_bn_act(x, filters, 3, strides=stride if j == 1 else 1, name=f"{name}_block{j}")
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    x = dense(x, num_classes, name=f"{name}_fc")
    return layers.Activation("softmax", dtype="float32", name=name)(x)


def branchynet(backbone: str = DEFAULT_BACKBONE, exits: Sequence[int] = DEFAULT_EXITS, branch_filters: int = 32,
               branch_convs: int = 1, branch_stride: int = 2, num_classes: int = 10, input_shape=None,
               backbone_options: dict | None = None, weights=None, name: str = "branchynet"):
    """BranchyNet: side-branch classifiers after chosen stages of a registered classifier, its own head last.

    Args:
        backbone: a registered classification model name (``catalog list --task classification``).
        exits: stage indices (as ``features_only``'s ``out_indices``: 0 = the first stage output) that get a side
            branch, increasing, before the last stage (whose classifier is the final exit).
        branch_filters: channels of each branch's 3x3 convolutions.
        branch_convs: 3x3 conv-BN-ReLU units per branch.
        branch_stride: stride of each branch's first conv (2: a quarter of the MACs of 1, same parameters).
        num_classes: classes of every exit.
        input_shape: (height, width, channels); default the backbone card's.
        backbone_options: more ``create_model`` keywords for the backbone (``width``, ``dropout``, ...).
        weights: a local weights file of this whole model.
        name: model name.
    """
    if not isinstance(backbone, str):
        raise ValueError(f"backbone must be a registered classification model name; got {backbone!r}.")
    entry = get_entry(backbone)
    if entry.task != "classification":
        raise ValueError(f"backbone must be a classification model (`catalog list --task classification`); "
                         f"{backbone!r} is a {entry.task} model.")
    positive_int(num_classes, "num_classes")
    positive_int(branch_filters, "branch_filters")
    positive_int(branch_convs, "branch_convs")
    positive_int(branch_stride, "branch_stride")
    if backbone_options is not None and not isinstance(backbone_options, dict):
        raise ValueError(f"backbone_options must be a dict of create_model keywords; got {backbone_options!r}.")
    options = dict(backbone_options or {})
    taken = sorted(set(options) & {"num_classes", "classes", "input_shape", "classifier_activation", "include_top",
                                   "features_only", "out_indices", "weights", "name"})
    if taken:
        raise ValueError(f"backbone_options may not set {', '.join(taken)}; branchynet sets them.")
    shape = tuple(entry.input_shape if input_shape is None else input_shape)
    net = create_model(backbone, num_classes=num_classes, input_shape=shape, classifier_activation=None, **options)
    stage_names = net.catalog_stage_outputs
    exits = tuple(exits) if isinstance(exits, (list, tuple)) else exits
    if (not isinstance(exits, tuple) or not exits
            or any(isinstance(i, bool) or not isinstance(i, int) for i in exits)
            or any(not 0 <= i < len(stage_names) - 1 for i in exits) or list(exits) != sorted(set(exits))):
        raise ValueError(f"exits must be increasing stage indices in 0..{len(stage_names) - 2} for {backbone} (its "
                         f"last stage feeds the final classifier); got {exits!r}.")
    probabilities = []
    for k, stage in enumerate(exits, start=1):
        x = net.get_layer(stage_names[stage]).output
        probabilities.append(side_branch(x, num_classes, filters=branch_filters, convs=branch_convs,
                                         stride=branch_stride, name=f"exit{k}"))
    probabilities.append(layers.Activation("softmax", dtype="float32", name="final")(net.output))
    model = keras.Model(net.input, probabilities, name=name)
    from catalog.models.classifier import load_weights

    return load_weights(model, weights)


def branchynet_params(backbone: str = DEFAULT_BACKBONE, exits=DEFAULT_EXITS, branch_filters: int = 32,
                      branch_convs: int = 1, num_classes: int = 10) -> int:
    """The closed form of the module docstring: the backbone classifier's count (its card's reference when exact,
    else measured) plus :func:`branch_params` per exit, with the stages' channels from the backbone."""
    entry = get_entry(backbone)
    net = create_model(backbone, num_classes=num_classes, features_only=True)
    channels = [int(t.shape[-1]) for t in net.outputs]
    if entry.reference_params and not entry.reference_params_rtol and num_classes == entry.num_classes:
        base = entry.reference_params
    else:
        base = count_params(create_model(backbone, num_classes=num_classes))
    return base + sum(branch_params(channels[i], num_classes, branch_filters, branch_convs) for i in exits)


RESNET20_PARAMS = 269_722 + branch_params(16, 10) + branch_params(32, 10)  # 284,334

register_model(branchynet, name="branchynet", family="branchynet", task="early_exit", paper=TEERAPITTAYANON2016,
               input_shape=(32, 32, 3), num_classes=10, defaults=dict(name="branchynet"),
               reference_params=RESNET20_PARAMS,
               reference_params_source=(f"this implementation (the paper gives no count for this layout): resnet20's "
                                        f"269,722 + 9 C F + 2 F + (F + 1) K per exit at C = 16 and 32, F = 32, K = 10: "
                                        f"{RESNET20_PARAMS:,}"),
               min_input_size=8, preprocessing="torch",
               recipe=early_exit_recipe)
