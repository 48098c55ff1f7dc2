import atexit
import contextlib
import gc
import json
import os
import pathlib
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
gc.disable()  # while Keras and TensorFlow load, as keras_bam/__init__.py does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# TensorFlow looks for a GPU once per process, the first time devices are
# asked for, and logs "failed call to cuInit" (an error-level line, which
# TF_CPP_MIN_LOG_LEVEL=2 lets through) on a machine without one. Asked here,
# so that the line is printed at start-up rather than inside whichever test
# happens to come first, where a command's "one line on stderr" would
# count it.
#
# The CPU is split into two logical devices before TensorFlow starts its
# runtime, so that MirroredStrategy with two replicas runs in the test
# process itself (tests name "/cpu:0" and "/cpu:1"; everything else keeps
# using "/cpu:0", TensorFlow's default) instead of in a fresh interpreter.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

# TensorFlow and Keras leave some 370,000 objects that live as long as the
# process: moved out of the collector's sight, a full collection (Python's
# own, every so often) takes milliseconds instead of about a second.
gc.freeze()
gc.enable()
# And at exit, so that Python's shutdown skips its full collections over
# what the tests left (keras_bam/commands/__init__.py does the same for the
# commands' processes, which is where the figure comes from).
atexit.register(gc.freeze)


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts from float32, channels_last and fresh layer names.

    Without Keras' own garbage collection (`free_memory`), which costs about
    a second a test; Python's collector still runs as usual."""
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.utils.clear_session(free_memory=False)
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")


@pytest.fixture
def rng():
    return np.random.default_rng(1807_06514)


@pytest.fixture(scope="session")
def digit_images():
    """(training, held_out) ImageSets of the embedded digits at 32x32 RGB."""
    from keras_bam.data.images import load_images

    return load_images("digits", (32, 32), 3)


def pixel_model(seed=0, **bam_kwargs):
    """A small SmallCNN with BAM (placed by insert_bam after stages 1 and 2)
    that takes pixels in [0, 255] and outputs logits (an int8 SOFTMAX would
    stay outside XNNPACK); weights seeded."""
    from keras_bam.applications.small_cnn import SmallCNN
    from keras_bam.rewrite.insert import insert_bam

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    net = insert_bam(SmallCNN(input_shape=(32, 32, 3), widths=(8, 16, 16),
                              blocks_per_stage=1), **bam_kwargs)
    return keras.Model(inputs, net(x), name="pixels_cnn")


@contextlib.contextmanager
def _once_per_run(tmp_path_factory, name):
    """(folder, first): a folder that every xdist worker of this run shares,
    and whether this worker is the first to hold it; the block runs under a
    file lock, so the first one fills the folder and the others wait, then
    find it filled. Without xdist (or file locks) the folder is this
    session's own."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if os.environ.get("PYTEST_XDIST_WORKER") is None or fcntl is None:
        yield tmp_path_factory.mktemp(name), True
        return
    folder = tmp_path_factory.getbasetemp().parent / name
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first = not folder.exists()
        folder.mkdir(exist_ok=True)
        yield folder, first


@pytest.fixture(scope="session")
def default_export(tmp_path_factory):
    """`python export/to_tflite.py` as the README gives it, in a fresh
    process, run once per test run (shared by the xdist workers), with only
    its output redirected into a folder: `default.tflite`, its labels,
    `report.json` and `default.keras` (--save-model: the default model it
    trained, BAM-SmallCNN, 6 epochs on the digits, about 97 % held-out
    accuracy). Returns (folder, {"returncode", "stdout", "stderr"})."""
    with _once_per_run(tmp_path_factory, "default_export") as (folder, first):
        result_path = folder / "result.json"
        if first or not result_path.exists():
            child = subprocess.run(
                [sys.executable, "export/to_tflite.py",
                 "--output", str(folder / "default.tflite"),
                 "--report", str(folder / "report.json"),
                 "--save-model", str(folder / "default.keras")],
                cwd=ROOT, capture_output=True, text=True, timeout=900)
            result_path.write_text(json.dumps({
                "returncode": child.returncode, "stdout": child.stdout,
                "stderr": child.stderr}))
        return folder, json.loads(result_path.read_text())


_FRESH_IMPORT = """
import atexit, gc, json, os, sys
atexit.register(gc.freeze)  # a quick exit, as the commands do
HEAVY = ("torch", "tf_keras", "tensorflow_model_optimization", "mediapipe")
def state():
    import tensorflow as tf
    return {"modules": sorted(m for m in HEAVY if m in sys.modules),
            "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS"),
            "keras": keras.__version__, "tf_keras": tf.keras.__version__,
            "gc_enabled": gc.isenabled()}
