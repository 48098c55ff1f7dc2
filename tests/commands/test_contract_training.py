"""`python examples/train.py` and `python examples/ablation.py` against
hostile but fair input, and killed at each point of an epoch's end
(issue 15).

Contract: exit 0 trained; exit 2 bad input, one line on stderr naming the
flag (or file, or variable) and what to do, no traceback, and nothing
written: the run folder is not even created. A run killed at any point
resumes with the same command, and then history.csv, the checkpoint and
metrics.json agree: every epoch exactly once.
"""

import json
import re

import pytest
from contract_helpers import (
    ABLATION,
    TRAIN,
    assert_bad_input,
    assert_nothing_written,
    checkpoint_epoch,
    flag_pattern,
    history_epochs,
    image_folder,
    run_script,
    snapshot,
    truncated_png,
)

# A tiny run on the embedded digits: one step of 8 images per epoch.
TINY = ["--image-size", "16", "--batch-size", "8", "--steps-per-epoch", "1",
        "--no-progress"]


def train(args, capsys):
    code = run_script(TRAIN, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)


# ------------------------------------------------------------ numeric flags

@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_learning_rate_that_is_not_positive_and_finite_is_refused(tmp_path, capsys,
                                                                    value):
    """--learning-rate -1 trains by gradient ascent: refused, as 0, nan, inf."""
    run = tmp_path / "run"
    before = snapshot(tmp_path)
    code, _, err = train(TINY + ["--epochs", "1", "--learning-rate", value,
                                 "--output", run], capsys)
    assert_bad_input(code, err, r"--learning-rate", re.escape(value))
    assert_nothing_written(before, tmp_path)


@pytest.mark.parametrize("flag, value", [
    ("--epochs", "0"),
    ("--epochs", "-3"),
    ("--steps-per-epoch", "0"),
    ("--batch-size", "-8"),
    ("--image-size", "0"),
    ("--reduction-ratio", "0"),
    ("--dilation-rate", "-1"),
    ("--num-dilated-convs", "-1"),
    ("--seed", "-1"),
])
def test_a_numeric_flag_out_of_range_is_refused(tmp_path, capsys, flag, value):
    run = tmp_path / "run"
    args = TINY + ["--epochs", "1", "--output", run]
    args = [a for i, a in enumerate(args) if a != flag and (i == 0 or args[i - 1] != flag)]
    before = snapshot(tmp_path)
    code, _, err = train(args + [flag, value], capsys)
    assert_bad_input(code, err, flag_pattern(flag))
    assert_nothing_written(before, tmp_path)


def test_a_batch_size_that_is_not_a_number_is_refused(tmp_path, capsys):
    before = snapshot(tmp_path)
    code, _, err = train(TINY + ["--output", tmp_path / "run", "--batch-size", "big"],
                         capsys)
    assert_bad_input(code, err, r"--batch-size", r"big")
    assert_nothing_written(before, tmp_path)


# ------------------------------------------------------------ environment

@pytest.mark.parametrize("tf_config", ["[]", "null", '"worker"',
                                       '{"cluster": {"worker": ["localhost:1"]}, '
                                       '"task": "worker"}'])
def test_a_tf_config_of_the_wrong_shape_is_refused(tmp_path, capsys, monkeypatch,
                                                   tf_config):
    """Valid JSON, wrong shape: one line naming TF_CONFIG, not an
    AttributeError."""
    monkeypatch.setenv("TF_CONFIG", tf_config)
    before = snapshot(tmp_path)
    code, _, err = train(TINY + ["--epochs", "1", "--output", tmp_path / "run"], capsys)
    assert_bad_input(code, err, r"TF_CONFIG", r"cluster|task")
    assert_nothing_written(before, tmp_path)


# ------------------------------------------------------------ data and output

def test_a_truncated_image_is_refused_before_training_naming_the_file(tmp_path, capsys):
    """A PNG cut off half-way passes a look at its header: it must still be
    found before the first epoch, not end the run mid-epoch."""
    data = image_folder(tmp_path / "photos", classes=2, per_class=8)
    broken = truncated_png(data / "class_1" / "005.png", seed=5)
    run = tmp_path / "run"
    before = snapshot(tmp_path)
    code, _, err = train(["--dataset", f"folder:{data}", "--image-size", "16",
                          "--batch-size", "4", "--steps-per-epoch", "3", "--epochs", "1",
                          "--no-progress", "--output", run], capsys)
    assert_bad_input(code, err, re.escape(broken.name), r"class_1")
    assert_nothing_written(before, tmp_path)


def test_a_text_file_named_as_an_image_is_refused_naming_it(tmp_path, capsys):
    data = image_folder(tmp_path / "photos", classes=2, per_class=8)
    fake = data / "class_0" / "notes.jpg"
    fake.write_text("not a picture")
    before = snapshot(tmp_path)
    code, _, err = train(["--dataset", f"folder:{data}", "--image-size", "16",
                          "--batch-size", "4", "--epochs", "1", "--no-progress",
                          "--output", tmp_path / "run"], capsys)
    assert_bad_input(code, err, r"notes\.jpg")
    assert_nothing_written(before, tmp_path)


