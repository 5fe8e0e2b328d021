"""SKNet (Li et al. 2019, "Selective Kernel Networks", CVPR): ResNeXt with selective-kernel units.

SKNet-50 / SKNet-101 are ResNeXt-50 / ResNeXt-101 (32x4d, stride on the 3x3 as torchvision's ResNeXt)
with every bottleneck's grouped 3x3 replaced by an SK unit, SK[M=2, G=32, r=16] with L=32
(:func:`catalog.blocks.attention.sk`): a 3x3 and a dilation-2 3x3 branch (the paper's 5x5), each
grouped conv-BN-ReLU on the whole input (no channel split), fused by a 1x1 conv C -> d = max(C/16, 32)
+ BN + ReLU and selected by a softmax over the two branches. Stem, shortcuts and head as ResNet-50.

Counts: sknet50 has exactly 27,479,784 trainable parameters, equal to timm's skresnext50_32x4d and to
the authors' Caffe sknet50.prototxt (github:implus/SKNet). sknet101 has exactly 48,736,040, which is
timm's SelectiveKernelBottleneck ResNet with skresnext50_32x4d's SK settings at depths (3, 4, 23, 3);
the paper prints 48.9M, and the authors' sknet101.prototxt has 48,686,760 because its four 256-wide
units (conv3_x) use d = 16 instead of the paper's max(C/r, L) = 32.
"""

from __future__ import annotations

from typing import Sequence

from keras import layers

from catalog.blocks.attention import sk
from catalog.blocks.layers import act, conv_bn_act, drop_path, norm_defaults, positive_int
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

LI2019 = "Li et al. 2019, Selective Kernel Networks, CVPR"
MACS_SOURCE = "Li et al. 2019 Table 2 (GFLOPs = multiply-adds, as its ResNeXt-50 4.24)"

# name: (builder keywords, reference params, its rtol, its source, reference MACs)
# catalog.flops counts 4.463G / 8.449G MACs, within 0.2% of the paper's: the dilated branch of the three
# strided SK units runs on the sub-sampled input at the strided conv's cost (see catalog.blocks.attention.sk).
VARIANTS = {
    "sknet50": (dict(depths=(3, 4, 6, 3)), 27_479_784, 0.0,
                "timm skresnext50_32x4d (= the authors' Caffe sknet50.prototxt); Li et al. 2019: 27.5M", 4.47e9),
    "sknet101": (dict(depths=(3, 4, 23, 3)), 48_900_000, 0.004,
                 "Li et al. 2019 Table 2: 48.9M, within 0.4% (more than its rounding: the paper's 101-layer "
                 "counts run high, e.g. ResNeXt-101 44.3M vs torchvision-layout 44,177,704); this "
                 "implementation (d = max(C/16, 32) in every unit) has exactly 48,736,040 = timm's "
                 "SelectiveKernelBottleneck ResNet with skresnext50_32x4d's SK settings at depths (3, 4, 23, 3); "
                 "the authors' sknet101.prototxt has 48,686,760 (d = 16 in its conv3_x units)", 8.46e9),
}


def sk_bottleneck(x, filters: int, stride: int = 1, *, groups: int = 32, base_width: int = 4, branches: int = 2,
                  ratio: int = 16, min_dim: int = 32, drop_path_rate: float = 0.0,
                  zero_init_residual: bool = False, name: str):
    """SK bottleneck: 1x1-BN-ReLU, SK unit (stride), 1x1(4F)-BN, + shortcut, ReLU.

    Width w = int(F * base_width / 64) * groups, as the ResNeXt bottleneck; the SK unit (named
    ``{name}_sk``) takes the place of the grouped 3x3 ``conv2``, and the 1x1s keep ResNeXt's names. A 1x1 conv + BN projects the shortcut when the shape
    changes. Parameters: Cin*w + 2w + [SK unit] + w*4F + 2*4F, plus Cin*4F + 2*4F for a projection.
    """
    width = int(filters * base_width / 64) * groups
    out = 4 * filters
    if int(x.shape[-1]) == out and stride == 1:
        shortcut = x
    else:
        shortcut = conv_bn_act(x, out, 1, stride, activation=None, name=f"{name}_shortcut")
    y = conv_bn_act(x, width, 1, name=f"{name}_conv1")
    y = sk(y, width, stride, branches=branches, groups=groups, ratio=ratio, min_dim=min_dim, name=f"{name}_sk")
    y = conv_bn_act(y, out, 1, activation=None, zero_init=zero_init_residual, name=f"{name}_conv3")
    y = drop_path(y, drop_path_rate, name=f"{name}_drop_path")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return act(y, "relu", name=f"{name}_out")


