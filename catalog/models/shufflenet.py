"""ShuffleNet v1 (Zhang et al. 2018) and ShuffleNet v2 (Ma et al. 2018).

Both: 3x3/2 conv stem (24 channels) -> 3x3/2 max pool -> three stages of 4, 8 and 4 units, each
starting with a stride-2 unit -> global pool -> Dense. PyTorch-style padding on strided layers.
Feature stages: stem (reduction 2), max pool (4), stage 2 (8), stage 3 (16), stage 4 or conv5 (32).

- v1: grouped-pointwise units with channel shuffle; stage channels from the paper's Table 1 for
  ``groups`` 1, 2, 3, 4, 8, multiplied by ``scale`` (0.5, 1.0, 1.5, 2.0; the stem stays at 24 channels);
  bottleneck = a quarter of the stage's output channels, rounded down to a multiple of ``groups`` (only
  the non-1.0 scales need the rounding); the first unit of stage 2 uses one group on its first 1x1.
  No library publishes this layout's counts, so the registered counts are this implementation's.
- v2: channel-split units; torchvision layout (stage channels and the 1x1 ``conv5`` of Table 5,
  including torchvision's 2048-channel conv5 at 2.0x), torchvision's BatchNorm settings.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.blocks.shuffle import shufflenet_v1_unit, shufflenet_v2_unit
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

REPEATS = (4, 8, 4)
# v1: output channels of stages 2, 3, 4 at 1.0x, by groups (Table 1).
V1_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
               8: (384, 768, 1536)}
V1_SCALES = (0.5, 1.0, 1.5, 2.0)
# v2: output channels of stages 2, 3, 4 and conv5, by scale (torchvision).
V2_CHANNELS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
               2.0: (244, 488, 976, 2048)}
STEM = 24


def _stem(x):
    x = conv_bn_act(x, STEM, 3, 2, padding="symmetric", name="stem")
    stem = x
    # Zero padding equals PyTorch's -inf padding here: the input is post-ReLU (non-negative).
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return layers.MaxPooling2D(3, 2, name="stem_pool")(x), stem


def _padding(stride):
    return "symmetric" if stride == 2 else "same"


def shufflenet_v1(groups: int = 3, scale: float = 1.0, **kwargs):
    """ShuffleNet v1 (Zhang et al. 2018): stages of ShuffleNet units with grouped 1x1 convs and shuffle.

    Args:
        groups: groups of the pointwise convolutions: 1, 2, 3, 4 or 8.
        scale: channel multiplier ("ShuffleNet s x"): 0.5, 1.0, 1.5 or 2.0.
    """
    if groups not in V1_CHANNELS or isinstance(groups, bool):
        raise ValueError(f"groups must be one of 1, 2, 3, 4, 8; got {groups!r}.")
    if scale not in V1_SCALES or isinstance(scale, bool):
        raise ValueError(f"scale must be one of 0.5, 1.0, 1.5, 2.0; got {scale!r}.")
    channels = [int(c * scale) for c in V1_CHANNELS[groups]]

    def backbone(x):
        x, stem = _stem(x)
        stages = [stem, x]
        for s, (c, n) in enumerate(zip(channels, REPEATS), start=2):
            bottleneck = c // 4 // groups * groups
            for b in range(n):
                stride = 2 if b == 0 else 1
                x = shufflenet_v1_unit(x, c, groups, stride, first_groups=1 if (s, b) == (2, 0) else groups,
                                       bottleneck=bottleneck, padding=_padding(stride),
                                       name=f"stage{s}_block{b + 1}")
            stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


def shufflenet_v2(scale: float = 1.0, **kwargs):
    """ShuffleNet v2 (Ma et al. 2018): stages of channel-split units and a 1x1 conv5, torchvision layout.

    Args:
        scale: channel multiplier: 0.5, 1.0, 1.5 or 2.0 (torchvision's x0_5 .. x2_0).
    """
    if scale not in V2_CHANNELS or isinstance(scale, bool):
        raise ValueError(f"scale must be one of 0.5, 1.0, 1.5, 2.0; got {scale!r}.")
    *channels, last = V2_CHANNELS[scale]

    def backbone(x):
        x, stem = _stem(x)
        stages = [stem, x]
        for s, (c, n) in enumerate(zip(channels, REPEATS), start=2):
            for b in range(n):
                stride = 2 if b == 0 else 1
                x = shufflenet_v2_unit(x, c, stride, padding=_padding(stride), name=f"stage{s}_block{b + 1}")
            if s < 4:
                stages.append(x)
        x = conv_bn_act(x, last, 1, name="head_conv")
        stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


_V1_PAPER = ("Zhang et al. 2018, ShuffleNet: An Extremely Efficient Convolutional Neural Network for "
             "Mobile Devices, CVPR")
_V2_PAPER = "Ma et al. 2018, ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV"

# (groups, scale): (trainable params of this implementation, paper MFLOPs (= MACs), Tables 1-2).
V1_COUNTS = {(1, 1.0): (1_531_936, 143e6), (2, 1.0): (1_733_848, 140e6), (3, 1.0): (1_865_728, 140e6),
             (4, 1.0): (1_968_344, 133e6), (8, 1.0): (2_434_768, 137e6), (3, 1.5): (3_442_168, 292e6),
             (3, 2.0): (5_448_208, 524e6)}
# Registered settings: the paper's headline g=3 and the authors' released g=8 and wider g=3 models.
V1_VARIANTS = {"shufflenet_v1": (3, 1.0), "shufflenet_v1_g8_x1_0": (8, 1.0), "shufflenet_v1_g3_x1_5": (3, 1.5),
               "shufflenet_v1_g3_x2_0": (3, 2.0)}
# The paper and the authors' code give about 1.9M for g=3 1.0x (this layout: 1,865,728).
V1_PUBLISHED = {"shufflenet_v1": (1_900_000, 0.02)}
# name: (scale, torchvision params, torchvision GFLOPS as MACs)
V2_VARIANTS = {
    "shufflenet_v2_x0_5": (0.5, 1_366_792, 41e6),
    "shufflenet_v2_x1_0": (1.0, 2_278_604, 146e6),
    "shufflenet_v2_x1_5": (1.5, 3_503_624, 299e6),
    "shufflenet_v2_x2_0": (2.0, 7_393_996, 591e6),
}

for _name, (_groups, _scale) in V1_VARIANTS.items():
    _params, _macs = V1_COUNTS[(_groups, _scale)]
    _published, _rtol = V1_PUBLISHED.get(_name, (_params, 0.0))
    register_model(shufflenet_v1, name=_name, family="shufflenet_v1", paper=_V1_PAPER,
                   defaults=dict(groups=_groups, scale=_scale), reference_params=_published,
                   reference_params_rtol=_rtol,
                   reference_params_source=("Zhang et al. 2018 / megvii ShuffleNet-Series: about 1.9M "
                                            "(this layout: 1,865,728)") if _rtol else
                   "this implementation (paper Table 1 layout, 24-channel stem)",
                   reference_macs=_macs, reference_macs_source="Zhang et al. 2018, Tables 1-2 (MFLOPs = MACs)",
                   min_input_size=32, preprocessing="torch")
for _name, (_scale, _params, _macs) in V2_VARIANTS.items():
    register_model(shufflenet_v2, name=_name, family="shufflenet_v2", paper=_V2_PAPER,
                   defaults=dict(scale=_scale), reference_params=_params,
                   reference_params_source=f"torchvision {_name}",
                   reference_macs=_macs, reference_macs_source="torchvision docs (GFLOPS = MACs)",
                   min_input_size=32, preprocessing="torch")
