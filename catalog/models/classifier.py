"""One assembly for every classification model: inputs, the keras.applications / timm keywords, the head.

A family writes only its backbone, ``backbone(x) -> (last_tensor, [stage outputs])``, and passes it to
:func:`build_classifier`, which owns input validation, ``include_top``/``pooling``/``num_classes``
(alias ``classes``)/``classifier_activation``, ``features_only``/``out_indices`` and ``weights`` loading.

Head initialization, one rule for every head: each layer of a classification head (the Dense layers, or
the 1x1 conv that maps to the classes in a conv head) starts as PyTorch's ``nn.Linear`` / ``nn.Conv2d``
default, ``kaiming_uniform_(a=sqrt(5))``: kernel and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``init="torch"``).
Why one rule: the convolutions of every family already start as torchvision's (He-normal, fan-out,
:mod:`catalog.blocks.layers`), so the head follows the same reference; keras.applications' glorot_uniform
head is Keras' layer default, not a choice of those models' authors; and 1/sqrt(fan_in) keeps the first
logits small for any number of classes (a 64 -> 10 CIFAR head: bound 0.125 against glorot's 0.28), so an
untrained model's loss starts near ln(classes). Where a torchvision-sourced family's reference sets its
own head init (or keras.applications and torchvision agree on one), the family passes ``init``:

init                 kernel                bias                 families (reference)
"torch"              U(+-1/sqrt(fan_in))   U(+-1/sqrt(fan_in))  every family not below (the rule)
"torch_zero_bias"    U(+-1/sqrt(fan_in))   0                    densenet (torchvision)
"normal"             N(0, 0.01)            0                    vgg (every head FC), mobilenet_v3 (both head FCs),
                                                                squeezenet (the final conv) (torchvision)
"normal_torch_bias"  N(0, 0.01)            U(+-1/sqrt(fan_in))  googlenet, main and aux heads (torchvision) [1]
"fan_out"            U(+-1/sqrt(fan_out))  0                    efficientnet (keras.applications = torchvision) [2]

[1] torchvision's ``trunc_normal_(std=0.01, a=-2, b=2)`` cuts at +-2, i.e. 200 sigma: a plain N(0, 0.01)
(Keras' TruncatedNormal would cut at 2 sigma). [2] keras.applications' ``VarianceScaling(1/3, "fan_out",
"uniform")`` and torchvision's ``uniform_(-1/sqrt(out), 1/sqrt(out))`` are the same distribution.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import keras
from keras import layers

POOLINGS = (None, "avg", "max")

# The keywords every classification model accepts through create_model.
PUBLIC_KEYWORDS = ("include_top", "weights", "input_shape", "input_tensor", "pooling", "num_classes",
                   "classes", "classifier_activation", "features_only", "out_indices", "dropout", "name",
                   "include_preprocessing")

# The pixel scalings of the cards' ``preprocessing`` names, built into a model by include_preprocessing=True
# (the same values as catalog.datasets.transforms, which applies them in tf.data; a test keeps them equal).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING_LAYER_PREFIX = "preprocess_"


# name: (kernel, bias) of a head layer; the table in the module docstring says which family uses which.
HEAD_INITS = {"torch": ("fan_in", "fan_in"), "torch_zero_bias": ("fan_in", "zeros"), "normal": ("normal", "zeros"),
              "normal_torch_bias": ("normal", "fan_in"), "fan_out": ("fan_out", "zeros")}


def head_initializers(init: str, fan_in: int) -> dict:
    """The ``kernel_initializer`` and ``bias_initializer`` of a head layer with ``fan_in`` inputs per output.

    New initializer objects per call (a Keras initializer keeps its seed, so a shared one would repeat
    its values). ``init`` is a key of ``HEAD_INITS``.
    """
    if init not in HEAD_INITS:
        raise ValueError(f"init must be one of {', '.join(HEAD_INITS)}; got {init!r}.")
    kernel, bias = HEAD_INITS[init]
    bound = 1.0 / math.sqrt(fan_in)
    kernels = {  # VarianceScaling's uniform limit is sqrt(3 * scale / fan): scale 1/3 gives 1/sqrt(fan)
        "fan_in": lambda: keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        "fan_out": lambda: keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform"),
        "normal": lambda: keras.initializers.RandomNormal(0.0, 0.01),
    }
    biases = {"fan_in": lambda: keras.initializers.RandomUniform(-bound, bound), "zeros": lambda: "zeros"}
    return {"kernel_initializer": kernels[kernel](), "bias_initializer": biases[bias]()}


def dense(x, units: int, *, name: str, init: str = "torch", activation: str | None = None):
    """A head's ``Dense`` layer, initialized by ``init`` (see the module docstring)."""
    return layers.Dense(units, activation=activation, name=name,
                        **head_initializers(init, int(x.shape[-1])))(x)


