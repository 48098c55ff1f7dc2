"""`python examples/visualize_attention.py` and `python examples/plot_training.py`
against hostile but fair input (issue 15).

Contract: exit 0 with the figure written where --output says; exit 2 for
bad input, one line on stderr that names the offending flag or file and
what to do, no traceback, nothing written (no figure beside the one asked
for either).
"""

import json
import re

import pytest
from contract_helpers import (
    PLOT,
    VISUALIZE,
    assert_bad_input,
    assert_nothing_written,
    layer_configs,
    png_bytes,
    read_only_folder,
    rewrite_keras_config,
    run_script,
    snapshot,
    tiny_bam_model,
    tiny_sequential_bam_model,
    truncate_file,
    truncated_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.keras"
    tiny_bam_model().save(path)
    return path


@pytest.fixture
def photo(tmp_path):
    import numpy as np

    path = tmp_path / "inputs" / "photo.png"
    path.parent.mkdir()
    path.write_bytes(png_bytes(np.random.default_rng(7), size=24))
    return path


def visualize(args, capsys):
    code = run_script(VISUALIZE, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------ visualize_attention

def test_a_sequential_model_with_bam_gets_its_figure(tmp_path, photo, capsys):
    """A Sequential model with a BAM is a model with a BAM: drawn, exit 0."""
    model = tmp_path / "sequential.keras"
    tiny_sequential_bam_model().save(model)
    output = tmp_path / "figures" / "attention.png"
    code, _, err = visualize(["--model", model, "--image", photo, "--output", output],
                             capsys)
    assert "Traceback" not in err, err[-3000:]
    assert code == 0, err[-3000:]
    assert output.read_bytes()[:8] == PNG_MAGIC


def test_an_output_that_is_a_folder_is_refused_and_no_sibling_is_written(
        tmp_path, tiny_keras, photo, capsys):
    output = tmp_path / "figures"
    output.mkdir()
    before = snapshot(tmp_path)
    code, out, err = visualize(["--model", tiny_keras, "--image", photo,
                                "--output", output], capsys)
    assert_bad_input(code, err, r"--output", r"folder|directory")
    assert_nothing_written(before, tmp_path)


def test_a_text_file_named_keras_is_reported_as_not_a_keras_archive(tmp_path, photo,
                                                                    capsys):
    model = tmp_path / "notes.keras"
    model.write_text("not a model")
    before = snapshot(tmp_path)
    code, _, err = visualize(["--model", model, "--image", photo,
                              "--output", tmp_path / "a.png"], capsys)
    line = assert_bad_input(code, err, r"--model", r"zip|archive|not a (valid )?\.?keras|"
                                                   r"corrupt")
    assert not re.search(r"not found|does not exist", line), line
    assert_nothing_written(before, tmp_path)


def test_a_model_whose_config_keras_rejects_shows_the_real_cause(tmp_path, tiny_keras,
                                                                 photo, capsys):
    def add_unknown_option(config):
        bams = [c for c in layer_configs(config) if c["class_name"] == "BAM"]
        assert bams, "the tiny model's config holds no BAM"
        bams[0]["config"]["squeeze_mode"] = "fancy"

    model = rewrite_keras_config(tiny_keras, tmp_path / "edited.keras", add_unknown_option)
    before = snapshot(tmp_path)
    code, _, err = visualize(["--model", model, "--image", photo,
                              "--output", tmp_path / "a.png"], capsys)
    assert_bad_input(code, err, r"--model", r"squeeze_mode")
    assert_nothing_written(before, tmp_path)


def test_a_folder_given_as_model_is_called_a_folder(tmp_path, photo, capsys):
    model = tmp_path / "model.keras"
    model.mkdir()
    before = snapshot(tmp_path)
    code, _, err = visualize(["--model", model, "--image", photo,
                              "--output", tmp_path / "a.png"], capsys)
    line = assert_bad_input(code, err, r"--model", r"folder|directory")
    assert "does not exist" not in line, line
    assert_nothing_written(before, tmp_path)


def test_a_truncated_keras_is_reported_as_truncated_or_corrupt(tmp_path, tiny_keras,
                                                               photo, capsys):
    model = tmp_path / "half.keras"
    model.write_bytes(tiny_keras.read_bytes())
    truncate_file(model, 0.6)
    before = snapshot(tmp_path)
    code, _, err = visualize(["--model", model, "--image", photo,
                              "--output", tmp_path / "a.png"], capsys)
    line = assert_bad_input(code, err, r"--model", r"truncat|corrupt|incomplete|zip|archive")
    assert not re.search(r"not found|does not exist", line), line
    assert_nothing_written(before, tmp_path)


def test_a_model_without_bam_is_refused(tmp_path, photo, capsys):
    import keras

    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(4, 3)(inputs)))
    model = tmp_path / "plain.keras"
    keras.Model(inputs, outputs).save(model)
    before = snapshot(tmp_path)
    code, _, err = visualize(["--model", model, "--image", photo,
                              "--output", tmp_path / "a.png"], capsys)
    assert_bad_input(code, err, r"BAM")
    assert_nothing_written(before, tmp_path)


