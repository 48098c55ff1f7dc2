"""TFLite model metadata for image classifiers, the kind MediaPipe Tasks reads.

A .tflite file can carry a `TFLITE_METADATA` flatbuffer (schema
`metadata_schema.fbs`, identifier "M001") and, appended after the model, a
zip archive of associated files. MediaPipe Tasks' `ImageClassifier` and the
LiteRT support libraries read both: the input's colour space and
normalization, and the class names (a labels file attached to the output
tensor, one name per line).

The flatbuffer is assembled here with the Python bindings that `flatc`
generated from the schemas and that ship in the `mediapipe` wheel
(`mediapipe.tasks.metadata.metadata_schema_py_generated` and
`schema_py_generated`). The metadata writers of mediapipe 1.2.x cannot be
imported (they need a `mediapipe.tasks.cc` extension that the wheel does not
ship), and tflite-support 0.4.4 needs protobuf < 4, which TensorFlow 2.21
does not allow, and the system's libusb-1.0. Where mediapipe is not
importable in this process, `add_metadata` runs this file as a script under
the Python that `keras_bam.export.clients.mediapipe_python` names.

Everything used here (ModelMetadata, ImageProperties, NormalizationOptions,
FeatureProperties, Stats, TENSOR_AXIS_LABELS) exists since schema version
1.0.0, so that is the minimum parser version the metadata declares.
"""

import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import zipfile

logger = logging.getLogger("keras_bam.export")

METADATA_BUFFER_NAME = "TFLITE_METADATA"
LABELS_FILE_NAME = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"
INPUT_TYPES = ("uint8", "int8", "float32")
# A uint8 input is fed camera bytes as they are (MediaPipe applies no
# normalization to it), so its quantization must be the pixel mapping:
# zero point = mean, scale = 1 / std, within these tolerances.
_ZERO_POINT_TOLERANCE = 1.0
_SCALE_RELATIVE_TOLERANCE = 0.01
# Marks the child writer's log lines, which the parent logs again.
_CHILD_WARNING = "keras_bam.export.metadata warning: "


# The flatc-generated bindings in the mediapipe wheel, in
# mediapipe/tasks/metadata/ (a folder without __init__.py). They need only
# `flatbuffers`; imported through the package they would first import all
# of mediapipe (its vision and audio tasks, matplotlib: about a second of
# CPU per export, and more of wall time), so they are loaded from their
# files where the folder is found without importing mediapipe.
_SCHEMA_MODULES = {"metadata": "metadata_schema_py_generated",
                   "model": "schema_py_generated"}
_loaded_schemas = {}


