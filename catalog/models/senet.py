"""Attention ResNets: SE-ResNet / SE-ResNeXt / SENet-154 (Hu et al. 2018) and CBAM-ResNet (Woo et al. 2018).

:func:`catalog.models.resnet.resnet` with an attention module on every bottleneck's residual branch, after the
last BN and before the addition (the timm / Cadene ``pretrainedmodels`` layout). SE: global average pool,
1x1 conv C -> C/16 with bias, ReLU, 1x1 conv C/16 -> C with bias, sigmoid, scale. The SE-ResNet and
CBAM-ResNet bottlenecks stride on the first 1x1 as the papers' Caffe models (and Cadene's ports) do, which
gives the papers' 3.87 GMACs; SE-ResNeXt strides on the 3x3 as ResNeXt does. The stride position does not
change the parameter count.

SENet-154 is the authors' ILSVRC 2017 model as released (Cadene ``pretrainedmodels`` ``senet154``, timm
``senet154``): an SE-ResNeXt-152 64x4d (depths 3-8-36-3, 64 groups, 4 channels per group at 64 planes, SE
ratio 16) whose bottleneck's first 1x1 has half the 3x3's width (128 -> 256 at 64 planes), a deep stem
(3x3/2 conv 64, 3x3 conv 64, 3x3 conv 128, each BN-ReLU) with a ceil-mode 3x3/2 max pool, 3x3/2
projection shortcuts (+ BN) on the first block of stages 2-4 (stage 1's stays 1x1), stride on the
grouped 3x3, and dropout 0.2 before the FC. 115,088,984 parameters.
"""

from __future__ import annotations

import functools
from typing import Sequence

from catalog.blocks import attention as attention_blocks
from catalog.models.resnet import resnet
from catalog.registry import register_model

ATTENTIONS = {"se": attention_blocks.se, "cbam": attention_blocks.cbam}

RESNET50 = dict(block="bottleneck", depths=(3, 4, 6, 3))

# name: (family, builder keywords, reference params, its rtol, its source, reference MACs, MACs source)
VARIANTS = {
    "se_resnet50": ("senet", dict(RESNET50, attention="se", stride_on_1x1=True), 28_088_024, 0.0,
                    "timm seresnet50 / Cadene se_resnet50", 3.87e9, "Hu et al. 2018 Table 2 (3.87 GFLOPs)"),
    "se_resnext50_32x4d": ("senet", dict(RESNET50, attention="se", groups=32, base_width=4), 27_559_896, 0.0,
                           "timm seresnext50_32x4d / Cadene se_resnext50_32x4d", 4.25e9,
                           "Hu et al. 2018 Table 2 (4.25 GFLOPs)"),
    "senet154": ("senet", dict(block="bottleneck", depths=(3, 8, 36, 3), attention="se", groups=64, base_width=4,
                               reduce_first=2, stem="deep", stem_pool="ceil", shortcut_kernel=3, dropout=0.2),
                 115_088_984, 0.0, "Cadene pretrainedmodels senet154 / timm senet154", None, None),
    # Exactly 28,089,624 here: resnet50's 25,557,032 + SE-like channel MLPs (2,530,992) + 16 spatial
    # 7x7 convs with BN (16 * (2*49 + 2) = 1,600).
    "cbam_resnet50": ("cbam", dict(RESNET50, attention="cbam", stride_on_1x1=True), 28_090_000, 0.0002,
                      "Woo et al. 2018 Table (28.09M); this implementation (spatial 7x7 conv + BN as in the "
                      "authors' code): exactly 28,089,624", 3.864e9, "Woo et al. 2018 Table (3.864 GFLOPs)"),
}


def attention_resnet(depths: Sequence[int] = (3, 4, 6, 3), block: str = "bottleneck", width: int = 64,
                     groups: int = 1, base_width: int = 64, stride_on_1x1: bool = False,
                     drop_path_rate: float = 0.0, attention: str = "se", ratio: int = 16,
                     zero_init_residual: bool = False, stem: str = "7x7", stem_pool: str = "pad",
                     reduce_first: int = 1, shortcut_kernel: int = 1, **kwargs):
    """ResNet with SE or CBAM on every block's residual branch before the addition.

    Args:
        depths: blocks per stage.
        block: "basic" or "bottleneck".
        width: planes of the first stage; stage i has ``width * 2**i``.
        groups: grouped-conv cardinality of the bottleneck's 3x3 (SE-ResNeXt).
        base_width: bottleneck width per group at 64 planes.
        stride_on_1x1: stride on the bottleneck's first 1x1 (the papers' Caffe layout) instead of the 3x3.
        drop_path_rate: stochastic depth, growing linearly to this rate over the blocks.
        attention: "se" (Squeeze-and-Excitation) or "cbam".
        ratio: channel reduction ratio r of the attention MLP.
        zero_init_residual: start the last BatchNorm gamma of every block's branch at 0, before the
            attention module (so the branch outputs zeros; timm's ``zero_init_last``).
        stem: "7x7" or "deep" (SENet-154's three 3x3 convs of width, width, 2 * width).
        stem_pool: "pad" (torchvision's padded max pool) or "ceil" (SENet-154's ceil-mode max pool).
        reduce_first: the bottleneck's first 1x1 has ``1 / reduce_first`` of the 3x3's width (SENet-154: 2).
        shortcut_kernel: kernel of the projection shortcuts of stages 2+ (SENet-154: 3).
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords (SENet-154 sets
            ``dropout=0.2``).
    """
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}.")
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio <= 0:
        raise ValueError(f"ratio must be a positive integer; got {ratio!r}.")
    return resnet(depths=depths, block=block, width=width, groups=groups, base_width=base_width,
                  stride_on_1x1=stride_on_1x1, drop_path_rate=drop_path_rate,
                  attention=functools.partial(ATTENTIONS[attention], ratio=ratio),
                  zero_init_residual=zero_init_residual, stem=stem, stem_pool=stem_pool, reduce_first=reduce_first,
                  shortcut_kernel=shortcut_kernel, **kwargs)


for _name, (_family, _row, _params, _rtol, _source, _macs, _macs_source) in VARIANTS.items():
    register_model(attention_resnet, name=_name, family=_family,
                   paper=("Woo et al. 2018, CBAM: Convolutional Block Attention Module, ECCV" if _family == "cbam"
                          else "Hu et al. 2018, Squeeze-and-Excitation Networks, CVPR"),
                   input_shape=(224, 224, 3), defaults=_row, reference_params=_params,
                   reference_params_rtol=_rtol, reference_params_source=_source, reference_macs=_macs,
                   reference_macs_source=_macs_source, min_input_size=32, preprocessing="torch")