def fc_conv(x, units: int, *, name: str, init: str = "torch"):
    """A head's 1x1 conv with bias acting as a fully connected layer (NiN, SqueezeNet, MobileNet v1 heads),
    initialized by ``init`` like :func:`dense` (fan_in = input channels)."""
    return layers.Conv2D(units, 1, name=name, **head_initializers(init, int(x.shape[-1])))(x)


def default_head(x, num_classes: int, dropout: float = 0.0, init: str = "torch"):
    """Global average pooling -> dropout -> Dense(num_classes), named ``head_pool/head_drop/head_fc``."""
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_drop")(x)
    return dense(x, num_classes, name="head_fc", init=init)


def fc_head(units=(4096, 4096), dropout_before: bool = False, init: str = "torch"):
    """Flatten -> [FC -> ReLU -> dropout] per hidden layer -> FC classes (``dropout_before`` puts each dropout
    before its FC, as torchvision's AlexNet does); every FC initialized by ``init``."""

    def head(x, num_classes, dropout):
        x = layers.Flatten(name="head_flatten")(x)
        for i, width in enumerate(units, start=1):
            if dropout and dropout_before:
                x = layers.Dropout(dropout, name=f"head_fc{i}_drop")(x)
            x = dense(x, width, name=f"head_fc{i}", init=init)
            x = layers.ReLU(name=f"head_fc{i}_act")(x)
            if dropout and not dropout_before:
                x = layers.Dropout(dropout, name=f"head_fc{i}_drop")(x)
        return dense(x, num_classes, name="head_fc", init=init)

    return head


def conv_head(x, num_classes, dropout=0.0, init: str = "torch"):
    """NiN head: [dropout] -> 1x1 conv to the classes (bias) -> ReLU -> global average pooling."""
    if dropout:
        x = layers.Dropout(dropout, name="head_drop")(x)
    x = fc_conv(x, num_classes, name="head_conv", init=init)
    x = layers.ReLU(name="head_act")(x)
    return layers.GlobalAveragePooling2D(name="head_pool")(x)


OUTPUT_STRIDES = (8, 16, 32)


def dilation_plan(strides: Sequence[int], output_stride: int = 32, *, reduction: int = 1,
                  dilate_strided: bool = False) -> list[tuple[int, int]]:
    """Per unit, the (stride, dilation) that caps a backbone's output stride at ``output_stride``.

    DeepLab (Chen et al. 2017, "Rethinking Atrous Convolution") and torchvision's
    ``replace_stride_with_dilation``: once the reduction reached ``output_stride``, a unit's stride s becomes
    1 and every later unit's 3x3 dilation is multiplied by s (ResNet-50 at 8: stage 3 dilation 2, stage 4
    dilation 4; at 16: stage 4 dilation 2). The unit that loses its stride keeps the previous dilation
    (torchvision's ResNet, TF DeepLab's MobileNetV2), or takes the new one with ``dilate_strided=True``
    (torchvision's MobileNetV3 ``dilated=True``). Parameters never change; 32 gives the strides unchanged.

    Args:
        strides: the nominal stride of each unit (block), in order.
        output_stride: 8, 16 or 32.
        reduction: the reduction before the first unit (a stem's).
        dilate_strided: the unit that loses its stride is dilated too.
    """
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of 8, 16 or 32; got {output_stride!r}.")
    plan, rate = [], 1
    for stride in strides:
        if stride > 1 and reduction * stride > output_stride:
            plan.append((1, rate * stride if dilate_strided else rate))
            rate *= stride
        else:
            reduction *= stride
            plan.append((stride, rate))
    return plan


