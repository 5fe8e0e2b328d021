"""GoogLeNet (Szegedy et al. 2015, "Going deeper with convolutions", CVPR), i.e. Inception v1.

7x7/2 conv (64) -> 3x3/2 max pool -> 1x1 (64) -> 3x3 (192) -> 3x3/2 max pool -> inception 3a, 3b ->
max pool -> 4a..4e -> max pool -> 5a, 5b -> global average pool -> dropout 0.4 -> FC. The paper's 5x5
branch (torchvision uses 3x3 there, a bug it keeps for its weights) and, as torchvision, BatchNorm
(eps 1e-3) after every conv and no LRN: 7,005,832 trainable parameters. ``aux_logits=True`` adds the two
auxiliary classifiers on 4a and 4d (5x5/3 avg pool -> 1x1 conv (128) -> FC 1024 -> ReLU -> dropout 0.7
-> FC); the model then has three outputs (main, aux1, aux2), trained with
loss = main + 0.3 * aux1 + 0.3 * aux2 and dropped at inference. Every head FC starts as torchvision's:
weights N(0, 0.01), PyTorch's default bias (``init="normal_torch_bias"`` of the classifier module).

``layout="torchvision"`` builds torchvision's GoogLeNet, which its files need: 3x3 convs in the "5x5"
branches (6,624,904 parameters), max pools with PyTorch's ``ceil_mode`` and a 2x2/2 pool before inception
5a (the paper's layout pools 3x3/2 "same" there: equal to ceil mode at 224, not at every size).
``transform_input=True`` is torchvision's argument of that name: the model takes ImageNet-normalized
images (preprocessing "torch") and first rescales them to [-1, 1] per channel
(``x * std / 0.5 + (mean - 0.5) / 0.5``), as torchvision's ImageNet GoogLeNet weights expect.
"""

import functools

import keras
from keras import layers

from catalog.blocks.inception import inception_module, inception_v1
from catalog.blocks.layers import act, conv_bn_act, max_pool_ceil, norm_defaults
from catalog.models.classifier import build_classifier, default_head, dense, load_weights
from catalog.registry import register_model

# (name, (c1, c3_reduce, c3, c5_reduce, c5, pool_proj)) of Table 1; "pool" is a 3x3/2 max pool.
MODULES = (
    ("inception3a", (64, 96, 128, 16, 32, 32)), ("inception3b", (128, 128, 192, 32, 96, 64)), "pool",
    ("inception4a", (192, 96, 208, 16, 48, 64)), ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)), ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)), "pool",
    ("inception5a", (256, 160, 320, 32, 128, 128)), ("inception5b", (384, 192, 384, 48, 128, 128)),
)
FEATURES = ("conv1", "conv3", "inception3b", "inception4e", "inception5b")
AUX = {"inception4a": "aux1", "inception4d": "aux2"}
HEAD_INIT = "normal_torch_bias"
HEAD = functools.partial(default_head, init=HEAD_INIT)


def _aux_head(x, num_classes, activation, name):
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    with norm_defaults(epsilon=1e-3):
        x = conv_bn_act(x, 128, 1, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = dense(x, 1024, name=f"{name}_fc1", init=HEAD_INIT)
    x = act(x, "relu", name=f"{name}_act")
    x = layers.Dropout(0.7, name=f"{name}_drop")(x)
    x = dense(x, num_classes, name=f"{name}_fc2", init=HEAD_INIT)
    if activation is not None:
        x = layers.Activation(activation, dtype="float32", name=f"{name}_predictions")(x)
    return x


LAYOUTS = ("paper", "torchvision")
# torchvision's transform_input: ImageNet-normalized input -> [-1, 1], x * std / 0.5 + (mean - 0.5) / 0.5.
TRANSFORM_SCALE = (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5)
TRANSFORM_OFFSET = ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)


def _inception_torchvision(x, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, *, name):
    """torchvision's Inception module: :func:`inception_v1` with a 3x3 conv in the "5x5" branch."""
    return inception_module(x, [[(c1, 1)], [(c3_reduce, 1), (c3, 3)], [(c5_reduce, 1), (c5, 3)],
                                [("max", 3, 1, "same"), (pool_proj, 1)]], name=name)


