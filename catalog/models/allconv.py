"""All-CNN-C (Springenberg, Dosovitskiy, Brox, Riedmiller 2015, "Striving for Simplicity: The All
Convolutional Net", ICLR workshop).

Pooling is replaced by stride-2 3x3 convolutions: 32x32 -> dropout 0.2 -> 96@3x3 -> 96@3x3 -> 96@3x3/2
-> dropout 0.5 -> 192@3x3 -> 192@3x3 -> 192@3x3/2 -> dropout 0.5 -> 192@3x3 valid (6x6) -> 192@1x1 ->
classes@1x1 -> global average pool (NiN's ``conv_head``). Convs carry biases and ReLU, no BatchNorm.
1,369,738 parameters at 10 classes.
"""

from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.models.classifier import build_classifier, conv_head
from catalog.registry import register_model

# (filters, kernel, stride, padding); the head's 1x1 conv to the classes follows.
LAYERS = ((96, 3, 1, "same"), (96, 3, 1, "same"), (96, 3, 2, "same"),
          (192, 3, 1, "same"), (192, 3, 1, "same"), (192, 3, 2, "same"),
          (192, 3, 1, "valid"), (192, 1, 1, "valid"))


def allconv(dropout: float = 0.5, input_dropout: float = 0.2, **kwargs):
    """All-CNN-C: eight ReLU convs, two of them stride 2 in place of pooling, a 1x1 conv + GAP head.

    Args:
        dropout: dropout rate after each stride-2 conv (0.5 as in the paper).
        input_dropout: dropout rate on the input image (0.2 as in the paper).
    """
    for arg, value in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{arg} must be in [0, 1); got {value!r}.")

    def backbone(x):
        if input_dropout:
            x = layers.Dropout(input_dropout, name="input_drop")(x)
        stages = []
        for i, (filters, kernel, stride, padding) in enumerate(LAYERS, start=1):
            x = conv_bn_act(x, filters, kernel, stride, padding=padding, norm=False, name=f"conv{i}")
            if stride == 2:
                stages.append(x)
                if dropout:
                    x = layers.Dropout(dropout, name=f"conv{i}_drop")(x)
        stages.append(x)
        return x, stages

    return build_classifier(backbone, head=conv_head, **kwargs)


register_model(allconv, name="allconv", family="allconv",
               paper="Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net, ICLR workshop",
               input_shape=(32, 32, 3), num_classes=10, reference_params=1_369_738,
               reference_params_source="this implementation (All-CNN-C: 96-96-96s2-192-192-192s2-192-192-10)",
               min_input_size=9, preprocessing="unit")
