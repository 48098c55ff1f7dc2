"""A model with BAM becomes a clean, fully int8, XNNPACK-delegated TFLite file."""

import keras
import numpy as np
import pytest

from keras_bam import BAM
from keras_bam.export import inspect_tflite, predict, to_tflite, xnnpack_check
from keras_bam.export.convert import trace

DYNAMIC_SHAPE_OPS = {"SHAPE", "GATHER", "PACK", "STRIDED_SLICE", "RESHAPE"}
SPACE_TO_BATCH_OPS = {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}


def _model(conv=None, **bam_kwargs):
    # Seeded: unseeded weights made a case depend on the tests that ran
    # before it in the same xdist worker (a dead ReLU, a refused file).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 20, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = conv(x) if conv is not None else BAM(**bam_kwargs)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


def _calibration(rng, n=64):
    return rng.uniform(0, 1, size=(n, 24, 20, 3)).astype("float32")


@pytest.mark.parametrize("batch_size", [1, None])
@pytest.mark.parametrize(
    "bam_kwargs",
    [
        {},
        {"variant": "official"},
        {"gate_activation": "hard_sigmoid", "combine": "max"},
        {"gate_activation": "tanh", "num_dilated_convs": 3},
    ],
)
def test_full_integer_clean_graph_delegated_to_xnnpack(batch_size, bam_kwargs, rng):
    model = _model(**bam_kwargs)
    content = to_tflite(model, "int8", [_calibration(rng)], batch_size=batch_size)
    graph = inspect_tflite(content)
    ops = set(graph.op_counts)
    assert not ops & {"QUANTIZE", "DEQUANTIZE"}, graph.op_counts
    assert graph.float_ops == []
    assert graph.input_dtypes == graph.output_dtypes == ["int8"]
    assert graph.input_shapes[0][0] == (1 if batch_size else -1)
    assert not ops & (DYNAMIC_SHAPE_OPS | SPACE_TO_BATCH_OPS), graph.op_counts
    # stem + the channel MLP's two 1x1 convs + reduce, dilated and final convs
    dilated = bam_kwargs.get("num_dilated_convs", 2)
    assert graph.op_counts["CONV_2D"] == 1 + 2 + 1 + dilated + 1
    delegate = xnnpack_check(content)
    assert delegate["ok"], delegate
    assert delegate["partitions"] == 1
    assert delegate["undelegated_ops"] == []


def test_int8_outputs_follow_the_float_model(rng):
    model = _model()
    # Non-default batch-norm parameters and statistics (seeded), so the
    # gates do real work: set directly rather than trained into the model,
    # which would trace a training step for what a few assignments do.
    ranges = {"gamma": (0.5, 1.5), "beta": (-0.5, 0.5),
              "moving_mean": (-0.5, 0.5), "moving_variance": (0.5, 1.5)}
    changed = 0
    for variable in model.weights:
        low_high = ranges.get(variable.path.rsplit("/", 1)[-1])
        if low_high is not None:
            variable.assign(rng.uniform(*low_high, variable.shape))
            changed += 1
    assert changed >= 8, "the BAM's batch norms were not found"
    train = _calibration(rng, 64)
    content = to_tflite(model, "int8", [train], batch_size=None)
    test = _calibration(rng, 32)
    expected = keras.ops.convert_to_numpy(model(test, training=False))
    got = predict(content, test)
    spread = expected.max() - expected.min()
    assert np.abs(got - expected).mean() < 0.02 * spread
    assert np.abs(got - expected).max() < 0.1 * spread


def test_keras_dilated_conv_with_unknown_batch_is_what_we_avoid(rng):
    """The checks above can fail: Keras' own dilated conv trips all of them."""
    conv = keras.layers.Conv2D(16, 3, dilation_rate=4, padding="same")
    content = to_tflite(_model(conv=conv), "int8", [_calibration(rng)], batch_size=None)
    graph = inspect_tflite(content)
    assert SPACE_TO_BATCH_OPS <= set(graph.op_counts)
    delegate = xnnpack_check(content)
    assert set(delegate["undelegated_ops"]) & SPACE_TO_BATCH_OPS


def test_float_ops_are_reported(rng):
    graph = inspect_tflite(to_tflite(_model(), "float32"))
    assert "CONV_2D" in graph.float_ops and graph.input_dtypes == ["float32"]


def test_xnnpack_check_survives_a_file_that_is_not_a_model():
    report = xnnpack_check(b"not a flatbuffer")
    assert report["ok"] is False
    assert "exited with code" in report["error"]


def test_to_tflite_rejects_unknown_quantization_and_missing_calibration():
    with pytest.raises(ValueError, match="quantization='int4'"):
        to_tflite(_model(), "int4")
    with pytest.raises(ValueError, match="representative_data"):
        to_tflite(_model(), "int8")
    inputs = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="known height, width"):
        to_tflite(keras.Model(inputs, BAM()(keras.layers.Conv2D(8, 1)(inputs))))


def test_one_trace_serves_several_conversions(rng):
    """`trace` once, convert several ways (as an export converts to int8 and
    to float32): the same file as a conversion that traces by itself; a
    trace for another batch size is refused."""
    model = _model()
    traced = trace(model, batch_size=None)
    assert to_tflite(model, "float32", batch_size=None, traced=traced) == to_tflite(
        model, "float32", batch_size=None)
    content = to_tflite(model, "int8", [_calibration(rng)], batch_size=None,
                        traced=traced)
    graph = inspect_tflite(content)
    assert graph.input_shapes[0][0] == -1 and graph.float_ops == []
    with pytest.raises(ValueError, match=r"`traced` takes inputs of shape \(None, "):
        to_tflite(model, "float32", batch_size=1, traced=traced)
