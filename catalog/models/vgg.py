"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition"),
configurations A, B, D, E (vgg11/13/16/19), with and without BatchNorm, in torchvision's layout, and the
paper's A-LRN (``vgg11_lrn``: A with AlexNet's LRN after the first conv) and C (``vgg16_c``: D with a 1x1
conv as the third conv of stages 3, 4 and 5), which torchvision does not have.

Stages of 3x3 "same" convolutions (with bias and ReLU), each followed by a 2x2/2 max pool, then Flatten ->
FC 4096 -> ReLU -> dropout -> FC 4096 -> ReLU -> dropout -> FC classes. The classifier flattens the last
map, as keras.applications does, so ``include_top=True`` fixes the input size (at 224 the map is 7x7 and
torchvision's adaptive 7x7 average pool is the identity, so it is left out). The three FCs start as
torchvision's: N(0, 0.01), bias 0.

The ``_bn`` variants put BatchNorm after every conv and drop the conv bias (redundant before BatchNorm;
a weights loader folds it into the BatchNorm shift): torchvision keeps those biases, so its published
counts are higher by the BatchNorm'd convs' output channels (4,224 for vgg16_bn).
"""

from keras import layers

from catalog.blocks.layers import conv_bn_act
from catalog.models.alexnet import LocalResponseNormalization
from catalog.models.classifier import build_classifier, fc_head
from catalog.registry import register_model

# Convolutions per stage (64, 128, 256, 512, 512 filters): torchvision cfgs "A", "B", "D", "E".
STAGE_FILTERS = (64, 128, 256, 512, 512)
DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR"

# torchvision trainable parameters (with conv biases before BatchNorm in the _bn variants) and MACs. The
# other BatchNorm depths build with batch_norm=True (torchvision: vgg11_bn 132,868,840, vgg13_bn 133,053,736,
# vgg19_bn 143,678,248, less bn_conv_biases(depth) here); they are not registered to keep CI small.
VARIANTS = {
    "vgg11": dict(depth=11, params=132_863_336, macs=7.61e9),
    "vgg13": dict(depth=13, params=133_047_848, macs=11.31e9),
    "vgg16": dict(depth=16, params=138_357_544, macs=15.47e9),
    "vgg19": dict(depth=19, params=143_667_240, macs=19.63e9),
    "vgg16_bn": dict(depth=16, batch_norm=True, params=138_365_992, macs=15.47e9),
}
# The paper's other configurations: no reference implementation, so its Table 2 figures (millions, rounded
# to the million: rtol 0.5M) are the reference; test_classic checks the exact counts in closed form
# (A-LRN: A's 132,863,336, the LRN has no weights; C: D's 138,357,544 less 8 * (256^2 + 2 * 512^2)).
PAPER_VARIANTS = {
    "vgg11_lrn": dict(depth=11, lrn=True, params=133_000_000, config="A-LRN"),
    "vgg16_c": dict(depth=16, conv1x1=True, params=134_000_000, config="C"),
}


def bn_conv_biases(depth: int) -> int:
    """Conv biases torchvision's ``vgg*_bn`` carries before BatchNorm (left out here)."""
    return sum(n * f for n, f in zip(DEPTHS[depth], STAGE_FILTERS))


def vgg(depth: int = 16, batch_norm: bool = False, dropout: float = 0.5, lrn: bool = False,
        conv1x1: bool = False, **kwargs):
    """VGG: five stages of 3x3 convs and 2x2 max pools, then FC 4096-4096-classes.

    Args:
        depth: 11, 13, 16 or 19 (configurations A, B, D, E; C is depth 16 with ``conv1x1``).
        batch_norm: BatchNorm after every conv (torchvision's ``vgg*_bn``).
        dropout: dropout rate after the two hidden FC layers (0.5 as in the paper).
        lrn: local response normalization after the first conv's ReLU, with the paper's (Krizhevsky et
            al. 2012's) n = 5, k = 2, alpha = 1e-4, beta = 0.75 (configuration A-LRN at depth 11).
        conv1x1: the third conv of stages 3, 4 and 5 is 1x1 instead of 3x3 (configuration C; depth 16).
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {', '.join(map(str, DEPTHS))}; got {depth!r}.")
    for arg, value in (("batch_norm", batch_norm), ("lrn", lrn), ("conv1x1", conv1x1)):
        if not isinstance(value, bool):
            raise ValueError(f"{arg} must be True or False; got {value!r}.")
    if conv1x1 and depth != 16:
        raise ValueError(f"conv1x1=True (configuration C) needs depth 16; got depth {depth!r}.")

    def backbone(x):
        stages = []
        for s, (n, filters) in enumerate(zip(DEPTHS[depth], STAGE_FILTERS), start=1):
            for c in range(1, n + 1):
                kernel = 1 if conv1x1 and c == 3 else 3
                x = conv_bn_act(x, filters, kernel, norm=batch_norm, name=f"stage{s}_conv{c}")
                if lrn and s == c == 1:
                    x = LocalResponseNormalization(name="stage1_conv1_lrn")(x)
            x = layers.MaxPooling2D(2, strides=2, name=f"stage{s}_pool")(x)
            stages.append(x)
        return x, stages

    return build_classifier(backbone, head=fc_head(init="normal"), flatten_head=True, dropout=dropout, **kwargs)


for _name, _row in VARIANTS.items():
    _bn = _row.get("batch_norm", False)
    register_model(vgg, name=_name, family="vgg", defaults=dict(depth=_row["depth"], batch_norm=_bn),
                   paper=_PAPER,
                   input_shape=(224, 224, 3), reference_params=_row["params"],
                   reference_params_source=f"torchvision {_name}" + (
                       " (its conv biases before BatchNorm are left out here)" if _bn else ""),
                   # The _bn counts differ from torchvision's by the dropped biases only (exact in test_classic).
                   reference_params_rtol=(bn_conv_biases(_row["depth"]) + 1) / _row["params"] if _bn else 0.0,
                   reference_macs=_row["macs"], reference_macs_source=f"torchvision {_name} docs (GFLOPS = MACs)",
                   min_input_size=32, preprocessing="torch")
for _name, _row in PAPER_VARIANTS.items():
    _defaults = {k: _row[k] for k in ("depth", "lrn", "conv1x1") if k in _row}
    register_model(vgg, name=_name, family="vgg", defaults=_defaults, paper=_PAPER, input_shape=(224, 224, 3),
                   reference_params=_row["params"], reference_params_rtol=0.5e6 / _row["params"],
                   reference_params_source=f"Simonyan & Zisserman 2015, Table 2, configuration {_row['config']}: "
                                           f"{_row['params'] / 1e6:.0f}M (rounded to the million)",
                   min_input_size=32, preprocessing="torch")
