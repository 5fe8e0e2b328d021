"""ResNet families: ImageNet ResNet v1.5 / ResNeXt / Wide ResNet, ResNet v2, and the CIFAR ResNets.

- ``resnet``: He et al. 2016 ("Deep Residual Learning for Image Recognition") in torchvision's layout:
  7x7/2 stem conv-BN-ReLU, 3x3/2 max pool, four stages of basic or bottleneck blocks (64-128-256-512
  planes, stride 2 on the first block of stages 2-4, on the 3x3: "v1.5"), global average pool, FC.
  ResNeXt (Xie et al. 2017) and Wide ResNet-50/101-2 are the same net with grouped / widened bottlenecks.
  BatchNorm eps 1e-5 (torchvision). Parameter counts equal torchvision's exactly; ResNet-200 (depths
  3-24-36-3, trained in He et al.'s "Identity Mappings" paper; torchvision has none) equals timm's
  ``resnet200``. The builder's ``stem``, ``stem_pool``, ``reduce_first`` and ``shortcut_kernel`` keywords give
  SENet-154's layout (:mod:`catalog.models.senet`); ``after_block`` inserts blocks between residual blocks
  (:mod:`catalog.models.nonlocal_resnet`).
- ``resnet_v2``: pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks") in
  keras.applications' ResNetV2 layout (stride on the last block of stages 1-3, biased stem conv and
  biased convs where no BatchNorm follows, final BN-ReLU, eps 1.001e-5), so its weights can be loaded.
- ``cifar_resnet``: the CIFAR nets at 32x32x3 and 10 classes: ResNet-20/32/44/56/110 (He et al. 2016,
  section 4.2: 3x3 stem of 16, three stages of n basic blocks with 16-32-64 channels, option A shortcuts),
  pre-activation ResNet-18 (64-128-256-512) and WRN-28-10 (Zagoruyko & Komodakis 2016).

Exact trainable counts where the reference publishes only a rounded or other-layout figure:
resnet50_v2 / 101_v2 / 152_v2 25,568,360 / 44,577,896 / 60,236,904 (= keras.applications' trainable weights);
resnet20 / 32 / 44 / 56 / 110 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962 (option A);
preact_resnet18 11,172,170 (with the final BN-ReLU of the paper); wrn28_10 36,479,194.
"""

from __future__ import annotations

from typing import Callable, Sequence

from keras import layers

from catalog.blocks import residual
from catalog.blocks.layers import act, batch_norm, conv_bn_act, max_pool_ceil, norm_defaults, positive_int
from catalog.models.classifier import build_classifier, dilation_plan
from catalog.registry import register_model

HE2016 = "He et al. 2016, Deep Residual Learning for Image Recognition, CVPR"
HE2016_V2 = "He et al. 2016, Identity Mappings in Deep Residual Networks, ECCV"
WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks, BMVC"
TORCHVISION_MACS = "torchvision docs (GFLOPS = MACs)"
# Names whose reference implementation is not torchvision's (which has no ResNet-200).
SOURCES = {"resnet200": "timm resnet200 (v1.5 bottlenecks; He et al. 2016 'Identity Mappings' trained ResNet-200)"}
STEMS = ("7x7", "deep")
STEM_POOLS = ("pad", "ceil")

# name: (builder keywords, reference trainable params, reference MACs or None)
VARIANTS = {
    "resnet18": (dict(block="basic", depths=(2, 2, 2, 2)), 11_689_512, 1.81e9),
    "resnet34": (dict(block="basic", depths=(3, 4, 6, 3)), 21_797_672, 3.66e9),
    "resnet50": (dict(block="bottleneck", depths=(3, 4, 6, 3)), 25_557_032, 4.09e9),
    "resnet101": (dict(block="bottleneck", depths=(3, 4, 23, 3)), 44_549_160, 7.80e9),
    "resnet152": (dict(block="bottleneck", depths=(3, 8, 36, 3)), 60_192_808, 11.51e9),
    "resnet200": (dict(block="bottleneck", depths=(3, 24, 36, 3)), 64_673_832, None),
    "resnext50_32x4d": (dict(block="bottleneck", depths=(3, 4, 6, 3), groups=32, base_width=4),
                        25_028_904, 4.23e9),
    "resnext101_32x8d": (dict(block="bottleneck", depths=(3, 4, 23, 3), groups=32, base_width=8),
                         88_791_336, 16.41e9),
    "wide_resnet50_2": (dict(block="bottleneck", depths=(3, 4, 6, 3), base_width=128), 68_883_240, 11.40e9),
    "wide_resnet101_2": (dict(block="bottleneck", depths=(3, 4, 23, 3), base_width=128), 126_886_696,
                         22.75e9),
}

