"""C3D (Tran et al. 2015, "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV).

Layout (the paper's Fig. 3): eight 3x3x3 convolutions with bias and ReLU, stride 1, "same" padding, and five
max pools (pool1 1x2x2, the others 2x2x2, stride = size), then fc6 4096 - fc7 4096 (ReLU and dropout 0.5 after
each) - classes::

    conv1a 64, pool1, conv2a 128, pool2, conv3a 256, conv3b 256, pool3, conv4a 512, conv4b 512, pool4,
    conv5a 512, conv5b 512, pool5, fc6, fc7, classifier

No BatchNorm (the original has none). The pools round up as Caffe's do (ceil mode), so a 16 x 112 x 112 clip
gives 16x56x56, 8x28x28, 4x14x14, 2x7x7 and, at pool5, 1x4x4 x 512 = 8,192 features for fc6 (a floor-mode
pool would give 1x3x3; the popular PyTorch port pads pool5 by (0, 1, 1) to the same 4x4). ``width`` multiplies
every conv's channels and ``fc_units`` sets fc6/fc7, for small tests. Layer names: ``conv1a_conv``, ``conv1a_act``,
``pool1``, ..., ``head_flatten``, ``head_fc1`` (fc6), ``head_fc2`` (fc7), ``head_fc`` (the classifier), ``predictions``.

Parameters at the defaults (closed form, :func:`c3d_params`): convolutions
sum(27 * Cin * Cout + Cout) = 27,655,936; fc6 8,192 * 4,096 + 4,096; fc7 4,096 * 4,096 + 4,096; the classifier
4,096 * K + K. At K = 487 (Sports-1M, the paper's training set; the registered default) 79,991,015.
"""

from __future__ import annotations

import keras

from catalog.blocks.conv3d import conv_bn_act_3d, max_pool3d_ceil
from catalog.models.classifier import fc_head
from catalog.models.video import check_head, load_weights, video_input, video_recipe, video_top
from catalog.registry import register_model

TRAN2015 = "Tran et al. 2015, Learning Spatiotemporal Features with 3D Convolutional Networks, ICCV"

# Steps: (conv name, channels) or (pool name, pool size).
LAYOUT = (("conv1a", 64), ("pool1", (1, 2, 2)), ("conv2a", 128), ("pool2", 2), ("conv3a", 256), ("conv3b", 256),
          ("pool3", 2), ("conv4a", 512), ("conv4b", 512), ("pool4", 2), ("conv5a", 512), ("conv5b", 512),
          ("pool5", 2))
SPORTS1M_CLASSES = 487


def _channels(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def c3d_params(num_classes: int = SPORTS1M_CLASSES, width: float = 1.0, fc_units: int = 4096,
               in_channels: int = 3, features: int | None = None) -> int:
    """Closed-form trainable parameters of :func:`c3d` (``features``: fc6's inputs; default the 16 x 112 x 112
    clip's 1 x 4 x 4 x conv5b channels)."""
    total, cin = 0, in_channels
    for step, value in LAYOUT:
        if step.startswith("conv"):
            cout = _channels(value, width)
            total += 27 * cin * cout + cout
            cin = cout
    features = 16 * cin if features is None else features
    return total + (features + 1) * fc_units + (fc_units + 1) * fc_units + (fc_units + 1) * num_classes


def c3d(num_classes: int = SPORTS1M_CLASSES, input_shape=None, include_top: bool = True, pooling=None,
        classifier_activation: str | None = "softmax", width: float = 1.0, fc_units: int = 4096,
        dropout: float = 0.5, weights=None, name: str = "c3d"):
    """C3D: eight 3x3x3 convs with bias, five max pools (ceil mode), fc6-fc7 with dropout, classifier.

    Args:
        num_classes: classes of the classifier (487: Sports-1M).
        input_shape: (frames, height, width, channels); default (16, 112, 112, 3). With ``include_top`` the
            sizes are fixed (fc6 flattens the pool5 map); without it they may be None.
        include_top: add fc6, fc7 and the classifier.
        pooling: None, "avg" or "max": the pooling of the pool5 map without the top.
        classifier_activation: activation of the classifier ("softmax", or None for logits).
        width: multiplier of every conv's channels (0.125 gives 8-16-32-32-64-64-64-64).
        fc_units: units of fc6 and fc7 (4096).
        dropout: dropout rate after fc6 and fc7 (0.5, the paper's).
        weights: a local weights file of this model.
        name: model name.
    """
    check_head(include_top, pooling, num_classes, classifier_activation)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"width must be a positive number (a channel multiplier); got {width!r}.")
    if isinstance(fc_units, bool) or not isinstance(fc_units, int) or fc_units <= 0:
        raise ValueError(f"fc_units must be a positive integer; got {fc_units!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
    inputs = video_input(input_shape, fixed=include_top)
    x = inputs
    for step, value in LAYOUT:
        if step.startswith("conv"):
            x = conv_bn_act_3d(x, _channels(value, width), 3, norm=False, name=step)
        else:
            x = max_pool3d_ceil(x, value, name=step)
    if include_top:
        x = fc_head(units=(fc_units, fc_units))(x, num_classes, dropout)
    x = video_top(x, include_top, pooling, classifier_activation)
    return load_weights(keras.Model(inputs, x, name=name), weights)


register_model(c3d, name="c3d", family="c3d", task="video", paper=TRAN2015, input_shape=(16, 112, 112, 3),
               num_classes=SPORTS1M_CLASSES, defaults=dict(name="c3d"), reference_params=c3d_params(),
               reference_params_source=f"closed form (Tran et al. 2015 layout, {SPORTS1M_CLASSES} Sports-1M classes): "
                                       f"convs 27,655,936 + fc6 33,558,528 + fc7 16,781,312 + classifier "
                                       f"4,097 x {SPORTS1M_CLASSES} = {c3d_params():,}",
               preprocessing="unit", crop_fraction=1.0, recipe=video_recipe)
