"""Big-Little Net (Chen et al. 2019, "Big-Little Net: An Efficient Multi-Scale Feature Representation for
Visual and Speech Recognition", ICLR): bL-ResNet-50, the paper's ImageNet model at alpha = 2, beta = 4.

Layer list of the authors' code (IBM/BigLittleNet, ``models/blresnet.py``, ``blresnet_model(50, 2, 4)``):

- stem: 7x7/2 conv-BN-ReLU (no max pool), then a two-branch stem to 1/4 resolution: Big 3x3/2 conv-BN;
  Little 3x3 conv-BN-ReLU (width / alpha), 3x3/2 conv-BN-ReLU, 1x1 conv-BN back to width; added, ReLU,
  then a 1x1 conv-BN-ReLU.
- stages 1-3, one bL-module each (d = blocks of the stage): the Big branch has d - 1 bottlenecks, the
  first with stride 2, so it runs at half the module's input resolution at full width; the Little branch
  has max(1, d // beta - 1) bottlenecks at the input resolution and 1/alpha of the width, then a 1x1
  conv-BN to the full width. The Big output is upsampled x2 and added to the Little one, ReLU, then one
  transition ("fusion") bottleneck, stride 2 in stages 1-2 and 1 in stage 3.
- stage 4: a plain ResNet stage (stride 2 on the first bottleneck), global average pool, FC.

Every bottleneck is :func:`catalog.blocks.residual.bottleneck` (stride on the 3x3, BatchNorm eps 1e-5),
so the weight tensors equal the reference's one for one and the trainable parameters are its
26,694,568 exactly (paper: 26.69M); the MACs at 224 equal its conv + FC count, 2,856,058,880 (README:
2.85 GFLOPs). Three differences carry no weights: where the reference's strided shortcuts average-pool
(3x3/2, zero padding counted) before their 1x1 conv, here the 1x1 conv strides (Big branch's first block,
stage 4's first block) and the parameter-free shortcut of the strided fusion blocks takes every second
pixel; and the last Big bottleneck keeps its ReLU, which the reference applies only after the merge. So the
authors' released weights, loaded here, would not reproduce their outputs exactly. The Big branch is upsampled
bilinearly by default; the released code resizes by nearest neighbour (``interpolation="nearest"``).
BatchNorm gammas start at 1; the released code starts each bottleneck's last one at 0 (Goyal et al. 2017).

Features (``features_only``): the last map at each reduction: stem (1/2, 64), the stage-1 and stage-2
merges (1/4, 256; 1/8, 512), stage 3 (1/16, 1024) and stage 4 (1/32, 2048): ResNet-50's channels.
"""

from __future__ import annotations

from typing import Sequence

from keras import layers

from catalog.blocks import residual
from catalog.blocks.layers import act, conv_bn_act, crop_to, norm_defaults, positive_int
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

PAPER = ("Chen et al. 2019, Big-Little Net: An Efficient Multi-Scale Feature Representation for Visual and "
         "Speech Recognition, ICLR")

# name: builder keywords
VARIANTS = {
    "bl_resnet50": dict(depths=(3, 4, 6, 3), alpha=2, beta=4),
}
# name: (trainable parameters of IBM/BigLittleNet models/blresnet.py blresnet_model(50, 2, 4), counted on its
# PyTorch module; MACs at 224 as its README and the paper publish them, 2.85 GFLOPs)
REFERENCE = {"bl_resnet50": (26_694_568, 2.85e9)}

INTERPOLATIONS = ("bilinear", "nearest")
MODULE_STRIDES = (2, 2, 1)  # the fusion block of the bL-modules of stages 1-3