# name: (depths, exact trainable params of this implementation, torchvision's published count)
# keras.applications publishes total params 25,613,800 / 44,675,560 / 60,380,648 (BN moving stats incl.).
VARIANTS_V2 = {
    "resnet50_v2": ((3, 4, 6, 3), 25_568_360, 25_557_032),
    "resnet101_v2": ((3, 4, 23, 3), 44_577_896, 44_549_160),
    "resnet152_v2": ((3, 8, 36, 3), 60_236_904, 60_192_808),
}

# name: (builder keywords, exact trainable params of this implementation, published count, its rtol)
# The rtol is half a unit of the published figure's last digit (He et al. 2016 Table 6: 0.27M ...).
VARIANTS_CIFAR = {
    "resnet20": (dict(depths=(3, 3, 3)), 269_722, 270_000, 0.019),
    "resnet32": (dict(depths=(5, 5, 5)), 464_154, 460_000, 0.011),
    "resnet44": (dict(depths=(7, 7, 7)), 658_586, 660_000, 0.008),
    "resnet56": (dict(depths=(9, 9, 9)), 853_018, 850_000, 0.006),
    "resnet110": (dict(depths=(18, 18, 18)), 1_727_962, 1_700_000, 0.03),
    "preact_resnet18": (dict(depths=(2, 2, 2, 2), width=64, block="preact_basic", shortcut="projection"),
                        11_172_170, None, 0.0),
    "wrn28_10": (dict(depths=(4, 4, 4), width=16, width_factor=10, block="preact_basic", shortcut="projection"),
                 36_479_194, 36_500_000, 0.0014),
}


def _check_depths(depths):
    if not (isinstance(depths, (tuple, list)) and len(depths) > 0 and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in depths)):
        raise ValueError(f"depths must be a tuple of positive integers (blocks per stage); got {depths!r}.")


def _check_common(drop_path_rate, attention, zero_init_residual):
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"zero_init_residual must be True or False; got {zero_init_residual!r}.")
    if not isinstance(drop_path_rate, (int, float)) or not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be a number in [0, 1); got {drop_path_rate!r}.")
    if attention is not None and not callable(attention):
        raise ValueError(f"attention must be None or a callable fn(x, name=...); got {attention!r}.")


def _drop_rates(depths, rate):
    """Stochastic-depth rates growing linearly from 0 to ``rate`` over all blocks (timm's schedule)."""
    total = sum(depths)
    return [rate * i / max(1, total - 1) for i in range(total)]


