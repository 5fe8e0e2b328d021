"""Dual Path Networks (Chen et al. 2017, "Dual Path Networks", NeurIPS).

Every block reads the concatenation of a residual path and a densely connected path and feeds both:
BN-ReLU-1x1 conv (r) -> BN-ReLU-grouped 3x3 conv (r, G groups, stride) -> BN-ReLU-1x1 conv to
(bw + inc); the first bw channels add to the residual path, the last inc are appended to the dense path.
The first block of a stage projects its input (BN-ReLU-1x1 conv, stride) to a new residual path (bw) and
a new dense path (2*inc). Stem: conv-BN-ReLU and 3x3/2 max-pool; the end: BN-ReLU on the concatenated
paths, global pooling, classifier (a 1x1 conv with bias in the reference, here the equivalent Dense).
Layout and counts as timm's ``dpn68``/``dpn92`` (Cadene's pretrainedmodels port of the authors' MXNet
models; BatchNorm epsilon 1e-3): 12,611,602 and 37,668,392 trainable parameters. The reference's split of
one 1x1 conv's output channels is written as two 1x1 convs on the same input (identical function and
weights, no slicing layer).
"""

from keras import layers

from catalog.blocks.layers import act, batch_norm, conv2d, conv_bn_act, norm_defaults, pad_symmetric
from catalog.models.classifier import build_classifier
from catalog.registry import register_model

VARIANTS = {
    "dpn68": dict(small=True, init_features=10, k_r=128, groups=32, k_sec=(3, 4, 12, 3),
                  inc_sec=(16, 32, 32, 64)),
    "dpn92": dict(small=False, init_features=64, k_r=96, groups=32, k_sec=(3, 4, 20, 3),
                  inc_sec=(16, 32, 24, 128)),
}
REFERENCE = {"dpn68": (12_611_602, 2.3e9), "dpn92": (37_668_392, 6.5e9)}


def _bn_act_conv(x, filters, kernel_size=1, strides=1, groups=1, *, name):
    """Pre-activation unit of DPN: BatchNorm -> ReLU -> conv (no bias), PyTorch padding."""
    x = act(batch_norm(x, name=f"{name}_bn"), "relu", name=f"{name}_act")
    x = pad_symmetric(x, kernel_size, name=f"{name}_pad")
    return conv2d(filters, kernel_size, strides, groups=groups, use_bias=False, name=f"{name}_conv")(x)


def _preact_convs(x, splits, strides=1, *, name):
    """BN -> ReLU -> several 1x1 convs of the same activation (one reference conv, split by channels)."""
    x = act(batch_norm(x, name=f"{name}_bn"), "relu", name=f"{name}_act")
    return [conv2d(c, 1, strides, use_bias=False, name=f"{name}_{part}_conv")(x)
            for part, c in splits]


def dual_path_block(x_in, resid, dense, r: int, bw: int, inc: int, groups: int, strides: int = 1,
                    project: bool = False, *, name: str):
    """One dual path block; returns ``(resid, dense)``.

    Args:
        x_in: the concatenated input (residual and dense paths).
        resid, dense: the two paths (ignored when ``project``).
        r: width of the 1x1 and grouped 3x3 convs.
        bw: width of the residual path.
        inc: channels the block adds to the dense path.
        groups: groups of the 3x3 conv.
        strides: stride of the 3x3 conv and the projection.
        project: project the input to new paths (first block of a stage).
        name: layer name prefix.
    """
    if project:
        resid, dense = _preact_convs(x_in, (("resid", bw), ("dense", 2 * inc)), strides, name=f"{name}_proj")
    y = _bn_act_conv(x_in, r, 1, name=f"{name}_conv1")
    y = _bn_act_conv(y, r, 3, strides, groups=groups, name=f"{name}_conv2")
    out_resid, out_dense = _preact_convs(y, (("resid", bw), ("dense", inc)), name=f"{name}_conv3")
    resid = layers.Add(name=f"{name}_resid_add")([resid, out_resid])
    dense = layers.Concatenate(name=f"{name}_dense_concat")([dense, out_dense])
    return resid, dense


def dpn(small: bool = False, init_features: int = 64, k_r: int = 96, groups: int = 32,
        k_sec=(3, 4, 20, 3), inc_sec=(16, 32, 24, 128), **kwargs):
    """Dual Path Network.

    Args:
        small: DPN-68 layout: 3x3 stem conv and residual widths 64/128/256/512 (else 7x7 and 4x those).
        init_features: channels of the stem conv.
        k_r: width of the first stage's bottleneck convs (scaled with the residual width per stage).
        groups: groups of the 3x3 convs.
        k_sec: blocks per stage.
        inc_sec: dense-path growth per block, per stage.
        **kwargs: the classification keywords of :func:`catalog.models.classifier.build_classifier`.
    """
    if len(k_sec) != 4 or any(not isinstance(k, int) or k < 1 for k in k_sec):
        raise ValueError(f"k_sec must be four positive integers; got {k_sec!r}.")
    if len(inc_sec) != 4 or any(not isinstance(k, int) or k < 1 for k in inc_sec):
        raise ValueError(f"inc_sec must be four positive integers; got {inc_sec!r}.")
    bw_factor = 1 if small else 4
    widths = [(64 * 2 ** s * bw_factor, k_r * 2 ** s) for s in range(4)]  # (bw, r = k_r * bw / (64 bw_factor))
    if any(r % groups for _, r in widths):
        raise ValueError(f"groups must divide every bottleneck width {[r for _, r in widths]}; got {groups!r}.")

    def backbone(x):
        with norm_defaults(epsilon=1e-3):
            x = conv_bn_act(x, init_features, 3 if small else 7, 2, padding="symmetric", name="stem")
            stages = [x]
            x = layers.MaxPooling2D(3, 2, name="stem_pool")(pad_symmetric(x, 3, name="stem_pool_pad"))
            resid = dense = None
            for s, ((bw, r), depth, inc) in enumerate(zip(widths, k_sec, inc_sec)):
                for b in range(depth):
                    prefix = f"stage{s + 1}_block{b + 1}"
                    if b:
                        x = layers.Concatenate(name=f"{prefix}_input")([resid, dense])
                    resid, dense = dual_path_block(x, resid, dense, r, bw, inc, groups,
                                                   strides=2 if s and not b else 1, project=not b,
                                                   name=prefix)
                x = layers.Concatenate(name=f"stage{s + 1}_features")([resid, dense])
                if s == 3:
                    x = act(batch_norm(x, name="final_bn"), "relu", name="final_act")
                stages.append(x)
        return x, stages

    return build_classifier(backbone, **kwargs)


for _name, _row in VARIANTS.items():
    register_model(
        dpn, name=_name, family="dpn",
        paper="Chen et al. 2017, Dual Path Networks, NeurIPS", input_shape=(224, 224, 3), defaults=_row,
        reference_params=REFERENCE[_name][0], reference_params_rtol=0.0,
        reference_params_source=f"timm {_name} (Cadene pretrainedmodels layout), matched exactly",
        reference_macs=REFERENCE[_name][1],
        reference_macs_source=f"published {REFERENCE[_name][1] / 1e9:.1f} GFLOPs (= MACs) of DPN-{_name[3:]} "
                              "(Chen et al. 2017; timm)",
        min_input_size=32, preprocessing="torch")
