"""export_tflite, verify_and_write and `python export/to_tflite.py`:
verification, rejection, atomic writing and errors."""

import json
import os
import pathlib
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_helpers import run_script

import keras_bam
from keras_bam.atomic import write_atomically
from keras_bam.commands import export as command
from keras_bam.data.images import load_images
from keras_bam.export import exporter

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def digits(digit_images):
    return digit_images


@pytest.fixture(scope="module")
def trained(default_model):
    return default_model


@pytest.fixture
def untrained():
    """For the tests that end before any check of the file."""
    from conftest import pixel_model

    return pixel_model()


@pytest.fixture(scope="module")
def exported(trained, digits, tmp_path_factory):
    """export(quantization, input_type) -> (folder, report): the trained
    model exported once per module for each pair (200 calibration and 200
    held-out images, 3 timed runs), written to folder/model.tflite with
    its report in folder/r.json; shared by the tests that read the same
    export."""
    calibration, held_out = digits
    done = {}

    def export(quantization, input_type):
        if (quantization, input_type) not in done:
            folder = tmp_path_factory.mktemp(f"{quantization}_{input_type}")
            done[quantization, input_type] = folder, exporter.export_tflite(
                trained, folder / "model.tflite", quantization, calibration,
                held_out.take(200), input_type=input_type, latency_runs=3,
                report_path=folder / "r.json", num_calibration_samples=200)
        return done[quantization, input_type]

    return export


@pytest.fixture(scope="module")
def plain_float32_size(trained):
    """The size of the trained model's own float32 file (no softmax)."""
    return len(keras_bam.export.to_tflite(trained, "float32"))


@pytest.mark.parametrize("quantization, input_type", [
    ("int8", "int8"), ("int8", "uint8"), ("float16", None), ("dynamic", None)])
def test_export_verifies_and_writes(exported, plain_float32_size, trained,
                                    quantization, input_type):
    folder, report = exported(quantization, input_type)
    output = folder / "model.tflite"
    assert output.read_bytes()
    assert report.status == "ok" and not report.problems
    assert report.xnnpack_partitions >= 1 and report.xnnpack_error is None
    assert report.agreement.samples == 200
    assert report.agreement.top1_agreement >= report.min_agreement
    assert [lat.threads for lat in report.latency] == sorted(
        {1, len(os.sched_getaffinity(0))})
    saved = json.loads((folder / "r.json").read_text())
    assert saved["status"] == "ok" and saved["size_bytes"] == len(
        output.read_bytes())
    if quantization == "int8":
        assert report.float_ops == [] and report.input_type == input_type
        # uint8 in and out: the converter requantizes to int8 and back at
        # the two ends, ops that XNNPACK leaves to the CPU kernels, as it
        # leaves the int8 SOFTMAX appended to the model's logits.
        expected = (["QUANTIZE", "SOFTMAX", "QUANTIZE"] if input_type == "uint8"
                    else ["SOFTMAX"])
        assert report.undelegated_ops == expected
        assert report.softmax_appended
        # A model this small is mostly file overhead; the size ratio of a
        # real one is in the README. Here: the ratio is of the right files
        # (the float32 file has the appended softmax too, a few names more).
        plain = plain_float32_size
        assert plain < report.float32_size_bytes < 1.02 * plain
        assert report.size_ratio < 1
        assert [n for n, _, _ in report.bam_layers] == [
            "small_cnn/stage1_block1_relu_bam", "small_cnn/stage2_block1_relu_bam"]
        assert 0 < report.bam_mac_share < 1
    text = str(report)
    assert "top-1 agreement" in text and "XNNPACK" in text


