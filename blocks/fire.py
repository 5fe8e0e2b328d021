"""SqueezeNet Fire module (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size").

squeeze 1x1 conv (s filters) -> ReLU -> [expand 1x1 conv (e1) -> ReLU, expand 3x3 conv (e3) -> ReLU]
-> concat (e1 + e3 channels). Convolutions carry biases and no BatchNorm, as in the paper. The simple
bypass adds the module's input to its output (the paper's Section 6; possible only when C_in = e1 + e3).
Parameters: C_in*s + s + s*e1 + e1 + 9*s*e3 + e3.
"""

from __future__ import annotations

from keras import layers

from catalog.blocks.layers import conv_bn_act


def fire(x, squeeze: int, expand1x1: int, expand3x3: int, bypass: bool = False, *, name: str):
    """Fire module: squeeze 1x1, then expand 1x1 and 3x3 in parallel, concatenated.

    Args:
        x: input tensor (NHWC).
        squeeze: filters of the squeeze 1x1 conv (s_1x1).
        expand1x1: filters of the expand 1x1 conv (e_1x1).
        expand3x3: filters of the expand 3x3 conv (e_3x3).
        bypass: add the input to the output (simple bypass); needs C_in == e1 + e3.
        name: layer name prefix (``{name}_squeeze_conv``, ``{name}_expand1x1_conv``, ``{name}_concat``...).
    """
    for arg, value in (("squeeze", squeeze), ("expand1x1", expand1x1), ("expand3x3", expand3x3)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"fire {arg} must be a positive integer; got {value!r}.")
    channels = int(x.shape[-1])
    if bypass and channels != expand1x1 + expand3x3:
        raise ValueError(f"fire bypass needs input channels ({channels}) equal to expand1x1 + expand3x3 "
                         f"({expand1x1 + expand3x3}); use bypass=False there.")
    s = conv_bn_act(x, squeeze, 1, norm=False, name=f"{name}_squeeze")
    e1 = conv_bn_act(s, expand1x1, 1, norm=False, name=f"{name}_expand1x1")
    e3 = conv_bn_act(s, expand3x3, 3, norm=False, padding="same", name=f"{name}_expand3x3")
    y = layers.Concatenate(axis=-1, name=f"{name}_concat")([e1, e3])
    if bypass:
        y = layers.Add(name=f"{name}_bypass")([x, y])
    return y
