"""Quantization-aware training: the legacy twin, BAM and the placement under
tf_keras, `--quantization qat` end to end, and Keras 3 left in charge.

Everything that imports tf_keras or tfmot runs in a child process with
TF_USE_LEGACY_KERAS=1 (tests/qat/qat_legacy_checks.py, and keras_bam.qat's own
worker); this process must stay on Keras 3, which two tests check.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_bam
from keras_bam import qat
from keras_bam.commands import export as command

ROOT = pathlib.Path(__file__).parents[2]
LEGACY_MODULES = ("tf_keras", "tensorflow_model_optimization")


def bam_params(channels, min_hidden_channels=8, reduction_ratio=16):
    """Trainable parameters of one paper-variant BAM, counted from the
    formula: channel MLP C*h + h + h*C and BN 2C; spatial 1x1 C*h, two
    dilated 3x3 9h^2 each, 1x1 h, and BN 2h + 2h + 2h + 2."""
    h = max(channels // reduction_ratio, min(min_hidden_channels, channels))
    return 3 * channels * h + 18 * h * h + 8 * h + 2 * channels + 2


@pytest.fixture(scope="module")
def legacy_results(tmp_path_factory):
    """tests/qat/qat_legacy_checks.py in a legacy-Keras child process, once
    for the tests below."""
    out = tmp_path_factory.mktemp("legacy") / "results.json"
    child = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "qat" / "qat_legacy_checks.py"), str(out)],
        cwd=ROOT / "tests", env=qat.legacy_environment(), capture_output=True,
        text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_legacy_bam_block_and_twin(legacy_results):
    results = legacy_results
    # Paper, official + tanh, max with one dilated conv, spatial only; random
    # batch-norm statistics and biases: the block of standard tf_keras
    # layers computes the paper's formula.
    errors = results["block_errors"]
    assert len(errors) == 4
    assert max(errors) < 1e-5, errors
    # The child refuses what the block cannot give, as run_qat does before
    # starting it (test_run_qat_refuses_what_has_no_legacy_twin).
    refusals = results["block_refusals"]
    assert "channels_last" in (refusals["channels_first"] or ""), refusals
    assert "different curve" in (refusals["hard_sigmoid"] or ""), refusals
    assert len(results["twins"]) == 2
    for twin in results["twins"]:
        assert twin["twin_diff"] <= 1e-5 * max(1.0, twin["scale"]), twin
        # A training step on the twin moved its outputs; carried back, the
        # Keras 3 model computes what the trained twin computes.
        assert twin["training_moved"] > 1e-3, twin
        assert twin["back_diff"] <= 1e-5 * max(1.0, twin["scale"]), twin
        assert twin["copied"] == twin["weighted_layers"] > 0
        assert twin["bam_sublayers_in_twin"] > 0
    # The input quantizer: with the range fixed to 0..255 it rounds and
    # clips pixels (scale 1), before fine-tuning on images spanning 10..240
    # and after; learnt by tfmot, the range shrinks to what those images
    # span. Either way the fine-tuned weights come back.
    probe = np.asarray(results["input_quantizer_probe"], np.float64)
    fixed, learnt = (results["input_quantizer"][k] for k in ("fixed", "learnt"))
    pixels = np.clip(np.floor(probe + 0.5), 0, 255)
    assert fixed["quantizer"] == "FixedQuantizer"
    np.testing.assert_array_equal(fixed["before_training"], pixels)
    np.testing.assert_array_equal(fixed["after_training"], pixels)
    assert learnt["quantizer"] == "AllValuesQuantizer"
    assert 235 <= max(learnt["after_training"]) < 241, learnt
    for entry in (fixed, learnt):
        assert entry["copied_back"] == entry["weighted_layers"] == 2  # conv, dense
        # Fine-tuning traced its train function once (the optimizer built
        # before fit), not twice.
        assert entry["train_traces"] == 1, entry


PAPER_PLACEMENT = {  # README's placement table
    "MobileNet": ["conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu"],
    "MobileNetV2": ["block_2_add", "block_5_add", "block_12_add"],
    "ResNet50": ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"],
}


@pytest.mark.slow
def test_placement_under_tf_keras(legacy_results):
    """The paper's bottlenecks, the parameters of the formula, one BAM
    output per anchor, and tfmot taking the blocks, on tf_keras models."""
    results = legacy_results["applications"]
    assert sorted(results) == sorted(PAPER_PLACEMENT)
    for name, anchors in PAPER_PLACEMENT.items():
        found = results[name]
        assert found["anchors"] == anchors, name
        assert found["bam_outputs"] == [a + "_bam" for a in anchors]
        assert found["added_params"] == sum(
            bam_params(c) for c in found["channels"]), name
    assert results["ResNet50"]["added_params"] == 359_302  # the README's table
    # tfmot wraps every layer of MobileNet's BAM blocks: none left float.
    mobilenet = results["MobileNet"]
    assert mobilenet["bam_layers_wrapped"] == mobilenet["bam_layers"] > 0


def keras3_is_in_charge():
    import tensorflow as tf

    assert keras.__version__.startswith("3"), keras.__version__
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    assert not set(LEGACY_MODULES) & set(sys.modules)
    assert tf.keras.__version__.startswith("3"), tf.keras.__version__


def test_import_and_export_leave_keras3_in_charge(fresh_import):
    """A fresh process (tests/conftest.py): import keras_bam, its qat module
    and the export command, convert a BAM model; tf.keras is still Keras 3,
    nothing legacy imported, the environment untouched."""
    after = fresh_import["after_export"]
    assert after["tflite_bytes"] > 0
    assert not set(LEGACY_MODULES) & set(after["modules"]), after
    assert after["legacy_keras"] is None
    assert after["keras"] == keras.__version__ and after["keras"].startswith("3")
    assert after["tf_keras"] == after["keras"], after


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, digit_images):
    """The 450 held-out digits as a folder of PNGs (one sub-folder per
    class): the command fine-tunes on three quarters, verifies on the rest,
    a few steps per epoch."""
    import tensorflow as tf

    _, held_out = digit_images
    folder = tmp_path_factory.mktemp("digits")
    for i, (image, label) in enumerate(zip(held_out.images, held_out.labels)):
        (folder / str(label)).mkdir(exist_ok=True)
        png = tf.io.encode_png(image.astype("uint8")).numpy()
        (folder / str(label) / f"{i}.png").write_bytes(png)
    return folder


@pytest.fixture(scope="module")
def small_model_path(tmp_path_factory, trained_pixel_model):
    """A small BAM CNN trained briefly with Keras 3 (the session's shared
    one, see conftest), saved as .keras."""
    path = tmp_path_factory.mktemp("model") / "small.keras"
    trained_pixel_model.save(path)
    return path


@pytest.mark.slow
def test_qat_command_end_to_end(small_model_path, digit_folder, tmp_path,
                                capsys):
    """--quantization qat on a saved Keras 3 model: an app-ready
    full-integer file (uint8 pixels in at scale 1, BAM's ops in int8, a
    softmax on the logits, metadata with the class names, MediaPipe Tasks
    and CompiledModel run it), one XNNPACK partition, the three accuracies
    on the same held-out images, and this process still on Keras 3."""
    from ai_edge_litert.interpreter import Interpreter

    output = tmp_path / "out" / "small_qat.tflite"
    report_path = tmp_path / "report.json"
    code = command.main([
        "--model", str(small_model_path), "--quantization", "qat",
        "--representative-data", str(digit_folder), "--qat-epochs", "2",
        "--output", str(output), "--report", str(report_path),
        "--latency-runs", "0",
        # A model this small is unsure after 2 + 2 short epochs, so
        # int8 flips many of its close calls; the default model's numbers
        # are in the README.
        "--min-agreement", "0.6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(report_path.read_text())
    # A QAT file is an int8 file like any other: the same checks wrote it.
    assert report["quantization"] == "int8" and report["status"] == "ok"
    assert report["min_agreement"] == 0.6
    assert report["input_type"] == "uint8" and report["float_ops"] == []
    # BAM's own ops (its two LOGISTIC and two refinement MULs) are there,
    # in a file where no op is float; the model's logits end in an int8
    # SOFTMAX, which with the uint8 QUANTIZE ops stays outside XNNPACK.
    assert report["op_counts"]["LOGISTIC"] == 2
    assert report["op_counts"]["MUL"] >= 2
    assert report["op_counts"]["SOFTMAX"] == 1 and report["softmax_appended"]
    assert report["xnnpack_partitions"] == 1
    assert report["undelegated_ops"] == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
    content = output.read_bytes()
    assert content[4:8] == b"TFL3"
    # Camera bytes as they are: the input's quantization is the identity
    # (the range fixed to 0..255 in training); probabilities out at TFLite's
    # fixed softmax scale, rows summing to 1 within the int8 steps.
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    pixels = interpreter.get_input_details()[0]
    scores = interpreter.get_output_details()[0]
    assert pixels["dtype"] == np.uint8 and pixels["quantization"] == (1.0, 0)
    assert scores["dtype"] == np.uint8 and scores["quantization"] == (1 / 256, 0)
    image = next((digit_folder / "3").iterdir())
    import tensorflow as tf

    interpreter.set_tensor(pixels["index"],
                           tf.io.decode_png(image.read_bytes(), channels=3).numpy()[None])
    interpreter.invoke()
    row = interpreter.get_tensor(scores["index"])[0] / 256
    assert abs(row.sum() - 1) <= 10 / 256, row

    compared = report["accuracy_comparison"]
    assert set(compared) == {"float_before_qat", "post_training_int8", "model", "file"}
    assert all(0 <= v <= 1 for v in compared.values()), compared
    assert compared["file"] == report["agreement"]["tflite_accuracy"]
    assert compared["model"] == report["agreement"]["keras_accuracy"]
    # The fine-tuned weights came back into the Keras 3 model: it is as
    # accurate as the QAT file, and no longer the model it started from.
    assert abs(compared["model"] - compared["file"]) <= 0.05, compared
    assert compared["model"] - compared["float_before_qat"] >= 0.1, compared
    details = report["calibration"]["quantization_aware_training"]
    assert details["twin_max_abs_diff"] <= 1e-4
    assert details["layers_copied_back"] > 0 and details["epochs"] == 2
    assert details["softmax_appended"] and details["from_logits"]
    assert details["input_range"] == [0.0, 255.0]
    assert "accuracy compared" in captured.out
    assert sorted(p.name for p in output.parent.iterdir()) == [
        "small_qat.labels.txt", "small_qat.tflite"]
    assert report["compiled_model"]["max_abs_diff"] <= 1.5 / 256
    keras3_is_in_charge()

    classes = [str(i) for i in range(10)]
    mediapipe = report["mediapipe"]
    if mediapipe is None:  # one line says why; `make test` installs it
        assert "mediapipe is not installed" in report["mediapipe_note"]
        return
    # The metadata, read back with the flatbuffer readers (not the writer).
    sys.path.insert(0, str(ROOT / "tests" / "export"))
    from test_metadata import read_metadata

    assert report["metadata"].startswith("written")
    found = read_metadata(content, tmp_path)
    assert found["zip"] == {found["label_file"]: "\n".join(classes) + "\n"}
    assert (found["mean"], found["std"]) == ([0.0], [1.0])
    assert found["output_name"] == "probability"
    assert found["name"] == "pixels_cnn"
    # MediaPipe Tasks classified the held-out images through the metadata:
    # named categories, probabilities, LiteRT's top-1.
    assert mediapipe["named_categories"] and mediapipe["names_match_labels"]
    assert 0.96 <= mediapipe["score_sum_min"] <= mediapipe["score_sum_max"] <= 1.04
    assert mediapipe["top1_agreement_with_litert"] >= 0.99
    assert abs(mediapipe["top1_accuracy"] - compared["file"]) <= 0.02, mediapipe
    assert "MediaPipe Tasks" in captured.out


def test_missing_extra_says_what_to_install(monkeypatch, tmp_path, capsys):
    real = qat.importlib.util.find_spec
    monkeypatch.setattr(
        qat.importlib.util, "find_spec",
        lambda name, *a: None if name == "tf_keras" else real(name, *a))
    assert qat.missing_requirements() == ["tf_keras"]
    code = command.main(["--quantization", "qat", "--output",
                         str(tmp_path / "m.tflite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == ("error: --quantization qat needs tf_keras, which are not "
                      "installed: pip install 'keras-bam[qat]'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("data_format, gate_activation, match", [
    ("channels_first", "sigmoid", "channels_first.*channels_last"),
    ("channels_last", "hard_sigmoid", "hard_sigmoid.*different curve"),
])
def test_run_qat_refuses_what_has_no_legacy_twin(monkeypatch, data_format,
                                                 gate_activation, match):
    """A model the twin cannot carry (a channels_first or hard_sigmoid BAM,
    here inside a nested model) is a user error with a message, not a
    crash, given before the child starts. The child's own refusal
    (`legacy.bam_block`) is checked in qat_legacy_checks.py."""
    def no_child(*args, **kwargs):
        raise AssertionError(f"a child process was started: {args}")

    monkeypatch.setattr(qat.subprocess, "run", no_child)
    shape = (8, 12, 12) if data_format == "channels_first" else (12, 12, 8)
    inputs = keras.Input(shape)
    inner = keras.Sequential([keras_bam.BAM(data_format=data_format,
                                            gate_activation=gate_activation)])
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(
        data_format=data_format)(inner(inputs)))
    with pytest.raises(qat.QATError, match=match) as info:
        qat.run_qat(model, np.zeros((4, *shape), "float32"), np.zeros(4))
    assert info.value.usage


def test_run_qat_reports_the_childs_refusal(monkeypatch):
    """What the child refuses (here a layer without a tf_keras counterpart:
    exit 2, one `error:` line) reaches the caller as a QATError with that
    message and `usage` set. The worker's main runs in-process on the
    command line run_qat built, its legacy half replaced by the refusal
    (qat_legacy_checks.py checks the real refusals in a legacy process)."""
    import contextlib
    import io
    from unittest import mock

    from keras_bam.qat import worker

    refusal = "Layer 'odd' (my.Odd) has no tf_keras counterpart"

    def legacy_half(args):
        raise ValueError(refusal)

    def child(command, env, **kwargs):
        assert command[1:3] == ["-m", "keras_bam.qat.worker"], command
        assert env["TF_USE_LEGACY_KERAS"] == "1"
        stderr = io.StringIO()
        with mock.patch.dict(os.environ, env), contextlib.redirect_stderr(stderr):
            returncode = worker.main(command[3:])
        return subprocess.CompletedProcess(command, returncode, "", stderr.getvalue())

    monkeypatch.setattr(worker, "run", legacy_half)
    monkeypatch.setattr(qat.subprocess, "run", child)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(qat.QATError) as info:
        qat.run_qat(model, np.zeros((2, 8, 8, 3)), np.zeros(2))
    assert str(info.value) == refusal
    assert info.value.usage
    assert "TF_USE_LEGACY_KERAS" not in os.environ


@pytest.mark.parametrize("kwargs, match", [
    ({"images": np.full((2, 8, 8, 3), 300.0)}, r"span 300\.\.300, outside `input_range`"),
    ({"input_range": (255, 0)}, "min < max"),
    ({"input_range": "pixels"}, r"\(min, max\) numbers or None"),
    ({"input_type": "int16"}, "`input_type` must be one of"),
])
def test_run_qat_checks_its_arguments_before_starting(kwargs, match):
    """The input quantization's fixed range must hold the images (else the
    file would clip them): refused, like a bad type, before any child."""
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    arguments = {"images": np.zeros((2, 8, 8, 3)), **kwargs}
    with pytest.raises(ValueError, match=match):
        qat.run_qat(model, labels=np.zeros(2), **arguments)