def little_depth(depth: int, beta: int) -> int:
    """Bottlenecks of a bL-module's Little branch for a stage of ``depth`` blocks (the reference's rule)."""
    return max(1, depth // beta - 1)


def _bl_stem(x, width: int, alpha: int):
    """The two-branch stem from 1/2 to 1/4 resolution: Big one strided 3x3, Little three convs at 1/alpha width."""
    big = conv_bn_act(x, width, 3, 2, padding="symmetric", activation=None, name="stem_big")
    little = conv_bn_act(x, width // alpha, 3, name="stem_little1")
    little = conv_bn_act(little, width // alpha, 3, 2, padding="symmetric", name="stem_little2")
    little = conv_bn_act(little, width, 1, activation=None, name="stem_little3")
    x = act(layers.Add(name="stem_merge_add")([big, little]), "relu", name="stem_merge_act")
    return conv_bn_act(x, width, 1, name="stem_fuse")


def _bl_module(x, filters: int, depth: int, *, alpha: int, beta: int, stride: int, interpolation: str, name: str):
    """One bL-module; returns (merged map before the fusion block, module output)."""
    big = x
    for j in range(depth - 1):
        big = residual.bottleneck(big, filters, 2 if j == 0 else 1, name=f"{name}_big_block{j + 1}")
    little = x
    for j in range(little_depth(depth, beta)):
        little = residual.bottleneck(little, filters // alpha, name=f"{name}_little_block{j + 1}")
    little = conv_bn_act(little, 4 * filters, 1, activation=None, name=f"{name}_little_expand")
    big = layers.UpSampling2D(2, interpolation=interpolation, name=f"{name}_big_up")(big)
    big = crop_to(big, little, name=f"{name}_big_crop")  # odd Little side: Big came back one row larger
    merged = act(layers.Add(name=f"{name}_merge_add")([big, little]), "relu", name=f"{name}_merge_act")
    out = residual.bottleneck(merged, filters, stride, shortcut="zero_pad", name=f"{name}_fusion")
    return merged, out


def bl_resnet(depths: Sequence[int] = (3, 4, 6, 3), alpha: int = 2, beta: int = 4, width: int = 64,
              interpolation: str = "bilinear", **kwargs):
    """bL-ResNet (Chen et al. 2019): ResNet bottlenecks in Big-Little modules in stages 1-3.

    Stem 7x7/2 conv and a Big-Little stem to 1/4 resolution; stages 1-3 are bL-modules (Big branch of
    ``depths[i] - 1`` bottlenecks at half resolution and full width, Little branch of
    ``max(1, depths[i] // beta - 1)`` bottlenecks at full resolution and ``1/alpha`` width, merged by
    upsampling the Big output and adding, then one transition bottleneck); stage 4 is a plain ResNet stage
    of ``depths[3]`` bottlenecks; global average pool, FC. See the module docstring for the layer list.

    Args:
        depths: blocks of the four stages, as the ResNet of the same depth (bL-ResNet-50: (3, 4, 6, 3));
            stages 1-3 need at least 2.
        alpha: the Little branch's width divisor (the paper's alpha); must divide ``width``.
        beta: the Little branch's depth divisor (the paper's beta).
        width: channels of the stem and bottleneck planes of stage 1 (stage i has ``width * 2**(i - 1)``
            planes and ``4 * width * 2**(i - 1)`` output channels).
        interpolation: how the Big branch is upsampled x2: "bilinear" or "nearest" (the released code's).
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    if not (isinstance(depths, (tuple, list)) and len(depths) == 4 and all(
            isinstance(d, int) and not isinstance(d, bool) for d in depths)
            and min(depths[:3]) >= 2 and depths[3] >= 1):
        raise ValueError(f"depths must be four integers, at least 2 for stages 1-3 and 1 for stage 4; "
                         f"got {depths!r}.")
    positive_int(alpha, "alpha")
    positive_int(beta, "beta")
    positive_int(width, "width")
    if width % alpha:
        raise ValueError(f"width must be a multiple of alpha; got width={width} with alpha={alpha}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest'; got {interpolation!r}.")

    def backbone(x):
        with norm_defaults(epsilon=1e-5):
            x = conv_bn_act(x, width, 7, 2, padding="symmetric", name="stem")
            stages = [x]
            x = _bl_stem(x, width, alpha)
            for i, stride in enumerate(MODULE_STRIDES):
                merged, x = _bl_module(x, width * 2 ** i, depths[i], alpha=alpha, beta=beta, stride=stride,
                                       interpolation=interpolation, name=f"stage{i + 1}")
                if stride == 2:  # the merge is the last map at this reduction
                    stages.append(merged)
            stages.append(x)
            for j in range(depths[3]):
                x = residual.bottleneck(x, width * 8, 2 if j == 0 else 1, name=f"stage4_block{j + 1}")
            stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


for _name, _row in VARIANTS.items():
    _params, _macs = REFERENCE[_name]
    register_model(
        bl_resnet, name=_name, family="big_little", paper=PAPER, input_shape=(224, 224, 3), defaults=_row,
        reference_params=_params, reference_params_rtol=0,
        reference_params_source="IBM/BigLittleNet models/blresnet.py, blresnet_model(50, alpha=2, beta=4): "
                                "26,694,568 trainable parameters, the same weight tensors one for one "
                                "(paper: 26.69M)",
        reference_macs=_macs,
        reference_macs_source="IBM/BigLittleNet README and Chen et al. 2019: bL-ResNet-50 (alpha 2, beta 4) "
                              "2.85 GFLOPs (= MACs) at 224",
        min_input_size=32, preprocessing="torch")
