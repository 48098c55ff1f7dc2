"""What makes an exported image classifier usable by an app as it is.

- `with_probabilities`: the Keras model with a softmax appended when it ends
  in logits, so that the file's output is a probability vector.
- `write_metadata`: TFLite model metadata (name, description, labels,
  normalization) through `keras_bam.export.metadata.add_metadata`.
- `check_clients`: the file through MediaPipe Tasks' `ImageClassifier` and
  LiteRT's `CompiledModel` (`keras_bam.export.clients`, child processes),
  compared with the LiteRT `Interpreter`.
- `locate_tensors`: whether each named tensor is inside a BAM or in the
  backbone, for the messages about degenerate int8 scales.
"""

import dataclasses
import logging
import re

import numpy as np

logger = logging.getLogger("keras_bam.export")

# Rows of a probability output sum to 1 within this (float32 softmax).
_SUM_TOLERANCE = 1e-3
# The CompiledModel run: how many held-out images, and how far its
# dequantized outputs may be from the Interpreter's (one int8 step of a
# probability output is 1/256).
COMPILED_MODEL_SAMPLES = 8
_COMPILED_MODEL_TOLERANCE = 1.5 / 256


def is_probability_output(model, samples):
    """True when `model`'s outputs on `samples` are probability rows
    (non-negative, summing to 1): its graph already ends in a softmax."""
    import keras

    # A direct call, not predict(): no tf.function traced per export.
    outputs = np.asarray(keras.ops.convert_to_numpy(
        model(np.asarray(samples, np.float32), training=False)), np.float64)
    if outputs.ndim != 2:
        return False
    return bool(np.all(outputs >= -1e-6)
                and np.allclose(outputs.sum(axis=-1), 1.0, atol=_SUM_TOLERANCE))


def with_probabilities(model, samples):
    """Returns (`model`, False) when it outputs probabilities, else (a model
    that applies `keras.layers.Softmax` to its output, True).

    Logits are recognized by their values on `samples` (a few inputs), not
    by the name of the last layer: a Dense without activation, an
    Activation, a nested model all look alike from outside.
    """
    import keras

    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        return model, False
    if is_probability_output(model, samples[:8]):
        return model, False
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="pixels")
    outputs = keras.layers.Softmax(name="probabilities")(model(inputs))
    return keras.Model(inputs, outputs, name=model.name), True


def write_metadata(content, labels, *, name, description, input_type, version=None,
                   author=None, license=None):
    """(the file with metadata, None) or (the file as it was, why not).

    The model takes pixels 0..255 (the exporter's contract), so the
    normalization is mean 0, std 1 for every input type; for a uint8 input
    `add_metadata` checks that the input's quantization is that mapping.
    Raises ValueError when the file contradicts its metadata (the caller
    rejects it); returns a reason when metadata does not apply or
    mediapipe's schema bindings are nowhere to be found.
    """
    from keras_bam.export import metadata

    if not labels:
        return content, "no class names (the images have no labels)"
    try:
        return metadata.add_metadata(
            content, labels=list(labels), name=name, description=description,
            version=version, author=author, license=license, input_type=input_type,
            mean=0.0, std=1.0), None
    except RuntimeError as error:  # the writer needs mediapipe's schemas
        return content, f"not written: {error}"


def metadata_applies(graph, labels):
    """Why TFLite classifier metadata cannot describe this file, or None."""
    shape = graph.input_shapes[0] if graph.input_shapes else []
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        return (f"not written: the input is {shape}, classifier metadata "
                "describes 1 x H x W x 3 RGB inputs")
    if not labels:
        return "not written: no class names"
    return None


@dataclasses.dataclass
class ClientCheck:
    """What the app clients made of the file."""

    mediapipe: dict | None  # accuracy, agreement, names, probability sums
    mediapipe_note: str | None  # why it did not run, where it did not
    compiled_model: dict | None
    problems: list


