"""Keras model -> TFLite flatbuffer, float or quantized."""

import warnings

import numpy as np

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def _input_spec(model, batch_size):
    import tensorflow as tf

    if len(model.inputs) != 1:
        raise ValueError(
            "to_tflite converts image models with exactly one input. "
            f"Received a model with {len(model.inputs)} inputs."
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            "to_tflite needs a 4-D image input with known height, width and "
            f"channels. Received input shape {shape}. Build the model with a "
            "fixed input_shape, e.g. keras.Input((224, 224, 3))."
        )
    return tf.TensorSpec((batch_size,) + shape[1:], tf.float32)


def trace(model, batch_size=1):
    """`model`'s inference call, traced for a batch of `batch_size`: the
    concrete function `to_tflite` converts.

    Tracing a large model takes seconds; pass the result to `to_tflite` as
    `traced` to convert one model several ways (an export converts it to
    int8 and to float32, for the size ratio) with one trace. The function
    reads the model's variables when converted, not when traced.
    """
    import tensorflow as tf

    spec = _input_spec(model, batch_size)
    function = tf.function(lambda x: model(x, training=False))
    return function.get_concrete_function(spec)


def to_tflite(model, quantization="int8", representative_data=None,
              batch_size=1, input_type="int8", output_type=None, traced=None):
    """Converts a Keras 3 image model to a TFLite flatbuffer.

    Args:
        model: a Keras model with one 4-D image input of known size.
        quantization: "float32", "float16" (weights in float16),
            "dynamic" (int8 weights, float activations) or "int8" (full
            integer: every op int8, calibrated on `representative_data`).
        representative_data: for "int8", an iterable of input arrays, each
            one sample or a batch of samples, in the model's input range.
        batch_size: the signature's batch size. 1 (default) gives the
            cleanest graph; None gives an unknown batch size.
        input_type, output_type: for "int8", the dtype of the model's input
            and output: "int8", "uint8" or "float32" (output_type=None
            follows input_type).
        traced: `trace(model, batch_size)`, where the caller has it (the
            model is then not traced again).

    Returns:
        The .tflite file's bytes.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    spec = _input_spec(model, batch_size)
    if traced is None:
        traced = trace(model, batch_size)
    else:
        traced_spec = traced.structured_input_signature[0][0]
        if tuple(traced_spec.shape) != tuple(spec.shape):
            raise ValueError(
                f"`traced` takes inputs of shape {tuple(traced_spec.shape)}, "
                f"not the {tuple(spec.shape)} of batch_size={batch_size!r}: "
                "pass trace(model, batch_size) with the same batch_size."
            )
    # Not passing `model` as the trackable: with it the converter keeps
    # Keras 3 variables as READ_VARIABLE ops instead of freezing them.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([traced])
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative_data is None:
            raise ValueError(
                "quantization='int8' needs representative_data: a few hundred "
                "real inputs to calibrate the activation ranges."
            )
        converter.representative_dataset = _calibration(representative_data, spec)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        dtypes = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}
        for name, value in (("input_type", input_type),
                            ("output_type", output_type or input_type)):
            if value not in dtypes:
                raise ValueError(
                    f"`{name}` must be one of {tuple(dtypes)}. "
                    f"Received: {name}={value!r}"
                )
        converter.inference_input_type = dtypes[input_type]
        converter.inference_output_type = dtypes[output_type or input_type]
    with warnings.catch_warnings():
        # Emitted for every int8 conversion from a concrete function; the
        # input statistics it asks for come from the representative dataset.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")
        return converter.convert()


def _calibration(representative_data, spec):
    sample_shape = tuple(spec.shape[1:])

    def samples():
        for item in representative_data:
            array = np.asarray(item, dtype=np.float32)
            if array.shape == sample_shape:
                array = array[None]
            if array.shape[1:] != sample_shape:
                raise ValueError(
                    f"Representative data of shape {array.shape} does not fit "
                    f"the model's input {sample_shape}."
                )
            for sample in array:
                yield [sample[None]]

    return samples
