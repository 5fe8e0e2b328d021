import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield


# The long end-to-end runs (training, the README, the CLI's demo and subprocesses) first: with ``-n 2`` the two
# workers then finish on the many short registry tests together instead of one waiting on a minute-long run.
FIRST = ("tests/training/", "tests/test_readme.py", "tests/test_cli.py", "tests/test_export.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST))