def _check_input_shape(input_shape, min_size: int | None, model_name: str, fixed: bool):
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels); got {input_shape!r}.")
    h, w, c = input_shape
    if h in (1, 3) and isinstance(c, int) and c > 4 and w == c:
        raise ValueError(f"input_shape {tuple(input_shape)!r} looks channels-first; models here are channels-last: "
                         f"pass {(w, c, h)!r}.")
    if c is None or not isinstance(c, int) or c <= 0:
        raise ValueError(f"input_shape channels must be a positive integer; got {input_shape!r}.")
    for size in (h, w):
        if size is None:
            if fixed:
                raise ValueError(f"input_shape of {model_name} with include_top=True needs a fixed "
                                 f"height and width (its head flattens); got {input_shape!r}.")
            continue
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"input_shape height and width must be positive integers or None; "
                             f"got {input_shape!r}.")
        if min_size and size < min_size:
            raise ValueError(f"input_shape {input_shape!r} is too small for {model_name}: height and "
                             f"width must be at least {min_size}.")


def load_weights(model, weights):
    """Load a local weights file (``.weights.h5`` or ``.keras``); no download ever happens."""
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None or a path to a local weights file; got {weights!r}.")
    path = os.path.expanduser(os.fspath(weights))
    if not os.path.isfile(path):
        if str(weights) in ("imagenet", "imagenet21k"):
            raise ValueError(f"weights={weights!r} would need a download, which this catalog never does; "
                             "pass a path to a local weights file.")
        raise FileNotFoundError(f"weights file {path} does not exist.")
    from catalog.weights import load_catalog_file

    load_catalog_file(model, path)  # exact, else by name with a new head; errors name layer and shapes
    return model


def preprocessing_layers(x, preprocessing: str | None):
    """The card's pixel scaling (``unit``, ``tf``, ``torch``, ``caffe``, ``none``) as layers on raw pixels
    in [0, 255]: Rescaling, then for ``torch`` a Normalization holding the ImageNet mean and variance as
    variables (so a keras.applications EfficientNet file loads into it), for ``caffe`` a frozen 1x1
    convolution that reverses RGB to BGR and subtracts the mean. One channel takes the channel means."""
    import numpy as np

    channels = x.shape[-1]

    def per_channel(values):
        return np.array(values if channels == 3 else [sum(values) / 3] * channels, "float32")

    if preprocessing in (None, "none"):
        return x
    if preprocessing == "unit":
        return layers.Rescaling(1 / 255, name="preprocess_scale")(x)
    if preprocessing == "tf":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess_scale")(x)
    if preprocessing == "torch":
        x = layers.Rescaling(1 / 255, name="preprocess_scale")(x)
        norm = layers.Normalization(axis=-1, name="preprocess_normalize")
        x = norm(x)
        norm.adapt_mean.assign(per_channel(IMAGENET_MEAN))
        norm.adapt_variance.assign(per_channel(IMAGENET_STD) ** 2)
        norm.finalize_state()
        return x
    if preprocessing == "caffe":
        flip = np.eye(channels, dtype="float32")[::-1].reshape(1, 1, channels, channels)
        bgr = layers.Conv2D(channels, 1, trainable=False, name="preprocess_bgr")
        x = bgr(x)
        bgr.set_weights([flip, -per_channel(CAFFE_MEAN_BGR)])
        return x
    raise ValueError(f"preprocessing must be one of unit, tf, torch, caffe, none; got {preprocessing!r}.")


def has_builtin_preprocessing(model) -> bool:
    """True for a model built with ``include_preprocessing=True``: it takes raw pixels in [0, 255]."""
    return any(layer.name.startswith(PREPROCESSING_LAYER_PREFIX) for layer in getattr(model, "layers", []))


