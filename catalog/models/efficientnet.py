"""EfficientNet B0-B3 (Tan & Le 2019, EfficientNet: Rethinking Model Scaling for CNNs, ICML).

A 3x3/2 stem, seven stages of MBConv blocks (swish, SE with a quarter of the block's input channels,
drop-path growing linearly from 0 to ``drop_path_rate`` over the blocks), a 1x1 conv to 1280 and a
dropout -> Dense head. Compound scaling: channels ``make_divisible(c * width)``, repeats
``ceil(n * depth)``. keras.applications layout and BatchNorm (eps 1e-3, momentum 0.99); its
Rescaling/Normalization input layers are not part of these models (preprocessing "torch" does that
work), so the trainable counts equal keras.applications' (and torchvision's: the two layouts agree).
The head Dense starts as both references start it: U(+-1/sqrt(classes)), bias 0. The two layouts differ
in the padding of the stride-2 convolutions only: TensorFlow's "same" (keras.applications, the default)
against k//2 on every side (torchvision, ``padding="symmetric"``).
"""

from __future__ import annotations

import functools
import math

from catalog.blocks.depthwise import mbconv
from catalog.blocks.layers import conv_bn_act, make_divisible, norm_defaults
from catalog.models.classifier import build_classifier, default_head
from catalog.registry import register_model

# B0 rows (kernel, repeats, out channels, expansion, first stride) of the paper's Table 1.
ROWS = ((3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2), (5, 3, 112, 6, 1),
        (5, 4, 192, 6, 2), (3, 1, 320, 6, 1))

# name: (width, depth, resolution, dropout, trainable params (keras.applications = torchvision), MACs)
VARIANTS = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2, 5_288_548, 0.39e9),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2, 7_794_184, 0.70e9),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3, 9_109_994, 1.0e9),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3, 12_233_232, 1.8e9),
}


def efficientnet(width: float = 1.0, depth: float = 1.0, dropout: float = 0.2, drop_path_rate: float = 0.2,
                 padding: str = "same", **kwargs):
    """EfficientNet: MBConv stages of the B0 table scaled by ``width`` and ``depth``.

    Args:
        width: channel multiplier (B0 1.0, B1 1.0, B2 1.1, B3 1.2).
        depth: repeat multiplier (B0 1.0, B1 1.1, B2 1.2, B3 1.4).
        dropout: dropout before the classifier.
        drop_path_rate: drop-path rate of the last block; block i of N gets ``rate * i / N``.
        padding: of the stride-2 convolutions: "same" (keras.applications) or "symmetric" (torchvision,
            which its files need).
    """
    if padding not in ("same", "symmetric"):
        raise ValueError(f"padding must be 'same' (keras.applications) or 'symmetric' (torchvision); "
                         f"got {padding!r}.")
    for value, argument in ((width, "width"), (depth, "depth")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{argument} must be a positive number; got {value!r}.")
    if not 0 <= drop_path_rate < 1:
        raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate!r}.")
    repeats = [int(math.ceil(depth * n)) for _, n, _, _, _ in ROWS]
    total = sum(repeats)

    def backbone(x):
        stages = []
        index = 0
        with norm_defaults(epsilon=1e-3, momentum=0.99):
            x = conv_bn_act(x, make_divisible(32 * width), 3, 2, activation="swish", padding=padding, name="stem")
            for r, ((k, _, c, t, s), n) in enumerate(zip(ROWS, repeats), start=1):
                for b in range(n):
                    stride = s if b == 0 else 1
                    x = mbconv(x, make_divisible(c * width), t, k, stride, drop_rate=drop_path_rate * index / total,
                               padding=padding if stride == 2 else "same", name=f"stage{r}_block{b + 1}")
                    index += 1
                if r in (1, 2, 3, 5, 7):  # ends of the reductions 2, 4, 8, 16, 32
                    stages.append(x)
            x = conv_bn_act(x, make_divisible(1280 * width), 1, activation="swish", name="head_conv")
        return x, stages

    return build_classifier(backbone, head=functools.partial(default_head, init="fan_out"), dropout=dropout,
                            **kwargs)


for _name, (_w, _d, _res, _drop, _params, _macs) in VARIANTS.items():
    register_model(efficientnet, name=_name, family="efficientnet",
                   paper="Tan & Le 2019, EfficientNet: Rethinking Model Scaling for Convolutional Neural "
                         "Networks, ICML", input_shape=(_res, _res, 3),
                   defaults=dict(width=_w, depth=_d, dropout=_drop), reference_params=_params,
                   reference_params_source=f"keras.applications EfficientNet{_name[-2:].upper()} trainable "
                                           "weights (= torchvision)",
                   reference_macs=_macs, reference_macs_source="Tan & Le 2019, Table 2 (FLOPs = MACs)",
                   min_input_size=32, preprocessing="torch")
