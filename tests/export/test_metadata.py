"""TFLite metadata for image classifiers: written by keras_bam, read by others.

The metadata is read back through the flatbuffer bindings' own readers (not
the object API the writer packs with) and through MediaPipe Tasks, whose C++
metadata extractor is what Android, iOS and web apps run. The model is a
tiny colour classifier with fixed weights, so the right class of each image
is known without the code under test.
"""

import functools
import io
import json
import os
import subprocess
import time
import zipfile

import numpy as np
import pytest

from keras_bam.export.clients import mediapipe_classify, mediapipe_python
from keras_bam.export.metadata import add_metadata

LABELS = ["red", "green", "blue"]
MEDIAPIPE = mediapipe_python()
needs_mediapipe = pytest.mark.skipif(
    MEDIAPIPE is None,
    reason="mediapipe is not importable here and KERAS_BAM_MEDIAPIPE_PYTHON is "
           "unset (mediapipe and tensorflow-model-optimization cannot share an "
           "environment: absl-py 2 against absl-py 1)",
)


def colour_classifier(pixel_scale=1.0, pixel_offset=0.0, softmax=True):
    """A Keras model that says which of R, G, B dominates an 8x8 image.

    Input: x = pixel * pixel_scale + pixel_offset (the preprocessing the
    model was "trained" with), inverted first, so that logits are 12 * (mean
    channel value in [0, 1]) - 4.
    """
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / (255 * pixel_scale),
                               offset=-pixel_offset / (255 * pixel_scale))(inputs)
    identity = keras.initializers.Constant(np.eye(3).reshape(1, 1, 3, 3))
    x = keras.layers.Conv2D(3, 1, kernel_initializer=identity)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(
        3,
        kernel_initializer=keras.initializers.Constant(12 * np.eye(3)),
        bias_initializer=keras.initializers.Constant(-4.0),
        activation="softmax" if softmax else None,
    )(x)
    return keras.Model(inputs, x)


def colour_images(seed, n=12):
    """n uint8 RGB images, image i dominated by channel i % 3, and its classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, size=(n, 8, 8, 3))
    classes = np.arange(n) % 3
    images[np.arange(n), :, :, classes] += rng.integers(120, 166, size=(n, 8, 8))
    return images.astype(np.uint8), classes


def calibration_pixels(seed, n=32):
    """Seeded random pixels with an all-0 and an all-255 frame: the input's
    calibrated range is then exactly 0..255."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3))
    pixels[0], pixels[1] = 0, 255
    return pixels.astype(np.float32)


