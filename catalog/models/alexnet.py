"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
Networks"), torchvision's single-tower variant (Krizhevsky 2014, "One weird trick for parallelizing
convolutional neural networks") and ZFNet (Zeiler & Fergus 2013/2014, "Visualizing and Understanding
Convolutional Networks").

alexnet: 227x227 -> conv1 96@11x11/4 (55) -> ReLU -> LRN -> maxpool 3x3/2 (27) -> conv2 256@5x5 (2 groups)
-> ReLU -> LRN -> maxpool (13) -> conv3 384@3x3 -> conv4 384@3x3 (2 groups) -> conv5 256@3x3 (2 groups) ->
maxpool (6) -> FC 4096 -> dropout -> FC 4096 -> dropout -> FC classes. The paper's two GPU towers are the
``groups=2`` convolutions (conv3 sees both towers); ``groups=1`` merges them.
alexnet_tv: 64-192-384-256-256 filters, conv1 padded by 2, no LRN, dropout before each hidden FC.
zfnet: conv1 96@7x7/2 (110) -> ReLU -> maxpool 3x3/2 (55) -> LRN -> conv2 256@5x5/2 (26) -> ReLU -> maxpool
(13) -> LRN -> conv3-5 384-384-256@3x3 -> maxpool (6) -> the AlexNet classifier; the Caffe pools round up
(ceil mode), as the paper's figure sizes show. 62,357,608 parameters (this implementation).

The classifier flattens the last feature map, as keras.applications does: with ``include_top=True`` the
input size is fixed, and at 224/227 the map is the reference 6x6 (torchvision's adaptive 6x6 average pool
is then the identity, so it is left out).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from catalog.blocks.layers import conv_bn_act, max_pool_ceil
from catalog.models.classifier import build_classifier, fc_head
from catalog.registry import register_model


