"""Inception v3, Inception-v4 and Inception-ResNet-v2 (Szegedy et al. 2016; Szegedy et al. 2017).

- inception_v3: keras.applications InceptionV3 (TF-slim): stem 32-32-64-pool-80-192-pool (3x3/2 and
  "valid" convs as TF-slim), mixed0-2 (module A, 5x5 branch kept), mixed3 (reduction), mixed4-7 (1x7/7x1
  module), mixed8 (reduction), mixed9-10 (expanded filter bank); BatchNorm without scale (eps 1e-3):
  23,817,352 trainable parameters. No auxiliary head.
- inception_v4: Szegedy et al. 2017, Figures 3-9, as timm: stem with mixed 3a/4a/5a, 4 x A,
  Reduction-A (k, l, m, n = 192, 224, 256, 384), 7 x B, Reduction-B, 3 x C; BatchNorm eps 1e-3.
- inception_resnet_v2: keras.applications InceptionResNetV2: the v3 stem, mixed_5b, 10 x block A
  (scale 0.17), Reduction-A (256, 256, 384, 384), 20 x block B (0.1), Reduction-B, 9 x block C (0.2) and a
  linear block C (1.0), 1x1 conv (1536); BatchNorm without scale: 55,813,192 trainable parameters.

All three need at least 75x75 inputs (the "valid" stem and reductions).
"""

from keras import layers

from catalog.blocks import inception as blocks
from catalog.blocks.layers import conv_bn_act, norm_defaults
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

# keras.applications (TF-slim): BatchNormalization(scale=False), Keras' eps 1e-3 and momentum 0.99.
_KERAS_NORM = dict(epsilon=1e-3, momentum=0.99, scale=False)


