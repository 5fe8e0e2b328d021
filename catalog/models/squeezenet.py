"""SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
<0.5MB model size"), in torchvision's layout.

1.0: conv1 96@7x7/2 -> maxpool -> fire2-4 -> maxpool -> fire5-8 -> maxpool -> fire9 -> head.
1.1: conv1 64@3x3/2 -> maxpool -> fire2-3 -> maxpool -> fire4-5 -> maxpool -> fire6-9 -> head (2.4x less
compute, same accuracy). Head (torchvision): dropout 0.5 -> 1x1 conv to classes -> ReLU -> global average
pool (NiN's ``conv_head``; the conv starts as torchvision's final conv, N(0, 0.01), bias 0). Max pools
are 3x3/2 with PyTorch's ceil_mode (``max_pool_ceil``).
``bypass=True`` adds the paper's simple bypass around fire3, 5, 7 and 9 (the modules whose input and
output channels match).
"""

import functools

from catalog.blocks.fire import fire
from catalog.blocks.layers import conv_bn_act, max_pool_ceil
from catalog.models.classifier import build_classifier, conv_head
from catalog.registry import register_model

# Fire modules as (squeeze, expand1x1, expand3x3), fire2..fire9; the same in both versions.
FIRES = ((16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
         (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))

VARIANTS = {
    "squeezenet1_0": dict(version="1_0", params=1_248_424, macs=0.82e9),
    "squeezenet1_1": dict(version="1_1", params=1_235_496, macs=0.35e9),
}
# Stem conv (filters, kernel) and the fire modules (by number) a max pool follows.
_LAYOUTS = {"1_0": dict(stem=(96, 7), pool_after=(4, 8)), "1_1": dict(stem=(64, 3), pool_after=(3, 5))}
_BYPASS = (3, 5, 7, 9)


def squeezenet(version: str = "1_0", bypass: bool = False, dropout: float = 0.5, **kwargs):
    """SqueezeNet 1.0 or 1.1: a stem conv, eight Fire modules between max pools, a conv head.

    Args:
        version: "1_0" (96@7x7 stem) or "1_1" (64@3x3 stem, earlier pooling).
        bypass: add the simple bypass (residual add) around fire3, fire5, fire7 and fire9.
        dropout: dropout rate before the classifier conv (0.5 as in the paper).
    """
    if version not in _LAYOUTS:
        raise ValueError(f"version must be one of {', '.join(_LAYOUTS)}; got {version!r}.")
    if not isinstance(bypass, bool):
        raise ValueError(f"bypass must be True or False; got {bypass!r}.")
    layout = _LAYOUTS[version]

    def backbone(x):
        filters, kernel = layout["stem"]
        x = conv_bn_act(x, filters, kernel, strides=2, padding="valid", norm=False, name="stem")
        stages = [x]
        x = max_pool_ceil(x, "stem_pool")
        for number, (s, e1, e3) in enumerate(FIRES, start=2):
            x = fire(x, s, e1, e3, bypass=bypass and number in _BYPASS, name=f"fire{number}")
            if number in layout["pool_after"]:
                stages.append(x)
                x = max_pool_ceil(x, f"fire{number}_pool")
        stages.append(x)
        return x, stages

    return build_classifier(backbone, head=functools.partial(conv_head, init="normal"), dropout=dropout, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(squeezenet, name=_name, family="squeezenet", defaults=dict(version=_row["version"]),
                   paper="Iandola et al. 2016, SqueezeNet: AlexNet-level accuracy with 50x fewer parameters "
                         "and <0.5MB model size, arXiv:1602.07360",
                   input_shape=(224, 224, 3), reference_params=_row["params"],
                   reference_params_source=f"torchvision {_name}", reference_macs=_row["macs"],
                   reference_macs_source=f"torchvision {_name} docs (GFLOPS = MACs)",
                   min_input_size=32, preprocessing="torch")
