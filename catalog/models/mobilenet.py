"""MobileNet v1, v2 and v3 (Howard et al. 2017; Sandler et al. 2018; Howard et al. 2019).

- v1: 3x3/2 stem, 13 depthwise-separable convs, ReLU6; keras.applications ``MobileNet`` layout (head:
  global pool -> dropout 1e-3 -> 1x1 conv with bias as the classifier). Width ``alpha`` scales every
  conv as ``int(c * alpha)``; resolution is the input size. Registered as ``mobilenet_v1`` (1.0 at 224)
  and ``mobilenet_v1_{alpha}_{resolution}`` for the paper's Tables 6 and 7 (e.g. ``mobilenet_v1_0_75_224``).
  ``repeats_14x14`` keeps 0..5 of the five 512-channel stride-1 blocks at 14x14 (the depth knob of the
  paper's Section 4.1); ``mobilenet_v1_shallow`` is its "Shallow MobileNet" of Table 5 (all five removed).
- v2: 3x3/2 stem, 17 inverted residuals, 1x1 conv to 1280 (``make_divisible(1280 * alpha)`` only when
  alpha > 1, as keras.applications); keras.applications ``MobileNetV2`` layout and BatchNorm
  (eps 1e-3, momentum 0.999). Registered as ``mobilenet_v2`` and ``mobilenet_v2_{alpha}``.
  ``padding="symmetric"`` pads the stride-2 convs as torchvision does (its files need it).
- v3: torchvision layout (bneck tables, SE with hard-sigmoid, hard-swish, BatchNorm eps 1e-3, head
  Dense(1280/1024) -> hard-swish -> dropout 0.2 -> Dense, both Dense N(0, 0.01) with bias 0 at the start,
  as torchvision's), PyTorch-style padding on strided convs.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.depthwise import bneck, inverted_residual, separable
from catalog.blocks.layers import act, conv_bn_act, make_divisible, norm_defaults
from catalog.models.classifier import build_classifier, dense, dilation_plan, fc_conv
from catalog.registry import register_model

# v1: per stage (filters, stride) of the separable convs; stages end at reductions 2, 4, 8, 16, 32.
V1_STAGES = (((64, 1),), ((128, 2), (128, 1)), ((256, 2), (256, 1)), ((512, 2),) + ((512, 1),) * 5,
             ((1024, 2), (1024, 1)))
V1_REPEATS_14X14 = 5  # the stride-1 blocks of stage 4 (14x14x512 at 224), which repeats_14x14 trims

# v2: rows (expansion t, channels c, repeats n, first stride s) of the paper's Table 2.
V2_ROWS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1))

# v3: rows (kernel, expanded, out, SE, activation, stride) of the paper's Tables 1 and 2 (torchvision).
V3_LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
            (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hard_swish", 2), (3, 200, 80, False, "hard_swish", 1),
            (3, 184, 80, False, "hard_swish", 1), (3, 184, 80, False, "hard_swish", 1),
            (3, 480, 112, True, "hard_swish", 1), (3, 672, 112, True, "hard_swish", 1),
            (5, 672, 160, True, "hard_swish", 2), (5, 960, 160, True, "hard_swish", 1),
            (5, 960, 160, True, "hard_swish", 1))
V3_SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
            (5, 96, 40, True, "hard_swish", 2), (5, 240, 40, True, "hard_swish", 1),
            (5, 240, 40, True, "hard_swish", 1), (5, 120, 48, True, "hard_swish", 1),
            (5, 144, 48, True, "hard_swish", 1), (5, 288, 96, True, "hard_swish", 2),
            (5, 576, 96, True, "hard_swish", 1), (5, 576, 96, True, "hard_swish", 1))
V3_CONFIGS = {"large": (V3_LARGE, 1280), "small": (V3_SMALL, 1024)}


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number; got {alpha!r}.")


def _check_padding(padding):
    if padding not in ("symmetric", "same"):
        raise ValueError(f"padding must be 'symmetric' (torchvision) or 'same' (keras.applications); "
                         f"got {padding!r}.")


def _conv_head(x, num_classes, dropout):
    """keras.applications MobileNet head: pool -> dropout -> 1x1 conv classifier (with bias) -> flatten."""
    x = layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_drop")(x)
    x = fc_conv(x, num_classes, name="head_fc")
    return layers.Flatten(name="head_flatten")(x)


def mobilenet_v1(alpha: float = 1.0, dropout: float = 1e-3, repeats_14x14: int = V1_REPEATS_14X14, **kwargs):
    """MobileNet v1 (Howard et al. 2017): a 3x3/2 stem and 13 depthwise-separable convs with ReLU6.

    Args:
        alpha: width multiplier (any positive number; the paper's are 1.0, 0.75, 0.5, 0.25).
        dropout: dropout before the 1x1-conv classifier (keras.applications' 1e-3).
        repeats_14x14: how many of the five stride-1 512-channel blocks of stage 4 (14x14 at 224) to keep,
            0 to 5; the paper's "Shallow MobileNet" (Section 4.1, Table 5) keeps none, leaving 8
            separable convs. The blocks kept are the first ones, so their names do not change.
    """
    _check_alpha(alpha)
    if isinstance(repeats_14x14, bool) or not isinstance(repeats_14x14, int) or not (
            0 <= repeats_14x14 <= V1_REPEATS_14X14):
        raise ValueError(f"repeats_14x14 must be an integer from 0 to {V1_REPEATS_14X14}; got {repeats_14x14!r}.")
    layout = list(V1_STAGES)
    layout[3] = V1_STAGES[3][:1 + repeats_14x14]

    def backbone(x):
        stages = []
        with norm_defaults(epsilon=1e-3, momentum=0.99):
            x = conv_bn_act(x, int(32 * alpha), 3, 2, activation="relu6", name="stem")
            for s, stage in enumerate(layout, start=1):
                for b, (filters, stride) in enumerate(stage, start=1):
                    x = separable(x, int(filters * alpha), stride, activation="relu6", name=f"stage{s}_block{b}")
                stages.append(x)
        return x, stages

    return build_classifier(backbone, head=_conv_head, dropout=dropout, **kwargs)


def mobilenet_v2(alpha: float = 1.0, dropout: float = 0.0, padding: str = "same", output_stride: int = 32,
                 **kwargs):
    """MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, keras.applications layout.

    Args:
        alpha: width multiplier; channels are ``make_divisible(int(c * alpha), 8)``, the last conv has
            1280 channels unless alpha > 1.
        dropout: dropout before the classifier (keras.applications has none; torchvision uses 0.2).
        padding: of the stride-2 convolutions: "same" (TensorFlow's, more at the bottom/right:
            keras.applications' layout) or "symmetric" (k//2 on every side: torchvision's, which its
            files need).
        output_stride: 8, 16 or 32: the last strides become dilations of the depthwise convs (TF DeepLab's
            MobileNetV2; see :func:`catalog.models.classifier.dilation_plan`).
    """
    _check_padding(padding)
    _check_alpha(alpha)
    plan = iter(dilation_plan([s if b == 0 else 1 for _, _, n, s in V2_ROWS for b in range(n)], output_stride,
                              reduction=2))

    def backbone(x):
        stages = []
        with norm_defaults(epsilon=1e-3, momentum=0.999):
            x = conv_bn_act(x, make_divisible(32 * alpha), 3, 2, activation="relu6", padding=padding, name="stem")
            for r, (t, c, n, s) in enumerate(V2_ROWS, start=1):
                filters = make_divisible(int(c * alpha))
                for b in range(n):
                    stride, dilation = next(plan)
                    x = inverted_residual(x, filters, t, stride, padding=padding if stride == 2 else "same",
                                          dilation=dilation, name=f"stage{r}_block{b + 1}")
                if r in (1, 2, 3, 5, 7):  # ends of the reductions 2, 4, 8, 16, 32
                    stages.append(x)
            last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
            x = conv_bn_act(x, last, 1, activation="relu6", name="head_conv")
        return x, stages

    return build_classifier(backbone, dropout=dropout, **kwargs)


def mobilenet_v3(config: str = "large", alpha: float = 1.0, dropout: float = 0.2, padding: str = "symmetric",
                 output_stride: int = 32, **kwargs):
    """MobileNetV3 (Howard et al. 2019): bneck blocks with SE and hard-swish, torchvision layout.

    Args:
        config: "large" or "small".
        alpha: width multiplier; channels are ``make_divisible(c * alpha, 8)`` (torchvision ``width_mult``).
        dropout: dropout between the two head Dense layers.
        padding: of the stride-2 convolutions: "symmetric" (k//2 on every side, torchvision) or "same"
            (TensorFlow's, more at the bottom/right: keras.applications' layout, which its files need).
        output_stride: 8, 16 or 32: the last strides become dilations of the depthwise convs, the block
            that loses its stride dilated too (torchvision's ``dilated=True`` is output_stride 16; see
            :func:`catalog.models.classifier.dilation_plan`).
    """
    if config not in V3_CONFIGS:
        raise ValueError(f"config must be 'large' or 'small'; got {config!r}.")
    _check_padding(padding)
    _check_alpha(alpha)
    rows, last_channels = V3_CONFIGS[config]
    plan = iter(dilation_plan([row[-1] for row in rows], output_stride, reduction=2, dilate_strided=True))

    def width(c):
        return make_divisible(c * alpha)

    def backbone(x):
        stages = []
        with norm_defaults(epsilon=1e-3, momentum=0.99):
            x = conv_bn_act(x, width(16), 3, 2, activation="hard_swish", padding=padding, name="stem")
            for i, (k, exp, out, use_se, activation, nominal) in enumerate(rows, start=1):
                stride, dilation = next(plan)
                if nominal == 2:  # the end of a reduction (strided or dilated)
                    stages.append(x)
                x = bneck(x, width(out), width(exp), k, stride, use_se=use_se, activation=activation,
                          padding=padding if stride == 2 else "same", dilation=dilation, name=f"block{i}")
            x = conv_bn_act(x, 6 * width(rows[-1][2]), 1, activation="hard_swish", name="head_conv")
            stages.append(x)
        return x, stages

    def head(x, num_classes, dropout):
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = dense(x, width(last_channels), name="head_fc1", init="normal")
        x = act(x, "hard_swish", name="head_act")
        if dropout:
            x = layers.Dropout(dropout, name="head_drop")(x)
        return dense(x, num_classes, name="head_fc", init="normal")

    return build_classifier(backbone, head=head, dropout=dropout, **kwargs)


_V1_PAPER = "Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications"
_V2_PAPER = "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR"
_V3_PAPER = "Howard et al. 2019, Searching for MobileNetV3, ICCV"

# name: (alpha, resolution, trainable params of keras.applications.MobileNet(alpha), paper MACs)
V1_VARIANTS = {
    "mobilenet_v1": (1.0, 224, 4_231_976, 569e6),
    "mobilenet_v1_0_75_224": (0.75, 224, 2_585_560, 325e6),
    "mobilenet_v1_0_5_224": (0.5, 224, 1_331_592, 149e6),
    "mobilenet_v1_0_25_224": (0.25, 224, 470_072, 41e6),
    "mobilenet_v1_1_0_192": (1.0, 192, 4_231_976, 418e6),
    "mobilenet_v1_1_0_160": (1.0, 160, 4_231_976, 290e6),
    "mobilenet_v1_1_0_128": (1.0, 128, 4_231_976, 186e6),
}
# name: (alpha, trainable params of keras.applications.MobileNetV2(alpha), TF-slim MACs at 224)
V2_VARIANTS = {
    "mobilenet_v2": (1.0, 3_504_872, 300e6),
    "mobilenet_v2_0_35": (0.35, 1_677_128, 59e6),
    "mobilenet_v2_0_5": (0.5, 1_968_680, 97e6),
    "mobilenet_v2_0_75": (0.75, 2_636_424, 209e6),
    "mobilenet_v2_1_3": (1.3, 5_386_792, 509e6),
    "mobilenet_v2_1_4": (1.4, 6_108_776, 582e6),
}
# name: (config, trainable params (torchvision), torchvision GFLOPS as MACs)
V3_VARIANTS = {
    "mobilenet_v3_large": ("large", 5_483_032, 217e6),
    "mobilenet_v3_small": ("small", 2_542_856, 56e6),
}

for _name, (_alpha, _res, _params, _macs) in V1_VARIANTS.items():
    register_model(mobilenet_v1, name=_name, family="mobilenet_v1", paper=_V1_PAPER,
                   input_shape=(_res, _res, 3), defaults=dict(alpha=_alpha), reference_params=_params,
                   reference_params_source=f"keras.applications.MobileNet(alpha={_alpha}) trainable weights",
                   reference_macs=_macs, reference_macs_source="Howard et al. 2017, Tables 6 and 7",
                   min_input_size=32, preprocessing="tf")
# The paper's depth knob (Section 4.1, Table 5): no reference implementation, so the paper's figures are the
# reference (2.9M parameters rounded to 0.1M; test_mobilenet checks the exact count in closed form).
register_model(mobilenet_v1, name="mobilenet_v1_shallow", family="mobilenet_v1", paper=_V1_PAPER,
               defaults=dict(repeats_14x14=0), reference_params=2_900_000, reference_params_rtol=0.05e6 / 2.9e6,
               reference_params_source="Howard et al. 2017, Table 5 (Shallow MobileNet): 2.9M (rounded to 0.1M)",
               reference_macs=307e6, reference_macs_source="Howard et al. 2017, Table 5 (Shallow MobileNet)",
               min_input_size=32, preprocessing="tf")
for _name, (_alpha, _params, _macs) in V2_VARIANTS.items():
    register_model(mobilenet_v2, name=_name, family="mobilenet_v2", paper=_V2_PAPER,
                   defaults=dict(alpha=_alpha), reference_params=_params,
                   reference_params_source=f"keras.applications.MobileNetV2(alpha={_alpha}) trainable weights",
                   reference_macs=_macs, reference_macs_source="TF-slim MobileNetV2 table (MACs at 224)",
                   min_input_size=32, preprocessing="tf")
for _name, (_config, _params, _macs) in V3_VARIANTS.items():
    register_model(mobilenet_v3, name=_name, family="mobilenet_v3", paper=_V3_PAPER,
                   defaults=dict(config=_config), reference_params=_params,
                   reference_params_source=f"torchvision {_name}",
                   reference_macs=_macs, reference_macs_source="torchvision docs (GFLOPS = MACs)",
                   min_input_size=32, preprocessing="torch")
