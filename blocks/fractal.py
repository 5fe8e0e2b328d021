"""Fractal blocks (Larsson, Maire, Shakhnarovich 2017, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR).

The expansion rule: ``f_1(z) = conv(z)`` and ``f_{C+1}(z) = join(f_C(f_C(z)), conv(z))``. Unrolled, a
block of C columns has column j (j = 1 shallowest .. C deepest) holding 2^(j-1) conv units, so the longest
path has 2^(C-1) and the block 2^C - 1. Joins that follow one another are merged, as the paper's figure and
the authors' generator draw them: after conv step l of the deepest column (l = 1 .. 2^(C-1)), one join
takes the outputs of every column that ends a unit at that step (columns j with 2^(C-j) dividing l, so
``1 + v2(l)`` of them, capped at C), and all those columns continue from the joined tensor.

The join is the element-wise mean of its inputs. Drop-path regularizes it during training:

- local: each input is dropped with probability ``drop_rate``, at least one always kept;
- global: one column is chosen for the whole network and every join keeps only that column's input.

:class:`FractalDropPathSampler` draws, per sample, which of the two applies and which column a global
draw keeps; every :class:`FractalJoin` of the network reads that draw as its last input, so all joins of
one sample agree on the column. A join averages the inputs it keeps (divides by their number, as the
authors' Caffe ``FractalJoin`` layer does), so no rescaling is needed: with equal inputs the output equals
them whatever is dropped. At inference nothing is dropped and a join is the plain mean.

Differences from the authors' Caffe code, both deliberate: draws are per sample rather than per
mini-batch; and a global draw keeps one column for the whole network (the paper's definition), where a
join whose inputs do not include that column (it feeds only columns that a later join drops) keeps all
of them, so a join never outputs zeros.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from catalog.blocks.layers import act, batch_norm, conv2d


def _check_rate(value, what: str, upper_inclusive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0)
    if not ok:
        raise ValueError(f"{what} must be a number in [0, 1{']' if upper_inclusive else ')'}; got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="catalog")
class FractalDropPathSampler(layers.Layer):
    """Per-sample drop-path mode of a fractal network: (N, 1) with 0 = local, c in 1..columns = global
    drop-path keeping column c.

    In training each sample is global with probability ``global_fraction`` (the paper's 50/50 mix), its
    column uniform over 1..columns; at inference the output is all zeros (the joins ignore it then).
    Called on any tensor whose first axis is the batch (the network's input).

    Args:
        columns: C, the number of columns.
        global_fraction: probability that a sample uses global drop-path.
        seed: seed of the draws.
    """

    def __init__(self, columns: int, global_fraction: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
            raise ValueError(f"columns must be a positive integer; got {columns!r}.")
        self.columns = columns
        self.global_fraction = _check_rate(global_fraction, "global_fraction", upper_inclusive=True)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        shape = (ops.shape(x)[0], 1)
        if not training or self.global_fraction == 0.0:
            return ops.zeros(shape, dtype=self.compute_dtype)
        is_global = keras.random.uniform(shape, seed=self.seed_generator) < self.global_fraction
        column = ops.minimum(ops.floor(keras.random.uniform(shape, seed=self.seed_generator) * self.columns),
                             self.columns - 1) + 1.0
        return ops.cast(ops.where(is_global, column, ops.zeros_like(column)), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "global_fraction": self.global_fraction,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="catalog")
class FractalJoin(layers.Layer):
    """FractalNet's join: the element-wise mean of its inputs, with drop-path in training.

    Called on ``[x_1, ..., x_k]`` (k >= 2, equal shapes), or, when ``columns`` is given, on
    ``[x_1, ..., x_k, selector]`` with the (N, 1) output of :class:`FractalDropPathSampler`; ``columns[i]``
    is the column number of ``x_i``. In training, per sample: a selector of 0 (or no selector) drops each
    input with probability ``drop_rate`` and keeps one drawn uniformly when all were dropped; a selector
    c > 0 keeps only the input of column c (all inputs when none is column c). The output is the mean of
    the kept inputs. At inference it is the mean of all inputs.

    Args:
        drop_rate: local drop-path probability of each input (the paper's 0.15).
        columns: the column number of each input, or None (no selector input, local drop-path only).
        seed: seed of the local draws.
    """

    def __init__(self, drop_rate: float = 0.0, columns=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.drop_rate = _check_rate(drop_rate, "drop_rate")
        if columns is not None:
            columns = tuple(columns)
            if not columns or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in columns):
                raise ValueError(f"columns must be None or a sequence of positive column numbers; got {columns!r}.")
        self.columns = columns
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _split(self, inputs):
        inputs = list(inputs)
        return (inputs[:-1], inputs[-1]) if self.columns is not None else (inputs, None)

    def build(self, input_shape):
        shapes, selector = self._split(input_shape)
        if len(shapes) < 2:
            raise ValueError(f"FractalJoin {self.name} joins at least 2 inputs; got {len(shapes)}.")
        if self.columns is not None and len(self.columns) != len(shapes):
            raise ValueError(f"FractalJoin {self.name}: columns gives {len(self.columns)} column numbers for "
                             f"{len(shapes)} inputs; give one per input.")
        if any(tuple(s[1:]) != tuple(shapes[0][1:]) for s in shapes):
            raise ValueError(f"FractalJoin {self.name} needs inputs of one shape; got {[tuple(s) for s in shapes]}.")

    def call(self, inputs, training=None):
        xs, selector = self._split(inputs)
        k = len(xs)
        if not training or (self.drop_rate == 0.0 and selector is None):
            return ops.divide(sum(xs[1:], xs[0]), float(k))
        batch = ops.shape(xs[0])[0]
        keep = ops.cast(keras.random.uniform((batch, k), seed=self.seed_generator) >= self.drop_rate, "float32")
        pick = ops.one_hot(keras.random.randint((batch,), 0, k, seed=self.seed_generator), k, dtype="float32")
        none_kept = ops.sum(keep, axis=1, keepdims=True) == 0.0
        keep = ops.where(none_kept, pick, keep)
        if selector is not None:
            selector = ops.cast(selector, "float32")
            chosen = ops.cast(ops.equal(selector, np.asarray(self.columns, "float32")[None, :]), "float32")
            chosen = ops.where(ops.sum(chosen, axis=1, keepdims=True) == 0.0, ops.ones_like(chosen), chosen)
            keep = ops.where(selector > 0.0, chosen, keep)
        weights = ops.cast(keep / ops.sum(keep, axis=1, keepdims=True), xs[0].dtype)
        broadcast = (-1,) + (1,) * (len(xs[0].shape) - 1)
        return sum(ops.reshape(weights[:, i], broadcast) * x for i, x in enumerate(xs))

    def compute_output_shape(self, input_shape):
        return self._split(input_shape)[0][0]

    def get_config(self):
        return {**super().get_config(), "drop_rate": self.drop_rate,
                "columns": None if self.columns is None else list(self.columns), "seed": self.seed}


def conv_unit(x, filters: int, *, name: str, dropout: float = 0.0):
    """FractalNet's conv unit, as the authors' code: 3x3 conv (no bias) -> dropout -> BatchNorm -> ReLU.

    Layers ``{name}_conv``, ``{name}_drop`` (when ``dropout``), ``{name}_bn``, ``{name}_act``;
    parameters 9 * C_in * filters + 2 * filters.
    """
    x = conv2d(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return act(batch_norm(x, name=f"{name}_bn"), "relu", name=f"{name}_act")


def fractal_block(x, columns: int, filters: int, *, name: str, dropout: float = 0.0, drop_rate: float = 0.0,
                  selector=None):
    """A fractal block f_C (Larsson et al. 2017): C columns of conv units, merged by :class:`FractalJoin`.

    Built by the recursion ``f_{c+1}(z) = join(f_c(f_c(z)), conv(z))``, its nested joins merged into one
    (see the module docstring): column j has 2^(j-1) units, ``{name}_col{j}_unit{i}`` (i = 1 .. 2^(j-1)
    along the column), and the joins are ``{name}_join{n}`` in depth order, the last one joining all C
    columns. C = 1 is a single unit without a join. Parameters: every column's first unit maps C_in to
    ``filters``, the other 2^C - 1 - C units ``filters`` to ``filters`` (:func:`conv_unit`).

    Args:
        x: input tensor (NHWC).
        columns: C, the number of columns.
        filters: output channels of every conv unit.
        name: layer name prefix.
        dropout: dropout rate inside every conv unit.
        drop_rate: local drop-path probability of the joins.
        selector: the (N, 1) output of :class:`FractalDropPathSampler` for global drop-path, or None.
    """
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer; got {columns!r}.")
    units = {}  # column -> units built so far
    joins = [0]

    def unit(z, column):
        units[column] = units.get(column, 0) + 1
        return conv_unit(z, filters, dropout=dropout, name=f"{name}_col{column}_unit{units[column]}")

    def join(branches):
        if len(branches) == 1:
            return branches[0][1]
        joins[0] += 1
        cols = [column for column, _ in branches]
        inputs = [tensor for _, tensor in branches]
        layer = FractalJoin(drop_rate, columns=cols if selector is not None else None,
                            name=f"{name}_join{joins[0]}")
        return layer(inputs + [selector] if selector is not None else inputs)

    def expand(z, c):
        """f_c(z) before its last join: (column, tensor) for columns C .. C - c + 1."""
        if c == 1:
            return [(columns, unit(z, columns))]
        deep = expand(join(expand(z, c - 1)), c - 1)
        shallow = columns - c + 1
        return deep + [(shallow, unit(z, shallow))]

    return join(expand(x, columns))
