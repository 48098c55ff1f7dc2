"""`python export/to_tflite.py` against hostile but fair input (issue 15).

Contract (README, "Commands and exit codes"): 0 written and verified; 1
rejected by a check, nothing written; 2 bad input, one line on stderr that
says what was received and what to do, nothing written. "Nothing written"
is checked by listing the test's folders before and after, and by looking
for a .tflite in the output folder and in the temporary folder the export
uses (TMPDIR, pointed into the test's folder).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from contract_helpers import (
    EXPORT,
    ROOT,
    assert_bad_input,
    assert_nothing_written,
    image_folder,
    layer_configs,
    rewrite_keras_config,
    run_script,
    snapshot,
    tflite_files,
    tiny_bam_model,
    truncate_file,
    truncated_png,
)


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    """A 16x16x3 Functional CNN with one BAM and ten outputs, saved."""
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.keras"
    tiny_bam_model().save(path)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The test's folder, with the process's temporary folder inside it, so
    that a .tflite left in a temporary folder is found."""
    temporary = tmp_path / "tmpdir"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return tmp_path


def export(args, capsys):
    code = run_script(EXPORT, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------ --model

def test_a_text_file_named_keras_is_reported_as_not_a_keras_archive(workdir, capsys):
    model = workdir / "notes.keras"
    model.write_text("these are my notes, not a model\n")
    before = snapshot(workdir)
    code, _, err = export(["--model", model, "--output", workdir / "out" / "m.tflite"],
                          capsys)
    line = assert_bad_input(code, err, r"--model", re.escape(model.name),
                            r"zip|archive|not a (valid )?\.?keras|corrupt")
    assert not re.search(r"not found|does not exist", line), line
    assert_nothing_written(before, workdir)


def test_a_truncated_keras_is_reported_as_truncated_or_corrupt(workdir, tiny_keras, capsys):
    model = workdir / "half.keras"
    model.write_bytes(tiny_keras.read_bytes())
    truncate_file(model, 0.5)
    before = snapshot(workdir)
    code, _, err = export(["--model", model, "--output", workdir / "out" / "m.tflite"],
                          capsys)
    line = assert_bad_input(code, err, r"--model", re.escape(model.name),
                            r"truncat|corrupt|incomplete|zip|archive")
    assert not re.search(r"not found|does not exist", line), line
    assert_nothing_written(before, workdir)


def test_a_folder_given_as_model_is_called_a_folder(workdir, capsys):
    model = workdir / "saved.keras"
    model.mkdir()
    before = snapshot(workdir)
    code, _, err = export(["--model", model, "--output", workdir / "out" / "m.tflite"],
                          capsys)
    line = assert_bad_input(code, err, r"--model", r"folder|directory")
    assert "does not exist" not in line, line
    assert_nothing_written(before, workdir)


def test_a_model_whose_config_keras_rejects_shows_the_real_cause(workdir, tiny_keras,
                                                                 capsys):
    """Keras refuses a BAM config with an unknown keyword; the user must see
    that keyword, not a generic 'could not be deserialized'."""
    def add_unknown_option(config):
        bams = [c for c in layer_configs(config) if c["class_name"] == "BAM"]
        assert bams, "the tiny model's config holds no BAM"
        bams[0]["config"]["squeeze_mode"] = "fancy"

    model = rewrite_keras_config(tiny_keras, workdir / "edited.keras", add_unknown_option)
    before = snapshot(workdir)
    code, _, err = export(["--model", model, "--output", workdir / "out" / "m.tflite"],
                          capsys)
    assert_bad_input(code, err, r"--model", r"squeeze_mode", r"BAM")
    assert_nothing_written(before, workdir)


def test_a_two_input_model_is_refused_for_having_two_inputs(workdir, capsys):
    import keras

    left, right = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Add()([left, right])))
    model = workdir / "two_inputs.keras"
    keras.Model([left, right], outputs).save(model)
    before = snapshot(workdir)
    code, _, err = export(["--model", model, "--output", workdir / "out" / "m.tflite"],
                          capsys)
    line = assert_bad_input(code, err, r"--model", r"\b2 inputs|two inputs|one input")
    assert "input_shape" not in line, f"advice that does not fit two inputs: {line}"
    assert_nothing_written(before, workdir)


# ------------------------------------------------------------ outputs

@pytest.mark.parametrize("flag, name", [("--labels", "labels.txt"),
                                        ("--report", "report.json")])
