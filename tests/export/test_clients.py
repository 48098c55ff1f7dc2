"""The exported file in the clients apps use: MediaPipe Tasks and LiteRT's CompiledModel.

Both run in child processes; the references are LiteRT's Interpreter (the
runtime the export checks already trust) and the known colour of each image.
"""

import numpy as np
import pytest
from test_metadata import (
    LABELS,
    colour_images,
    converted,
    interpreter_outputs,
    needs_mediapipe,
)

from keras_bam.export import clients
from keras_bam.export.clients import compiled_model_run, mediapipe_classify
from keras_bam.export.metadata import add_metadata


def _app_ready():
    return add_metadata(converted("uint8"), labels=LABELS, name="colours",
                        mean=0.0, std=1.0)


@needs_mediapipe
def test_mediapipe_round_trip_gives_named_probabilities(tmp_path):
    content = _app_ready()
    path = tmp_path / "colours.tflite"
    path.write_bytes(content)
    images, classes = colour_images(seed=11, n=15)
    result = mediapipe_classify(str(path), images)
    assert result.ok, result.error
    assert result.category_names == LABELS
    assert result.top1_names == [LABELS[c] for c in classes]
    raw, (scale, zero_point) = interpreter_outputs(content, images)
    expected = (raw.astype(np.float32) - zero_point) * scale
    np.testing.assert_allclose(result.outputs, expected, atol=1e-6)
    # Each of the N probabilities is rounded to the output's int8 step.
    np.testing.assert_allclose(result.outputs.sum(axis=1), 1.0, atol=len(LABELS) * scale)
    assert result.seconds.shape == (len(images),) and (result.seconds > 0).all()


@needs_mediapipe
def test_without_metadata_categories_are_nameless():
    images, _ = colour_images(seed=12, n=3)
    result = mediapipe_classify(converted("uint8"), images)
    assert result.ok, result.error
    assert result.category_names == [None, None, None]


@needs_mediapipe
@pytest.mark.parametrize("with_metadata", [False, True])
def test_mediapipe_refusing_an_int8_input_is_a_failure_not_a_crash(with_metadata):
    content = converted("int8")
    if with_metadata:
        content = add_metadata(content, labels=LABELS, name="colours")
    images, _ = colour_images(seed=13, n=2)
    result = mediapipe_classify(content, images)
    assert not result.ok
    assert "uint8/float32" in result.error and "INT8" in result.error
    assert result.outputs is None and result.top1_names is None


@needs_mediapipe
def test_a_file_that_is_no_model_is_a_failure():
    images, _ = colour_images(seed=14, n=1)
    result = mediapipe_classify(b"\x00" * 64, images)
    assert not result.ok and result.error


@pytest.mark.parametrize("input_type", ["uint8", "int8"])
def test_compiled_model_matches_the_interpreter(input_type):
    content = converted(input_type)
    images, classes = colour_images(seed=15, n=9)
    # The int8 file's input was calibrated on 0..255: zero point -128.
    inputs = images if input_type == "uint8" else (images.astype(np.int16) - 128).astype(
        np.int8)
    result = compiled_model_run(content, inputs)
    assert result.ok, result.error
    expected, _ = interpreter_outputs(content, inputs)
    np.testing.assert_array_equal(result.outputs, expected)
    np.testing.assert_array_equal(result.top1, classes)


def test_compiled_model_reports_inputs_of_the_wrong_type():
    images, _ = colour_images(seed=16, n=2)
    result = compiled_model_run(converted("uint8"), images.astype(np.float32))
    assert not result.ok
    assert "uint8" in result.error and "float32" in result.error


@pytest.mark.parametrize(
    "images",
    [np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
     np.zeros((2, 8, 8, 4), np.uint8), np.zeros((0, 8, 8, 3), np.uint8)],
)
def test_mediapipe_classify_wants_a_batch_of_uint8_rgb_images(images):
    with pytest.raises(ValueError, match="uint8 RGB images"):
        mediapipe_classify(b"unused", images)


def test_model_must_be_bytes_or_an_existing_path(tmp_path):
    images, _ = colour_images(seed=17, n=1)
    with pytest.raises(ValueError, match="No .tflite file"):
        compiled_model_run(str(tmp_path / "missing.tflite"), images)
    with pytest.raises(TypeError, match="bytes or a path"):
        compiled_model_run(12, images)


def test_a_configured_mediapipe_python_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv(clients.MEDIAPIPE_PYTHON_ENV, str(tmp_path / "no-python"))
    with pytest.raises(ValueError, match="not an executable file"):
        clients.mediapipe_python()