def test_dynamic_batch_stays_clean(trained, digits, tmp_path):
    calibration, held_out = digits
    report = exporter.export_tflite(
        trained, tmp_path / "dyn.tflite", "int8", calibration,
        held_out.take(100), batch_size=None, latency_runs=0,
        num_calibration_samples=100)
    assert report.input_shape[0] == -1
    assert not {"SHAPE", "GATHER", "PACK", "SPACE_TO_BATCH_ND"} & set(
        report.op_counts)
    assert report.xnnpack_partitions == 1
    assert report.undelegated_ops == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
    assert report.metadata.startswith("not written")  # batch unknown


def test_uint8_input_takes_camera_pixels(exported):
    """uint8 in: the pixel values themselves (scale 1, zero point 0). The
    file of test_export_verifies_and_writes[int8-uint8], exported once."""
    from ai_edge_litert.interpreter import Interpreter

    folder, _ = exported("int8", "uint8")
    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    assert zero_point == 0 and scale == pytest.approx(1.0, rel=0.02)


def dead_branch_model():
    """A BAM whose spatial branch is dead on every input: one hidden channel
    (min_hidden_channels=1 on 8 channels) behind a batch norm shifted far
    negative, so its ReLU never fires and the int8 range collapses."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    bam = keras_bam.BAM(min_hidden_channels=1, name="narrow_bam")
    x = bam(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    for norm in bam.spatial_gate.hidden_bns:
        norm.beta.assign(np.full(norm.beta.shape, -1e4, "float32"))
    return model


def test_degenerate_model_is_rejected_and_nothing_written(digits, tmp_path,
                                                          monkeypatch):
    from keras_bam.export import convert

    traces = []

    def counted_trace(*args, **kwargs):
        traces.append(args)
        return trace(*args, **kwargs)

    trace = convert.trace
    for module in (convert, exporter):
        monkeypatch.setattr(module, "trace", counted_trace)
    calibration, held_out = digits
    output = tmp_path / "dead.tflite"
    output.write_bytes(b"previous export")  # must survive a failed export
    with pytest.raises(exporter.VerificationError, match="scale below 1e-6") as info:
        exporter.export_tflite(
            dead_branch_model(), output, "int8", calibration.take(64),
            held_out.take(20), latency_runs=0, report_path=tmp_path / "r.json",
            num_calibration_samples=32)
    report = info.value.report
    assert report.tiny_scale_tensors
    # The dead tensors are in the BAM, and the advice says what fixes that.
    problem = next(p for p in report.problems if "scale below 1e-6" in p)
    assert re.search(r"\(\d+ in a BAM, 0 in the backbone\)", problem), problem
    assert "(BAM narrow_bam)" in problem and "min_hidden_channels" in problem
    assert report.calibration["recalibrated_with"] == 64  # the retry ran
    # Two int8 conversions and the float32 file, from one trace of the model.
    assert len(traces) == 1, f"the model was traced {len(traces)} times"
    assert output.read_bytes() == b"previous export"
    assert json.loads((tmp_path / "r.json").read_text())["status"].startswith(
        "rejected")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.tflite", "r.json"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "m.tflite", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_a_file_converted_elsewhere_gets_the_same_checks(trained, digits, tmp_path):
    """verify_and_write, the path of quantization-aware training's file: a
    file that passes is written, one that does not (here: the float model's
    agreement against another model) is refused and not written."""
    from keras_bam.export.convert import trace

    _, held_out = digits
    traced = trace(trained)  # the file and the size ratio's float32 file
    content = keras_bam.export.to_tflite(trained, "float32", traced=traced)
    output = tmp_path / "ok.tflite"
    report = exporter.verify_and_write(trained, content, output, "float32",
                                       held_out.take(64), latency_runs=0,
                                       accuracy_comparison={"other": 0.5},
                                       traced=traced)
    assert report.float32_size_bytes == len(content)
    assert output.read_bytes() == content
    assert report.agreement.top1_agreement == 1.0
    assert set(report.accuracy_comparison) == {"other", "model", "file"}
    assert report.accuracy_comparison["file"] == report.agreement.tflite_accuracy
    keras.utils.set_random_seed(5)
    stranger = keras.models.clone_model(trained)  # same graph, fresh weights
    with pytest.raises(exporter.VerificationError, match="top-1 agreement"):
        exporter.verify_and_write(stranger, content, tmp_path / "no.tflite",
                                  "float32", held_out.take(64), latency_runs=0)
    assert not (tmp_path / "no.tflite").exists()


@pytest.mark.parametrize("kwargs, pattern", [
    ({"quantization": "int4"}, r"`quantization` must be one of"),
    ({"num_calibration_samples": 0}, r"`num_calibration_samples` must be a positive"),
    ({"quantization": "float16", "input_type": "uint8"},
     r"`input_type` uint8 needs `quantization` int8"),
    ({"calibration": None}, r"pass `calibration`"),
])
def test_library_errors_name_the_argument(untrained, digits, tmp_path, kwargs, pattern):
    calibration, held_out = digits
    arguments = {"calibration": calibration.take(8), "held_out": held_out.take(8),
                 "latency_runs": 0, **kwargs}
    with pytest.raises(exporter.ExportError, match=pattern):
        exporter.export_tflite(untrained, tmp_path / "m.tflite", **arguments)
    with pytest.raises(exporter.ExportError, match=r"`output` .* is a folder"):
        exporter.export_tflite(untrained, tmp_path, calibration=calibration)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the command


def run_cli(args, capsys):
    code = command.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_usage_error(code, err, pattern, folder):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]
    assert not list(folder.glob("*.tflite"))


def test_missing_model(tmp_path, capsys):
    code, _, err = run_cli(["--model", tmp_path / "nope.keras",
                            "--output", tmp_path / "m.tflite"], capsys)
    assert_usage_error(code, err, r"does not exist.*model\.save", tmp_path)


def test_corrupt_model(tmp_path, capsys):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    code, _, err = run_cli(["--model", path, "--output", tmp_path / "m.tflite"],
                           capsys)
    assert_usage_error(code, err, r"cannot be loaded as a Keras model", tmp_path)


def test_model_that_is_not_an_image_model(tmp_path, capsys):
    inputs = keras.Input((20,))
    path = tmp_path / "dense.keras"
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(path)
    code, _, err = run_cli(["--model", path, "--output", tmp_path / "m.tflite"],
                           capsys)
    assert_usage_error(code, err, r"not an image model.*\(None, 20\)", tmp_path)


def test_unwritable_output(tmp_path, capsys, untrained):
    path = tmp_path / "model.keras"
    untrained.save(path)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, _, err = run_cli(["--model", path, "--output", blocker / "m.tflite",
                            "--latency-runs", 0], capsys)
    assert_usage_error(code, err, r"Cannot create the output folder.*another --output",
                       tmp_path)
    code, _, err = run_cli(["--model", path, "--output", tmp_path], capsys)
    assert_usage_error(code, err, r"--output .* is a folder", tmp_path)


@pytest.mark.parametrize("source, pattern", [
    ("no/such/folder", r"neither a folder nor a known dataset"),
    ("folder:no/such/folder", r"'no/such/folder' is not a folder"),
    ("tfds:no_such_dataset_xyz", r"tensorflow-datasets cannot open "
                                 r"'no_such_dataset_xyz'.*tfds.list_builders"),
])
def test_unreadable_representative_data(tmp_path, capsys, untrained, source,
                                        pattern):
    path = tmp_path / "model.keras"
    untrained.save(path)
    code, _, err = run_cli(["--model", path, "--representative-data", source,
                            "--output", tmp_path / "m.tflite"], capsys)
    assert_usage_error(code, err, pattern, tmp_path)


def test_tfds_dataset_as_representative_data():
    """The real TFDS path, offline: tfds.testing.mock_data serves random
    examples shaped like the dataset's features."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        calibration, held_out = load_images("tfds:cifar10", (24, 24), 1)
    for part in (calibration, held_out):
        assert part.images.shape == (12, 24, 24, 1)
        assert part.images.dtype == np.float32
        assert 0 <= part.images.min() and part.images.max() <= 255
        assert part.labels.shape == (12,) and part.labels.max() < 10
    assert len(calibration.class_names) == 10
    assert calibration.source == "tfds:cifar10"