def test_a_folder_with_too_few_images_to_hold_out_is_refused(tmp_path, capsys):
    data = image_folder(tmp_path / "photos", classes=3, per_class=2)
    before = snapshot(tmp_path)
    code, _, err = train(["--dataset", f"folder:{data}", "--image-size", "16",
                          "--batch-size", "2", "--epochs", "1", "--no-progress",
                          "--output", tmp_path / "run"], capsys)
    assert_bad_input(code, err, r"photos", r"\d")
    assert_nothing_written(before, tmp_path)


def test_an_output_that_is_a_file_is_refused(tmp_path, capsys):
    output = tmp_path / "run.txt"
    output.write_text("a file")
    before = snapshot(tmp_path)
    code, _, err = train(TINY + ["--epochs", "1", "--output", output], capsys)
    assert_bad_input(code, err, r"--output", r"file|folder")
    assert_nothing_written(before, tmp_path)


# ------------------------------------------------------------ the ablation

@pytest.mark.parametrize("flag, value", [("--image-size", "0"), ("--image-size", "-1"),
                                         ("--epochs", "0"), ("--batch-size", "-1")])
def test_an_ablation_flag_out_of_range_is_refused(tmp_path, capsys, flag, value):
    """--image-size 0 must not fall back to the default size and train."""
    args = ["--variants", "baseline", "--epochs", "1", "--output", tmp_path / "ablation"]
    if flag == "--epochs":
        args = args[:2] + args[4:]
    before = snapshot(tmp_path)
    code = run_script(ABLATION, args + [flag, value])
    err = capsys.readouterr().err
    assert_bad_input(code, err, flag_pattern(flag))
    assert_nothing_written(before, tmp_path)


# ------------------------------------------------------------ kills

class Killed(BaseException):
    """Stands in for SIGKILL: a BaseException, so that no `except Exception`
    in the code under test can catch it."""


def _kill_at(monkeypatch, point, when):
    """Patches the run so that it dies at `point` of the `when`-th epoch
    end it reaches; returns a list that records that it happened.

    - "before_checkpoint": the epoch's training is done (and, today, its
      history row written); its checkpoint is not saved.
    - "after_checkpoint": the epoch's checkpoint is saved; the next epoch
      has not started.
    - "after_model_saved": the last epoch is done and model.keras written;
      metrics.json may not be.
    """
    import keras
    import tensorflow as tf

    fired = []
    calls = []
    if point == "after_model_saved":
        original_save = keras.Model.save

        def save_model(self, *args, **kwargs):
            original_save(self, *args, **kwargs)
            fired.append(point)
            raise Killed(point)

        monkeypatch.setattr(keras.Model, "save", save_model)
        return fired
    original = tf.train.CheckpointManager.save

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == when and point == "before_checkpoint":
            fired.append(point)
            raise Killed(point)
        result = original(self, *args, **kwargs)
        if len(calls) == when and point == "after_checkpoint":
            fired.append(point)
            raise Killed(point)
        return result

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    return fired


# The kill points in turn on one run of 3 epochs, each followed by the same
# command, which resumes (and is killed at the next point): every point of
# issue 15's list is reached, each resume is checked before the next kill,
# and one run traces its training step four times instead of eight.
# (point, which checkpoint save of that command, the history rows and the
# checkpoint's epoch that the folder must hold after the kill)
KILLS = [
    ("before_checkpoint", 1, [1], 0),  # issue 15: epoch 1 twice, metrics.json 3 of 2
    ("before_checkpoint", 2, [1, 2], 1),  # one process: epoch 1 saved, epoch 2 not
    ("after_checkpoint", 1, [1, 2], 2),
    ("after_model_saved", 1, [1, 2, 3], 3),
]


@pytest.mark.slow
def test_a_run_killed_at_each_epoch_end_point_resumes_with_every_epoch_once(
        tmp_path, capsys, monkeypatch, tiny_start_model):
    epochs = 3
    run = tmp_path / "run"
    # The network does not matter here, only the epoch ends: the run trains
    # a one-BAM network (conftest's tiny_start_model), cheaper to trace.
    args = TINY + ["--init-from", tiny_start_model, "--epochs", str(epochs), "--seed", "3",
                   "--output", run]
    previous = "a fresh start"
    for point, when, rows, saved in KILLS:
        killed = f"killed at {point} (save {when} of the command) after {previous}"
        with monkeypatch.context() as patch:
            fired = _kill_at(patch, point, when)
            with pytest.raises(Killed):
                run_script(TRAIN, args)
        assert fired == [point], killed
        err = capsys.readouterr().err
        # What the previous kill left, the resume before this kill repaired:
        # no epoch twice, none skipped.
        assert history_epochs(run) == rows, (
            f"{killed}: history.csv {(run / 'history.csv').read_text()}\n{err[-3000:]}")
        assert checkpoint_epoch(run) == saved, killed
        previous = f"a kill at {point} (save {when})"
    code, out, err = train(args, capsys)  # the same command resumes
    assert code == 0, err[-3000:]
    assert history_epochs(run) == list(range(1, epochs + 1)), (
        f"history.csv after the last resume ({previous}): "
        f"{(run / 'history.csv').read_text()}")
    assert checkpoint_epoch(run) == epochs
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == epochs, f"metrics.json after {previous}: {metrics}"
    assert (run / "model.keras").is_file()
    leftovers = [p.name for p in run.iterdir() if "tmp" in p.name or p.suffix == ".partial"]
    assert leftovers == [], f"temporary files left in the run folder: {leftovers}"