@functools.cache
def converted(input_type="uint8", softmax=True, pixel_scale=1.0, pixel_offset=0.0):
    """The colour classifier as a full-integer .tflite (int8 inside).

    The model takes x = pixel * pixel_scale + pixel_offset; float32 files
    take that x, integer files take it quantized (calibrated on seeded
    random pixels mapped the same way).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    model = colour_classifier(pixel_scale, pixel_offset, softmax)
    spec = tf.TensorSpec((1, 8, 8, 3), tf.float32)
    function = tf.function(lambda x: model(x, training=False))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function(spec)]
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = calibration_pixels(0) * pixel_scale + pixel_offset
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dtype = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[input_type]
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype
    return converter.convert()


# Reads the metadata with the flatc-generated readers (Model.GetRootAs...),
# and the labels with zipfile: none of the writer's code.
# The two generated modules are loaded from their files, as the wheel ships
# them, without importing the whole mediapipe package first.
_READER = r"""
import importlib.util, io, json, os, sys, zipfile
def generated(name):
    root = importlib.util.find_spec("mediapipe").submodule_search_locations[0]
    path = os.path.join(root, "tasks", "metadata", name + ".py")
    spec = importlib.util.spec_from_file_location("reader_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
md = generated("metadata_schema_py_generated")
fb = generated("schema_py_generated")
content = open(sys.argv[1], "rb").read()
model = fb.Model.GetRootAs(content, 0)
found = [model.Metadata(i) for i in range(model.MetadataLength())]
(entry,) = [m for m in found if m.Name() == b"TFLITE_METADATA"]
data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
assert md.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
meta = md.ModelMetadata.GetRootAs(data, 0)
graph = meta.SubgraphMetadata(0)
image, scores = graph.InputTensorMetadata(0), graph.OutputTensorMetadata(0)
props = md.ImageProperties()
props.Init(image.Content().ContentProperties().Bytes, image.Content().ContentProperties().Pos)
norm = md.NormalizationOptions()
unit = image.ProcessUnits(0)
norm.Init(unit.Options().Bytes, unit.Options().Pos)
label_file = scores.AssociatedFiles(0)
text = lambda b: None if b is None else b.decode()
print(json.dumps({
    "name": text(meta.Name()), "description": text(meta.Description()),
    "version": text(meta.Version()), "author": text(meta.Author()),
    "license": text(meta.License()), "min_parser_version": text(meta.MinParserVersion()),
    "input_content": image.Content().ContentPropertiesType(),
    "color_space": props.ColorSpace(),
    "process_unit": unit.OptionsType(),
    "mean": norm.MeanAsNumpy().tolist(), "std": norm.StdAsNumpy().tolist(),
    "output_content": scores.Content().ContentPropertiesType(),
    "output_name": text(scores.Name()),
    "output_min": scores.Stats().MinAsNumpy().tolist(),
    "output_max": scores.Stats().MaxAsNumpy().tolist(),
    "label_file": text(label_file.Name()), "label_type": label_file.Type(),
    "zip": {n: zipfile.ZipFile(io.BytesIO(content)).read(n).decode()
            for n in zipfile.ZipFile(io.BytesIO(content)).namelist()},
    "enums": {"image": md.ContentProperties.ImageProperties,
              "feature": md.ContentProperties.FeatureProperties,
              "rgb": md.ColorSpaceType.RGB,
              "normalization": md.ProcessUnitOptions.NormalizationOptions,
              "axis_labels": md.AssociatedFileType.TENSOR_AXIS_LABELS},
}))
"""


def read_metadata(content, tmp_path):
    path = tmp_path / "with_metadata.tflite"
    path.write_bytes(content)
    child = subprocess.run([MEDIAPIPE, "-c", _READER, str(path)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def interpreter_outputs(content, inputs):
    """Raw outputs of LiteRT's Interpreter, one sample at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for sample in inputs:
        interpreter.set_tensor(inp["index"], sample[None].astype(inp["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results), out["quantization"]


@needs_mediapipe
def test_metadata_reads_back_through_the_generated_readers(tmp_path):
    content = add_metadata(
        converted("uint8"), labels=LABELS, name="colours", description="Which colour",
        version="2", author="keras_bam tests", license="Apache-2.0", mean=0.0, std=1.0,
    )
    found = read_metadata(content, tmp_path)
    enums = found["enums"]
    assert (found["name"], found["description"], found["version"]) == (
        "colours", "Which colour", "2")
    assert (found["author"], found["license"]) == ("keras_bam tests", "Apache-2.0")
    assert found["min_parser_version"] == "1.0.0"
    assert found["input_content"] == enums["image"]
    assert found["color_space"] == enums["rgb"]
    assert found["process_unit"] == enums["normalization"]
    assert (found["mean"], found["std"]) == ([0.0], [1.0])
    assert found["output_content"] == enums["feature"]
    assert found["output_name"] == "probability"
    assert (found["output_min"], found["output_max"]) == ([0.0], [1.0])
    assert found["label_type"] == enums["axis_labels"]
    assert found["zip"] == {found["label_file"]: "red\ngreen\nblue\n"}


@needs_mediapipe
def test_metadata_changes_no_computation():
    plain = converted("uint8")
    content = add_metadata(plain, labels=LABELS, name="colours", mean=0.0, std=1.0)
    images, _ = colour_images(seed=3)
    before, _ = interpreter_outputs(plain, images)
    after, _ = interpreter_outputs(content, images)
    np.testing.assert_array_equal(before, after)
    assert converted("uint8") == plain  # the input bytes are not modified


@needs_mediapipe
def test_same_model_and_labels_give_the_same_bytes(monkeypatch):
    first = add_metadata(converted("uint8"), labels=LABELS, name="colours")
    # The clock 2.1 s later, past the zip format's 2-second resolution,
    # without waiting for it: a timestamp taken from time.time() or
    # time.localtime() would change the bytes.
    later = time.time() + 2.1
    real_localtime = time.localtime
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime",
                        lambda seconds=None: real_localtime(
                            later if seconds is None else seconds))
    assert add_metadata(converted("uint8"), labels=LABELS, name="colours") == first


@needs_mediapipe
def test_mediapipe_names_categories_from_the_metadata():
    content = add_metadata(converted("uint8"), labels=LABELS, name="colours",
                           mean=0.0, std=1.0)
    images, classes = colour_images(seed=4)
    result = mediapipe_classify(content, images)
    assert result.ok, result.error
    assert result.category_names == LABELS
    assert result.top1_names == [LABELS[c] for c in classes]


@needs_mediapipe
def test_mediapipe_applies_the_float32_normalization():
    """A float32 model trained on x = (pixel - 127.5) / 127.5: MediaPipe must
    feed it that x, which it can only know from the metadata."""
    content = add_metadata(
        converted("float32", pixel_scale=1 / 127.5, pixel_offset=-1.0),
        labels=LABELS, name="colours", mean=127.5, std=127.5,
    )
    images, classes = colour_images(seed=5)
    result = mediapipe_classify(content, images)
    assert result.ok, result.error
    assert result.top1_names == [LABELS[c] for c in classes]
    expected, _ = interpreter_outputs(content, (images.astype(np.float32) - 127.5) / 127.5)
    np.testing.assert_allclose(result.outputs, expected, atol=1e-6)


@needs_mediapipe
def test_float32_input_without_normalization_is_refused():
    with pytest.raises(ValueError, match="mean and std"):
        add_metadata(converted("float32"), labels=LABELS, name="colours")


@needs_mediapipe
def test_uint8_input_whose_quantization_contradicts_the_normalization_is_refused():
    # The model takes pixels 0..255, so its uint8 input maps a byte b to b
    # (mean 0, std 1); a [-1, 1] normalization would be silently wrong.
    with pytest.raises(ValueError, match="feeds camera bytes"):
        add_metadata(converted("uint8"), labels=LABELS, name="colours",
                     mean=127.5, std=127.5)


@needs_mediapipe
def test_logits_output_is_refused():
    with pytest.raises(ValueError, match="not SOFTMAX"):
        add_metadata(converted("uint8", softmax=False), labels=LABELS, name="colours")


@needs_mediapipe
def test_label_count_must_match_the_output():
    with pytest.raises(ValueError, match=r"must be \[1, 2\]"):
        add_metadata(converted("uint8"), labels=["red", "green"], name="colours")


@needs_mediapipe
def test_metadata_is_not_added_twice():
    once = add_metadata(converted("uint8"), labels=LABELS, name="colours")
    with pytest.raises(ValueError, match="already has TFLite metadata"):
        add_metadata(once, labels=LABELS, name="colours")


@needs_mediapipe
def test_int8_input_gets_metadata_with_a_warning_that_mediapipe_refuses_it(caplog):
    with caplog.at_level("WARNING", logger="keras_bam"):
        content = add_metadata(converted("int8"), labels=LABELS, name="colours")
    assert "MediaPipe Tasks accepts only uint8 or float32" in caplog.text
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.read("labels.txt") == b"red\ngreen\nblue\n"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"labels": "red green blue"}, TypeError, "list of class names"),
        ({"labels": ["red", "gre\nen", "blue"]}, ValueError, "one line"),
        ({"labels": ["red", "", "blue"]}, ValueError, "non-empty"),
        ({"name": ""}, ValueError, "`name` must be a non-empty string"),
        ({"input_type": "int16"}, ValueError, "`input_type` must be one of"),
        ({"mean": 0.0}, ValueError, "together"),
        ({"mean": [0.0, 0.0], "std": [1.0, 1.0]}, ValueError, "one or three"),
        ({"mean": 0.0, "std": 0.0}, ValueError, "positive"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs, error, match):
    arguments = {"labels": LABELS, "name": "colours", **kwargs}
    with pytest.raises(error, match=match):
        add_metadata(b"not read before the arguments are checked", **arguments)


def test_bytes_are_required():
    with pytest.raises(TypeError, match="as bytes"):
        add_metadata(os.devnull, labels=LABELS, name="colours")


@needs_mediapipe
def test_the_writer_loads_the_schemas_without_importing_mediapipe():
    """The writer needs only the two flatc-generated modules of the
    mediapipe wheel: it loads them from their files, so a metadata write
    does not pay for importing mediapipe's tasks (about a second each)."""
    import keras_bam.export.metadata as module

    script = (f"import runpy, sys; found = runpy.run_path({module.__file__!r}); "
              "metadata_fb, model_fb = found['_schemas'](); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mediapipe'), "
              "hasattr(metadata_fb, 'ModelMetadata'), hasattr(model_fb, 'Model'))")
    child = subprocess.run([MEDIAPIPE, "-c", script], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["[]", "True", "True"], child.stdout
