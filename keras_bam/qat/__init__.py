"""Quantization-aware training (QAT) of Keras 3 BAM models with tfmot.

tensorflow-model-optimization (tfmot) 0.8 quantizes only legacy Keras
(`tf_keras`) models, and importing it switches `tensorflow.keras` to legacy Keras
for the whole process. So the legacy half runs in a child process started
with TF_USE_LEGACY_KERAS=1 (`keras_bam.qat.worker`), and this module, the
half the user's process runs, imports neither tfmot nor tf_keras:

1. the Keras 3 model is saved to a temporary `.keras` file;
2. the child builds its legacy twin, BAM as a block of standard layers so
   that tfmot quantizes BAM's insides (`keras_bam.qat.legacy`), checks it
   computes the same outputs, quantizes, fine-tunes and converts it to a
   full-integer int8 file (`keras_bam.qat.quantize`), and writes the
   fine-tuned float weights back into the Keras 3 model;
3. `run_qat` returns the fine-tuned model and the file; the caller hands
   them to the same checks and atomic write as every export
   (`keras_bam.export.verify_and_write`, with the fine-tuned model passed
   through `keras_bam.export.app.with_probabilities` so that both end in
   the same softmax). The export command (`keras_bam.commands.export`)
   does, writes the file's metadata, runs it in MediaPipe Tasks, and
   compares the held-out accuracy of the float model, of its post-training
   int8 file and of the QAT file.

The dependency is one way: the worker converts with
`keras_bam.export.convert`; the export library never imports this package.

`keras_bam.qat.legacy` also carries BAM and the rewriter's placement to
`tf_keras.applications` models, for legacy-Keras users (`insert_bam` there).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# (module, pip name) that the legacy half needs.
REQUIREMENTS = (("tensorflow_model_optimization", "tensorflow-model-optimization"),
                ("tf_keras", "tf_keras"))
INSTALL_HINT = "pip install 'keras-bam[qat]'"

__all__ = ["INSTALL_HINT", "PIXEL_RANGE", "QATError", "REQUIREMENTS",
           "legacy_environment", "missing_requirements", "run_qat"]


def missing_requirements():
    """pip names of what QAT needs and is not installed (nothing imported)."""
    return [pip for module, pip in REQUIREMENTS
            if importlib.util.find_spec(module) is None]


def legacy_environment():
    """os.environ for a child process that runs on legacy Keras."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (package_root,
                                       os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}


# What the exporter's models take: float32 pixels 0..255.
PIXEL_RANGE = (0.0, 255.0)
INPUT_TYPES = ("uint8", "int8", "float32")


def run_qat(model, images, labels, epochs=2, learning_rate=1e-3,
            input_type="uint8", input_range=PIXEL_RANGE, seed=0, timeout=1800):
    """Quantization-aware fine-tuning of a Keras 3 model, in a child process.

    Args:
        model: a Keras 3 Functional image model (BAM layers welcome) taking
            the same inputs as `images`.
        images, labels: training images and integer labels to fine-tune
            on (a calibration/training split, never the held-out one).
        epochs: fine-tuning epochs (Adam, cosine decay to 0 from
            `learning_rate`).
        input_type: the int8 file's input and output type: "uint8"
            (default: with `input_range` (0, 255), camera bytes as they
            are, scale 1, zero point 0), "int8" or "float32".
        input_range: (min, max), the fixed range of the input's
            quantization, which `images` must lie in; default the pixels'
            (0, 255). None lets tfmot learn it from `images` (the input
            scale is then whatever range they span).
        seed: the fine-tuning's shuffling and initial state.
        timeout: seconds the child may take.

    Returns:
        (fine-tuned Keras 3 model, .tflite bytes, details dict from the
        child: twin difference, loss, whether a softmax was appended to
        the file's logits, ...). The file ends in a softmax where the model
        ends in logits (`details["softmax_appended"]`), as the exporter's
        files do. Raises `QATError` with the child's message when it fails,
        and before starting it for a BAM the legacy twin cannot carry
        (channels_first, hard_sigmoid); ValueError for arguments that do
        not fit.
    """
    import keras

    if input_type not in INPUT_TYPES:
        raise ValueError(f"`input_type` must be one of {INPUT_TYPES}. Received: "
                         f"{input_type!r}.")
    images = np.asarray(images, np.float32)
    range_arguments = []
    if input_range is not None:
        low, high = _check_range(input_range)
        if images.size and (images.min() < low or images.max() > high):
            raise ValueError(
                f"`images` span {images.min():g}..{images.max():g}, outside "
                f"`input_range` ({low:g}, {high:g}), the input quantization's "
                "fixed range. Pass images in that range (pixels 0..255 for the "
                "default), the range the model takes, or input_range=None to "
                "learn it from the images.")
        range_arguments = ["--input-range", repr(low), repr(high)]
    _check_carriable(model)

    missing = missing_requirements()
    if missing:
        raise QATError(f"Quantization-aware training needs {' and '.join(missing)}"
                       f": {INSTALL_HINT}.")
    with tempfile.TemporaryDirectory(prefix="keras_bam_qat_") as folder:
        model_path = os.path.join(folder, "model.keras")
        data_path = os.path.join(folder, "data.npz")
        model.save(model_path)
        np.savez(data_path, images=images, labels=np.asarray(labels))
        command = [sys.executable, "-m", "keras_bam.qat.worker", model_path,
                   data_path, folder, "--epochs", str(epochs),
                   "--learning-rate", str(learning_rate), "--input-type",
                   input_type, "--seed", str(seed), *range_arguments]
        try:
            child = subprocess.run(command, capture_output=True, text=True,
                                   timeout=timeout, env=legacy_environment())
        except subprocess.TimeoutExpired:
            raise QATError(f"quantization-aware training did not finish in "
                           f"{timeout} s") from None
        if child.returncode != 0:
            errors = [line for line in child.stderr.splitlines()
                      if line.startswith("error: ")]
            message = (errors[-1][len("error: "):] if errors else
                       " | ".join(child.stderr.strip().splitlines()[-3:]))
            raise QATError(message, usage=child.returncode == 2)
        with open(os.path.join(folder, "qat.tflite"), "rb") as f:
            content = f.read()
        with open(os.path.join(folder, "result.json")) as f:
            details = json.load(f)
        import keras_bam.layers  # noqa: F401 - registers BAM for loading

        finetuned = keras.saving.load_model(
            os.path.join(folder, "finetuned.keras"))
    return finetuned, content, details


def _check_carriable(model):
    """Refuses, before the child starts (seconds spent importing TensorFlow,
    tf_keras and tfmot), a model with a BAM the legacy block cannot give
    (`legacy.check_bam_config`: channels_first, hard_sigmoid), with the
    child's own message. The child checks every layer again."""
    from keras_bam.layers.bam import BAM
    from keras_bam.qat.legacy import check_bam_config
    from keras_bam.rewrite.keras_internals import all_sublayers

    for layer in all_sublayers(model):
        if isinstance(layer, BAM):
            try:
                check_bam_config(layer.get_config(), layer.name)
            except ValueError as error:
                raise QATError(str(error)) from None


def _check_range(input_range):
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"`input_range` must be (min, max) numbers or None. "
                         f"Received: {input_range!r}.") from None
    if not low < high or not np.isfinite([low, high]).all():
        raise ValueError(f"`input_range` must be finite with min < max. Received: "
                         f"{input_range!r}.")
    return low, high


class QATError(Exception):
    """Quantization-aware training failed; `usage` is True when the model
    or the installation is the cause (the message says what to do)."""

    def __init__(self, message, usage=True):
        super().__init__(message)
        self.usage = usage