def test_an_output_into_a_missing_folder_is_refused_before_converting(
        workdir, tiny_keras, capsys, flag, name):
    """All outputs of one export are written or none: a --labels or
    --report that cannot be written is found before the conversion, not
    after the .tflite is in place."""
    missing = workdir / "no_such_folder" / name
    output = workdir / "out" / "m.tflite"
    before = snapshot(workdir)
    started = time.perf_counter()
    code, _, err = export(["--model", tiny_keras, "--output", output, flag, missing,
                           "--latency-runs", 0], capsys)
    assert_bad_input(code, err, re.escape(flag), r"no_such_folder")
    assert tflite_files(workdir) == []
    assert_nothing_written(before, workdir)
    # Refused up front: no conversion (which takes several seconds) ran.
    assert time.perf_counter() - started < 30


def test_an_output_that_is_a_folder_is_refused(workdir, tiny_keras, capsys):
    output = workdir / "already_a_folder.tflite"
    output.mkdir()
    before = snapshot(workdir)
    code, _, err = export(["--model", tiny_keras, "--output", output,
                           "--latency-runs", 0], capsys)
    assert_bad_input(code, err, r"--output", r"folder|directory")
    assert_nothing_written(before, workdir)


def test_a_rejected_export_leaves_no_file_and_no_empty_folders(workdir, capsys):
    """A model whose int8 file has degenerate scales is rejected (exit 1);
    the output folders the export would have created are not left behind,
    and no .tflite is anywhere: not at --output, not in a temporary folder."""
    model = workdir / "dead.keras"
    tiny_bam_model(dead_spatial_branch=True).save(model)
    # 40 images: 30 calibrate, all of them at once, so the exporter has no
    # more to retry with (its retry on all of the digits' 1,347 images is
    # tested in tests/export); the dead branch is dead on any image.
    data = image_folder(workdir / "photos", classes=10, per_class=4)
    output = workdir / "new" / "deeper" / "m.tflite"
    before = snapshot(workdir)
    code, _, err = export(["--model", model, "--output", output, "--latency-runs", 0,
                           "--representative-data", data,
                           "--num-calibration-samples", 32], capsys)
    assert "Traceback" not in err, err[-3000:]
    assert code == 1, f"exit {code}, expected 1 (rejected); stderr: {err[-2000:]}"
    assert "rejected" in err
    assert not (workdir / "new").exists(), "the rejected export left its folders"
    assert tflite_files(workdir) == []
    # TensorFlow's autograph keeps the Python it generates in the temporary
    # folder for the life of the process: its cache, not the export's output.
    after = {p for p in snapshot(workdir) if "__autograph_generated_file" not in p}
    assert after == before, f"written although rejected: {sorted(after - before)}"


# ------------------------------------------------------------ --representative-data

def test_too_few_held_out_images_are_refused_saying_how_many_are_needed(
        workdir, tiny_keras, capsys):
    """Two images per class leave no held-out quarter: an export verified
    on nothing is not an export; the message says how many are needed."""
    data = image_folder(workdir / "two_per_class", classes=10, per_class=2)
    before = snapshot(workdir)
    code, _, err = export(["--model", tiny_keras, "--representative-data", data,
                           "--output", workdir / "out" / "m.tflite",
                           "--latency-runs", 0], capsys)
    assert_bad_input(code, err, r"held[- ]out|verif", r"\d+ images?|at least \d+",
                     re.escape(data.name))
    assert tflite_files(workdir) == []
    assert_nothing_written(before, workdir)


def test_a_one_class_folder_for_a_ten_class_model_is_refused(workdir, tiny_keras, capsys):
    data = image_folder(workdir / "one_class", classes=1, per_class=12)
    before = snapshot(workdir)
    code, _, err = export(["--model", tiny_keras, "--representative-data", data,
                           "--output", workdir / "out" / "m.tflite",
                           "--latency-runs", 0], capsys)
    assert_bad_input(code, err, r"\b(1|one) class", r"\b10\b")
    assert tflite_files(workdir) == []
    assert_nothing_written(before, workdir)


def test_a_truncated_image_is_refused_up_front_naming_the_file(workdir, tiny_keras, capsys):
    data = image_folder(workdir / "photos", classes=10, per_class=8)
    broken = truncated_png(data / "class_3" / "005.png", seed=3)
    before = snapshot(workdir)
    code, _, err = export(["--model", tiny_keras, "--representative-data", data,
                           "--output", workdir / "out" / "m.tflite",
                           "--latency-runs", 0], capsys)
    assert_bad_input(code, err, re.escape(broken.name), r"class_3")
    assert tflite_files(workdir) == []
    assert_nothing_written(before, workdir)