def test_image_folder_as_representative_data(tmp_path, capsys, trained, digits):
    """A folder with one sub-folder per class, written as PNG files."""
    _, held_out = digits
    folder = tmp_path / "photos"
    for i, (image, label) in enumerate(zip(held_out.images[:60],
                                           held_out.labels[:60])):
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        png = tf.io.encode_png(image.astype("uint8")).numpy()
        (folder / f"class_{label}" / f"{i}.png").write_bytes(png)
    model_path = tmp_path / "model.keras"
    trained.save(model_path)
    output = tmp_path / "out" / "m.tflite"
    code, out, err = run_cli(
        ["--model", model_path, "--representative-data", folder,
         "--output", output, "--latency-runs", 0, "--min-agreement", 0.9],
        capsys)
    assert code == 0, err
    labels = (tmp_path / "out" / "m.labels.txt").read_text().split()
    assert labels == sorted({f"class_{label}" for label in held_out.labels[:60]})
    assert "top-1 agreement" in out
    # The same folder by the grammar's explicit form: the same images.
    _, again = load_images(f"folder:{folder}", (32, 32), 3)
    _, first = load_images(str(folder), (32, 32), 3)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.source == first.source == f"folder:{folder}"


# What TensorFlow, absl, CUDA, the converter and LiteRT write when they are
# not kept quiet: C++ log lines ("I0000 00:00:...", "E0000 ..."), absl's
# pre-init notice, Python absl warnings, cuInit, converter and delegate lines.
TF_LOG_LINE = re.compile(
    r"^[IWEF]\d{4} |absl|cuInit|cuda|fully_quantize|TensorFlow Lite|"
    r"XNNPACK delegate|trackable_obj", re.IGNORECASE | re.MULTILINE)


