"""Feature pyramids: FPN top-down path (Lin et al. 2017) with RetinaNet's P6/P7, and PANet's bottom-up path.

Inputs are backbone stage outputs C2..C5 (a dict ``{"C3": t, ...}`` or a list, shallow to deep); outputs
are dicts ``{"P3": t, ...}`` (``{"N3": t, ...}`` for PANet), one tensor per level, shallow to deep.
Upsampling to a lateral of odd size (e.g. 7 from 4) upsamples x2 by nearest neighbour and crops the
bottom/right row and column, which equals torchvision's ``interpolate(size=lateral)`` nearest resize;
this needs static height and width (with dynamic sizes, levels must be exact multiples of two).
Stride-2 convs pad by 1 on every side (PyTorch), so a level of size n goes to ceil(n/2).
"""

from __future__ import annotations

import re

from keras import layers

from catalog.blocks.layers import act, conv2d, crop_to, pad_symmetric


_HALVE = "pyramid level sizes must halve (rounding up) from level to level"


def _levels(features, prefix: str, first_level: int | None, argument: str) -> dict[int, object]:
    """{level: tensor} from a dict keyed ``{prefix}<level>`` or a list of consecutive levels."""
    if isinstance(features, dict):
        levels = {}
        for key, value in features.items():
            match = re.fullmatch(rf"{prefix}(\d+)", str(key))
            if not match:
                raise ValueError(f"{argument} keys must be like '{prefix}2'..'{prefix}5'; got {key!r}.")
            levels[int(match.group(1))] = value
    elif isinstance(features, (list, tuple)):
        start = 6 - len(features) if first_level is None else first_level
        levels = {start + i: value for i, value in enumerate(features)}
    else:
        raise ValueError(f"{argument} must be a dict {{'{prefix}3': tensor, ...}} or a list of tensors; "
                         f"got {type(features).__name__}.")
    keys = sorted(levels)
    if not keys or keys != list(range(keys[0], keys[0] + len(keys))):
        raise ValueError(f"{argument} must hold one or more consecutive levels; got levels {keys}.")
    return {k: levels[k] for k in keys}


def _conv3x3(x, channels: int, strides: int, name: str):
    """3x3 conv with bias and PyTorch padding 1."""
    x = pad_symmetric(x, 3, name=f"{name}_pad")
    return conv2d(channels, 3, strides, name=name)(x)


def fpn(features, channels: int = 256, extra_levels: int = 0, extra_source: str = "p5",
        first_level: int | None = None, *, name: str = "fpn"):
    """Feature Pyramid Network top-down path (Lin et al. 2017, "Feature Pyramid Networks for Object
    Detection", CVPR), with RetinaNet's extra levels (Lin et al. 2017, "Focal Loss for Dense Object
    Detection", ICCV).

    Each C_l gets a 1x1 lateral conv (with bias); from the top down, P_l = lateral_l + nearest-upsample-x2
    (P_{l+1}); every merged map is smoothed by a 3x3 conv (with bias). Extra levels: P6 = stride-2 3x3 conv
    of P5 (``extra_source="p5"``, torchvision's LastLevelP6P7) or of C5 (``"c5"``, the RetinaNet paper);
    P7 = stride-2 3x3 conv of ReLU(P6). Parameters: sum_l (C_l*ch + ch) + L*(9*ch*ch + ch) + extras
    (9*C_src*ch + ch for P6, 9*ch*ch + ch for each further level).

    Args:
        features: backbone outputs, a dict ``{"C2": t, ..., "C5": t}`` or a list shallow to deep.
        channels: channels of every pyramid level.
        extra_levels: stride-2 levels added above the top one (2 for RetinaNet's P6 and P7).
        extra_source: "p5" (the top pyramid output) or "c5" (the top backbone input) feeds P6.
        first_level: level of the first entry of a list (default: the list ends at level 5).
        name: layer name prefix.

    Returns:
        ``{"P<l>": tensor}``, shallow to deep.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer; got {channels!r}.")
    if isinstance(extra_levels, bool) or not isinstance(extra_levels, int) or extra_levels < 0:
        raise ValueError(f"extra_levels must be a non-negative integer; got {extra_levels!r}.")
    if extra_source not in ("p5", "c5"):
        raise ValueError(f"extra_source must be 'p5' or 'c5'; got {extra_source!r}.")
    inputs = _levels(features, "C", first_level, "features")
    levels = list(inputs)
    merged = {}
    for level in reversed(levels):
        lateral = conv2d(channels, 1, name=f"{name}_lateral{level}")(inputs[level])
        if level + 1 in merged:
            up = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_p{level + 1}_up")(merged[level + 1])
            up = crop_to(up, lateral, name=f"{name}_p{level + 1}_crop", mismatch=_HALVE)
            lateral = layers.Add(name=f"{name}_p{level}_add")([lateral, up])
        merged[level] = lateral
    outputs = {f"P{level}": _conv3x3(merged[level], channels, 1, f"{name}_output{level}") for level in levels}
    top = levels[-1]
    x = outputs[f"P{top}"] if extra_source == "p5" else inputs[top]
    for level in range(top + 1, top + 1 + extra_levels):
        if level > top + 1:
            x = act(x, "relu", name=f"{name}_p{level - 1}_relu")
        x = _conv3x3(x, channels, 2, f"{name}_p{level}")
        outputs[f"P{level}"] = x
    return outputs


def panet(pyramid, channels: int | None = None, *, name: str = "panet"):
    """PANet bottom-up path augmentation (Liu et al. 2018, "Path Aggregation Network for Instance
    Segmentation", CVPR) on an FPN output.

    N_first = P_first; N_{l+1} = ReLU(3x3 conv(ReLU(stride-2 3x3 conv(N_l)) + P_{l+1})), convs with bias.
    Parameters: 2*(9*ch*ch + ch) per added level.

    Args:
        pyramid: ``{"P2": t, ...}`` (e.g. from :func:`fpn`) or a list shallow to deep.
        channels: channels of the path (default: the pyramid's, which every level must have).
        name: layer name prefix.

    Returns:
        ``{"N<l>": tensor}``, shallow to deep.
    """
    levels = _levels(pyramid, "P", None, "pyramid")
    widths = {int(t.shape[-1]) for t in levels.values()}
    channels = channels if channels is not None else max(widths)
    if widths != {channels}:
        raise ValueError(f"pyramid levels must all have {channels} channels (channels=); got {sorted(widths)}.")
    keys = list(levels)
    n = levels[keys[0]]
    outputs = {f"N{keys[0]}": n}
    for level in keys[1:]:
        down = act(_conv3x3(n, channels, 2, f"{name}_n{level}_down"), "relu", name=f"{name}_n{level}_down_relu")
        down = crop_to(down, levels[level], name=f"{name}_n{level}_crop", mismatch=_HALVE)
        n = layers.Add(name=f"{name}_n{level}_add")([down, levels[level]])
        n = act(_conv3x3(n, channels, 1, f"{name}_n{level}_conv"), "relu", name=f"{name}_n{level}_relu")
        outputs[f"N{level}"] = n
    return outputs
