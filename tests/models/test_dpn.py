"""DPN family facts: dual path bookkeeping (closed-form channels and counts), stems, BatchNorm settings."""

import keras
import pytest

import catalog
from catalog.models.dpn import dual_path_block
from helpers import n_params


@pytest.mark.parametrize("project, strides", [(True, 2), (False, 1)])
def test_dual_path_block_count_and_paths(project, strides):
    c_in, r, bw, inc, g = 96, 64, 64, 16, 32
    x = keras.Input((8, 8, c_in))
    resid = keras.Input((8, 8, bw))
    dense = keras.Input((8, 8, c_in - bw))
    new_resid, new_dense = dual_path_block(x, resid, dense, r, bw, inc, g, strides, project, name="b")
    model = keras.Model([x, resid, dense], [new_resid, new_dense])
    expected = (2 * c_in + c_in * r) + (2 * r + 9 * (r // g) * r) + (2 * r + r * (bw + inc))
    if project:  # BN-ReLU-1x1 conv to bw + 2 * inc
        expected += 2 * c_in + c_in * (bw + 2 * inc)
    assert n_params(model) == expected
    size = 8 // strides
    assert new_resid.shape == (None, size, size, bw)
    assert new_dense.shape == (None, size, size, (3 if project else 1) * inc + (0 if project else c_in - bw))


@pytest.mark.parametrize("name, k_sec, channels", [
    ("dpn68", (3, 4, 12, 3), (10, 144, 320, 704, 832)),
    ("dpn92", (1, 1, 2, 1), (64, 304, 608, 1120, 2432)),
])
def test_stage_channels_follow_the_dense_growth(name, k_sec, channels):
    """Stage output: bw + (blocks + 2) * inc channels (the projection starts the dense path at 2 * inc)."""
    feats = catalog.create_model(name, features_only=True, input_shape=(64, 64, 3), k_sec=k_sec)
    assert tuple(t.shape[-1] for t in feats.outputs) == channels
    assert tuple(64 // t.shape[1] for t in feats.outputs) == (2, 4, 8, 16, 32)


def test_stems_and_norm_settings():
    small = catalog.create_model("dpn68", k_sec=(1, 1, 1, 1), input_shape=(32, 32, 3))
    big = catalog.create_model("dpn92", k_sec=(1, 1, 1, 1), input_shape=(32, 32, 3))
    assert small.get_layer("stem_conv").kernel.shape == (3, 3, 3, 10)
    assert big.get_layer("stem_conv").kernel.shape == (7, 7, 3, 64)
    assert big.get_layer("stage2_block1_conv2_conv").groups == 32
    assert {layer.epsilon for layer in big.layers if isinstance(layer, keras.layers.BatchNormalization)} == {1e-3}
    assert big.get_layer("head_fc").kernel.shape == (2048 + 3 * 128, 1000)


@pytest.mark.parametrize("kwargs, match", [(dict(k_sec=(3, 4, 12)), "k_sec must be"),
                                           (dict(inc_sec=(16, 0, 32, 64)), "inc_sec must be"),
                                           (dict(groups=48), "groups must divide")])
def test_bad_knobs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("dpn68", **kwargs)