def test_a_truncated_image_is_refused_naming_it(tmp_path, tiny_keras, capsys):
    broken = truncated_png(tmp_path / "cut.png", seed=1, size=64)
    before = snapshot(tmp_path)
    code, _, err = visualize(["--model", tiny_keras, "--image", broken,
                              "--output", tmp_path / "a.png"], capsys)
    assert_bad_input(code, err, r"cut\.png")
    assert_nothing_written(before, tmp_path)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_epochs_out_of_range_is_refused(tmp_path, photo, capsys, value):
    """--epochs trains the default model: 0 or fewer is refused before any
    training, not a figure of an untrained model."""
    before = snapshot(tmp_path)
    code, _, err = visualize(["--image", photo, "--epochs", value,
                              "--output", tmp_path / "a.png"], capsys)
    assert_bad_input(code, err, r"--epochs")
    assert_nothing_written(before, tmp_path)


# ------------------------------------------------------------ plot_training

def fake_run(folder, epochs=3):
    """A run folder as examples/train.py documents it: config.json and a
    history.csv with one row per epoch."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"run": {"model": "small_cnn",
                                                            "bam": True}}))
    header = ("epoch,loss,accuracy,eval_loss,eval_top1_error,eval_top5_error,"
              "learning_rate,images_per_second,seconds")
    rows = [f"{e},{2.0 / e},{0.3 + 0.1 * e},{2.1 / e},{0.7 - 0.1 * e},{0.2 / e},"
            f"0.1,1000,1.0" for e in range(1, epochs + 1)]
    (folder / "history.csv").write_text("\n".join([header] + rows) + "\n")
    return folder


def plot(args, capsys):
    code = run_script(PLOT, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plot_training_draws_a_run(tmp_path, capsys):
    """The positive control for the cases below: the fake run is drawn."""
    run = fake_run(tmp_path / "run")
    output = tmp_path / "curves.png"
    code, _, err = plot([run, "--output", output], capsys)
    assert code == 0, err
    assert output.read_bytes()[:8] == PNG_MAGIC


def test_plot_training_into_a_read_only_folder_is_refused(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    folder = read_only_folder(tmp_path)
    output = folder / "hostile_curves.png"
    before = snapshot(tmp_path)
    code, _, err = plot([run, "--output", output], capsys)
    assert_bad_input(code, err, r"--output|" + re.escape(str(folder)),
                     r"permission|read-only|cannot write|not writable")
    assert not output.exists()
    assert_nothing_written(before, tmp_path)


def test_plot_training_onto_a_folder_is_refused(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    output = tmp_path / "curves.png"
    output.mkdir()
    before = snapshot(tmp_path)
    code, _, err = plot([run, "--output", output], capsys)
    assert_bad_input(code, err, r"--output", r"folder|directory")
    assert_nothing_written(before, tmp_path)


def test_plot_training_with_an_unreadable_history_is_refused(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    (run / "history.csv").write_text("epoch,loss\none,lots\n")
    before = snapshot(tmp_path)
    code, _, err = plot([run, "--output", tmp_path / "curves.png"], capsys)
    assert_bad_input(code, err, r"history\.csv")
    assert_nothing_written(before, tmp_path)


def test_plot_training_on_a_file_is_refused(tmp_path, capsys):
    not_a_run = tmp_path / "notes.txt"
    not_a_run.write_text("hello")
    before = snapshot(tmp_path)
    code, _, err = plot([not_a_run, "--output", tmp_path / "curves.png"], capsys)
    assert_bad_input(code, err, r"notes\.txt", r"folder")
    assert_nothing_written(before, tmp_path)
