"""All-CNN (Springenberg, Dosovitskiy, Brox, Riedmiller 2015, "Striving for Simplicity: The All
Convolutional Net", ICLR workshop) and the paper's comparison networks of Tables 1-3.

Three base models (Table 1) for 32x32 CIFAR images, each two stages followed by a reduction, then one
shared top: 3x3 192 valid (6x6) -> 1x1 192 -> classes@1x1 -> global average pool (NiN's ``conv_head``).

    A: 5x5 96, reduce, 5x5 192, reduce          B: 5x5 96, 1x1 96, reduce, 5x5 192, 1x1 192, reduce
    C: 3x3 96, 3x3 96, reduce, 3x3 192, 3x3 192, reduce

Four ways to reduce (Table 2 for C; A and B "analogously"): "pool" (Model A/B/C: 3x3/2 max pool),
"strided" (Strided-CNN: no pool, the conv before it gets stride 2), "convpool" (ConvPool-CNN: an extra
3x3 conv with the same channels before the pool) and "all" (All-CNN: the pool replaced by a 3x3/2 conv with
the same channels). Pools and convs pad "same", so the top always sees 8x8 -> 6x6 at 32 px. Dropout 0.2
on the input and 0.5 after each reduction (the pool, or the layer that replaces it). Convs carry biases
and ReLU, no BatchNorm. ``allconv`` is All-CNN-C (1,369,738 parameters at 10 classes).

The paper's Table 3 gives rounded counts ("~0.9M" for Model A, "~1.3M" for Model C, "~1.4M" for All-CNN-C):
only the C pair with the extra convs (1,369,738) is within that rounding of its figure; the others are
smaller than printed (Model C: 954,730), so the cards' reference counts are this implementation's exact
closed forms (tests/models/test_classic.py) and quote Table 3 beside them.
"""

from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.models.classifier import build_classifier, conv_head
from catalog.registry import register_model

# Base models (Table 1): per stage, (filters, kernel) of the convs before the stage's reduction.
BASES = {
    "A": (((96, 5),), ((192, 5),)),
    "B": (((96, 5), (96, 1)), ((192, 5), (192, 1))),
    "C": (((96, 3), (96, 3)), ((192, 3), (192, 3))),
}
REDUCTIONS = ("pool", "strided", "convpool", "all")
# The top shared by every model (filters, kernel, padding); the head's 1x1 conv to the classes follows.
TOP = ((192, 3, "valid"), (192, 1, "valid"))

_PAPER = "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net, ICLR workshop"
# name: (base, reduction, parameters at 10 classes (closed form), Table 3 name and rounded count)
VARIANTS = {
    "allconv": ("C", "all", 1_369_738, "All-CNN-C ~1.4M"),
    "allconv_a": ("A", "all", 1_254_250, "All-CNN-A ~1.28M"),
    "allconv_b": ("B", "all", 1_300_618, "All-CNN-B ~1.35M"),
    "allconv_model_a": ("A", "pool", 839_242, "Model A ~0.9M"),
    "allconv_model_b": ("B", "pool", 885_610, "Model B ~1M"),
    "allconv_model_c": ("C", "pool", 954_730, "Model C ~1.3M"),
    "strided_cnn_a": ("A", "strided", 839_242, "Strided-CNN-A ~0.9M"),
    "strided_cnn_b": ("B", "strided", 885_610, "Strided-CNN-B ~1M"),
    "strided_cnn_c": ("C", "strided", 954_730, "Strided-CNN-C ~1.3M"),
    "convpool_cnn_a": ("A", "convpool", 1_254_250, "ConvPool-CNN-A ~1.28M"),
    "convpool_cnn_b": ("B", "convpool", 1_300_618, "ConvPool-CNN-B ~1.35M"),
    "convpool_cnn_c": ("C", "convpool", 1_369_738, "ConvPool-CNN-C ~1.4M"),
}


def allconv(base: str = "C", reduction: str = "all", dropout: float = 0.5, input_dropout: float = 0.2,
            **kwargs):
    """All-CNN and its comparison nets: two conv stages, each reduced 2x, a 3x3 + 1x1 conv top, a GAP head.

    Args:
        base: "A", "B" or "C", the paper's base models (Table 1): stages of 5x5 convs (A), 5x5 + 1x1
            convs (B) or two 3x3 convs (C), with 96 then 192 channels.
        reduction: how each stage halves the map: "pool" (3x3/2 max pool: Model A/B/C), "strided" (the
            stage's last conv gets stride 2: Strided-CNN), "convpool" (an extra 3x3 conv before the pool:
            ConvPool-CNN) or "all" (a 3x3/2 conv replaces the pool: All-CNN).
        dropout: dropout rate after each reduction (0.5 as in the paper).
        input_dropout: dropout rate on the input image (0.2 as in the paper).
    """
    if base not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)}; got {base!r}.")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}.")
    for arg, value in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{arg} must be in [0, 1); got {value!r}.")

    def backbone(x):
        if input_dropout:
            x = layers.Dropout(input_dropout, name="input_drop")(x)
        stages, n = [], 0
        for s, stage in enumerate(BASES[base], start=1):
            convs = [(f, k, 1) for f, k in stage]
            if reduction == "strided":
                convs[-1] = (*convs[-1][:2], 2)
            elif reduction in ("convpool", "all"):
                convs.append((stage[-1][0], 3, 2 if reduction == "all" else 1))
            for filters, kernel, stride in convs:
                n += 1
                x = conv_bn_act(x, filters, kernel, stride, norm=False, name=f"conv{n}")
            last = f"conv{n}"
            if reduction in ("pool", "convpool"):
                last = f"pool{s}"
                x = layers.MaxPooling2D(3, strides=2, padding="same", name=last)(x)
            stages.append(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"{last}_drop")(x)
        for filters, kernel, padding in TOP:
            n += 1
            x = conv_bn_act(x, filters, kernel, padding=padding, norm=False, name=f"conv{n}")
        stages.append(x)
        return x, stages

    return build_classifier(backbone, head=conv_head, **kwargs)


for _name, (_base, _reduction, _params, _table3) in VARIANTS.items():
    register_model(allconv, name=_name, family="allconv", paper=_PAPER,
                   defaults={} if _name == "allconv" else dict(base=_base, reduction=_reduction),
                   input_shape=(32, 32, 3), num_classes=10, reference_params=_params,
                   reference_params_source=f"this implementation (Table 1/2 layers, closed form); "
                                           f"Table 3: {_table3}",
                   min_input_size=9, preprocessing="unit")