def sknet(depths: Sequence[int] = (3, 4, 6, 3), width: int = 64, groups: int = 32, base_width: int = 4,
          branches: int = 2, ratio: int = 16, min_dim: int = 32, drop_path_rate: float = 0.0,
          zero_init_residual: bool = False, **kwargs):
    """SKNet (Li et al. 2019, "Selective Kernel Networks", CVPR): ResNeXt with SK units for its 3x3s.

    7x7/2 stem conv-BN-ReLU, 3x3/2 max pool, four stages of SK bottlenecks (planes ``width * 2**i``,
    output 4x that, stride 2 on the SK unit of the first block of stages 2-4), global average pool, FC.
    Each SK unit has M = ``branches`` grouped 3x3 branches with dilations 1..M, a fuse layer of width
    d = max(C / ``ratio``, ``min_dim``) and a softmax selection across the branches. SKNet-50 is
    ``depths=(3, 4, 6, 3)``, SKNet-101 ``depths=(3, 4, 23, 3)``, both SK[M=2, G=32, r=16], L=32 on a
    32x4d ResNeXt.

    Args:
        depths: SK bottlenecks per stage.
        width: planes of the first stage and channels of the stem; stage i has ``width * 2**i`` planes.
        groups: cardinality G of the SK branches' grouped convolutions.
        base_width: bottleneck width per group at 64 planes (ResNeXt's "4d").
        branches: number of SK branches M (2 or more).
        ratio: reduction ratio r of the SK fuse layer.
        min_dim: lower bound L of the SK fuse layer's width d.
        drop_path_rate: stochastic depth, growing linearly from 0 to this rate over the blocks.
        zero_init_residual: start every block as the identity (the last BatchNorm gamma of each
            residual branch at 0; Goyal et al. 2017).
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    if not (isinstance(depths, (tuple, list)) and len(depths) > 0 and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in depths)):
        raise ValueError(f"depths must be a tuple of positive integers (blocks per stage); got {depths!r}.")
    for arg, value in (("width", width), ("groups", groups), ("base_width", base_width), ("ratio", ratio),
                       ("min_dim", min_dim)):
        positive_int(value, arg)
    if isinstance(branches, bool) or not isinstance(branches, int) or branches < 2:
        raise ValueError(f"branches must be an integer >= 2; got {branches!r}.")
    if int(width * base_width / 64) == 0:
        raise ValueError(f"width * base_width must be at least 64 (a non-empty group in the first stage); "
                         f"got width={width}, base_width={base_width}.")
    if isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, (int, float)) or not (
            0.0 <= drop_path_rate < 1.0):
        raise ValueError(f"drop_path_rate must be a number in [0, 1); got {drop_path_rate!r}.")
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"zero_init_residual must be True or False; got {zero_init_residual!r}.")
    total = sum(depths)
    rates = iter([drop_path_rate * i / max(1, total - 1) for i in range(total)])

    def backbone(x):
        with norm_defaults(epsilon=1e-5):
            x = conv_bn_act(x, width, 7, 2, padding="symmetric", name="stem")
            stages = [x]
            x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)  # after ReLU, zero = PyTorch's -inf pad
            x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
            for i, depth in enumerate(depths):
                for j in range(depth):
                    x = sk_bottleneck(x, width * 2 ** i, 2 if (j == 0 and i > 0) else 1, groups=groups,
                                      base_width=base_width, branches=branches, ratio=ratio, min_dim=min_dim,
                                      drop_path_rate=next(rates), zero_init_residual=zero_init_residual,
                                      name=f"stage{i + 1}_block{j + 1}")
                stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


for _name, (_row, _params, _rtol, _source, _macs) in VARIANTS.items():
    register_model(sknet, name=_name, family="sknet", paper=LI2019, input_shape=(224, 224, 3), defaults=_row,
                   reference_params=_params, reference_params_rtol=_rtol, reference_params_source=_source,
                   reference_macs=_macs, reference_macs_source=MACS_SOURCE, min_input_size=32,
                   preprocessing="torch")
