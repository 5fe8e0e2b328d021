"""FPN and PANet (TF and JAX): one output per level, declared channels, reductions, counts, odd sizes."""

import keras
import numpy as np
import pytest

from catalog.blocks.fpn import fpn, panet
from helpers import assert_all_gradients, keras_round_trip, n_params, random_input

pytestmark = pytest.mark.jax

C = {2: 8, 3: 16, 4: 24, 5: 32}


def _backbone(sizes):
    return {f"C{level}": keras.Input((size, size, C[level]), name=f"c{level}") for level, size in sizes.items()}


def test_fpn_dict_levels_channels_and_count():
    feats = _backbone({2: 32, 3: 16, 4: 8, 5: 4})
    ch = 12
    out = fpn(feats, channels=ch, name="fpn")
    assert list(out) == ["P2", "P3", "P4", "P5"]
    assert [tuple(t.shape[1:]) for t in out.values()] == [(32, 32, ch), (16, 16, ch), (8, 8, ch), (4, 4, ch)]
    model = keras.Model(list(feats.values()), list(out.values()))
    assert n_params(model) == sum(c * ch + ch for c in C.values()) + 4 * (9 * ch * ch + ch)


@pytest.mark.parametrize("source", ["p5", "c5"])
def test_retinanet_p3_to_p7(source):
    feats = _backbone({3: 16, 4: 8, 5: 4})
    ch = 8
    out = fpn(list(feats.values()), channels=ch, extra_levels=2, extra_source=source, name="fpn")
    assert list(out) == ["P3", "P4", "P5", "P6", "P7"]
    assert [t.shape[1] for t in out.values()] == [16, 8, 4, 2, 1]  # reductions 8 .. 128 on a 128 input
    assert all(t.shape[-1] == ch for t in out.values())
    model = keras.Model(list(feats.values()), list(out.values()))
    base = sum(C[level] * ch + ch for level in (3, 4, 5)) + 3 * (9 * ch * ch + ch)
    p6_in = ch if source == "p5" else C[5]
    assert n_params(model) == base + (9 * p6_in * ch + ch) + (9 * ch * ch + ch)
    assert "fpn_p6_relu" in {layer.name for layer in model.layers}  # P7 reads ReLU(P6)


def test_fpn_odd_lateral_sizes_equal_nearest_resize():
    feats = _backbone({3: 13, 4: 7, 5: 4})
    out = fpn(feats, channels=4, name="fpn")
    assert [t.shape[1] for t in out.values()] == [13, 7, 4]
    model = keras.Model(list(feats.values()), list(out.values()))
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in ("fpn_lateral4", "fpn_p4_add")]
                        + [model.get_layer("fpn_lateral5").output])
    data = [random_input(tuple(t.shape[1:]), seed=i) for i, t in enumerate(model.inputs)]
    lateral4, merged4, p5 = (np.asarray(t) for t in probe(data))
    index = np.floor(np.arange(7) * 4 / 7).astype(int)  # torchvision interpolate(size=7), nearest
    np.testing.assert_allclose(merged4, lateral4 + p5[:, index][:, :, index], rtol=1e-5, atol=1e-6)


def test_panet_levels_count_and_odd_sizes():
    feats = _backbone({2: 25, 3: 13, 4: 7, 5: 4})
    ch = 8
    pyramid = fpn(feats, channels=ch, name="fpn")
    out = panet(pyramid, name="pan")
    assert list(out) == ["N2", "N3", "N4", "N5"]
    assert [tuple(t.shape[1:]) for t in out.values()] == [(25, 25, ch), (13, 13, ch), (7, 7, ch), (4, 4, ch)]
    assert out["N2"] is pyramid["P2"]
    fpn_model = keras.Model(list(feats.values()), list(pyramid.values()))
    model = keras.Model(list(feats.values()), list(out.values()))
    assert n_params(model) - n_params(fpn_model) == 3 * 2 * (9 * ch * ch + ch)


def test_errors():
    feats = _backbone({3: 16, 4: 8})
    with pytest.raises(ValueError, match="extra_source must be"):
        fpn(feats, extra_source="p4")
    with pytest.raises(ValueError, match="keys must be like"):
        fpn({"c3": feats["C3"]})
    with pytest.raises(ValueError, match="consecutive levels"):
        fpn({"C3": feats["C3"], "C5": feats["C4"]})
    with pytest.raises(ValueError, match="channels must be"):
        fpn(feats, channels=0)
    with pytest.raises(ValueError, match="must all have"):
        panet({"P3": feats["C3"], "P4": feats["C4"]})


def test_fpn_panet_gradients_and_round_trip():
    image = keras.Input((32, 32, 3))
    c3 = keras.layers.Conv2D(8, 3, strides=4, padding="same", name="c3_conv")(image)
    c4 = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c4_conv")(c3)
    c5 = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c5_conv")(c4)
    pyramid = fpn({"C3": c3, "C4": c4, "C5": c5}, channels=8, extra_levels=1, name="fpn")
    model = keras.Model(image, list(panet(pyramid, name="pan").values()))
    data = random_input((32, 32, 3))
    assert_all_gradients(model, data)
    keras_round_trip(model, data)