import keras, keras_bam
alone = state()
readme = []  # the README's python blocks, in order, each in its own namespace
blocks = json.load(sys.stdin)
for index, block in enumerate(blocks):
    try:
        exec(compile(block, f"README block {index + 1}", "exec"), {"__name__": "__main__"})
        readme.append("ok")
    except BaseException:
        import traceback
        readme.append(traceback.format_exc())
        break
import keras_bam.qat, keras_bam.commands.export
inputs = keras.Input((32, 32, 3))
x = keras_bam.BAM()(keras.layers.Conv2D(8, 3)(inputs))
model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
size = len(keras_bam.export.to_tflite(model, "float32"))
print(json.dumps({"alone": alone, "readme": readme, "readme_blocks": len(blocks),
                  "after_export": {**state(), "tflite_bytes": size}}))
"""


@pytest.fixture(scope="session")
def fresh_import(tmp_path_factory):
    """What a fresh process is left with, measured once per test run:
    {"alone": after `import keras_bam` alone, "readme": "ok" for each of
    the README's python blocks run then, in order, each in its own namespace
    (a traceback for the first that fails), "readme_blocks": how many
    there are, "after_export": after also
    importing keras_bam.qat and the export command and converting a BAM
    model to a float32 .tflite ("tflite_bytes")}, each {"modules": the
    optional heavy modules imported, "legacy_keras": TF_USE_LEGACY_KERAS,
    "keras": Keras' version, "tf_keras": that of tf.keras, "gc_enabled":
    whether Python's garbage collector runs}."""
    with _once_per_run(tmp_path_factory, "fresh_import") as (folder, _):
        result_path = folder / "result.json"
        if not result_path.exists():
            environ = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
            blocks = re.findall(r"```python\n(.*?)```",
                                (ROOT / "README.md").read_text(), flags=re.S)
            child = subprocess.run([sys.executable, "-c", _FRESH_IMPORT],
                                   input=json.dumps(blocks), capture_output=True,
                                   text=True, cwd=folder, env=environ)
            assert child.returncode == 0, child.stderr[-2000:]
            result_path.write_text(child.stdout.strip().splitlines()[-1])
        return json.loads(result_path.read_text())


@pytest.fixture(scope="session")
def tiny_start_model(tmp_path_factory):
    """A .keras file for `examples/train.py --init-from` in the tests of
    the run's machinery (kills and resumes, strategies), where the network
    does not matter: one convolution, one BAM, 10 logits, 16x16 pixels in
    (seeded). Its training step traces in about 3 s of CPU where
    BAM-SmallCNN's takes about 7, and each of those runs traces it."""
    from keras_bam.layers import BAM

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = BAM(name="bam")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="tiny")
    path = tmp_path_factory.mktemp("tiny_start") / "tiny.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="session")
def default_model(default_export):
    """The export command's default model, as `default_export` trained and
    saved it: its int8 file agrees with it on >= 99 % of the held-out
    digits, so the export tests can keep the default minimum agreement."""
    import keras_bam.layers  # noqa: F401 - registers BAM for loading

    folder, result = default_export
    assert result["returncode"] == 0, result["stderr"][-3000:]
    return keras.saving.load_model(folder / "default.keras")


@pytest.fixture(scope="session")
def trained_pixel_model(digit_images):
    """`pixel_model()` after 2 seeded epochs on the digits: a model that is
    still unsure (about 25 % held-out accuracy in inference mode), which
    quantization-aware fine-tuning visibly improves."""
    training, _ = digit_images
    model = pixel_model()
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Without a distribution strategy Keras builds the optimizer inside the
    # first trace of the train step, and TensorFlow then traces it again;
    # built here, one trace (about 8 s of CPU less), the same training.
    model.optimizer.build(model.trainable_variables)
    model.fit(training.images, training.labels, epochs=2, batch_size=64, verbose=0)
    return model


def pytest_collection_modifyitems(items):
    """The slow end-to-end tests first: spread over the xdist workers from
    the start, they do not leave one core idle at the end of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