def _slim_stem(x, stages):
    """TF-slim stem: 3x3/2 (32) -> 3x3 (32) -> 3x3 (64) -> max pool -> 1x1 (80) -> 3x3 (192) -> max pool."""
    x = conv_bn_act(x, 32, 3, 2, padding="valid", name="stem_conv1")
    x = conv_bn_act(x, 32, 3, padding="valid", name="stem_conv2")
    x = conv_bn_act(x, 64, 3, name="stem_conv3")
    stages.append(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool1")(x)
    x = conv_bn_act(x, 80, 1, padding="valid", name="stem_conv4")
    x = conv_bn_act(x, 192, 3, padding="valid", name="stem_conv5")
    stages.append(x)
    return layers.MaxPooling2D(3, strides=2, name="stem_pool2")(x)


def _v3(x):
    stages = []
    x = _slim_stem(x, stages)
    for i, pool_proj in enumerate((32, 64, 64)):
        x = blocks.inception_v3_a(x, pool_proj, name=f"mixed{i}")
    stages.append(x)
    x = blocks.inception_v3_b(x, name="mixed3")
    for i, c7 in enumerate((128, 160, 160, 192), start=4):
        x = blocks.inception_v3_c(x, c7, name=f"mixed{i}")
    stages.append(x)
    x = blocks.inception_v3_d(x, name="mixed8")
    for i in (9, 10):
        x = blocks.inception_v3_e(x, name=f"mixed{i}")
    stages.append(x)
    return x, stages


# Inception-v4 stem modules (Figure 3) in the branch-table form of catalog.blocks.inception.
_V4_STEM = (
    ("mixed3a", [[("max", 3, 2, "valid")], [(96, 3, 2, "valid")]]),
    ("mixed4a", [[(64, 1), (96, 3, 1, "valid")], [(64, 1), (64, (1, 7)), (64, (7, 1)), (96, 3, 1, "valid")]]),
    ("mixed5a", [[(192, 3, 2, "valid")], [("max", 3, 2, "valid")]]),
)


def _v4(x):
    x = conv_bn_act(x, 32, 3, 2, padding="valid", name="stem_conv1")
    x = conv_bn_act(x, 32, 3, padding="valid", name="stem_conv2")
    x = conv_bn_act(x, 64, 3, name="stem_conv3")
    stages = [x]
    for name, branches in _V4_STEM:
        x = blocks.inception_module(x, branches, name=name)
        if name == "mixed3a":
            stages.append(x)
    for i in range(1, 5):
        x = blocks.inception_v4_a(x, name=f"stage1_block{i}")
    stages.append(x)
    x = blocks.reduction_a(x, 192, 224, 256, 384, name="reduction_a")
    for i in range(1, 8):
        x = blocks.inception_v4_b(x, name=f"stage2_block{i}")
    stages.append(x)
    x = blocks.inception_v4_reduction_b(x, name="reduction_b")
    for i in range(1, 4):
        x = blocks.inception_v4_c(x, name=f"stage3_block{i}")
    stages.append(x)
    return x, stages


def _resnet_v2(x):
    stages = []
    x = _slim_stem(x, stages)
    x = blocks.inception_v3_a(x, 64, c1=96, name="mixed_5b")
    for i in range(1, 11):
        x = blocks.inception_resnet(x, "a", 0.17, name=f"block35_{i}")
    stages.append(x)
    x = blocks.reduction_a(x, 256, 256, 384, 384, name="mixed_6a")
    for i in range(1, 21):
        x = blocks.inception_resnet(x, "b", 0.1, name=f"block17_{i}")
    stages.append(x)
    x = blocks.inception_resnet_reduction_b(x, name="mixed_7a")
    for i in range(1, 10):
        x = blocks.inception_resnet(x, "c", 0.2, name=f"block8_{i}")
    x = blocks.inception_resnet(x, "c", 1.0, activation=None, name="block8_10")
    x = conv_bn_act(x, 1536, 1, name="conv_7b")
    stages.append(x)
    return x, stages


_BACKBONES = {"v3": _v3, "v4": _v4, "resnet_v2": _resnet_v2}
# BatchNorm per version: keras.applications' (no scale, Keras momentum) or timm's (eps 1e-3, affine).
_NORMS = {"v3": _KERAS_NORM, "v4": dict(epsilon=1e-3), "resnet_v2": _KERAS_NORM}

VARIANTS = {
    "inception_v3": dict(
        defaults=dict(version="v3"), paper="Szegedy et al. 2016, Rethinking the Inception Architecture "
                                           "for Computer Vision, CVPR",
        reference_params=23_817_352, reference_params_source="keras.applications InceptionV3 (trainable)",
        reference_macs=5.71e9, reference_macs_source="torchvision inception_v3 docs (GFLOPS=MACs)"),
    "inception_v4": dict(
        defaults=dict(version="v4"), paper="Szegedy et al. 2017, Inception-v4, Inception-ResNet and the "
                                           "Impact of Residual Connections on Learning, AAAI",
        reference_params=42_679_816, reference_params_rtol=0.001,
        reference_params_source="timm inception_v4 (42.68M)",
        reference_macs=12.28e9, reference_macs_source="timm inception_v4 (12.28 GMACs)"),
    "inception_resnet_v2": dict(
        defaults=dict(version="resnet_v2"), paper="Szegedy et al. 2017, Inception-v4, Inception-ResNet "
                                                  "and the Impact of Residual Connections on Learning, AAAI",
        reference_params=55_813_192,
        reference_params_source="keras.applications InceptionResNetV2 (trainable)",
        reference_macs=13.18e9, reference_macs_source="timm inception_resnet_v2 (13.18 GMACs, approx.)"),
}


def inception(version: str = "v3", **kwargs):
    """Inception v3 / v4 / Inception-ResNet-v2 at 299x299 (at least 75x75).

    Args:
        version: "v3" (keras.applications InceptionV3), "v4" (Inception-v4) or "resnet_v2"
            (keras.applications InceptionResNetV2).
    """
    if version not in _BACKBONES:
        raise ValueError(f"version must be one of {', '.join(_BACKBONES)}; got {version!r}.")

    def backbone(x):
        with norm_defaults(**_NORMS[version]):
            return _BACKBONES[version](x)

    return build_classifier(backbone, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(inception, name=_name, family="inception", input_shape=(299, 299, 3),
                   min_input_size=75, preprocessing="tf", **_row)
