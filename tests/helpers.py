"""Shared test helpers: gradients on either backend, .keras round trips, parameter counts."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest

# Registered models above this many parameters are built at full size only under -m slow.
HEAVY_PARAMS = 100_000_000


def n_params(model_or_layer, trainable: bool = True) -> int:
    weights = model_or_layer.trainable_weights if trainable else model_or_layer.non_trainable_weights
    return int(sum(math.prod(w.shape) for w in weights))


def random_input(shape, batch: int = 2, seed: int = 0):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype("float32")


def gradients(model, x, training: bool = True):
    """(outputs, gradients of sum(outputs**2) w.r.t. every trainable weight), on TF or JAX."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = model(x, training=training)
            flat = out if isinstance(out, (list, tuple)) else [out]
            loss = tf.add_n([tf.reduce_sum(tf.square(tf.cast(o, "float32"))) for o in flat])
        grads = tape.gradient(loss, model.trainable_weights)
        return out, [None if g is None else np.asarray(g) for g in grads]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_fn(tv):
            out, _ = model.stateless_call(tv, non_trainable, x, training=training)
            flat = out if isinstance(out, (list, tuple)) else [out]
            return sum(jnp.sum(jnp.square(o.astype("float32"))) for o in flat), out

        (_, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        return out, [np.asarray(g) for g in grads]
    raise NotImplementedError(backend)


def assert_all_gradients(model, x):
    """Every trainable weight gets a finite gradient, the output is finite; returns the output."""
    out, grads = gradients(model, x)
    names = [w.path for w in model.trainable_weights]
    missing = [n for n, g in zip(names, grads) if g is None]
    assert not missing, f"no gradient for {missing[:5]}"
    bad = [n for n, g in zip(names, grads) if not np.all(np.isfinite(g))]
    assert not bad, f"non-finite gradient for {bad[:5]}"
    zero = [n for n, g in zip(names, grads) if not np.any(g)]
    assert len(zero) < max(1, len(names) // 10), f"all-zero gradient for {zero[:5]}"
    for o in (out if isinstance(out, (list, tuple)) else [out]):
        assert np.all(np.isfinite(np.asarray(o)))
    return out


def keras_round_trip(model, x):
    """Save to .keras, reload with safe_mode=True, assert identical outputs; returns the reloaded model."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    a, b = model(x, training=False), loaded(x, training=False)
    for u, v in zip(a if isinstance(a, (list, tuple)) else [a], b if isinstance(b, (list, tuple)) else [b]):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-5)
    return loaded


def reference_case(name):
    """A parametrized case that builds ``name`` at its defaults: slow when huge, one xdist group per name
    (so the cached model_info card is built once per process and shared by the tests of that name)."""
    from catalog.registry import get_entry

    ref = get_entry(name).reference_params
    marks = [pytest.mark.slow] if ref and ref > HEAVY_PARAMS else []
    return pytest.param(name, marks=[*marks, pytest.mark.xdist_group(name)], id=name)


def assert_boxes_tight_around_masks(data):
    """Every box of generated shapes data is tight around the visible pixels of its class, every shape pixel
    lies in a box of its class, and the image's label is among its box labels."""
    for mask, boxes, labels, label in zip(data["masks"], data["boxes"], data["box_labels"], data["labels"]):
        covered = np.zeros_like(mask, bool)
        for (x0, y0, x1, y1), cls in zip(boxes.astype(int), labels):
            region = mask[y0:y1, x0:x1] == cls + 1
            covered[y0:y1, x0:x1] |= region
            # tight: the box's outer rows and columns each hold a pixel of its class
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
        np.testing.assert_array_equal(covered, mask > 0)
        assert label in labels


def run_cli(*args, timeout=600):
    """``python -m catalog ARGS`` in a subprocess (TensorFlow's logging quiet): the CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "catalog", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
