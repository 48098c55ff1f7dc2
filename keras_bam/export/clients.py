"""Run an exported .tflite file through the clients that apps deploy with.

`mediapipe_classify` runs MediaPipe Tasks' `ImageClassifier` (the C++ core
of the Android, iOS and web clients) with default options on uint8 RGB
images; `compiled_model_run` loads the file with LiteRT's `CompiledModel`
API. Each runs in a child process (`clients_worker.py`, run by path): a
client may abort the process on a file it dislikes, and an exporter must
survive that to report it. The child's log lines stay in the child.

mediapipe needs absl-py 2 and tensorflow-model-optimization needs absl-py 1,
so pip cannot install both in one environment. The MediaPipe child therefore
runs under the Python that `mediapipe_python` names: this one where
mediapipe is importable, else the one in KERAS_BAM_MEDIAPIPE_PYTHON (e.g. a
virtual environment with only `pip install mediapipe`).
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

MEDIAPIPE_PYTHON_ENV = "KERAS_BAM_MEDIAPIPE_PYTHON"
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients_worker.py")


@dataclasses.dataclass
class ClientResult:
    """What a client made of a .tflite file.

    Attributes:
        ok: the client loaded the file and ran every image.
        error: why not (the client's own message), or None.
        outputs: per image, the client's output: for MediaPipe the score of
            every category, by category index (n_images, n_classes), float32;
            for CompiledModel the file's raw output (its dtype). None on failure.
        category_names: MediaPipe's category names by index (None entries
            where the file has no labels); None for CompiledModel.
        seconds: MediaPipe's per-image classify() time; None otherwise.
        fully_accelerated: CompiledModel's `is_fully_accelerated()`.
    """

    ok: bool
    error: str = None
    outputs: np.ndarray = None
    category_names: list = None
    seconds: np.ndarray = None
    fully_accelerated: bool = None

    @property
    def top1(self):
        """Per image, the index of the highest output."""
        return None if self.outputs is None else np.argmax(self.outputs, axis=-1)

    @property
    def top1_names(self):
        """Per image, the name of the top category (MediaPipe only)."""
        if self.outputs is None or self.category_names is None:
            return None
        return [self.category_names[i] for i in self.top1]


def mediapipe_python():
    """The Python that runs MediaPipe Tasks, or None where there is none.

    KERAS_BAM_MEDIAPIPE_PYTHON if set (it must name an executable), else this
    interpreter if it can import mediapipe.
    """
    configured = os.environ.get(MEDIAPIPE_PYTHON_ENV)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ValueError(
                f"{MEDIAPIPE_PYTHON_ENV}={configured!r} is not an executable "
                "file. Point it at the python of an environment with mediapipe "
                "installed (e.g. /path/to/venv/bin/python), or unset it."
            )
        return configured
    if importlib.util.find_spec("mediapipe") is not None:
        return sys.executable
    return None


def mediapipe_classify(tflite, images, timeout=300):
    """Classifies images with MediaPipe Tasks' ImageClassifier, isolated.

    The classifier runs with default options (all categories, no score
    threshold), as an app's first try would, on each image as a uint8 RGB
    `mp.Image` (MediaPipe resizes it to the model's input if needed).

    Args:
        tflite: the .tflite file, as bytes or a path.
        images: uint8 array (n, height, width, 3), RGB pixels 0..255.
        timeout: seconds before the child is given up on.

    Returns:
        A `ClientResult`; `ok` is False, with MediaPipe's reason in `error`,
        where MediaPipe refuses the file or the child dies.
    """
    images = _check_images(images)
    python = mediapipe_python()
    if python is None:
        return ClientResult(
            ok=False,
            error="mediapipe is not installed: `pip install mediapipe` here, or "
                  f"set {MEDIAPIPE_PYTHON_ENV} to a Python that has it",
        )
    report, arrays = _run_worker(python, "mediapipe", tflite, images, timeout)
    if not report["ok"]:
        return ClientResult(ok=False, error=report["error"])
    return ClientResult(
        ok=True,
        outputs=arrays["scores"],
        category_names=report["category_names"],
        seconds=arrays["seconds"],
    )


def compiled_model_run(tflite, inputs, timeout=300):
    """Runs a .tflite file through LiteRT's CompiledModel API (CPU), isolated.

    Args:
        tflite: the .tflite file, as bytes or a path.
        inputs: array (n, ...) in the file's input dtype and sample shape
            (e.g. uint8 pixels for a uint8-input file); run one at a time.
        timeout: seconds before the child is given up on.

    Returns:
        A `ClientResult` whose `outputs` are the file's raw outputs, stacked.
    """
    inputs = np.asarray(inputs)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise ValueError(
            "compiled_model_run takes a batch of inputs, shape (n, ...) with "
            f"n >= 1. Received shape {inputs.shape}."
        )
    report, arrays = _run_worker(sys.executable, "compiled_model", tflite, inputs, timeout)
    if not report["ok"]:
        return ClientResult(ok=False, error=report["error"])
    return ClientResult(
        ok=True, outputs=arrays["outputs"], fully_accelerated=report["fully_accelerated"]
    )


def _check_images(images):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 \
            or len(images) == 0:
        raise ValueError(
            "mediapipe_classify takes uint8 RGB images, shape (n, height, "
            f"width, 3) with n >= 1. Received dtype {images.dtype}, shape "
            f"{images.shape}. Convert with np.clip(x, 0, 255).astype('uint8')."
        )
    return images


def _run_worker(python, client, tflite, data, timeout):
    with tempfile.TemporaryDirectory() as folder:
        if isinstance(tflite, (bytes, bytearray)):
            model_path = os.path.join(folder, "model.tflite")
            with open(model_path, "wb") as f:
                f.write(tflite)
        elif isinstance(tflite, (str, os.PathLike)):
            model_path = os.fspath(tflite)
            if not os.path.isfile(model_path):
                raise ValueError(f"No .tflite file at {model_path!r}.")
        else:
            raise TypeError(
                "Pass the .tflite file as bytes or a path. Received "
                f"{type(tflite).__name__}."
            )
        data_path = os.path.join(folder, "data.npy")
        result_path = os.path.join(folder, "result.npz")
        np.save(data_path, data)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3"}
        try:
            child = subprocess.run(
                [python, _WORKER, client, model_path, data_path, result_path],
                capture_output=True, text=True, timeout=timeout, env=env,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"{client} did not finish in {timeout} s"}, None
        lines = child.stdout.strip().splitlines()
        if child.returncode != 0 or not lines:
            tail = " | ".join(child.stderr.strip().splitlines()[-3:])
            return {
                "ok": False,
                "error": f"{client} exited with code {child.returncode}: {tail}",
            }, None
        report = json.loads(lines[-1])
        if not report["ok"]:
            return report, None
        with np.load(result_path) as arrays:
            return report, {key: arrays[key] for key in arrays.files}
