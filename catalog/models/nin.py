"""Network in Network (Lin, Chen, Yan 2014, "Network In Network", ICLR).

An mlpconv block is a spatial conv followed by two 1x1 convs (the "micro network"), each with bias and
ReLU. There are no FC layers: the last mlpconv's final 1x1 conv maps to the classes, and global average
pooling turns each class map into a logit (``conv_head``, also the head of SqueezeNet and All-CNN).

nin_cifar (the authors' CIFAR-10 model): 32x32 -> 192@5x5-160-96 -> maxpool 3x3/2 -> dropout ->
192@5x5-192-192 -> avgpool 3x3/2 -> dropout -> 192@3x3-192-classes -> global average pool; 966,986
parameters. Its Caffe pools round up (ceil mode), which "same" pooling reproduces at even sizes (32, 16).
nin (the Caffe model zoo ImageNet model): 224x224 -> 96@11x11/4-96-96 -> maxpool -> 256@5x5-256-256 ->
maxpool -> 384@3x3-384-384 -> maxpool -> dropout -> 1024@3x3-1024-classes -> global average pool;
7,595,176 parameters (ceil-mode max pools: 54 -> 27 -> 13 -> 6).
"""

from keras import layers

from catalog.blocks.layers import conv_bn_act, max_pool_ceil
from catalog.models.classifier import build_classifier, conv_head
from catalog.registry import register_model

# Blocks as (filters of the conv and its two 1x1 convs, kernel, stride, padding, pool after, dropout after).
# The last block's final 1x1 conv (to the classes) is the head's; its filters here are left out.
_LAYOUTS = {
    "cifar": (((192, 160, 96), 5, 1, "same", "max", True), ((192, 192, 192), 5, 1, "same", "avg", True),
              ((192, 192), 3, 1, "same", None, False)),
    "imagenet": (((96, 96, 96), 11, 4, "valid", "max_ceil", False),
                 ((256, 256, 256), 5, 1, "same", "max_ceil", False),
                 ((384, 384, 384), 3, 1, "same", "max_ceil", True), ((1024, 1024), 3, 1, "same", None, False)),
}

VARIANTS = {
    "nin_cifar": dict(layout="cifar", input_shape=(32, 32, 3), num_classes=10, params=966_986,
                      min_input_size=None, preprocessing="unit",
                      source="this implementation (Lin et al. 2014 CIFAR-10 configuration, 192-160-96 / "
                             "192-192-192 / 192-192-10)"),
    "nin": dict(layout="imagenet", input_shape=(224, 224, 3), num_classes=1000, params=7_595_176,
                min_input_size=39, preprocessing="caffe",
                source="this implementation (Caffe model zoo NiN ImageNet: 96-96-96 / 256-256-256 / "
                       "384-384-384 / 1024-1024-1000)"),
}


def nin(layout: str = "cifar", dropout: float = 0.5, **kwargs):
    """Network in Network: mlpconv blocks (conv + two 1x1 convs) between pools, a conv + GAP head.

    Args:
        layout: "cifar" (three mlpconv blocks) or "imagenet" (four, Caffe model zoo).
        dropout: dropout rate after the pools that the reference follows with dropout (0.5).
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(_LAYOUTS)}; got {layout!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")

    def backbone(x):
        stages = []
        for b, (filters, kernel, stride, padding, pool, drop) in enumerate(_LAYOUTS[layout], start=1):
            for i, f in enumerate(filters, start=1):
                x = conv_bn_act(x, f, kernel if i == 1 else 1, stride if i == 1 else 1,
                                padding=padding if i == 1 else "valid", norm=False, name=f"block{b}_layer{i}")
            stages.append(x)
            if pool == "max_ceil":
                x = max_pool_ceil(x, name=f"block{b}_pool")
            elif pool == "max":
                x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{b}_pool")(x)
            elif pool == "avg":
                x = layers.AveragePooling2D(3, strides=2, padding="same", name=f"block{b}_pool")(x)
            if drop and dropout:
                x = layers.Dropout(dropout, name=f"block{b}_drop")(x)
        return x, stages

    return build_classifier(backbone, head=conv_head, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(nin, name=_name, family="nin", defaults=dict(layout=_row["layout"]),
                   paper="Lin, Chen, Yan 2014, Network In Network, ICLR", input_shape=_row["input_shape"],
                   num_classes=_row["num_classes"], reference_params=_row["params"],
                   reference_params_source=_row["source"], min_input_size=_row["min_input_size"],
                   preprocessing=_row["preprocessing"])
