"""SqueezeNet facts: PyTorch ceil-mode pooling sizes, the Fire layout, the simple bypass, the conv head."""

import keras
import numpy as np
import pytest

import catalog
from catalog.registry import count_params
from catalog.blocks.layers import max_pool_ceil
from helpers import random_input


def ceil_mode_max_pool(x, k=3, s=2):
    """PyTorch MaxPool2d(3, 2, ceil_mode=True) on one NHWC image, written directly."""
    h, w = x.shape[1:3]
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * s:i * s + k, j * s:j * s + k].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [13, 14])
def test_pool_matches_pytorch_ceil_mode_after_relu(size):
    x = keras.Input((size, size, 4))
    model = keras.Model(x, max_pool_ceil(x, "p"))
    data = np.abs(random_input((size, size, 4)))  # pools follow a ReLU
    np.testing.assert_allclose(np.asarray(model(data)), ceil_mode_max_pool(data), rtol=0, atol=0)


@pytest.mark.parametrize("name, sizes, channels", [("squeezenet1_0", [109, 54, 27, 13], [96, 256, 512, 512]),
                                                   ("squeezenet1_1", [111, 55, 27, 13], [64, 128, 256, 512])])
def test_stage_sizes_follow_torchvision(name, sizes, channels):
    # 1.0: (224 - 7) // 2 + 1 = 109, ceil-mode pools 54, 27, 13; 1.1: (224 - 3) // 2 + 1 = 111, 55, 27, 13.
    feats = catalog.create_model(name, features_only=True)
    assert [t.shape[1] for t in feats.outputs] == sizes
    assert [t.shape[-1] for t in feats.outputs] == channels


def test_bypass_and_head():
    plain = catalog.create_model("squeezenet1_1", input_shape=(64, 64, 3), num_classes=10)
    bypassed = catalog.create_model("squeezenet1_1", input_shape=(64, 64, 3), num_classes=10, bypass=True)
    adds = [layer.name for layer in bypassed.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["fire3_bypass", "fire5_bypass", "fire7_bypass", "fire9_bypass"]
    assert count_params(bypassed) == count_params(plain)
    # Head: 1x1 conv 512 -> classes with bias, no Dense layer; dropout 0.5 by default.
    assert plain.get_layer("head_conv").kernel.shape == (1, 1, 512, 10)
    assert plain.get_layer("head_drop").rate == 0.5
    assert not any(isinstance(layer, keras.layers.Dense) for layer in plain.layers)
    with pytest.raises(ValueError, match="version must be one of"):
        catalog.create_model("squeezenet1_0", version="2_0")
    with pytest.raises(ValueError, match="bypass must be"):
        catalog.create_model("squeezenet1_0", bypass="simple")
