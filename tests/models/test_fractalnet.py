"""FractalNet: closed-form counts (this implementation and the authors' Caffe layout), depth B * 2^(C-1),
drop-path only in training, knobs and their errors.

The full-size reference count of fractalnet_cifar is checked in tests/test_models.py.
"""

import functools

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks.fractal import FractalDropPathSampler, FractalJoin
from catalog.models.fractalnet import CAFFE_PARAMS, PARAMS
from catalog.registry import count_params
from helpers import gradients, keras_round_trip, random_input

PAPER_FILTERS = (64, 128, 256, 512, 512)


def closed_form(columns, filters, classes=10, caffe=False):
    """Each block: C first units (C_in -> f) and 2^C - 1 - C units f -> f of 9 C_in f weights plus 2f
    (BN gamma, beta) here, or f (a conv bias; Caffe's BatchNorm has no affine) in the authors' model; FC."""
    total, cin = 0, 3
    for f in filters:
        per_channel = f if caffe else 2 * f
        total += columns * (9 * cin * f + per_channel) + (2 ** columns - 1 - columns) * (9 * f * f + per_channel)
        cin = f
    return total + cin * classes + classes


def test_registered_counts_are_the_closed_form():
    assert closed_form(4, PAPER_FILTERS) == PARAMS["fractalnet_cifar"] == 76_106_634
    assert closed_form(4, PAPER_FILTERS, caffe=True) == CAFFE_PARAMS["fractalnet_cifar"] == 76_084_554
    # the 20-layer (C=3) net: 33.7M, not the paper's 38.6M, here and in the authors' layout
    assert closed_form(3, PAPER_FILTERS) == PARAMS["fractalnet20_cifar"] == 33_724_618
    assert closed_form(3, PAPER_FILTERS, caffe=True) == CAFFE_PARAMS["fractalnet20_cifar"] == 33_714_314


def _conv_depth(model):
    @functools.lru_cache(maxsize=None)
    def depth(layer):
        parents = [node.operation for node in layer._inbound_nodes[0].parent_nodes]
        return int(isinstance(layer, keras.layers.Conv2D)) + max((depth(p) for p in parents), default=0)

    return depth(model.layers[-1])


@pytest.mark.parametrize("columns, filters", [(3, (8, 16)), (4, (4, 8))])
def test_small_nets_count_and_depth(columns, filters):
    model = catalog.create_model("fractalnet_cifar", columns=columns, blocks=len(filters), filters=filters,
                                 input_shape=(16, 16, 3))
    assert count_params(model) == closed_form(columns, filters)
    assert _conv_depth(model) == len(filters) * 2 ** (columns - 1)  # B * 2^(C-1) convs on the longest path
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == len(filters) * (2 ** columns - 1)
    assert model.get_layer(f"block1_col{columns}_unit{2 ** (columns - 1)}_conv").output.shape == (None, 16, 16,
                                                                                                   filters[0])
    assert model.get_layer(f"block{len(filters)}_pool").output.shape == (None, 16 >> len(filters),
                                                                         16 >> len(filters), filters[-1])


def test_default_dropout_filters_and_drop_path():
    model = catalog.create_model("fractalnet_cifar", columns=2, input_shape=(32, 32, 3))
    assert [model.get_layer(f"block{b}_col2_unit1_conv").filters for b in range(1, 6)] == list(PAPER_FILTERS)
    assert "block1_col2_unit1_drop" not in [layer.name for layer in model.layers]  # block 1: rate 0
    assert [model.get_layer(f"block{b}_col2_unit1_drop").rate for b in range(2, 6)] == pytest.approx([.1, .2, .3, .4])
    joins = [layer for layer in model.layers if isinstance(layer, FractalJoin)]
    assert len(joins) == 5 and all(j.drop_rate == 0.15 and j.columns == (2, 1) for j in joins)
    sampler = model.get_layer("drop_path_sampler")
    assert isinstance(sampler, FractalDropPathSampler) and sampler.global_fraction == 0.5
    assert model.output.shape == (None, 10)


def _pair(**options):
    """The same tiny net with and without drop-path, sharing weights."""
    small = dict(columns=3, blocks=2, filters=(4, 8), input_shape=(8, 8, 3), block_dropout=(0.0, 0.0))
    on = catalog.create_model("fractalnet_cifar", **small, **options)
    off = catalog.create_model("fractalnet_cifar", **small, drop_path_rate=0.0, global_drop_fraction=0.0)
    off.set_weights(on.get_weights())
    return on, off


@pytest.mark.jax
def test_drop_path_acts_only_in_training():
    on, off = _pair(drop_path_rate=0.5, global_drop_fraction=0.5)
    x = random_input((8, 8, 3), batch=16, seed=1)
    np.testing.assert_allclose(np.asarray(on(x)), np.asarray(off(x)), rtol=1e-5, atol=1e-6)  # inference: mean
    first, second = np.asarray(on(x, training=True)), np.asarray(on(x, training=True))
    assert not np.allclose(first, second)  # new draws each step
    np.testing.assert_allclose(np.asarray(off(x, training=True)), np.asarray(off(x, training=True)), rtol=1e-5,
                               atol=1e-6)  # without drop-path training is deterministic here (no dropout)


def test_trains_with_drop_path():
    on, _ = _pair(drop_path_rate=0.5, global_drop_fraction=0.5)
    out, grads = gradients(on, random_input((8, 8, 3), batch=16, seed=2))
    assert np.all(np.isfinite(np.asarray(out))) and all(np.all(np.isfinite(g)) for g in grads)
    assert sum(bool(np.any(g)) for g in grads) > len(grads) // 2


def test_round_trip_with_drop_path():
    on, _ = _pair()
    keras_round_trip(on, random_input((8, 8, 3)))


def test_input_size_follows_the_blocks():
    assert catalog.create_model("fractalnet_cifar", columns=1, blocks=2, filters=(4, 4),
                                input_shape=(4, 4, 3)).output.shape == (None, 10)
    with pytest.raises(ValueError, match="at least 32"):
        catalog.create_model("fractalnet_cifar", columns=1, input_shape=(16, 16, 3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(columns=0), "columns"), (dict(blocks=0), "blocks"), (dict(filters=(64, 128)), "filters"),
    (dict(block_dropout=(0.1,) * 4), "block_dropout"), (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(global_drop_fraction=-0.1), "global_drop_fraction"), (dict(blocks=11), "block_dropout must be given")])
def test_bad_keywords_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("fractalnet_cifar", **kwargs)