@pytest.mark.slow
def test_default_command_runs_offline_and_the_file_is_app_ready(default_export, tmp_path,
                                                               capsys):
    """`python export/to_tflite.py` as the README gives it, in a fresh
    process, with only the output redirected (the `default_export` fixture,
    which every export test's default model comes from); then
    `examples/classify.py` on the file. Neither prints a TensorFlow log
    line."""
    folder, result = default_export
    output = folder / "default.tflite"
    result = types.SimpleNamespace(**result)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not TF_LOG_LINE.search(result.stdout + result.stderr), (
        result.stdout + result.stderr)
    assert result.stderr == ""
    report = json.loads((folder / "report.json").read_text())
    # --save-model: the model it trained, written beside, said in the report.
    assert (folder / "default.keras").is_file()
    assert f"Keras model           {folder / 'default.keras'}" in result.stdout
    assert report["quantization"] == "int8" and report["float_ops"] == []
    assert report["input_type"] == "uint8" and report["softmax_appended"]
    # uint8 in and out, probabilities out: the two QUANTIZE and the int8
    # SOFTMAX stay outside the single XNNPACK partition.
    assert report["undelegated_ops"] == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
    assert report["xnnpack_partitions"] == 1 and report["warnings"] == []
    assert report["agreement"]["top1_agreement"] >= 0.99
    assert report["size_ratio"] <= 0.36
    assert [name for name, _, _ in report["bam_layers"]] == [
        "small_cnn/stage1_block1_relu_bam", "small_cnn/stage2_block1_relu_bam"]
    assert (folder / "default.labels.txt").read_text().split() == [
        str(i) for i in range(10)]
    assert "BAM share of MACs" in result.stdout
    assert report["metadata"].startswith("written")
    assert report["compiled_model"]["max_abs_diff"] <= 1.5 / 256
    mediapipe = report["mediapipe"]
    if mediapipe is None:  # one line says why; `make test` installs it
        assert "mediapipe is not installed" in report["mediapipe_note"]
        assert "MediaPipe Tasks" in result.stdout
        return
    # The bar: named categories, probabilities summing to 1, top-1
    # within a point of the Keras model.
    assert mediapipe["named_categories"] and mediapipe["names_match_labels"]
    assert 0.97 <= mediapipe["score_sum_min"] <= mediapipe["score_sum_max"] <= 1.03
    assert abs(mediapipe["top1_accuracy"] - report["agreement"]["keras_accuracy"]) <= 0.01
    assert mediapipe["top1_agreement_with_litert"] >= 0.99
    assert re.search(r"MediaPipe Tasks +top-1 accuracy 0\.9\d+, agrees with LiteRT",
                     result.stdout)

    # examples/classify.py on three held-out digits, through MediaPipe, run
    # in this process (its start-up is the export script's, checked above:
    # tests/test_layout.py::test_scripts_start_alike).
    from PIL import Image

    _, held_out = load_images("digits", (32, 32), 3)
    for i in range(3):
        Image.fromarray(held_out.images[i].astype("uint8")).save(tmp_path / f"{i}.png")
    capsys.readouterr()
    code = run_script(ROOT / "examples" / "classify.py",
                      ["--model", output, "--top-k", "2",
                       *(tmp_path / f"{i}.png" for i in range(3))])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    assert not TF_LOG_LINE.search(printed.out + printed.err), printed.out
    lines = printed.out.strip().splitlines()
    assert len(lines) == 4 and "median" in lines[-1]
    for i, line in enumerate(lines[:3]):
        match = re.fullmatch(rf".*{i}\.png: (\d) (0\.\d+|1\.000), (\d) (0\.\d+) "
                             r" +\((\d+\.\d+) ms\)", line)
        assert match, line
        assert float(match[2]) >= float(match[4])  # sorted by probability


