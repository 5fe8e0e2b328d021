import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Without the full garbage collection clear_session does by default: ~0.5 s per test over the large heap of
    # a test process, half of the suite's time; Python's own collector still frees the models' cycles.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield

