import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts from float32, channels_last and fresh layer names."""
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.utils.clear_session()
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")


@pytest.fixture
def rng():
    return np.random.default_rng(1807_06514)


def pytest_collection_modifyitems(items):
    """The slow end-to-end tests first: spread over the xdist workers from
    the start, they do not leave one core idle at the end of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
