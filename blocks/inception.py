"""Inception modules: parallel branches of convolutions and pooling, concatenated over channels.

One mechanism, :func:`inception_module`, applies a table of branches; the named modules below are the
tables of their papers. A branch is a sequence of ops, each one of

- ``(filters, kernel)`` or ``(filters, kernel, strides, padding)``: ``conv_bn_act`` (ReLU);
- ``("max" | "avg", pool_size, strides, padding)``: max or average pooling; ``padding`` is "same",
  "valid" or "symmetric" (zero padding of ``pool_size // 2`` on every side, then a valid pool: an average
  then counts the zeros, as Caffe and PyTorch's ``count_include_pad=True`` do);
- ``("fork", [branch, branch, ...])``: the sub-branches applied to the same tensor and concatenated
  (Inception-v3's expanded filter bank, Figure 7 of Szegedy et al. 2016), only as the last op.

Kernels ``(1, n)`` / ``(n, 1)`` are (height, width). Average pooling with ``"same"`` padding averages
over the valid pixels only (TF-slim and timm's ``count_include_pad=False``).
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import act, conv_bn_act

_POOLS = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}


def _branch(x, ops, name: str):
    for j, op in enumerate(ops, 1):
        if op[0] in _POOLS:
            kind, size, strides, padding = op
            if padding == "symmetric":
                x = layers.ZeroPadding2D(size // 2, name=f"{name}_pad")(x)
                padding = "valid"
            x = _POOLS[kind](size, strides=strides, padding=padding, name=f"{name}_pool")(x)
        elif op[0] == "fork":
            if j != len(ops):
                raise ValueError(f"a 'fork' must be the last op of a branch; got {ops!r} in {name}.")
            subs = [_branch(x, sub, f"{name}{chr(ord('a') + k)}") for k, sub in enumerate(op[1])]
            x = layers.Concatenate(name=f"{name}_concat")(subs)
        else:
            filters, kernel, *rest = op
            strides = rest[0] if rest else 1
            padding = rest[1] if len(rest) > 1 else "same"
            x = conv_bn_act(x, filters, kernel, strides, padding=padding, name=f"{name}_conv{j}")
    return x


def inception_module(x, branches, *, name: str):
    """Apply each branch of ``branches`` (see the module docstring) to ``x`` and concatenate them.

    Args:
        x: input tensor (NHWC).
        branches: a sequence of branches, each a sequence of ops.
        name: layer name prefix; branch ``i`` is named ``{name}_branch{i}``.
    """
    outs = [_branch(x, ops, f"{name}_branch{i}") for i, ops in enumerate(branches)]
    return layers.Concatenate(name=f"{name}_concat")(outs)


def inception_v1(x, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int, *,
                 name: str):
    """GoogLeNet's Inception module (Szegedy et al. 2015, "Going deeper with convolutions", Figure 2b).

    1x1 (c1) | 1x1 (c3_reduce) -> 3x3 (c3) | 1x1 (c5_reduce) -> 5x5 (c5) | 3x3/1 max pool -> 1x1
    (pool_proj); output channels c1 + c3 + c5 + pool_proj at the input resolution.
    """
    return inception_module(x, [[(c1, 1)], [(c3_reduce, 1), (c3, 3)], [(c5_reduce, 1), (c5, 5)],
                                [("max", 3, 1, "same"), (pool_proj, 1)]], name=name)


def inception_bn(x, c1: int, c3_reduce: int, c3: int, d3_reduce: int, d3: int, pool: str = "avg",
                 pool_proj: int = 0, *, strides: int = 1, name: str):
    """BN-Inception's module (Ioffe & Szegedy 2015, "Batch Normalization", Figure 5): GoogLeNet's module
    with the 5x5 branch replaced by two 3x3 convs, the columns of the paper's table as arguments.

    1x1 (c1) | 1x1 (c3_reduce) -> 3x3 (c3) | 1x1 (d3_reduce) -> 3x3 (d3) -> 3x3 (d3) | 3x3 ``pool`` ->
    1x1 (pool_proj), concatenated in that order. A branch with 0 filters (c1, pool_proj) is left out; with
    ``pool_proj=0`` the pooled input passes through. ``strides=2`` makes the pass-through (grid reduction)
    modules 3c and 4e: the last conv of both 3x3 branches and the pool stride 2, with no 1x1 branch.
    The stride-1 average pool counts its zero padding (Caffe's AVE pooling, kept by the reference port);
    stride-2 convs pad one pixel on every side, as Caffe's ``pad: 1``. Output channels: c1 + c3 + d3 +
    (pool_proj or the input's channels).

    Args:
        x: input tensor (NHWC).
        c1, c3_reduce, c3, d3_reduce, d3: filters of the table's "#1x1", "#3x3 reduce", "#3x3",
            "double #3x3 reduce" and "double #3x3" columns.
        pool: "avg" or "max", the table's "Pool" column.
        pool_proj: filters of the 1x1 conv after the pool ("+ proj"), 0 for a pass-through.
        strides: 1, or 2 for a grid reduction (then c1 must be 0).
        name: layer name prefix.
    """
    if pool not in _POOLS:
        raise ValueError(f"pool must be 'avg' or 'max'; got {pool!r}.")
    if strides not in (1, 2):
        raise ValueError(f"strides must be 1 or 2; got {strides!r}.")
    if strides == 2 and c1:
        raise ValueError(f"a stride-2 module has no 1x1 branch: c1 must be 0; got {c1!r}.")
    reduce_pad = "symmetric" if strides == 2 else "same"
    branches = [[(c1, 1)]] if c1 else []
    branches += [[(c3_reduce, 1), (c3, 3, strides, reduce_pad)],
                 [(d3_reduce, 1), (d3, 3), (d3, 3, strides, reduce_pad)]]
    pool_op = (pool, 3, strides, "symmetric" if pool == "avg" and strides == 1 else "same")
    branches.append([pool_op, (pool_proj, 1)] if pool_proj else [pool_op])
    return inception_module(x, branches, name=name)


def inception_v3_a(x, pool_proj: int = 32, *, c1: int = 64, c5_reduce: int = 48, c5: int = 64,
                   c3_reduce: int = 64, c3: int = 96, factorized: bool = False, name: str):
    """Inception-v3 module A (Szegedy et al. 2016, "Rethinking the Inception Architecture", Figure 5).

    1x1 (c1) | 1x1 (c5_reduce) -> 5x5 (c5) | 1x1 (c3_reduce) -> 3x3 (c3) -> 3x3 (c3) | 3x3 avg pool ->
    1x1 (pool_proj). keras.applications' "mixed0-2" keep the 5x5 branch beside the double-3x3 one;
    ``factorized=True`` replaces that 5x5 by two 3x3 (c5 each), the paper's factorization.
    The defaults are InceptionV3's mixed0; Inception-ResNet-v2's mixed_5b is ``c1=96, pool_proj=64``.
    """
    five = [(c5, 3), (c5, 3)] if factorized else [(c5, 5)]
    return inception_module(x, [[(c1, 1)], [(c5_reduce, 1), *five], [(c3_reduce, 1), (c3, 3), (c3, 3)],
                                [("avg", 3, 1, "same"), (pool_proj, 1)]], name=name)


def inception_v3_b(x, *, name: str):
    """Inception-v3 grid reduction 35 -> 17 (Szegedy et al. 2016, Figure 10; keras.applications mixed3).

    3x3/2 (384) | 1x1 (64) -> 3x3 (96) -> 3x3/2 (96) | 3x3/2 max pool, all "valid": C + 480 channels.
    """
    return inception_module(x, [[(384, 3, 2, "valid")], [(64, 1), (96, 3), (96, 3, 2, "valid")],
                                [("max", 3, 2, "valid")]], name=name)


def inception_v3_c(x, c7: int = 128, *, n: int = 7, name: str):
    """Inception-v3 module with n x n factorized into 1xn + nx1 (Szegedy et al. 2016, Figure 6).

    1x1 (192) | 1x1 (c7) -> 1xn (c7) -> nx1 (192) | 1x1 (c7) -> nx1 -> 1xn -> nx1 (c7) -> 1xn (192) |
    3x3 avg pool -> 1x1 (192): 768 channels (keras.applications mixed4-7 with c7 = 128, 160, 160, 192).
    """
    return inception_module(x, [[(192, 1)], [(c7, 1), (c7, (1, n)), (192, (n, 1))],
                                [(c7, 1), (c7, (n, 1)), (c7, (1, n)), (c7, (n, 1)), (192, (1, n))],
                                [("avg", 3, 1, "same"), (192, 1)]], name=name)


def inception_v3_d(x, *, name: str):
    """Inception-v3 grid reduction 17 -> 8 (keras.applications mixed8).

    1x1 (192) -> 3x3/2 (320) | 1x1 (192) -> 1x7 -> 7x1 (192) -> 3x3/2 (192) | 3x3/2 max pool: C + 512.
    """
    return inception_module(x, [[(192, 1), (320, 3, 2, "valid")],
                                [(192, 1), (192, (1, 7)), (192, (7, 1)), (192, 3, 2, "valid")],
                                [("max", 3, 2, "valid")]], name=name)


def inception_v3_e(x, *, name: str):
    """Inception-v3 expanded filter bank (Szegedy et al. 2016, Figure 7; keras.applications mixed9-10).

    1x1 (320) | 1x1 (384) -> [1x3 (384), 3x1 (384)] | 1x1 (448) -> 3x3 (384) -> [1x3 (384), 3x1 (384)]
    | 3x3 avg pool -> 1x1 (192): 2048 channels.
    """
    fork = ("fork", [[(384, (1, 3))], [(384, (3, 1))]])
    return inception_module(x, [[(320, 1)], [(384, 1), fork], [(448, 1), (384, 3), fork],
                                [("avg", 3, 1, "same"), (192, 1)]], name=name)


def inception_v4_a(x, *, name: str):
    """Inception-v4 module A (Szegedy et al. 2017, "Inception-v4, Inception-ResNet ...", Figure 4).

    1x1 (96) | 1x1 (64) -> 3x3 (96) | 1x1 (64) -> 3x3 (96) -> 3x3 (96) | avg pool -> 1x1 (96): 384.
    """
    return inception_module(x, [[(96, 1)], [(64, 1), (96, 3)], [(64, 1), (96, 3), (96, 3)],
                                [("avg", 3, 1, "same"), (96, 1)]], name=name)


def inception_v4_b(x, *, name: str):
    """Inception-v4 module B (Figure 5): 1x7/7x1 factorized 7x7 branches, 1024 channels.

    1x1 (384) | 1x1 (192) -> 1x7 (224) -> 7x1 (256) | 1x1 (192) -> 7x1 (192) -> 1x7 (224) -> 7x1 (224)
    -> 1x7 (256) | avg pool -> 1x1 (128).
    """
    return inception_module(x, [[(384, 1)], [(192, 1), (224, (1, 7)), (256, (7, 1))],
                                [(192, 1), (192, (7, 1)), (224, (1, 7)), (224, (7, 1)), (256, (1, 7))],
                                [("avg", 3, 1, "same"), (128, 1)]], name=name)


def inception_v4_c(x, *, name: str):
    """Inception-v4 module C (Figure 6): expanded 1x3/3x1 filter banks, 1536 channels.

    1x1 (256) | 1x1 (384) -> [1x3 (256), 3x1 (256)] | 1x1 (384) -> 3x1 (448) -> 1x3 (512) ->
    [1x3 (256), 3x1 (256)] | avg pool -> 1x1 (256).
    """
    fork = ("fork", [[(256, (1, 3))], [(256, (3, 1))]])
    return inception_module(x, [[(256, 1)], [(384, 1), fork], [(384, 1), (448, (3, 1)), (512, (1, 3)), fork],
                                [("avg", 3, 1, "same"), (256, 1)]], name=name)


def reduction_a(x, k: int = 192, l: int = 224, m: int = 256, n: int = 384, *, name: str):
    """Reduction-A 35 -> 17 of Szegedy et al. 2017 (Figure 7; Table 1 gives k, l, m, n per network).

    3x3/2 (n) | 1x1 (k) -> 3x3 (l) -> 3x3/2 (m) | 3x3/2 max pool, "valid": C + n + m channels.
    Inception-v4: (192, 224, 256, 384); Inception-ResNet-v2: (256, 256, 384, 384).
    """
    return inception_module(x, [[(n, 3, 2, "valid")], [(k, 1), (l, 3), (m, 3, 2, "valid")],
                                [("max", 3, 2, "valid")]], name=name)


def inception_v4_reduction_b(x, *, name: str):
    """Inception-v4 Reduction-B 17 -> 8 (Figure 8): C + 512 channels.

    1x1 (192) -> 3x3/2 (192) | 1x1 (256) -> 1x7 (256) -> 7x1 (320) -> 3x3/2 (320) | 3x3/2 max pool.
    """
    return inception_module(x, [[(192, 1), (192, 3, 2, "valid")],
                                [(256, 1), (256, (1, 7)), (320, (7, 1)), (320, 3, 2, "valid")],
                                [("max", 3, 2, "valid")]], name=name)


def inception_resnet_reduction_b(x, *, name: str):
    """Inception-ResNet-v2 Reduction-B 17 -> 8 (Figure 18; keras.applications mixed_7a): C + 992.

    1x1 (256) -> 3x3/2 (384) | 1x1 (256) -> 3x3/2 (288) | 1x1 (256) -> 3x3 (288) -> 3x3/2 (320) |
    3x3/2 max pool.
    """
    return inception_module(x, [[(256, 1), (384, 3, 2, "valid")], [(256, 1), (288, 3, 2, "valid")],
                                [(256, 1), (288, 3), (320, 3, 2, "valid")], [("max", 3, 2, "valid")]],
                            name=name)


# Inception-ResNet-v2 residual branches (Szegedy et al. 2017, Figures 16, 17, 19).
_RESNET_BRANCHES = {
    "a": [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)]],
    "b": [[(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))]],
    "c": [[(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))]],
}


def inception_resnet(x, block_type: str, scale: float, *, activation: str | None = "relu", name: str):
    """Inception-ResNet-v2 block A (35x35), B (17x17) or C (8x8) with residual scaling (Szegedy et al. 2017).

    x + scale * up(concat(branches)), then ``activation``; ``up`` is a 1x1 conv back to C channels with a
    bias and no BatchNorm. Branches: A 1x1 (32) | 1x1 (32) -> 3x3 (32) | 1x1 (32) -> 3x3 (48) -> 3x3 (64);
    B 1x1 (192) | 1x1 (128) -> 1x7 (160) -> 7x1 (192); C 1x1 (192) | 1x1 (192) -> 1x3 (224) -> 3x1 (256).
    The paper scales by 0.1-0.3 (keras.applications: A 0.17, B 0.1, C 0.2; the last C block 1.0, linear).

    Args:
        x: input tensor (NHWC); the output has its shape.
        block_type: "a", "b" or "c".
        scale: the residual scaling factor.
        activation: activation after the addition (None for the network's last block).
        name: layer name prefix.
    """
    if block_type not in _RESNET_BRANCHES:
        raise ValueError(f"block_type must be one of 'a', 'b', 'c'; got {block_type!r}.")
    mixed = inception_module(x, _RESNET_BRANCHES[block_type], name=name)
    up = conv_bn_act(mixed, int(x.shape[-1]), 1, norm=False, activation=None, name=f"{name}_up")
    up = layers.Rescaling(scale, name=f"{name}_scale")(up)
    x = layers.Add(name=f"{name}_add")([x, up])
    return act(x, activation, name=f"{name}_act")
