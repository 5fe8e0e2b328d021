"""Fractal blocks (TF and JAX): the join (mean at inference; local and global drop-path in training, never
dropping every input, averaging what it keeps), the per-sample sampler, and the block's structure.
"""

import functools

import keras
import numpy as np
import pytest

from catalog.blocks.fractal import FractalDropPathSampler, FractalJoin, fractal_block
from helpers import keras_round_trip, n_params, random_input

# CI's JAX pass runs the tests that compare numbers (marked jax); the round trips and counts run on TensorFlow

VALUES = (1.0, 10.0, 100.0)  # one constant per join input: every non-empty subset has a distinct mean


def _constant_inputs(batch, values=VALUES):
    return [np.full((batch, 2, 2, 1), v, "float32") for v in values]


def _subset_means(values=VALUES):
    means = {}
    for mask in range(1, 2 ** len(values)):
        kept = [v for i, v in enumerate(values) if mask >> i & 1]
        means[round(sum(kept) / len(kept), 4)] = len(kept)
    return means


@pytest.mark.jax
def test_join_at_inference_is_the_mean():
    xs = [random_input((5, 6, 4), seed=s) for s in range(3)]
    expected = sum(xs) / 3
    for layer in (FractalJoin(0.5), FractalJoin(0.5, columns=(1, 2, 3))):
        inputs = xs + ([np.array([[0.0], [2.0]], "float32")] if layer.columns else [])
        np.testing.assert_allclose(np.asarray(layer(inputs)), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(layer(inputs, training=False)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.jax
def test_local_drop_path_drops_inputs_but_never_all():
    """drop_rate 0.5 over 3 inputs: each sample's output is the mean of a non-empty subset. A subset of s
    inputs has probability 0.5^3 = 1/8, plus 1/8 * 1/3 for each single input (all dropped, one restored):
    singles 1/6, pairs 1/8, all three 1/8."""
    batch = 6000
    out = np.asarray(FractalJoin(0.5, seed=1)(_constant_inputs(batch), training=True))
    assert np.all(out == out[:, :1, :1, :])  # one draw per sample
    means = _subset_means()
    drawn = np.round(out[:, 0, 0, 0], 4)
    assert set(drawn) <= set(means) and 0.0 not in drawn
    sizes = np.array([means[v] for v in drawn])
    for size, p in ((1, 1 / 6), (2, 1 / 8), (3, 1 / 8)):
        for value in (v for v, s in means.items() if s == size):
            assert abs(np.mean(drawn == value) - p) < 0.02, (value, np.mean(drawn == value), p)
    assert abs(np.mean(sizes < 3) - 7 / 8) < 0.02  # inputs are really dropped


@pytest.mark.jax
def test_kept_inputs_are_averaged_so_equal_inputs_pass_unchanged():
    """The join divides by the number of inputs it keeps (the paper's join; no 1/(1-p) rescaling): equal
    inputs come out unchanged whatever is dropped, and the mean over draws stays the input's scale."""
    x = random_input((4, 4, 3), batch=64, seed=3)
    out = FractalJoin(0.9, seed=2)([x, x, x, x], training=True)
    np.testing.assert_allclose(np.asarray(out), x, rtol=1e-6, atol=1e-6)


@pytest.mark.jax
def test_global_drop_path_keeps_the_selected_column():
    """Selector c > 0 keeps exactly column c's input; a join without column c keeps all its inputs; a
    selector of 0 is a local draw."""
    batch = 400
    selector = np.repeat(np.array([[1.0], [2.0], [3.0], [4.0]], "float32"), batch // 4, axis=0)
    out = np.asarray(FractalJoin(0.15, columns=(4, 3, 2), seed=0)(_constant_inputs(batch) + [selector],
                                                                    training=True))[:, 0, 0, 0]
    quarter = batch // 4
    np.testing.assert_allclose(out[:quarter], np.mean(VALUES), rtol=1e-6)  # column 1 is not an input: all kept
    np.testing.assert_allclose(out[quarter:2 * quarter], 100.0)  # column 2 is the third input
    np.testing.assert_allclose(out[2 * quarter:3 * quarter], 10.0)
    np.testing.assert_allclose(out[3 * quarter:], 1.0)
    local = np.asarray(FractalJoin(0.15, columns=(4, 3, 2), seed=0)(
        _constant_inputs(batch) + [np.zeros((batch, 1), "float32")], training=True))[:, 0, 0, 0]
    assert set(np.round(local, 4)) <= set(_subset_means()) and len(set(np.round(local, 4))) > 1


@pytest.mark.jax
def test_sampler_mixes_local_and_global_per_sample():
    x = np.zeros((8000, 1), "float32")
    draw = np.asarray(FractalDropPathSampler(4, 0.5, seed=5)(x, training=True))[:, 0]
    assert draw.shape == (8000,) and set(np.unique(draw)) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert abs(np.mean(draw == 0) - 0.5) < 0.03
    for column in (1, 2, 3, 4):
        assert abs(np.mean(draw == column) - 0.125) < 0.02
    assert not np.any(np.asarray(FractalDropPathSampler(4, 0.5)(x)))  # inference: nothing selected
    assert set(np.unique(np.asarray(FractalDropPathSampler(3, 1.0, seed=1)(x, training=True)))) == {1.0, 2.0, 3.0}


def _conv_depth(model):
    """Most Conv2D layers on any path from the input to the output."""

    @functools.lru_cache(maxsize=None)
    def depth(layer):
        parents = [node.operation for node in layer._inbound_nodes[0].parent_nodes]
        own = int(isinstance(layer, keras.layers.Conv2D))
        return own + max((depth(p) for p in parents), default=0)

    return depth(model.layers[-1])


def _block_model(columns, filters=4, channels=3, **options):
    inputs = keras.Input((8, 8, channels))
    return keras.Model(inputs, fractal_block(inputs, columns, filters, name="f", **options))


@pytest.mark.parametrize("columns", [1, 2, 3, 4])
def test_block_structure_and_count(columns):
    model = _block_model(columns)
    units = [layer.name[:-5] for layer in model.layers if layer.name.endswith("_conv")]
    assert len(units) == 2 ** columns - 1
    assert _conv_depth(model) == 2 ** (columns - 1)  # the longest path
    for j in range(1, columns + 1):  # column j holds 2^(j-1) units
        assert sorted(u for u in units if u.startswith(f"f_col{j}_")) == sorted(
            f"f_col{j}_unit{i}" for i in range(1, 2 ** (j - 1) + 1))
    joins = [layer for layer in model.layers if isinstance(layer, FractalJoin)]
    # one join after every second step of the deepest column, joining 1 + v2(step) columns
    arity = {1: [], 2: [2], 3: [2, 3], 4: [2, 3, 2, 4]}[columns]
    assert sorted(len(j.input) for j in joins) == sorted(arity)
    assert [j.name for j in joins] == [f"f_join{n}" for n in range(1, len(arity) + 1)]
    assert model.output.shape == (None, 8, 8, 4)
    # first unit of each column maps 3 -> 4 channels, the others 4 -> 4; conv without bias, BN gamma/beta
    assert n_params(model) == columns * (9 * 3 * 4 + 8) + (2 ** columns - 1 - columns) * (9 * 4 * 4 + 8)


def test_block_with_selector_names_the_columns_of_each_join():
    inputs = keras.Input((8, 8, 3))
    selector = FractalDropPathSampler(3, name="sampler")(inputs)
    model = keras.Model(inputs, fractal_block(inputs, 3, 4, name="f", drop_rate=0.15, selector=selector))
    joins = {layer.name: layer.columns for layer in model.layers if isinstance(layer, FractalJoin)}
    assert joins == {"f_join1": (3, 2), "f_join2": (3, 2, 1)}
    keras_round_trip(model, random_input((8, 8, 3)))


def test_join_round_trip_keeps_its_config():
    layer = FractalJoin(0.15, columns=(3, 2, 1), seed=4, name="j")
    again = FractalJoin.from_config(layer.get_config())
    assert (again.drop_rate, again.columns, again.seed) == (0.15, (3, 2, 1), 4)
    sampler = FractalDropPathSampler.from_config(FractalDropPathSampler(4, 0.25, seed=1).get_config())
    assert (sampler.columns, sampler.global_fraction, sampler.seed) == (4, 0.25, 1)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="drop_rate"):
        FractalJoin(1.0)
    with pytest.raises(ValueError, match="columns"):
        FractalJoin(0.1, columns=(0, 1))
    with pytest.raises(ValueError, match="at least 2 inputs"):
        FractalJoin()([np.zeros((1, 2, 2, 1), "float32")])
    with pytest.raises(ValueError, match="one per input"):
        FractalJoin(columns=(1, 2, 3))(_constant_inputs(1, (1.0, 2.0)) + [np.zeros((1, 1), "float32")])
    with pytest.raises(ValueError, match="one shape"):
        FractalJoin()([np.zeros((1, 2, 2, 1), "float32"), np.zeros((1, 2, 2, 2), "float32")])
    with pytest.raises(ValueError, match="global_fraction"):
        FractalDropPathSampler(3, 1.5)
    with pytest.raises(ValueError, match="columns must be a positive integer"):
        _block_model(0)
