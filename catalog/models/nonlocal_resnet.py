"""Non-local ResNet (Wang et al. 2018, "Non-local Neural Networks", CVPR).

:func:`catalog.models.resnet.resnet` (torchvision's ResNet-50 v1.5) with embedded-Gaussian non-local blocks
(:func:`catalog.blocks.attention.non_local`: theta, phi, g 1x1 convs to C/2 with bias, 2x2 max-pooled phi
and g, softmax affinity, 1x1 conv back to C + BatchNorm with gamma 0, residual add) after every other
residual block of res3 and res4, as the paper's 5-block ResNet-50 and the authors' code
(facebookresearch/video-nonlocal-net, ``idx % 2 == 1``) place them: after ``stage2_block2``,
``stage2_block4``, ``stage3_block2``, ``stage3_block4`` and ``stage3_block6`` (layers ``{block}_nonlocal_*``).
Each block over C channels has 2C^2 + 3.5C parameters, so nonlocal_resnet50 has resnet50's 25,557,032
plus 2 * 526,080 + 3 * 2,100,736 = 32,911,400. The blocks reshape positions back to a map, so the input
needs a fixed height and width (at least 32: res4 then is 2x2, which the 2x2 pooling of phi and g needs).
"""

from __future__ import annotations

import functools
from typing import Sequence

from catalog.blocks import attention as attention_blocks
from catalog.models.resnet import resnet
from catalog.registry import register_model

WANG2018 = "Wang et al. 2018, Non-local Neural Networks, CVPR"

# name: (builder keywords, exact trainable params in closed form)
VARIANTS = {
    "nonlocal_resnet50": (dict(depths=(3, 4, 6, 3), non_local_stages=(2, 3), non_local_every=2), 32_911_400),
}


def nonlocal_resnet(depths: Sequence[int] = (3, 4, 6, 3), width: int = 64, non_local_stages: Sequence[int] = (2, 3),
                    non_local_every: int = 2, non_local_sub_sample: bool = True, non_local_zero_init: bool = True,
                    drop_path_rate: float = 0.0, zero_init_residual: bool = False, **kwargs):
    """Bottleneck ResNet with a non-local block after every ``non_local_every``-th block of some stages.

    Args:
        depths: blocks per stage.
        width: planes of the first stage; stage i has ``width * 2**i`` (outputs ``4 * width * 2**i``).
        non_local_stages: 1-indexed stages that get non-local blocks (the paper's res3 and res4 are 2, 3).
        non_local_every: a non-local block follows block j of those stages when j is a multiple of this
            (1-indexed; 2 gives the paper's every other block, 1 every block).
        non_local_sub_sample: 2x2 max-pool phi and g (the paper's subsampling; 4x fewer pairs).
        non_local_zero_init: start each non-local block's output BatchNorm gamma at 0, so it starts as the
            identity (the paper's choice; its theta, phi, g and output conv then get zero gradients until
            gamma moves).
        drop_path_rate: stochastic depth, growing linearly to this rate over the residual blocks.
        zero_init_residual: start the last BatchNorm gamma of every residual branch at 0.
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    if not (isinstance(depths, (tuple, list)) and depths):
        raise ValueError(f"depths must be a tuple of positive integers (blocks per stage); got {depths!r}.")
    if not (isinstance(non_local_stages, (tuple, list)) and all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= len(depths) for s in non_local_stages)):
        raise ValueError(f"non_local_stages must be a tuple of stage numbers in 1..{len(depths)}; "
                         f"got {non_local_stages!r}.")
    if isinstance(non_local_every, bool) or not isinstance(non_local_every, int) or non_local_every <= 0:
        raise ValueError(f"non_local_every must be a positive integer; got {non_local_every!r}.")
    for arg, value in (("non_local_sub_sample", non_local_sub_sample), ("non_local_zero_init", non_local_zero_init)):
        if not isinstance(value, bool):
            raise ValueError(f"{arg} must be True or False; got {value!r}.")
    block_fn = functools.partial(attention_blocks.non_local, sub_sample=non_local_sub_sample,
                                 zero_init=non_local_zero_init)

    def after_block(x, stage, block):
        if stage in non_local_stages and block % non_local_every == 0:
            return block_fn(x, name=f"stage{stage}_block{block}_nonlocal")
        return x

    return resnet(depths=depths, block="bottleneck", width=width, drop_path_rate=drop_path_rate,
                  zero_init_residual=zero_init_residual, after_block=after_block, **kwargs)


for _name, (_row, _params) in VARIANTS.items():
    register_model(nonlocal_resnet, name=_name, family="nonlocal", paper=WANG2018, input_shape=(224, 224, 3),
                   defaults=_row, reference_params=_params, reference_params_rtol=0.0,
                   reference_params_source=(
                       "closed form: torchvision resnet50 (25,557,032) + 5 embedded-Gaussian non-local blocks "
                       "(2C^2 + 3.5C each; 2 at C = 512 after res3 blocks 2, 4, 3 at C = 1024 after res4 "
                       "blocks 2, 4, 6, as the authors' code places them)"),
                   min_input_size=32, preprocessing="torch")
