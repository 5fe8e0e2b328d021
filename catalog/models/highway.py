"""Convolutional highway networks for CIFAR (Srivastava, Greff, Schmidhuber 2015, "Training Very Deep
Networks", NeurIPS).

A highway layer computes ``y = H(x) T(x) + x (1 - T(x))`` with H a ReLU conv and T = sigmoid(W_T x + b_T)
a conv of the same shape whose bias starts negative, so every layer starts by mostly carrying its input
(:func:`catalog.blocks.operators.highway`). Highway layers keep the channel count, so each stage opens
with a plain ReLU conv that sets its width.

highway_cifar19 is the paper's 19-layer CIFAR-10 highway network (Table 1, "Fitnet B" architecture of
Romero et al. 2015, ~2.3M parameters), with the layers of the authors' Caffe definition
(github.com/flukeskywalker/highway-networks, ``examples/highways/cifar10-19layers``): input dropout 0.2 ->
conv 32 + 4 highway 32 -> max pool 2 -> dropout 0.2 -> conv 80 + 5 highway 80 -> max pool 2 -> dropout
0.2 -> conv 128 + 5 highway 128 -> 1x1 conv 100 -> global average pool (8x8) -> dropout 0.2 -> FC.
All 3x3 convs are "same" with bias, the transform-gate biases start at -2, and there is no BatchNorm.
18 convolutional layers and the FC make the 19. The Caffe file's FC has 100 outputs (its CIFAR-100
head); with the CIFAR-10 head's 10 the count is 2,256,838 (2,265,928 with 100).

The paper's 32-layer CIFAR-10 highway network (~1.25M) is not registered: neither the paper nor the
authors' code lists its layers.
"""

from __future__ import annotations

from typing import Sequence

from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.blocks.operators import highway
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

# name: (stage widths, highway layers per stage, width of the final 1x1 conv)
VARIANTS = {
    "highway_cifar19": dict(widths=(32, 80, 128), depths=(4, 5, 5), head_width=100),
}

PARAMS = {"highway_cifar19": 2_256_838}


def highway_net(widths: Sequence[int] = (32, 80, 128), depths: Sequence[int] = (4, 5, 5), head_width: int = 100,
                gate_bias: float = -2.0, block_dropout: float = 0.2, dropout: float = 0.2, **kwargs):
    """Convolutional highway network (Srivastava et al. 2015): stages of a plain conv and highway layers.

    Stage s: a 3x3 ReLU conv to ``widths[s]`` (``stage{s}_proj``), then ``depths[s]`` 3x3 highway layers
    (``stage{s}_highway{i}``); a 2x2 max pool and dropout follow every stage but the last, which ends in a
    1x1 ReLU conv to ``head_width`` (``final``). Dropout also drops input pixels. Convs have biases and
    no BatchNorm, as the authors' Caffe model.

    Args:
        widths: channels of each stage.
        depths: highway layers of each stage.
        head_width: channels of the final 1x1 conv.
        gate_bias: initial bias of every transform gate (negative: the layers start by carrying).
        block_dropout: dropout rate on the input and after each pool.
        dropout: dropout rate before the classifier.
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    widths, depths = tuple(widths), tuple(depths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be positive integers, one per stage; got {widths!r}.")
    if len(depths) != len(widths) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in depths):
        raise ValueError(f"depths must be {len(widths)} non-negative integers, one per stage; got {depths!r}.")
    if isinstance(head_width, bool) or not isinstance(head_width, int) or head_width < 1:
        raise ValueError(f"head_width must be a positive integer; got {head_width!r}.")
    if not isinstance(block_dropout, (int, float)) or not 0.0 <= block_dropout < 1.0:
        raise ValueError(f"block_dropout must be in [0, 1); got {block_dropout!r}.")
    kwargs["min_input_size"] = 2 ** (len(widths) - 1)  # a 2x2 max pool between stages

    def backbone(x):
        if block_dropout:
            x = layers.Dropout(block_dropout, name="input_drop")(x)
        stages = []
        for s, (width, depth) in enumerate(zip(widths, depths), start=1):
            x = conv_bn_act(x, width, 3, norm=False, name=f"stage{s}_proj")
            for i in range(1, depth + 1):
                x = highway(x, kernel_size=3, activation="relu", gate_bias=gate_bias, name=f"stage{s}_highway{i}")
            if s < len(widths):
                stages.append(x)
                x = layers.MaxPooling2D(2, name=f"stage{s}_pool")(x)
                if block_dropout:
                    x = layers.Dropout(block_dropout, name=f"stage{s}_drop")(x)
        x = conv_bn_act(x, head_width, 1, norm=False, name="final")
        stages.append(x)
        return x, stages

    return build_classifier(backbone, dropout=dropout, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(highway_net, name=_name, family="highway", defaults=_row,
                   paper="Srivastava et al. 2015, Training Very Deep Networks, NeurIPS",
                   input_shape=(32, 32, 3), num_classes=10, reference_params=PARAMS[_name],
                   reference_params_source=(
                       "the authors' Caffe model flukeskywalker/highway-networks "
                       "examples/highways/cifar10-19layers/cifar10_network.prototxt with a 10-way FC "
                       "(its file has 100 outputs: 2,265,928); Srivastava et al. 2015 Table 1: ~2.3M"),
                   min_input_size=4, preprocessing="unit")
