"""FractalNet (Larsson, Maire, Shakhnarovich 2017, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR), the CIFAR network.

B fractal blocks of C columns (:func:`catalog.blocks.fractal.fractal_block`), each followed by a 2x2 max
pool, then the classifier: 32x32 -> 5 blocks -> 1x1x512 -> FC. Conv units are 3x3 conv -> dropout ->
BatchNorm -> ReLU, with the dropout rate growing by block (0, .1, .2, .3, .4) and the channels
64, 128, 256, 512, 512 (doubling each block except the last), as the paper's CIFAR setting and the
authors' network generator (github.com/gustavla/fractalnet, ``generation/fractalnet.py``). Drop-path:
local rate 0.15 per join input and a 50/50 per-sample mix of local and global (one column) draws.

fractalnet_cifar is C = 4, B = 5: 2^(C-1) = 8 convs on the longest path of a block, 40 layers deep,
15 conv units per block; fractalnet20_cifar is the paper's main CIFAR model, C = 3 (4 convs on the longest
path, 20 layers, 7 units per block). Their counts, 76,106,634 and 33,724,618 at 10 classes, are exact for
this implementation: the authors' generator with COLUMNS = 4 or 3 gives the same layers, whose Caffe convs
carry a bias and whose Caffe BatchNorm has no affine (76,084,554 and 33,714,314 there: one parameter less
per output channel). The paper's counts match neither: its 20-layer row says 38.6M, and its 40-layer row
says 22.9M, so that network must be narrower than 64-512 channels per column (this layout has 76.1M).
"""

from __future__ import annotations

from typing import Sequence

from keras import layers

from catalog.blocks.fractal import FractalDropPathSampler, fractal_block
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

VARIANTS = {
    "fractalnet_cifar": dict(columns=4, blocks=5),
    "fractalnet20_cifar": dict(columns=3, blocks=5),
}

# Exact counts of this implementation at 10 classes; the authors' Caffe models have one parameter less per
# conv output channel (a conv bias, and a BatchNorm without affine, where this has BN gamma and beta).
PARAMS = {"fractalnet_cifar": 76_106_634, "fractalnet20_cifar": 33_724_618}
CAFFE_PARAMS = {"fractalnet_cifar": 76_084_554, "fractalnet20_cifar": 33_714_314}
PAPER = {"fractalnet_cifar": "the paper lists no count for this width (its 40-layer row, 22.9M, is a "
                             "narrower network)",
         "fractalnet20_cifar": "Larsson et al. 2017 Table 1 says 38.6M, which neither this layout nor the "
                               "authors' generator reaches"}


def _default_filters(blocks: int) -> tuple[int, ...]:
    """64 doubling each block except the last: 64, 128, 256, 512, 512 for five blocks."""
    return tuple(64 * 2 ** min(b, max(blocks - 2, 0)) for b in range(blocks))


def fractalnet(columns: int = 4, blocks: int = 5, filters: Sequence[int] | None = None,
               block_dropout: Sequence[float] | None = None, drop_path_rate: float = 0.15,
               global_drop_fraction: float = 0.5, **kwargs):
    """FractalNet for CIFAR (Larsson et al. 2017): fractal blocks, each followed by a 2x2 max pool.

    Each block has ``2**columns - 1`` conv units, ``2**(columns - 1)`` on its longest path; the joins
    average their inputs and apply drop-path in training (:mod:`catalog.blocks.fractal`). The head is
    global average pooling (the identity on the 1x1 map of a 32x32 input) and one FC layer.

    Args:
        columns: C, columns per block.
        blocks: B, number of blocks; the input must be at least 2**B pixels.
        filters: channels of each block; defaults to 64 doubling each block except the last
            (64, 128, 256, 512, 512 for B = 5).
        block_dropout: dropout rate inside the conv units of each block; defaults to 0.1 * (block - 1),
            (0, .1, .2, .3, .4) for B = 5.
        drop_path_rate: local drop-path probability of each join input.
        global_drop_fraction: fraction of samples that use global drop-path (one column for the whole
            network); 0 for local drop-path only.
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    for arg, value in (("columns", columns), ("blocks", blocks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer; got {value!r}.")
    filters = _default_filters(blocks) if filters is None else tuple(filters)
    if len(filters) != blocks or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters):
        raise ValueError(f"filters must be {blocks} positive integers, one per block; got {filters!r}.")
    if block_dropout is None and blocks > 10:
        raise ValueError(f"block_dropout must be given for more than 10 blocks (its default, 0.1 more per block, "
                         f"would reach 1); got blocks={blocks}.")
    rates = tuple(0.1 * b for b in range(blocks)) if block_dropout is None else tuple(block_dropout)
    if len(rates) != blocks or any(not isinstance(r, (int, float)) or not 0.0 <= r < 1.0 for r in rates):
        raise ValueError(f"block_dropout must be {blocks} rates in [0, 1), one per block; got {block_dropout!r}.")
    if not isinstance(drop_path_rate, (int, float)) or not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate!r}.")
    if not isinstance(global_drop_fraction, (int, float)) or not 0.0 <= global_drop_fraction <= 1.0:
        raise ValueError(f"global_drop_fraction must be in [0, 1]; got {global_drop_fraction!r}.")
    kwargs["min_input_size"] = 2 ** blocks

    def backbone(x):
        selector = None
        if global_drop_fraction > 0 and columns > 1:
            selector = FractalDropPathSampler(columns, global_drop_fraction, name="drop_path_sampler")(x)
        stages = []
        for b, (width, rate) in enumerate(zip(filters, rates), start=1):
            x = fractal_block(x, columns, width, dropout=rate, drop_rate=drop_path_rate, selector=selector,
                              name=f"block{b}")
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
            stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(fractalnet, name=_name, family="fractalnet", defaults=_row,
                   paper="Larsson et al. 2017, FractalNet: Ultra-Deep Neural Networks without Residuals, ICLR",
                   input_shape=(32, 32, 3), num_classes=10, reference_params=PARAMS[_name],
                   reference_params_source=(
                       f"this implementation (Larsson et al. 2017 CIFAR layout, C={_row['columns']}, B=5, "
                       f"64-128-256-512-512, as the authors' generator gustavla/fractalnet "
                       f"generation/fractalnet.py with COLUMNS={_row['columns']}, whose Caffe model has "
                       f"{CAFFE_PARAMS[_name]:,}: conv biases, no BatchNorm affine); {PAPER[_name]}"),
                   min_input_size=32, preprocessing="unit")