def ends_in_softmax(model) -> bool:
    """True when ``model``'s output is softmax probabilities (its last layer's activation, or a Softmax
    layer, a nested model's last layer included); False for logits."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.Model):
        return ends_in_softmax(last)
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def build_classifier(backbone: Callable, *, name: str = "model",
                     default_input_shape: Sequence = (224, 224, 3),
                     min_input_size: int | None = None, head: Callable | None = None,
                     flatten_head: bool = False, dropout: float = 0.0,
                     include_top: bool = True, weights=None, input_shape=None, input_tensor=None,
                     pooling: str | None = None, num_classes: int | None = None, classes: int | None = None,
                     classifier_activation: str | None = "softmax", features_only: bool = False,
                     out_indices: Sequence[int] | None = None, default_num_classes: int = 1000,
                     include_preprocessing: bool = False, preprocessing: str | None = None):
    """Assemble a functional classification model around ``backbone``.

    Args:
        backbone: ``backbone(x) -> (last, stages)``; ``stages`` are the feature maps, shallow to deep.
        name: model name.
        default_input_shape: input shape when neither ``input_shape`` nor ``input_tensor`` is given.
        min_input_size: smallest height/width the architecture can take.
        head: ``head(x, num_classes, dropout) -> logits``; defaults to :func:`default_head`.
        flatten_head: the head flattens (VGG, AlexNet), so the top needs a fixed input size.
        dropout: dropout rate before the classifier of the default head.
        include_top: add the classification head.
        weights: None, or a path to a local weights file.
        input_shape: (height, width, channels); height/width may be None when the model allows it.
        input_tensor: a Keras tensor to use as the input.
        pooling: None, "avg" or "max": the pooling applied to the last feature map without the top.
        num_classes: classes of the head (``classes`` is the keras.applications alias).
        classifier_activation: activation of the head (None for logits).
        features_only: return a model whose outputs are the stage feature maps (timm convention).
        out_indices: which stages ``features_only`` returns (default: all).
        default_num_classes: the registered default number of classes.
        include_preprocessing: build the card's pixel scaling into the model (see
            :func:`preprocessing_layers`), so it takes raw pixels in [0, 255].
        preprocessing: the card's ``preprocessing`` name (the registry passes it).
    """
    if classes is not None and num_classes is not None and classes != num_classes:
        raise ValueError(f"num_classes={num_classes} and its alias classes={classes} disagree; pass one.")
    num_classes = num_classes if num_classes is not None else (classes if classes is not None
                                                                else default_num_classes)
    if include_top and not features_only and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0):
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")

    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(f"input_tensor must be a Keras tensor (from keras.Input or a layer); "
                             f"got {type(input_tensor).__name__}.")
        inputs = input_tensor
        shape = tuple(input_tensor.shape[1:])
    else:
        shape = tuple(default_input_shape if input_shape is None else input_shape)
        inputs = None
    fixed = flatten_head and include_top and not features_only
    _check_input_shape(shape, min_input_size, name, fixed)
    if inputs is None:
        inputs = keras.Input(shape=shape, name="input")

    last, stages = backbone(preprocessing_layers(inputs, preprocessing) if include_preprocessing else inputs)
    if features_only:
        indices = tuple(range(len(stages))) if out_indices is None else tuple(out_indices)
        bad = [i for i in indices if not isinstance(i, int) or not -len(stages) <= i < len(stages)]
        if bad or not indices:
            raise ValueError(f"out_indices must be stage indices in 0..{len(stages) - 1} for {name}; "
                             f"got {out_indices!r}.")
        outputs = [layers.Identity(name=f"stage{i % len(stages)}")(stages[i]) for i in indices]  # named by stage
        model = keras.Model(inputs, outputs, name=f"{name}_features")
        _record_stages(model, stages)
        return load_weights(model, weights)

    x = last
    if include_top:
        if head is None:
            x = default_head(x, num_classes, dropout)
        else:
            x = head(x, num_classes, dropout)
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    _record_stages(model, stages)
    return load_weights(model, weights)


def _record_stages(model, stages):
    """Name the layers whose outputs are the stages (what ``features_only`` returns) on the model, so
    ``catalog.training.finetune`` freezes by stage without rebuilding it (not saved with the model)."""
    model.catalog_stage_outputs = tuple(t._keras_history.operation.name for t in stages)