def _schema_folder():
    """mediapipe/tasks/metadata, located without importing mediapipe (the
    spec of a top-level package is found without running it), or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = os.path.join(root, "tasks", "metadata")
        if all(os.path.isfile(os.path.join(folder, f"{module}.py"))
               for module in _SCHEMA_MODULES.values()):
            return folder
    return None


def _schemas():
    if not _loaded_schemas:
        folder = _schema_folder()
        if folder is None:  # another layout: through the package
            from mediapipe.tasks.metadata import metadata_schema_py_generated, schema_py_generated

            _loaded_schemas.update(metadata=metadata_schema_py_generated,
                                   model=schema_py_generated)
        else:
            import importlib.util

            for key, module in _SCHEMA_MODULES.items():
                spec = importlib.util.spec_from_file_location(
                    f"keras_bam_mediapipe_{module}", os.path.join(folder, f"{module}.py"))
                loaded = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(loaded)
                _loaded_schemas[key] = loaded
    return _loaded_schemas["metadata"], _loaded_schemas["model"]


def _schemas_available():
    import importlib.util

    if _schema_folder() is not None:
        return True
    try:
        return importlib.util.find_spec("mediapipe.tasks.metadata") is not None
    except ModuleNotFoundError:
        return False


def add_metadata(tflite_bytes, *, labels, name, description=None, version=None,
                 author=None, license=None, input_type=None, mean=None, std=None):
    """Returns a copy of an image classifier's .tflite file with metadata.

    The file must have one 1 x H x W x 3 image input and one 1 x N output
    that is a probability vector (the graph ends in SOFTMAX, possibly
    followed by a (de)quantize). The metadata says: the model's name,
    description, version, author and licence; the input is an RGB image
    that a client maps from pixels p to (p - mean) / std; the output holds
    the probabilities of the N classes, named by an attached labels file.

    Nothing is written to disk; the input bytes are not modified.

    Args:
        tflite_bytes: the .tflite file, as bytes (without metadata).
        labels: the N class names, in the order of the output, each a
            non-empty string on one line.
        name: the model's name.
        description, version, author, license: optional strings.
        input_type: "uint8", "int8" or "float32": checked against the file's
            input type. None reads it from the file.
        mean, std: the normalization that maps pixels to the model's input,
            one value or one per channel (R, G, B). Required for a float32
            input (MediaPipe refuses a float32 image input without it). For
            a uint8 input they default to the mapping that the input's
            quantization defines, and must agree with it when given: the
            client feeds raw bytes.

    Returns:
        The new file's bytes.

    Raises:
        ValueError: for a file or an argument that does not fit, saying
            what was received and what is expected.
    """
    if not isinstance(tflite_bytes, (bytes, bytearray)):
        raise TypeError(
            "add_metadata takes the .tflite file as bytes. Received "
            f"{type(tflite_bytes).__name__}; read a file with "
            "open(path, 'rb').read()."
        )
    request = {
        "labels": _check_labels(labels),
        "name": _check_text("name", name, required=True),
        "description": _check_text("description", description),
        "version": _check_text("version", version),
        "author": _check_text("author", author),
        "license": _check_text("license", license),
        "input_type": _check_choice("input_type", input_type, INPUT_TYPES),
        "mean": _check_values("mean", mean),
        "std": _check_values("std", std, positive=True),
    }
    if (request["mean"] is None) != (request["std"] is None):
        raise ValueError(
            "add_metadata needs `mean` and `std` together. Received "
            f"mean={mean!r}, std={std!r}. Pass both, e.g. mean=0.0, std=1.0 "
            "for a model that takes pixels in [0, 255]."
        )
    if _schemas_available():
        return _add_metadata(bytes(tflite_bytes), **request)
    return _add_metadata_in_child(bytes(tflite_bytes), request)


def _check_labels(labels):
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise TypeError(
            "`labels` must be a list of class names. Received "
            f"{type(labels).__name__}: {labels!r}."
        )
    labels = list(labels)
    for label in labels:
        if not isinstance(label, str) or not label.strip() or "\n" in label \
                or "\r" in label:
            raise ValueError(
                "Each label must be a non-empty string on one line (the "
                f"labels file holds one per line). Received {label!r} in "
                f"labels={labels!r}."
            )
    if not labels:
        raise ValueError("`labels` is empty: pass one class name per output.")
    return labels


def _check_text(field, value, required=False):
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"`{field}` must be a non-empty string. Received {field}={value!r}."
        )
    return value


def _check_choice(field, value, choices):
    if value is not None and value not in choices:
        raise ValueError(
            f"`{field}` must be one of {choices} or None. Received "
            f"{field}={value!r}."
        )
    return value


def _check_values(field, value, positive=False):
    if value is None:
        return None
    values = [value] if isinstance(value, (int, float)) else value
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(
            f"`{field}` must be a number or 3 numbers (R, G, B). Received "
            f"{field}={value!r}."
        ) from None
    if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values) \
            or (positive and not all(v > 0 for v in values)):
        requirement = "positive, finite" if positive else "finite"
        raise ValueError(
            f"`{field}` must be one or three {requirement} numbers (R, G, B). "
            f"Received {field}={value!r}."
        )
    return values


def _tensor_type_name(model_fb, code):
    names = {v: k for k, v in vars(model_fb.TensorType).items() if not k.startswith("_")}
    return names.get(code, str(code)).lower()


def _op_name(model_fb, model, op):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(model_fb.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def _final_op(model_fb, model, graph):
    """Name of the op that computes the output, looking through (de)quantizes."""
    producers = {out: op for op in graph.operators or [] for out in op.outputs}
    tensor = graph.outputs[0]
    for _ in range(len(graph.operators or [])):
        op = producers.get(tensor)
        if op is None:
            return None
        name = _op_name(model_fb, model, op)
        if name not in ("QUANTIZE", "DEQUANTIZE"):
            return name
        tensor = op.inputs[0]
    return None


def _add_metadata(content, *, labels, name, description, version, author,
                  license, input_type, mean, std):
    import flatbuffers
    import numpy as np

    metadata_fb, model_fb = _schemas()
    model = model_fb.ModelT.InitFromPackedBuf(bytearray(content), 0)
    if any(_text(m.name) == METADATA_BUFFER_NAME for m in model.metadata or []):
        raise ValueError(
            "The .tflite file already has TFLite metadata. add_metadata takes "
            "the converter's output; convert the model again instead of "
            "adding metadata twice."
        )
    if len(model.subgraphs or []) != 1:
        raise ValueError(
            "add_metadata writes metadata for image classifiers with one "
            f"subgraph. The file has {len(model.subgraphs or [])}."
        )
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            "add_metadata needs one image input and one probability output. "
            f"The file has {len(graph.inputs)} input(s) and "
            f"{len(graph.outputs)} output(s)."
        )
    image = graph.tensors[graph.inputs[0]]
    shape = [int(s) for s in image.shape]
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ValueError(
            "add_metadata needs a 1 x height x width x 3 (RGB) image input, "
            f"as MediaPipe Tasks does. The file's input has shape {shape}; "
            "convert with batch_size=1 from a model with 3 input channels."
        )
    file_type = _tensor_type_name(model_fb, image.type)
    if input_type is not None and input_type != file_type:
        raise ValueError(
            f"input_type={input_type!r} but the file's input is {file_type}. "
            "Pass the type the file was converted with, or None."
        )
    if file_type not in INPUT_TYPES:
        raise ValueError(
            f"The file's input is {file_type}; image classifier metadata "
            f"describes inputs of type {INPUT_TYPES}."
        )
    if file_type == "int8":
        logger.warning(
            "The .tflite input is int8: MediaPipe Tasks accepts only uint8 or "
            "float32 image inputs and will refuse this file, metadata or not."
        )
    if file_type == "float32" and mean is None:
        raise ValueError(
            "The file's input is float32: MediaPipe needs the normalization "
            "that maps pixels to it. Pass mean and std (input = (pixel - mean) "
            "/ std), e.g. mean=0.0, std=1.0 for a model that takes pixels in "
            "[0, 255], or mean=127.5, std=127.5 for one that takes [-1, 1]."
        )
    if file_type in ("uint8", "int8"):
        mean, std = _pixel_mapping(image, file_type, mean, std)

    output = graph.tensors[graph.outputs[0]]
    out_shape = [int(s) for s in output.shape]
    if len(out_shape) != 2 or out_shape[0] != 1 or out_shape[1] != len(labels):
        raise ValueError(
            f"The file's output has shape {out_shape}; with {len(labels)} "
            f"labels it must be [1, {len(labels)}] (one probability per class)."
        )
    final = _final_op(model_fb, model, graph)
    if final != "SOFTMAX":
        raise ValueError(
            f"The file's output is computed by {final}, not SOFTMAX, so it is "
            "not a probability vector and clients would show logits as "
            "scores. End the Keras model in a softmax before converting."
        )

    image_md = metadata_fb.TensorMetadataT()
    image_md.name = "image"
    image_md.description = (
        f"RGB image, {shape[1]} x {shape[2]} pixels; input = (pixel - mean) / std "
        "with the normalization below."
    )
    image_md.content = metadata_fb.ContentT()
    image_md.content.contentPropertiesType = metadata_fb.ContentProperties.ImageProperties
    image_md.content.contentProperties = metadata_fb.ImagePropertiesT()
    image_md.content.contentProperties.colorSpace = metadata_fb.ColorSpaceType.RGB
    normalization = metadata_fb.ProcessUnitT()
    normalization.optionsType = metadata_fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = metadata_fb.NormalizationOptionsT()
    normalization.options.mean = list(mean)
    normalization.options.std = list(std)
    image_md.processUnits = [normalization]

    labels_file = metadata_fb.AssociatedFileT()
    labels_file.name = LABELS_FILE_NAME
    labels_file.description = "Class names, one per line, in the order of the output."
    labels_file.type = metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    scores_md = metadata_fb.TensorMetadataT()
    scores_md.name = "probability"
    scores_md.description = (
        f"Probabilities of the {len(labels)} classes (softmax, summing to 1), "
        "in the order of the labels file."
    )
    scores_md.content = metadata_fb.ContentT()
    scores_md.content.contentPropertiesType = metadata_fb.ContentProperties.FeatureProperties
    scores_md.content.contentProperties = metadata_fb.FeaturePropertiesT()
    scores_md.stats = metadata_fb.StatsT()
    scores_md.stats.min = [0.0]
    scores_md.stats.max = [1.0]
    scores_md.associatedFiles = [labels_file]

    subgraph_md = metadata_fb.SubGraphMetadataT()
    subgraph_md.inputTensorMetadata = [image_md]
    subgraph_md.outputTensorMetadata = [scores_md]
    model_md = metadata_fb.ModelMetadataT()
    model_md.name = name
    model_md.description = description
    model_md.version = version
    model_md.author = author
    model_md.license = license
    model_md.minParserVersion = MIN_PARSER_VERSION
    model_md.subgraphMetadata = [subgraph_md]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_md.Pack(builder), file_identifier=b"M001")
    buffer = model_fb.BufferT()
    buffer.data = np.frombuffer(bytes(builder.Output()), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = model_fb.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]

    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    # The associated files travel as a zip archive appended to the model:
    # the flatbuffer ignores trailing bytes and zip readers find the archive
    # from its end. Stored, not deflated, as the readers expect.
    stream = io.BytesIO()
    stream.write(bytes(builder.Output()))
    # A fixed timestamp and mode: the same model and labels give the same bytes.
    entry = zipfile.ZipInfo(LABELS_FILE_NAME, date_time=(1980, 1, 1, 0, 0, 0))
    entry.compress_type = zipfile.ZIP_STORED
    entry.external_attr = 0o644 << 16
    with zipfile.ZipFile(stream, "a") as archive:
        archive.writestr(entry, "".join(label + "\n" for label in labels))
    return stream.getvalue()


def _pixel_mapping(image, file_type, mean, std):
    """Mean and std of the pixel mapping that an integer input's quantization defines."""
    quantization = image.quantization
    scales = list(quantization.scale) if quantization is not None and \
        quantization.scale is not None else []
    zero_points = list(quantization.zeroPoint) if quantization is not None and \
        quantization.zeroPoint is not None else []
    if len(scales) != 1 or len(zero_points) != 1 or not scales[0] > 0:
        raise ValueError(
            f"The file's {file_type} input has no per-tensor quantization "
            f"(scale {scales}, zero point {zero_points}), so no pixel mapping "
            "can be derived from it. Convert with full-integer quantization."
        )
    scale, zero_point = float(scales[0]), float(zero_points[0])
    if file_type == "int8":
        # An int8 value q stands for the byte q + 128.
        zero_point += 128.0
    derived_mean, derived_std = [zero_point], [1.0 / scale]
    if mean is None:
        return derived_mean, derived_std
    agrees = all(abs(m - zero_point) <= _ZERO_POINT_TOLERANCE for m in mean) and all(
        abs(s * scale - 1.0) <= _SCALE_RELATIVE_TOLERANCE for s in std
    )
    if not agrees:
        raise ValueError(
            f"The file's {file_type} input maps a byte b to (b - {zero_point:g}) * "
            f"{scale:.6g}, i.e. mean {zero_point:g}, std {1.0 / scale:.6g}, but "
            f"mean={mean}, std={std} were given. A client feeds camera bytes to "
            "an integer input as they are, so the model would see other values "
            "than in training. Calibrate on images that span 0..255 (so that "
            "the input scale is 1 / std and the zero point the mean), or export "
            "a float32 input."
        )
    return mean, std


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _add_metadata_in_child(content, request):
    from keras_bam.export.clients import mediapipe_python

    python = mediapipe_python()
    if python is None:
        raise RuntimeError(
            "Writing TFLite metadata needs the schema bindings that ship with "
            "`mediapipe`, which is not installed here. `pip install mediapipe` "
            "(beside TensorFlow; it needs absl-py 2, which "
            "tensorflow-model-optimization does not allow), or set "
            "KERAS_BAM_MEDIAPIPE_PYTHON to a Python that has it."
        )
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "in.tflite")
        target = os.path.join(folder, "out.tflite")
        with open(source, "wb") as f:
            f.write(content)
        child = subprocess.run(
            [python, os.path.abspath(__file__), source, target],
            input=json.dumps(request), capture_output=True, text=True, timeout=300,
        )
        lines = child.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {}
        if child.returncode != 0 or "error" in result or not os.path.exists(target):
            if result.get("type") == "ValueError":
                raise ValueError(result["error"])
            tail = " | ".join(child.stderr.strip().splitlines()[-3:])
            raise RuntimeError(
                f"The metadata writer under {python} failed (exit code "
                f"{child.returncode}): {result.get('error') or tail}"
            )
        for line in child.stderr.splitlines():
            if line.startswith(_CHILD_WARNING):
                logger.warning(line[len(_CHILD_WARNING):])
        with open(target, "rb") as f:
            return f.read()


def _main(argv):
    """Child-process entry: `python metadata.py IN OUT`, the request on stdin."""
    source, target = argv
    request = json.loads(sys.stdin.read())
    with open(source, "rb") as f:
        content = f.read()
    try:
        result = _add_metadata(content, **request)
    except ValueError as error:
        print(json.dumps({"error": str(error), "type": "ValueError"}))
        return 1
    with open(target, "wb") as f:
        f.write(result)
    print(json.dumps({"bytes": len(result)}))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format=_CHILD_WARNING + "%(message)s")
    sys.exit(_main(sys.argv[1:]))
