"""Checks of a .tflite file against the Keras model it came from."""

import dataclasses
import os
import time

import numpy as np

from keras_bam.export.litert import make_interpreter, predict


@dataclasses.dataclass
class Agreement:
    """The .tflite file against the float Keras model on held-out images."""

    samples: int
    top1_agreement: float  # fraction of samples with the same argmax
    max_abs_diff: float  # of the outputs (probabilities or logits)
    mean_abs_diff: float
    keras_accuracy: float | None  # with labels
    tflite_accuracy: float | None


def keras_outputs(model, images, batch_size=64):
    """`model`'s inference outputs on `images`, float32, batch by batch.

    Direct calls rather than `model.predict`: predict traces a tf.function
    (twice when the last batch is smaller), which costs more than the
    few hundred images an export is checked on.
    """
    import keras

    batches = [keras.ops.convert_to_numpy(
        model(np.asarray(images[i:i + batch_size], np.float32), training=False))
        for i in range(0, len(images), batch_size)]
    return np.concatenate(batches).astype(np.float32)


def compare(model, content, images, labels=None):
    """Runs both on `images` (float32 pixels) and compares the outputs."""
    expected = keras_outputs(model, images)
    actual = predict(content, images)
    diff = np.abs(actual.astype(np.float64) - expected)
    same = np.argmax(actual, -1) == np.argmax(expected, -1)
    accuracy = (lambda y: float(np.mean(np.argmax(y, -1) == labels))) if (
        labels is not None) else (lambda y: None)
    return Agreement(
        samples=len(images),
        top1_agreement=float(np.mean(same)),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        keras_accuracy=accuracy(expected),
        tflite_accuracy=accuracy(actual),
    )


@dataclasses.dataclass
class Latency:
    threads: int
    runs: int
    median_ms: float
    p90_ms: float


def latency(content, threads, runs=50, warmup=5):
    """Batch-1 latency with XNNPACK and `threads` threads, in ms.

    Call only on a file that `xnnpack_check` passed: the check runs the file
    in a child process first, so that a crashing file cannot reach here.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    shape = [1 if s < 0 else int(s) for s in detail["shape_signature"]]
    if list(detail["shape"]) != shape:
        interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    info = (np.iinfo(detail["dtype"]) if np.issubdtype(detail["dtype"], np.integer)
            else None)
    x = (rng.integers(info.min, info.max, shape) if info is not None
         else rng.uniform(0, 255, shape)).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], x)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        interpreter.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return Latency(threads, runs, 1e3 * float(np.median(times)),
                   1e3 * float(np.percentile(times, 90)))


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def tiny_scales(content, threshold=1e-6):
    """Names of activation tensors whose int8 scale is below `threshold`.

    A tensor that was constant on the calibration data (typically a ReLU that
    never fired) gets a scale near 1e-8; XNNPACK refuses such files.
    """
    interpreter = make_interpreter(content)
    found = []
    for detail in interpreter.get_tensor_details():
        scales = detail["quantization_parameters"]["scales"]
        if (np.issubdtype(detail["dtype"], np.integer)
                and np.dtype(detail["dtype"]).itemsize == 1
                and len(scales) == 1 and 0 < scales[0] < threshold):
            found.append(detail["name"])
    return found
