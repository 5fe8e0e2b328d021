"""Residual Attention Networks: Attention-56 and Attention-92 (Wang et al. 2017, CVPR) at 224x224x3.

Paper Table 2, in the layout of the authors' Caffe deploy prototxts (github.com/fwang91/
residual-attention-network, imagenet_model/Attention-{56,92}-deploy.prototxt): 7x7/2 stem conv-BN-ReLU,
3x3/2 max pool; stage 1 at 56x56: a residual unit to 256 channels, then Attention Modules with a 3-level
mask; stage 2 at 28x28: a strided unit to 512, modules with 2 levels; stage 3 at 14x14: a strided unit to
1024, modules with 1 level; stage 4 at 7x7: three units to 2048 (the first strided); BN-ReLU, global
average pool, FC. Units are bias-free pre-activation bottlenecks; modules use p = 1, t = 2, r = 1 (see
:mod:`catalog.blocks.residual_attention`). Attention-56 has 1, 1, 1 modules per stage, Attention-92 1, 2, 3.

Parameter counts equal the authors' prototxts layer for layer (BN: scale and shift, 2 per channel):
31,810,728 and 52,466,344. The paper's Table 2 prints 31.9M and 51.3M; the prototxts' module counts add up
(Attention-92 = Attention-56 + one 28x28 module of 3,046,912 + two 14x14 modules of 8,804,352), so the
prototxt figures are the reference here. (tengshaofeng/ResidualAttentionNetwork-pytorch, a common port,
builds an unused 1x1 projection in every unit and adds extra parameter-free sums in the mask's up path,
so its counts differ from this layout's.)
"""

from __future__ import annotations

from typing import Sequence

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv_bn_act
from catalog.blocks.residual_attention import INTERPOLATIONS, attention_module, unit
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

PAPER = "Wang et al. 2017, Residual Attention Network for Image Classification, CVPR"
PROTOTXT = "authors' Caffe deploy prototxt (fwang91/residual-attention-network imagenet_model/{}-deploy.prototxt)"

# Mask-branch pooling levels of the modules of stages 1-3 (56x56, 28x28, 14x14 at a 224 input).
LEVELS = (3, 2, 1)

# name: (builder keywords, exact params of the authors' prototxt, paper's params, paper's MACs)
VARIANTS = {
    "residual_attention56": (dict(modules=(1, 1, 1)), 31_810_728, "31.9M", 6.2e9),
    "residual_attention92": (dict(modules=(1, 2, 3)), 52_466_344, "51.3M", 10.4e9),
}


def residual_attention(modules: Sequence[int] = (1, 1, 1), width: int = 64, interpolation: str = "bilinear",
                       **kwargs):
    """Residual Attention Network (Wang et al. 2017, CVPR, Table 2).

    Stem 7x7/2 conv (``width``) with BN-ReLU and a 3x3/2 max pool; stages 1-3 each a residual unit of
    ``4 * width * 2**i`` channels (stride 2 from stage 2) followed by ``modules[i]`` Attention Modules
    whose mask branches pool 3, 2 and 1 times; stage 4 three units of ``32 * width`` channels (the first
    with stride 2); final BN-ReLU, global average pool, FC. Features: the stem, the end of each stage.

    Args:
        modules: Attention Modules in stages 1, 2 and 3 ((1, 1, 1) Attention-56, (1, 2, 3) Attention-92).
        width: base channels: the stem's and the bottleneck planes of stage 1 (64 in the paper).
        interpolation: "bilinear" (the authors' Interp layers) or "nearest" upsampling in the masks.
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    if not (isinstance(modules, (tuple, list)) and len(modules) == 3 and all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in modules)):
        raise ValueError(f"modules must be three non-negative integers (Attention Modules in stages 1-3); "
                         f"got {modules!r}.")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive integer; got {width!r}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.")

    def backbone(x):
        x = conv_bn_act(x, width, 7, 2, padding="symmetric", name="stem")
        stages = [x]
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        for i, (count, levels) in enumerate(zip(modules, LEVELS)):
            x = unit(x, 4 * width * 2 ** i, 1 if i == 0 else 2, name=f"stage{i + 1}_block1")
            for m in range(count):
                x = attention_module(x, levels, interpolation=interpolation, name=f"stage{i + 1}_attention{m + 1}")
            stages.append(x)
        for j in range(3):
            x = unit(x, 32 * width, 2 if j == 0 else 1, name=f"stage4_block{j + 1}")
        x = act(batch_norm(x, name="post_bn"), "relu", name="post_act")
        stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


for _name, (_row, _exact, _paper, _macs) in VARIANTS.items():
    _variant = f"Attention-{_name[-2:]}"
    register_model(residual_attention, name=_name, family="residual_attention", paper=PAPER,
                   input_shape=(224, 224, 3), defaults=_row, reference_params=_exact, reference_params_rtol=0.0,
                   reference_params_source=(f"{PROTOTXT.format(_variant)}, counted layer by layer; paper Table 2 "
                                            f"prints {_paper}"),
                   reference_macs=_macs,
                   reference_macs_source=f"{PAPER.split(',')[0]} Table 2 ({_macs / 1e9:g} GFLOPs = multiply-adds)",
                   min_input_size=32, preprocessing="torch")
