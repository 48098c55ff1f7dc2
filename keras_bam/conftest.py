"""Names the docstring examples use, so they run as written in the docs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_bam  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["keras"] = keras
    doctest_namespace["np"] = np
    doctest_namespace["keras_bam"] = keras_bam
    for name in keras_bam.__all__:
        doctest_namespace[name] = getattr(keras_bam, name)