def resnet(depths: Sequence[int] = (3, 4, 6, 3), block: str = "bottleneck", width: int = 64, groups: int = 1,
           base_width: int = 64, stride_on_1x1: bool = False, drop_path_rate: float = 0.0,
           attention: Callable | None = None, zero_init_residual: bool = False, output_stride: int = 32,
           stem: str = "7x7", stem_pool: str = "pad", reduce_first: int = 1, shortcut_kernel: int = 1,
           after_block: Callable | None = None, **kwargs):
    """ResNet v1.5 (torchvision layout): 7x7/2 stem, 3x3/2 max pool, four stages, GAP, FC.

    The defaults of ``stem``, ``stem_pool``, ``reduce_first``, ``shortcut_kernel`` and ``after_block`` give
    torchvision's network; SENet-154 (Hu et al. 2018, the authors' released model) sets ``stem="deep"``,
    ``stem_pool="ceil"``, ``reduce_first=2`` and ``shortcut_kernel=3``.

    Args:
        depths: blocks per stage.
        block: "basic" (ResNet-18/34) or "bottleneck" (ResNet-50+).
        width: planes of the first stage; stage i has ``width * 2**i`` (the stem has ``width``).
        groups: grouped-conv cardinality of the bottleneck's 3x3 (ResNeXt).
        base_width: bottleneck width per group at 64 planes (ResNeXt 4 or 8; Wide ResNet 128).
        stride_on_1x1: put the bottleneck's stride on its first 1x1 (original paper) instead of the 3x3.
        drop_path_rate: stochastic depth, growing linearly to this rate over the blocks.
        attention: ``fn(x, name=...)`` on every block's residual branch (SE, CBAM), or None.
        zero_init_residual: start every block as the identity: the last BatchNorm gamma of each residual
            branch at 0 (Goyal et al. 2017, torchvision's ``zero_init_residual``); see
            :mod:`catalog.blocks.residual`.
        output_stride: 8, 16 or 32: the last stages' strides become dilations (torchvision's
            ``replace_stride_with_dilation``; see :func:`catalog.models.classifier.dilation_plan`).
        stem: "7x7" (one 7x7/2 conv of ``width``) or "deep" (3x3/2 conv of ``width``, 3x3 of ``width``,
            3x3 of ``2 * width``, each with BN-ReLU: SENet-154's stem, timm's ``stem_type="deep"``).
        stem_pool: "pad" (zero padding 1, then 3x3/2 max pool: torchvision) or "ceil" (3x3/2 max pool with
            Caffe's / PyTorch's ``ceil_mode``, no padding: the SENet authors' models).
        reduce_first: the bottleneck's first 1x1 has ``1 / reduce_first`` of its 3x3's width (SENet-154: 2).
        shortcut_kernel: kernel size of the projection shortcut of the first block of stages 2+ (SENet-154:
            3, zero padding 1); stage 1's projection stays 1x1.
        after_block: ``fn(x, stage, block) -> tensor`` called after every residual block with 1-indexed
            stage and block numbers (returning ``x`` adds nothing), or None; the non-local ResNet inserts
            its blocks with it.
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}.")
    _check_depths(depths)
    positive_int(width, "width")
    positive_int(groups, "groups")
    positive_int(base_width, "base_width")
    positive_int(reduce_first, "reduce_first")
    if isinstance(shortcut_kernel, bool) or shortcut_kernel not in (1, 3, 5, 7):
        raise ValueError(f"shortcut_kernel must be 1, 3, 5 or 7; got {shortcut_kernel!r}.")
    _check_common(drop_path_rate, attention, zero_init_residual)
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}.")
    if stem_pool not in STEM_POOLS:
        raise ValueError(f"stem_pool must be one of {', '.join(STEM_POOLS)}; got {stem_pool!r}.")
    if after_block is not None and not callable(after_block):
        raise ValueError(f"after_block must be None or a callable fn(x, stage, block); got {after_block!r}.")
    if block == "basic" and (groups != 1 or base_width != 64 or stride_on_1x1 or reduce_first != 1):
        raise ValueError("groups, base_width, stride_on_1x1 and reduce_first apply to block='bottleneck' only; "
                         f"got groups={groups}, base_width={base_width}, stride_on_1x1={stride_on_1x1}, "
                         f"reduce_first={reduce_first}.")
    options = {} if block == "basic" else dict(groups=groups, base_width=base_width,
                                               stride_on_1x1=stride_on_1x1, reduce_first=reduce_first)
    fn = residual.BLOCKS[block]
    rates = iter(_drop_rates(depths, drop_path_rate))
    plan = iter(dilation_plan([2 if (j == 0 and i > 0) else 1 for i, d in enumerate(depths) for j in range(d)],
                              output_stride, reduction=4))

    def backbone(x):
        with norm_defaults(epsilon=1e-5):
            if stem == "7x7":
                x = conv_bn_act(x, width, 7, 2, padding="symmetric", name="stem")
            else:
                for k, (filters, stride) in enumerate(((width, 2), (width, 1), (2 * width, 1)), start=1):
                    x = conv_bn_act(x, filters, 3, stride, padding="symmetric", name=f"stem{k}")
            stages = [x]
            if stem_pool == "pad":
                x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)  # after ReLU, zero = PyTorch's -inf pad
                x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
            else:
                x = max_pool_ceil(x, name="stem_pool")
            for i, depth in enumerate(depths):
                for j in range(depth):
                    stride, dilation = next(plan)
                    x = fn(x, width * 2 ** i, stride, dilation=dilation, drop_path_rate=next(rates),
                           attention=attention, zero_init_residual=zero_init_residual,
                           shortcut_kernel=shortcut_kernel if (i > 0 and j == 0) else 1,
                           name=f"stage{i + 1}_block{j + 1}", **options)
                    if after_block is not None:
                        x = after_block(x, i + 1, j + 1)
                stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


def resnet_v2(depths: Sequence[int] = (3, 4, 6, 3), width: int = 64, drop_path_rate: float = 0.0,
              attention: Callable | None = None, zero_init_residual: bool = False, output_stride: int = 32,
              **kwargs):
    """Pre-activation ResNet v2 in keras.applications' ResNetV2 layout.

    7x7/2 stem conv with bias (no BN), 3x3/2 max pool, four stages of pre-activation bottlenecks whose
    last block strides (stages 1-3), final BN-ReLU, GAP, FC. Features are the last tensor at each
    reduction (the input of each strided block, then the final BN-ReLU).

    Args:
        depths: blocks per stage.
        width: planes of the first stage; stage i has ``width * 2**i``.
        drop_path_rate: stochastic depth, growing linearly to this rate over the blocks.
        attention: ``fn(x, name=...)`` on every block's residual branch, or None.
        zero_init_residual: start every block as the identity: the last conv kernel of each pre-activation
            branch at 0 (no BatchNorm follows it; timm's ``zero_init_last``); see :mod:`catalog.blocks.residual`.
        output_stride: 8, 16 or 32: the last strides become dilations (the strided block keeps the previous
            dilation; see :func:`catalog.models.classifier.dilation_plan`).
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    _check_depths(depths)
    positive_int(width, "width")
    _check_common(drop_path_rate, attention, zero_init_residual)
    rates = iter(_drop_rates(depths, drop_path_rate))
    nominal = [2 if (j == d - 1 and i < len(depths) - 1) else 1 for i, d in enumerate(depths) for j in range(d)]
    plan = iter(dilation_plan(nominal, output_stride, reduction=4))

    def backbone(x):
        with norm_defaults(epsilon=1.001e-5):
            x = conv_bn_act(x, width, 7, 2, padding="symmetric", norm=False, activation=None, use_bias=True,
                            name="stem")
            stages = [x]
            x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
            x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
            for i, depth in enumerate(depths):
                last_stage = i == len(depths) - 1
                for j in range(depth):
                    stride, dilation = next(plan)
                    if j == depth - 1 and not last_stage:  # the end of a reduction (strided or dilated)
                        stages.append(x)
                    x = residual.preact_bottleneck(x, width * 2 ** i, stride, dilation=dilation,
                                                   drop_path_rate=next(rates), attention=attention,
                                                   zero_init_residual=zero_init_residual,
                                                   name=f"stage{i + 1}_block{j + 1}")
            x = act(batch_norm(x, name="post_bn"), "relu", name="post_act")
            stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


def cifar_resnet(depths: Sequence[int] = (3, 3, 3), width: int = 16, width_factor: int = 1, block: str = "basic",
                 shortcut: str = "zero_pad", block_dropout: float = 0.0, drop_path_rate: float = 0.0,
                 attention: Callable | None = None, zero_init_residual: bool = False, **kwargs):
    """CIFAR ResNet: 3x3 stem, stages of basic or pre-activation basic blocks (stride 2 from stage 2), GAP, FC.

    ``block="basic"`` is He et al. 2016's CIFAR ResNet (stem conv-BN-ReLU, post-activation blocks);
    ``block="preact_basic"`` the pre-activation ResNet / Wide ResNet (stem conv only, BN-ReLU after the
    last stage). No conv biases (BN follows or precedes every conv), FC with bias.

    Args:
        depths: blocks per stage (ResNet-6n+2: n in every one of the three stages).
        width: channels of the 3x3 stem conv; stage i has ``width * width_factor * 2**i`` channels.
        width_factor: Wide ResNet's widening factor k (WRN-28-10: k = 10).
        block: "basic" or "preact_basic".
        shortcut: "zero_pad" (option A, parameter-free) or "projection" (option B, 1x1 conv) where the
            shape changes; pre-activation blocks always project.
        block_dropout: dropout between the two convs of a pre-activation block (Wide ResNet uses 0.3).
        drop_path_rate: stochastic depth, growing linearly to this rate over the blocks.
        attention: ``fn(x, name=...)`` on every block's residual branch, or None.
        zero_init_residual: start every block as the identity: the last BatchNorm gamma of each basic
            block's branch at 0, or the last conv kernel of each pre-activation block's (which has no
            BatchNorm after it); see :mod:`catalog.blocks.residual`.
        **kwargs: :func:`catalog.models.classifier.build_classifier` keywords.
    """
    if block not in ("basic", "preact_basic"):
        raise ValueError(f"block must be 'basic' or 'preact_basic'; got {block!r}.")
    _check_depths(depths)
    positive_int(width, "width")
    positive_int(width_factor, "width_factor")
    if shortcut not in residual.SHORTCUTS:
        raise ValueError(f"shortcut must be one of {', '.join(residual.SHORTCUTS)}; got {shortcut!r}.")
    if block == "basic" and block_dropout:
        raise ValueError(f"block_dropout applies to block='preact_basic' only; got {block_dropout!r}.")
    if not isinstance(block_dropout, (int, float)) or not 0.0 <= block_dropout < 1.0:
        raise ValueError(f"block_dropout must be a number in [0, 1); got {block_dropout!r}.")
    _check_common(drop_path_rate, attention, zero_init_residual)
    preact = block == "preact_basic"
    options = dict(dropout=block_dropout) if preact else dict(shortcut=shortcut)
    rates = iter(_drop_rates(depths, drop_path_rate))

    def backbone(x):
        with norm_defaults(epsilon=1e-5):
            x = conv_bn_act(x, width, 3, norm=not preact, use_bias=False,
                            activation=None if preact else "relu", name="stem")
            stages = [x]
            for i, depth in enumerate(depths):
                for j in range(depth):
                    x = residual.BLOCKS[block](x, width * width_factor * 2 ** i, 2 if (j == 0 and i > 0) else 1,
                                               drop_path_rate=next(rates), attention=attention,
                                               zero_init_residual=zero_init_residual,
                                               name=f"stage{i + 1}_block{j + 1}", **options)
                if preact and i == len(depths) - 1:
                    x = act(batch_norm(x, name="post_bn"), "relu", name="post_act")
                stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


for _name, (_row, _params, _macs) in VARIANTS.items():
    register_model(resnet, name=_name, family="resnet",
                   paper=("Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks, CVPR"
                          if _name.startswith("resnext") else
                          WRN if _name.startswith("wide") else HE2016_V2 if _name == "resnet200" else HE2016),
                   input_shape=(224, 224, 3), defaults=_row, reference_params=_params,
                   reference_params_source=SOURCES.get(_name, f"torchvision {_name}"), reference_macs=_macs,
                   reference_macs_source=TORCHVISION_MACS if _macs else None, min_input_size=32,
                   preprocessing="torch")

for _name, (_depths, _exact, _published) in VARIANTS_V2.items():
    register_model(resnet_v2, name=_name, family="resnet_v2", paper=HE2016_V2, input_shape=(224, 224, 3),
                   defaults=dict(depths=_depths), reference_params=_published, reference_params_rtol=0.005,
                   reference_params_source=(
                       f"torchvision {_name[:-3]} within 0.5% (issue 4); this implementation "
                       f"(keras.applications ResNetV2 layout) has exactly {_exact:,}"),
                   min_input_size=32, preprocessing="tf")

for _name, (_row, _exact, _published, _rtol) in VARIANTS_CIFAR.items():
    _paper = WRN if _name.startswith("wrn") else HE2016_V2 if _name.startswith("preact") else HE2016
    _layout = ("pre-activation basic blocks, 1x1 projections" if "block" in _row
               else "option A zero-padding shortcuts")
    _source = f"this implementation ({_layout}): exactly {_exact:,}"
    if _published:
        _source = f"{_paper.split(',')[0]}: {_published / 1e6:g}M; {_source}"
    register_model(cifar_resnet, name=_name, family="resnet_cifar", paper=_paper,
                   input_shape=(32, 32, 3), num_classes=10, defaults=_row,
                   reference_params=_published or _exact, reference_params_rtol=_rtol,
                   reference_params_source=_source, min_input_size=8, preprocessing="torch")