@keras.saving.register_keras_serializable(package="catalog")
class LocalResponseNormalization(layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, Section 3.3).

    ``b_c = a_c / (bias + alpha * sum_{|j - c| <= depth_radius} a_j^2) ** beta``, the paper's n = 5
    (depth_radius 2), k = 2, alpha = 1e-4, beta = 0.75. As the paper (and tf.nn.local_response_normalization)
    writes it, alpha multiplies the plain sum; Caffe and PyTorch divide alpha by n.
    """

    def __init__(self, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.75,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(f"depth_radius must be a non-negative integer; got {depth_radius!r}.")
        self.depth_radius = depth_radius
        self.bias, self.alpha, self.beta = float(bias), float(alpha), float(beta)

    def call(self, x):
        channels = x.shape[-1]
        r = self.depth_radius
        squares = ops.pad(ops.square(x), [[0, 0]] * (len(x.shape) - 1) + [[r, r]])
        window = sum(squares[..., i:i + channels] for i in range(2 * r + 1))
        return x / ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_macs(self, input_shapes, output_shapes):
        """Each output sums 2r+1 squares."""
        size = 1
        for d in output_shapes[0][1:]:
            size *= int(d)
        return (2 * self.depth_radius + 1) * size

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}





# Conv layers as (filters, kernel, stride, padding, grouped); "lrn"/"pool" steps; grouped convs take `groups`.
_LAYOUTS = {
    "alexnet": (("conv", 96, 11, 4, "valid", False), "lrn", "pool",
                ("conv", 256, 5, 1, "same", True), "lrn", "pool",
                ("conv", 384, 3, 1, "same", False), ("conv", 384, 3, 1, "same", True),
                ("conv", 256, 3, 1, "same", True), "pool"),
    "alexnet_tv": (("conv", 64, 11, 4, 2, False), "pool", ("conv", 192, 5, 1, "same", False), "pool",
                   ("conv", 384, 3, 1, "same", False), ("conv", 256, 3, 1, "same", False),
                   ("conv", 256, 3, 1, "same", False), "pool"),
    "zfnet": (("conv", 96, 7, 2, 1, False), "pool_ceil", "lrn", ("conv", 256, 5, 2, "valid", False),
              "pool_ceil", "lrn", ("conv", 384, 3, 1, "same", False), ("conv", 384, 3, 1, "same", False),
              ("conv", 256, 3, 1, "same", False), "pool_ceil"),
}

VARIANTS = {
    "alexnet": dict(layout="alexnet", groups=2, input_shape=(227, 227, 3), min_input_size=67,
                    params=60_965_224, source="Krizhevsky et al. 2012 layout with two towers (groups=2)",
                    paper="Krizhevsky, Sutskever, Hinton 2012, ImageNet Classification with Deep "
                          "Convolutional Neural Networks, NeurIPS"),
    "alexnet_tv": dict(layout="alexnet_tv", groups=1, input_shape=(224, 224, 3), min_input_size=63,
                       params=61_100_840, source="torchvision alexnet", macs=0.71e9,
                       macs_source="torchvision alexnet docs (GFLOPS = MACs)",
                       paper="Krizhevsky 2014, One weird trick for parallelizing convolutional neural "
                             "networks, arXiv:1404.5997"),
    "zfnet": dict(layout="zfnet", groups=1, input_shape=(224, 224, 3), min_input_size=47,
                  params=62_357_608, source="this implementation (Zeiler & Fergus 2014 Fig. 3 layout)",
                  paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks, ECCV"),
}


def alexnet(layout: str = "alexnet", groups: int = 2, dropout: float = 0.5, **kwargs):
    """AlexNet-style network: five convolutions with max pooling (and LRN), then FC 4096-4096-classes.

    Args:
        layout: "alexnet" (Krizhevsky 2012), "alexnet_tv" (torchvision) or "zfnet" (Zeiler & Fergus).
        groups: groups of conv2, conv4 and conv5 in the "alexnet" layout (2: the paper's two towers;
            1: one merged tower).
        dropout: dropout rate of the two hidden FC layers (0.5 as in the paper).
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(_LAYOUTS)}; got {layout!r}.")
    if groups not in (1, 2):
        raise ValueError(f"groups must be 1 (one tower) or 2 (the paper's two towers); got {groups!r}.")
    if groups == 2 and layout != "alexnet":
        raise ValueError(f"groups=2 exists only for layout 'alexnet'; got layout {layout!r}.")

    def backbone(x):
        stages, conv, lrn, pool = [], 0, 0, 0
        for step in _LAYOUTS[layout]:
            if step == "lrn":
                lrn += 1
                x = LocalResponseNormalization(name=f"norm{lrn}")(x)
            elif step in ("pool", "pool_ceil"):
                pool += 1
                if step == "pool":
                    x = layers.MaxPooling2D(3, strides=2, name=f"pool{pool}")(x)
                else:
                    x = max_pool_ceil(x, name=f"pool{pool}")
                stages.append(x)
            else:
                _, filters, kernel, stride, padding, grouped = step
                conv += 1
                if isinstance(padding, int):
                    x = layers.ZeroPadding2D(padding, name=f"conv{conv}_pad")(x)
                    padding = "valid"
                x = conv_bn_act(x, filters, kernel, stride, padding=padding, norm=False,
                                groups=groups if grouped else 1, name=f"conv{conv}")
        return x, stages

    head = fc_head(dropout_before=layout == "alexnet_tv")
    return build_classifier(backbone, head=head, flatten_head=True, dropout=dropout, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(alexnet, name=_name, family="alexnet",
                   defaults=dict(layout=_row["layout"], groups=_row["groups"]),
                   paper=_row["paper"], input_shape=_row["input_shape"], reference_params=_row["params"],
                   reference_params_source=_row["source"], reference_macs=_row.get("macs"),
                   reference_macs_source=_row.get("macs_source"), min_input_size=_row["min_input_size"],
                   preprocessing="torch")