def check_clients(content, held_out, graph, labels):
    """Runs the file through MediaPipe Tasks and LiteRT's CompiledModel.

    MediaPipe classifies every held-out image (uint8 RGB) with default
    options; its top-1 is compared with the labels and with the LiteRT
    Interpreter's. CompiledModel runs the first images and must give the
    Interpreter's outputs. A client that refuses the file or disagrees is a
    problem (the caller rejects the file); a MediaPipe that is not
    installed is a note.
    """
    from keras_bam.export import clients, litert

    problems = []
    images = np.asarray(held_out.images, np.float32)
    expected = litert.predict(content, images)
    input_type = (graph.input_dtypes or ["?"])[0]
    shape = graph.input_shapes[0] if graph.input_shapes else []

    compiled = None
    count = min(COMPILED_MODEL_SAMPLES, len(images))
    detail = litert.make_interpreter(content).get_input_details()[0]
    run = clients.compiled_model_run(content, litert.quantize_input(images[:count], detail))
    if not run.ok:
        problems.append(f"LiteRT CompiledModel did not run the file: {run.error}")
    else:
        output = litert.make_interpreter(content).get_output_details()[0]
        values = litert.dequantize_output(run.outputs.reshape(count, -1), output)
        difference = float(np.max(np.abs(values - expected[:count])))
        compiled = {"samples": count, "max_abs_diff": difference,
                    "fully_accelerated": run.fully_accelerated}
        if difference > _COMPILED_MODEL_TOLERANCE:
            problems.append(f"LiteRT CompiledModel's outputs differ from the "
                            f"Interpreter's by up to {difference:.3g}")

    note, result = None, None
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        note = f"not run: MediaPipe classifies 1 x H x W x 3 RGB inputs, this is {shape}"
    elif input_type not in ("uint8", "float32"):
        note = (f"not run: MediaPipe takes uint8 or float32 image inputs, this "
                f"file's is {input_type} (export with --input-type uint8)")
    else:
        try:
            python = clients.mediapipe_python()
        except ValueError as error:
            python, note = None, f"not run: {error}"
        if python is None and note is None:
            note = ("not run: mediapipe is not installed (pip install mediapipe, "
                    f"or set {clients.MEDIAPIPE_PYTHON_ENV}; `make export` does)")
    if note is None:
        pixels = np.clip(np.round(images), 0, 255).astype(np.uint8)
        run = clients.mediapipe_classify(content, pixels)
        if not run.ok:
            problems.append(f"MediaPipe Tasks' ImageClassifier refused the file: "
                            f"{run.error}")
        else:
            result = _mediapipe_summary(run, expected, held_out, labels)
            if result["top1_agreement_with_litert"] < 0.99:
                problems.append(
                    "MediaPipe's top-1 agrees with LiteRT's on only "
                    f"{result['top1_agreement_with_litert']:.4f} of the images")
    return ClientCheck(result, note, compiled, problems)


def _mediapipe_summary(run, expected, held_out, labels):
    scores = run.outputs
    if scores.shape[1] < expected.shape[1]:  # categories never returned
        scores = np.pad(scores, ((0, 0), (0, expected.shape[1] - scores.shape[1])))
    top1 = np.argmax(scores, axis=-1)
    sums = scores.sum(axis=-1)
    return {
        "samples": int(len(scores)),
        "top1_accuracy": (None if held_out.labels is None
                          else float(np.mean(top1 == held_out.labels))),
        "top1_agreement_with_litert": float(np.mean(top1 == np.argmax(expected, -1))),
        "named_categories": bool(run.category_names) and all(run.category_names),
        "names_match_labels": (list(run.category_names) == list(labels)
                               if labels else None),
        "score_sum_min": float(sums.min()),
        "score_sum_max": float(sums.max()),
        "median_ms": float(1e3 * np.median(run.seconds)),
    }


def bam_layer_names(model):
    """Names of the BAM layers in `model`, nested models included."""
    from keras_bam.layers.bam import BAM

    names = []
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, BAM):
            names.append(layer.name)
        stack.extend(getattr(layer, "layers", []))
    return names


def locate_tensors(tensor_names, model):
    """[(tensor name, "BAM <name>" or "backbone")] for TFLite tensor names,
    which carry the path of the Keras layer that computed them."""
    bams = bam_layer_names(model)
    located = []
    for tensor in tensor_names:
        # A fused tensor is named "path1;path2;...": each path is
        # model/layer/op, and Keras may have suffixed a layer name with _N.
        parts = re.split(r"[/;:]", tensor)
        owner = next((b for b in bams for part in parts
                      if re.fullmatch(re.escape(b) + r"(_\d+)?", part)), None)
        located.append((tensor.split(";")[0],
                        f"BAM {owner}" if owner else "backbone"))
    return located