def test_a_missing_representative_folder_is_refused(workdir, tiny_keras, capsys):
    before = snapshot(workdir)
    code, _, err = export(["--model", tiny_keras, "--representative-data",
                           workdir / "no_photos_here", "--output",
                           workdir / "out" / "m.tflite"], capsys)
    assert_bad_input(code, err, r"no_photos_here")
    assert_nothing_written(before, workdir)


# ------------------------------------------------------------ numeric flags

@pytest.mark.parametrize("flag, value", [
    ("--latency-runs", "-1"),
    ("--num-calibration-samples", "0"),
    ("--num-calibration-samples", "-5"),
    ("--min-agreement", "1.5"),
    ("--min-agreement", "-0.1"),
    ("--min-agreement", "nan"),
    ("--epochs", "0"),
    ("--qat-epochs", "-1"),
    ("--seed", "-1"),
])
def test_a_numeric_flag_out_of_range_is_refused(workdir, tiny_keras, capsys, flag, value):
    before = snapshot(workdir)
    code, _, err = export(["--model", tiny_keras, "--output", workdir / "out" / "m.tflite",
                           flag, value], capsys)
    assert_bad_input(code, err, re.escape(flag))
    assert tflite_files(workdir) == []
    assert_nothing_written(before, workdir)


@pytest.mark.parametrize("flag, value", [("--latency-runs", "ten"),
                                         ("--min-agreement", "most")])
def test_a_numeric_flag_of_the_wrong_type_is_refused(workdir, capsys, flag, value):
    before = snapshot(workdir)
    code, _, err = export(["--output", workdir / "out" / "m.tflite", flag, value], capsys)
    assert_bad_input(code, err, re.escape(flag), re.escape(value))
    assert_nothing_written(before, workdir)


# ------------------------------------------------------------ a kill

@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGTERM", "SIGKILL"])
def test_a_killed_export_leaves_no_unverified_tflite(tmp_path, tiny_keras, signal_number):
    """Killed as soon as a .tflite exists anywhere under the test's folder
    (its private temporary folder included). SIGTERM (what `kill`,
    schedulers and container runtimes send) can be cleaned up after: no
    .tflite is left anywhere. SIGKILL cannot: none is left where a user
    looks (the output's folder, the working folder)."""
    temporary = tmp_path / "tmpdir"
    temporary.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    output = work / "out" / "m.tflite"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(temporary),
               PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, str(EXPORT), "--model", str(tiny_keras), "--output", str(output),
         "--latency-runs", "0", "--num-calibration-samples", "32"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = False
    deadline = time.monotonic() + 240
    while child.poll() is None and time.monotonic() < deadline:
        found = tflite_files(tmp_path)
        if found == [str(output)]:
            break  # the verified file, in place: nothing to interrupt
        if found:
            child.send_signal(signal_number)
            killed = True
            break
        time.sleep(0.02)
    _, err = child.communicate(timeout=120)
    if not killed:
        # No .tflite on disk before the final one: then the export must have
        # finished, with the verified file in place and nothing else.
        assert child.returncode == 0, err.decode()[-3000:]
        assert tflite_files(tmp_path) == [str(output)]
        return
    assert child.returncode != 0
    assert tflite_files(work) == [], "a killed export left a .tflite where users look"
    if signal_number == signal.SIGTERM:
        assert tflite_files(tmp_path) == [], "a terminated export left a .tflite behind"


# ------------------------------------------------------------ convert_checkpoint

@pytest.mark.parametrize("extra, pattern", [
    (["--classes", "0"], r"--classes must be an integer of at least 1"),
    (["--input-size", "-32"], r"--input-size must be an integer of at least 1"),
    (["--report", "no_such_folder/report.json"], r"--report .*no_such_folder"),
])
def test_convert_checkpoint_refuses_before_reading_the_checkpoint(tmp_path, capsys, extra,
                                                                  pattern):
    """Checked before the checkpoint is read (it is not even a checkpoint
    here) and before the model is saved: one line, exit 2, nothing written."""
    checkpoint = tmp_path / "weights.npz"
    checkpoint.write_bytes(b"not read")
    args = [checkpoint, "--output", tmp_path / "model.keras"] + [
        tmp_path / a if a.startswith("no_such") else a for a in extra]
    before = snapshot(tmp_path)
    code = run_script(ROOT / "examples" / "convert_checkpoint.py", args)
    assert_bad_input(code, capsys.readouterr().err, pattern)
    assert_nothing_written(before, tmp_path)
