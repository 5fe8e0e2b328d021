"""The mobile families convert to TFLite, and the interpreter's output matches Keras within 1e-4."""

import numpy as np
import pytest
import tensorflow as tf

import catalog
from helpers import random_input

# One small setting per mobile family (width-reduced, 64x64) so the conversions stay quick.
CASES = {
    "mobilenet_v1": dict(alpha=0.25),
    "mobilenet_v2": dict(alpha=0.35),
    "mobilenet_v3_small": dict(alpha=0.5),
    "shufflenet_v1": dict(groups=3, scale=0.5),
    "shufflenet_v2_x0_5": {},
    "efficientnet_b0": dict(width=0.25, depth=0.25),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tflite_matches_keras(name):
    shape = (64, 64, 3)
    model = catalog.create_model(name, input_shape=shape, num_classes=10, classifier_activation=None,
                                 **CASES[name])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = random_input(shape, batch=1, seed=1)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    lite = interpreter.get_tensor(out["index"])
    expected = np.asarray(model(x, training=False))
    assert lite.shape == expected.shape == (1, 10)
    np.testing.assert_allclose(lite, expected, rtol=0, atol=1e-4)
