"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document recognition").

32x32x1 -> C1 6@5x5 (28x28) -> S2 2x2 avg pool (14x14) -> C3 16@5x5 (10x10) -> S4 (5x5) -> C5 120@5x5
(1x1) -> F6 84 -> 10. C3 is fully connected to S2's maps here (the paper's sparse table is the exception
that no modern implementation keeps): 61,706 trainable parameters. Convs with biases (no BatchNorm). The
registered model uses tanh; ``activation="scaled_tanh"`` gives the paper's 1.7159 tanh(2x/3) (its appendix A),
and ``"sigmoid"`` the squashing function that later accounts wrongly attribute to it.
"""

from keras import layers

from catalog.blocks.layers import conv2d, scaled_tanh
from catalog.models.classifier import build_classifier, dense
from catalog.registry import register_model


# The activation keyword's options: what each hidden conv and dense layer applies in place.
ACTIVATIONS = {"tanh": "tanh", "scaled_tanh": scaled_tanh, "relu": "relu", "sigmoid": "sigmoid"}


def _backbone(activation):
    def backbone(x):
        x = conv2d(6, 5, activation=activation, name="c1_conv")(x)
        c1 = x
        x = layers.AveragePooling2D(2, name="s2_pool")(x)
        x = conv2d(16, 5, activation=activation, name="c3_conv")(x)
        c3 = x
        x = layers.AveragePooling2D(2, name="s4_pool")(x)
        x = conv2d(120, 5, activation=activation, name="c5_conv")(x)
        return x, [c1, c3, x]

    return backbone


def _head(activation):
    def head(x, num_classes, dropout):
        x = layers.Flatten(name="head_flatten")(x)
        x = dense(x, 84, activation=activation, name="f6_fc")
        if dropout:
            x = layers.Dropout(dropout, name="head_drop")(x)
        return dense(x, num_classes, name="head_fc")

    return head


@register_model(family="lenet", paper="LeCun et al. 1998, Proc. IEEE 86(11)", input_shape=(32, 32, 1),
                num_classes=10, reference_params=61_706,
                reference_params_source="LeCun et al. 1998 layout with a fully connected C3",
                min_input_size=32, preprocessing="unit")
def lenet5(activation: str = "tanh", **kwargs):
    """LeNet-5: two conv/subsampling pairs, C5 as a 5x5 conv, F6 of 84 units, tanh activations.

    Args:
        activation: activation of every hidden layer: "tanh" (default), "scaled_tanh" (the paper's
            1.7159 tanh(2x/3)), "relu" or "sigmoid".
    """
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}.")
    activation = ACTIVATIONS[activation]
    return build_classifier(_backbone(activation), head=_head(activation), flatten_head=True, **kwargs)
