"""GoogLeNet: the paper's 5x5 branches, the closed-form parameter count, auxiliary heads."""

import numpy as np
import pytest

import catalog
from catalog.models.googlenet import MODULES
from catalog.registry import count_params
from helpers import random_input


def conv(cin, cout, k):
    return k * k * cin * cout + 2 * cout  # no bias; BatchNorm gamma and beta


def test_closed_form_parameter_count():
    total, cin = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3), 192
    five_by_five = 0
    for module in MODULES:
        if module == "pool":
            continue
        c1, c3r, c3, c5r, c5, pp = module[1]
        total += (conv(cin, c1, 1) + conv(cin, c3r, 1) + conv(c3r, c3, 3) + conv(cin, c5r, 1)
                  + conv(c5r, c5, 5) + conv(cin, pp, 1))
        five_by_five += c5r * c5
        cin = c1 + c3 + c5 + pp
    total += cin * 1000 + 1000
    assert cin == 1024
    assert total == 7_005_832
    assert total - 16 * five_by_five == 6_624_904  # torchvision's count with 3x3 in that branch
    model = catalog.create_model("googlenet")
    assert count_params(model) == total
    assert model.get_layer("inception5b_branch2_conv2_conv").kernel_size == (5, 5)
    assert model.get_layer("conv1_bn").epsilon == 1e-3


def test_aux_heads_behind_a_flag():
    plain = catalog.create_model("googlenet")
    assert len(plain.outputs) == 1 and not any(layer.name.startswith("aux") for layer in plain.layers)
    model = catalog.create_model("googlenet", aux_logits=True, num_classes=10)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 10)] * 3

    def aux(cin):  # 5x5/3 avg pool -> 1x1 conv (128) + BN -> FC 4*4*128 -> 1024 -> FC 1024 -> 10
        return cin * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 10 + 10

    assert count_params(model) - count_params(catalog.create_model("googlenet", num_classes=10)) == (
        aux(512) + aux(528))  # on inception4a (512 channels) and inception4d (528)
    assert model.get_layer("aux1_drop").rate == 0.7
    out = model(random_input((224, 224, 3), batch=1), training=False)
    for o in out:
        np.testing.assert_allclose(np.asarray(o).sum(axis=1), 1.0, rtol=1e-4)


def test_aux_logits_errors():
    with pytest.raises(ValueError, match="aux_logits=True needs include_top=True"):
        catalog.create_model("googlenet", aux_logits=True, include_top=False)
    with pytest.raises(ValueError, match="aux_logits must be True or False"):
        catalog.create_model("googlenet", aux_logits="yes")


def test_features_at_32x32():
    feats = catalog.create_model("googlenet", features_only=True, input_shape=(32, 32, 3))
    assert [int(t.shape[-1]) for t in feats.outputs] == [64, 192, 480, 832, 1024]
    assert [t.shape[1] for t in feats.outputs] == [16, 8, 4, 2, 1]
