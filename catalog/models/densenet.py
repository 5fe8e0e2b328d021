"""DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks", CVPR).

ImageNet (torchvision layout): 7x7/2 conv (64) -> BN-ReLU -> 3x3/2 max pool -> dense blocks of
(6, 12, 24, 16) / (6, 12, 32, 32) / (6, 12, 48, 32) layers with growth rate 32 and 4k bottlenecks,
separated by transitions with compression 0.5 -> BN-ReLU -> global average pool -> FC. CIFAR
DenseNet-BC (L=100, k=12): 3x3 conv (2k = 24) -> three blocks of (L - 4) / 6 = 16 layers -> BN-ReLU ->
pool -> FC: 769,162 trainable parameters at 10 classes (the paper's "0.8M"). No conv has a bias. The FC
starts as torchvision's: PyTorch's default weight, bias 0.
"""

import functools

from keras import layers

from catalog.blocks.dense import dense_block, transition
from catalog.blocks.layers import act, batch_norm, conv_bn_act
from catalog.models.classifier import build_classifier, default_head
from catalog.registry import register_model

_PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks, CVPR"
_TV = "torchvision {} docs (GFLOPS=MACs)"

VARIANTS = {
    "densenet121": dict(defaults=dict(blocks=(6, 12, 24, 16)), reference_params=7_978_856,
                        reference_macs=2.83e9),
    "densenet169": dict(defaults=dict(blocks=(6, 12, 32, 32)), reference_params=14_149_480,
                        reference_macs=3.36e9),
    "densenet201": dict(defaults=dict(blocks=(6, 12, 48, 32)), reference_params=20_013_928,
                        reference_macs=4.29e9),
}
CIFAR = dict(blocks=(16, 16, 16), growth_rate=12, init_features=24, stem="cifar")
STEMS = ("imagenet", "cifar")


def densenet(blocks=(6, 12, 24, 16), growth_rate: int = 32, init_features: int = 64, bn_size: int = 4,
             compression: float = 0.5, stem: str = "imagenet", drop_rate: float = 0.0, **kwargs):
    """DenseNet-BC: a stem, dense blocks joined by compressing transitions, BN-ReLU, pooling, FC.

    Args:
        blocks: layers per dense block.
        growth_rate: k, channels each dense layer adds.
        init_features: stem output channels (64 for ImageNet, 2k for CIFAR DenseNet-BC).
        bn_size: bottleneck width factor (1x1 conv to bn_size * k).
        compression: theta of the transitions, in (0, 1].
        stem: "imagenet" (7x7/2 conv, BN-ReLU, 3x3/2 max pool) or "cifar" (one 3x3 conv).
        drop_rate: dropout after each dense layer's 3x3 conv.
    """
    if not blocks or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in blocks):
        raise ValueError(f"blocks must be a non-empty sequence of positive integers; got {blocks!r}.")
    for key, value in (("growth_rate", growth_rate), ("init_features", init_features), ("bn_size", bn_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer; got {value!r}.")
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"compression must be in (0, 1]; got {compression!r}.")
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}.")

    def backbone(x):
        stages = []
        if stem == "imagenet":
            x = conv_bn_act(x, init_features, 7, 2, padding="symmetric", name="stem")
            stages.append(x)
            x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)  # after ReLU, zeros never win the max
            x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
        else:
            x = conv_bn_act(x, init_features, 3, norm=False, use_bias=False, activation=None, name="stem")
        for i, num_layers in enumerate(blocks, start=1):
            x = dense_block(x, num_layers, growth_rate, bn_size, drop_rate, name=f"block{i}")
            if i < len(blocks):
                stages.append(x)
                x = transition(x, compression, name=f"transition{i}")
        x = batch_norm(x, name="final_bn")
        x = act(x, "relu", name="final_act")
        stages.append(x)
        return x, stages

    return build_classifier(backbone, head=functools.partial(default_head, init="torch_zero_bias"), **kwargs)


for _name, _row in VARIANTS.items():
    register_model(densenet, name=_name, family="densenet", paper=_PAPER, input_shape=(224, 224, 3),
                   reference_params_source=f"torchvision {_name}", reference_macs_source=_TV.format(_name),
                   min_input_size=32, preprocessing="torch", **_row)

register_model(densenet, name="densenet_bc_100_12", family="densenet", paper=_PAPER,
               input_shape=(32, 32, 3), num_classes=10, defaults=CIFAR, reference_params=769_162,
               reference_params_source="this implementation (DenseNet-BC L=100 k=12, 3 x 16 layers, "
                                       "theta 0.5, no conv bias; paper: 0.8M)",
               min_input_size=4, preprocessing="unit")
