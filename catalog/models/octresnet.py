"""OctResNet (Chen et al. 2019, "Drop an Octave: Reducing Spatial Redundancy in Convolutional Neural
Networks with Octave Convolution", ICCV): ResNet-50 v1.5 with every conv of stages 1-3 an octave conv.

Stem (7x7/2 conv-BN-ReLU, 3x3/2 max-pool) as in ResNet-50; the first block of stage 1 splits the stem
output into a high-frequency (full resolution) and a low-frequency (half resolution, ratio alpha) part;
the first block of stage 4 merges them back, and stage 4 runs on one frequency, as in the reference
implementation (d-li14/octconv.pytorch). Octave convs split the vanilla weights four ways, so the
trainable parameters equal ResNet-50's 25,557,032 at every alpha; the MACs fall with alpha (about 2.4G at
alpha 0.5 vs 4.1G). The registered ``oct_resnet50`` uses alpha = 0.5, the paper's headline setting.
Any input side from 32 up works: where a side is odd, the low frequency rounds up and is cropped back
where it meets the high one (see :mod:`catalog.blocks.octave`); the stage sizes then equal ResNet-50's.
"""

from keras import layers

from catalog.blocks.layers import conv_bn_act, crop_to, pad_symmetric
from catalog.blocks.octave import octave_bottleneck
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

VARIANTS = {
    "oct_resnet50": dict(alpha=0.5),
    "oct_resnet50_a250": dict(alpha=0.25),
    "oct_resnet50_a125": dict(alpha=0.125),
}
# Published GFLOPs (= MACs) of oct-ResNet-50 by alpha (Chen et al. 2019, ResNet-50 ablation over alpha);
# this implementation counts 2.367G / 3.104G / 3.565G.
REFERENCE_MACS = {"oct_resnet50": 2.4e9, "oct_resnet50_a250": 3.1e9, "oct_resnet50_a125": 3.6e9}


def _stage_feature(high, low, name):
    """A stage's feature map: the low frequency upsampled x2 (cropped to an odd high side) and concatenated
    to the high one."""
    if low is None:
        return high
    up = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_low_up")(low)
    up = crop_to(up, high, name=f"{name}_low_crop")
    return layers.Concatenate(name=f"{name}_features")([high, up])


def oct_resnet(alpha: float = 0.5, depths=(3, 4, 6, 3), width: int = 64, zero_init_residual: bool = False,
               **kwargs):
    """OctResNet: octave bottlenecks (ResNet-50 v1.5 structure) with low-frequency ratio ``alpha``.

    Args:
        alpha: low-frequency ratio of stages 1-3, in [0, 1) (0 gives the vanilla ResNet).
        depths: bottlenecks per stage.
        width: width of the first stage's bottleneck (64 for ResNet-50).
        zero_init_residual: start the last BatchNorm gammas of every bottleneck's branch at 0 (the
            torchvision ResNet's ``zero_init_residual``, Goyal et al. 2017).
        **kwargs: the classification keywords of :func:`catalog.models.classifier.build_classifier`.
    """
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"zero_init_residual must be True or False; got {zero_init_residual!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be a number in [0, 1); got {alpha!r}.")
    if len(depths) != 4 or any(not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be four positive integers; got {depths!r}.")
    if not isinstance(width, int) or width < 1 or int(alpha * width) != alpha * width:
        raise ValueError(f"width must be a positive integer with alpha * width whole; got width={width!r} "
                         f"for alpha={alpha}.")

    def backbone(x):
        x = conv_bn_act(x, width, 7, 2, padding="symmetric", name="stem")
        stages = [x]
        x = pad_symmetric(x, 3, name="stem_pool_pad")
        high, low = layers.MaxPooling2D(3, 2, name="stem_pool")(x), None
        a_in = 0.0
        for s, depth in enumerate(depths):
            last = s == len(depths) - 1
            for b in range(depth):
                a_out = 0.0 if last else alpha
                high, low = octave_bottleneck(high, low, width * 2 ** s, stride=2 if s and not b else 1,
                                              alpha_in=a_in, alpha=alpha, alpha_out=a_out,
                                              zero_init_residual=zero_init_residual,
                                              name=f"stage{s + 1}_block{b + 1}")
                a_in = a_out
            stages.append(_stage_feature(high, low, f"stage{s + 1}"))
        return high, stages

    return build_classifier(backbone, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(
        oct_resnet, name=_name, family="octresnet",
        paper="Chen et al. 2019, Drop an Octave: Reducing Spatial Redundancy in Convolutional Neural "
              "Networks with Octave Convolution, ICCV",
        input_shape=(224, 224, 3), defaults=_row, reference_params=25_557_032,
        reference_params_source="Chen et al. 2019: OctConv keeps the parameter count of the vanilla "
                                "network (torchvision resnet50: 25,557,032)",
        reference_params_rtol=0.001,
        reference_macs=REFERENCE_MACS.get(_name),
        reference_macs_source=f"Chen et al. 2019, oct-ResNet-50 at alpha {_row['alpha']} (GFLOPs = MACs)",
        min_input_size=32, preprocessing="torch")