@pytest.mark.parametrize("extra, pattern", [
    (["--model", "m.keras"], r"--save-model saves the default model .* drop --save-model"),
    ([], r"--save-model .*model\.h5 must end in \.keras"),
])
def test_save_model_is_refused_where_it_cannot_apply(tmp_path, capsys, extra, pattern):
    """--save-model: with --model there is no trained model to save; a name
    Keras cannot save to is refused before any training."""
    (tmp_path / "m.keras").write_bytes(b"")
    save = "model.h5" if not extra else "model.keras"
    args = ["--output", tmp_path / "x.tflite", "--save-model", tmp_path / save]
    args += [tmp_path / a if a.endswith(".keras") else a for a in extra]
    code, _, err = run_cli(args, capsys)
    assert_usage_error(code, err, pattern, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_of_an_ordinary_open(tmp_path, umask, mode):
    """A file written through keras_bam.atomic has the mode open() would
    give it under the caller's umask (a temporary file's 0600 would
    otherwise survive the rename)."""
    from keras_bam.atomic import replacing

    previous = os.umask(umask)
    try:
        write_atomically(tmp_path / "a.tflite", b"bytes")
        with replacing(tmp_path / "b.keras", suffix=".keras") as temporary:
            with open(temporary, "wb") as f:  # as model.save writes it
                f.write(b"zip")
        with open(tmp_path / "reference", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(previous)
    for name in ("a.tflite", "b.keras", "reference"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tflite", "b.keras",
                                                          "reference"]


@pytest.fixture(scope="module")
def untrained_mobilenet_v2():
    """A seeded untrained MobileNetV2 at 96x96, built once for both cases
    (insert_bam leaves the model it is given as it was), and 32 digits at
    that size to calibrate on."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3),
                                           classes=10)
    calibration, _ = load_images("digits", (96, 96), 3, limit=32)
    return model, calibration


@pytest.mark.slow
@pytest.mark.parametrize("with_bam", [False, True])
def test_untrained_mobilenet_v2_is_written_with_a_warning(untrained_mobilenet_v2,
                                                          tmp_path, with_bam):
    """An untrained network exports (people measure latency and size before
    they train): LiteRT and XNNPACK run the file, so constant tensors are a
    warning that says where each one is, not a refusal."""
    model, calibration = untrained_mobilenet_v2
    if with_bam:
        keras.utils.set_random_seed(0)  # BAM's weights, whatever ran before
        model = keras_bam.insert_bam(model)
    # All 32 calibrate, so the exporter has no more images to retry with
    # (the retry is tested above): one int8 conversion.
    output = tmp_path / "untrained.tflite"
    report = exporter.export_tflite(model, output, "int8", calibration,
                                    latency_runs=0, num_calibration_samples=32)
    assert "recalibrated_with" not in report.calibration
    assert output.stat().st_size == report.size_bytes
    assert report.status == "ok" and report.xnnpack_error is None
    assert report.xnnpack_partitions >= 1
    # Seeded untrained MobileNetV2: ~44 ReLUs never fire on the digits, in
    # the backbone; with BAM, the BAM after block 12 sees a constant input,
    # so its own tensors are constant too. insert_bam names its layers
    # NAME_bam, and TFLite tensor names carry the layer path.
    count = len(report.tiny_scale_tensors)
    in_bam = sum("_bam_" in name or "_bam/" in name
                 for name in report.tiny_scale_tensors)
    assert count > 10 and (in_bam > 0) == with_bam
    (warning,) = report.warnings
    assert f"{count} tensor(s)" in warning
    assert f"({in_bam} in a BAM, {count - in_bam} in the backbone)" in warning
    assert "_relu" in warning and "(backbone)" in warning
    # The file runs: LiteRT gives a probability vector for any input.
    probabilities = keras_bam.export.predict(output.read_bytes(),
                                             calibration.images[:4])
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=0.05)


def test_without_mediapipe_the_report_says_so_in_one_line(untrained, digits, tmp_path,
                                                          monkeypatch):
    """Where mediapipe is nowhere (not importable, no
    KERAS_BAM_MEDIAPIPE_PYTHON), the file is still checked with LiteRT and
    written, without metadata, and the report says why in one line each."""
    from keras_bam.export import clients

    monkeypatch.setattr(clients, "mediapipe_python", lambda: None)
    calibration, held_out = digits
    report = exporter.export_tflite(
        untrained, tmp_path / "m.tflite", "int8", calibration.take(64),
        held_out.take(20), min_agreement=0.0, latency_runs=0,
        num_calibration_samples=64)
    assert report.softmax_appended and report.input_type == "uint8"
    assert report.metadata.startswith("not written") and "mediapipe" in report.metadata
    assert report.mediapipe is None
    assert report.mediapipe_note.startswith("not run: mediapipe is not installed")
    assert report.compiled_model["samples"] == 8  # LiteRT's CompiledModel ran
    lines = str(report).splitlines()
    assert sum(line.startswith("MediaPipe Tasks") for line in lines) == 1
    assert (tmp_path / "m.tflite").read_bytes()[-22:-18] != b"PK\x05\x06"  # no zip


@pytest.mark.parametrize("flags, view", [([], "auto"), (["--image-view", "center-crop"],
                                                         "center_crop"),
                                         (["--image-view", "resize"], "resize")])
def test_image_view_reaches_load_images(tmp_path, capsys, monkeypatch, flags, view):
    """--image-view is load_images' `view` (its "auto": the centre crop for
    photos, as training evaluates them); stopped there, nothing written."""
    from keras_bam.data import images
    from keras_bam.data.sources import DataError

    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise DataError("stopped before reading")

    monkeypatch.setattr(images, "load_images", stop)
    code, _, err = run_cli(["--output", tmp_path / "m.tflite"] + flags, capsys)
    assert code == 2 and "stopped before reading" in err
    assert seen["view"] == view and not list(tmp_path.iterdir())