def googlenet(aux_logits: bool = False, dropout: float = 0.4, layout: str = "paper", transform_input: bool = False,
              **kwargs):
    """GoogLeNet / Inception v1 with BatchNorm, the paper's 5x5 branches and optional auxiliary heads.

    Args:
        aux_logits: add the two auxiliary classifiers (outputs main, aux1, aux2); needs
            ``include_top=True`` and a fixed input size (the aux FC sees 4x4x128 at 224x224).
        dropout: dropout rate before the final FC (0.4 in the paper).
        layout: "paper" (5x5 branches) or "torchvision" (3x3 branches, ceil-mode pools, 2x2 pool before
            inception 5a; see the module docstring).
        transform_input: rescale ImageNet-normalized input to [-1, 1] first (torchvision's
            ``transform_input``); needs 3 input channels.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    if not isinstance(transform_input, bool):
        raise ValueError(f"transform_input must be True or False; got {transform_input!r}.")
    taps = {}
    torchvision = layout == "torchvision"
    module_fn = _inception_torchvision if torchvision else inception_v1

    def pool(x, number, size=3):
        if torchvision:  # after a ReLU, max_pool_ceil's zero padding equals PyTorch's ceil_mode
            return max_pool_ceil(x, f"pool{number}", pool_size=size, strides=2)
        return layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{number}")(x)

    def backbone(x):
        if transform_input:
            if x.shape[-1] != 3:
                raise ValueError(f"transform_input=True needs 3 input channels; got {x.shape[-1]}.")
            x = layers.Rescaling(list(TRANSFORM_SCALE), offset=list(TRANSFORM_OFFSET), name="transform_input")(x)
        with norm_defaults(epsilon=1e-3):
            x = conv_bn_act(x, 64, 7, 2, padding="symmetric", name="conv1")
            stages = [x]
            x = pool(x, 1)
            x = conv_bn_act(x, 64, 1, name="conv2")
            x = conv_bn_act(x, 192, 3, name="conv3")
            stages.append(x)
            x = pool(x, 2)
            pools = 2
            for module in MODULES:
                if module == "pool":
                    pools += 1
                    x = pool(x, pools, size=2 if pools == 4 and torchvision else 3)
                    continue
                name, filters = module
                x = module_fn(x, *filters, name=name)
                taps[name] = x
                if name in FEATURES:
                    stages.append(x)
        return x, stages

    if not isinstance(aux_logits, bool):
        raise ValueError(f"aux_logits must be True or False; got {aux_logits!r}.")
    if not aux_logits:
        return build_classifier(backbone, head=HEAD, dropout=dropout, **kwargs)
    if not kwargs.get("include_top", True) or kwargs.get("features_only", False):
        raise ValueError("aux_logits=True needs include_top=True and features_only=False.")
    weights = kwargs.pop("weights", None)
    model = build_classifier(backbone, head=HEAD, dropout=dropout, **kwargs)
    activation = kwargs.get("classifier_activation", "softmax")
    num_classes = int(model.output.shape[-1])
    aux = [_aux_head(taps[tap], num_classes, activation, name) for tap, name in AUX.items()]
    model = keras.Model(model.input, [model.output, *aux], name=model.name)
    return load_weights(model, weights)


register_model(googlenet, name="googlenet", family="googlenet",
               paper="Szegedy et al. 2015, Going deeper with convolutions, CVPR",
               input_shape=(224, 224, 3), reference_params=7_005_832,
               reference_params_source="torchvision googlenet (6,624,904) with the paper's 5x5 branches "
                                       "(+16 * sum(c5_reduce * c5) = 380,928)",
               reference_macs=1.58e9,
               reference_macs_source="torchvision googlenet 1.50 GFLOPS (=MACs, 3x3 branches) + 0.084e9 "
                                     "for the 5x5 branches (16 * sum(c5_reduce * c5 * H * W), computed)",
               min_input_size=32, preprocessing="torch")
