"""examples/train.py end to end: outputs, resume after a kill, bad input,
two logical devices, two workers, and plot_training."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_bam.commands import train as cli
from keras_bam.training import history

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "examples" / "train.py")
PLOT = str(ROOT / "examples" / "plot_training.py")
# A tiny run on the embedded digits: seconds on 2 cores.
TINY = ["--batch-size", "32", "--steps-per-epoch", "6", "--image-size", "16",
        "--no-progress"]
# The same with one step per epoch, where the number of steps does not
# matter (the kill comes between epochs; two replicas meet in the first).
# The tests that use it add `--init-from` conftest's tiny_start_model (one
# BAM, 16x16 pixels in): what they check is the run's machinery, which does
# not depend on the network, and a small one traces in half the time.
TINY_STEP = ["--batch-size", "32", "--steps-per-epoch", "1", "--no-progress"]


def env(**extra):
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    environ.pop("TF_CONFIG", None)
    environ.update(extra)
    return environ


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "bam"
    assert cli.main(TINY + ["--epochs", "2", "--output", str(output)]) == 0
    return output


def test_a_run_leaves_config_history_logs_model_and_metrics(finished_run):
    config = json.loads((finished_run / "config.json").read_text())
    assert config["run"]["model"] == "small_cnn" and config["replicas"] == 1
    assert config["dataset"]["num_classes"] == 10
    rows = history.read(finished_run / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    num_eval = config["dataset"]["num_eval"]
    assert num_eval == 450
    for r in rows:
        assert 0 <= r["eval_top5_error"] <= r["eval_top1_error"] <= 1, r
        # Errors are counts of the 450 held-out digits: misses / 450.
        for key in ("eval_top1_error", "eval_top5_error"):
            misses = r[key] * num_eval
            assert abs(misses - round(misses)) < 1e-3, (key, r[key])
    assert list((finished_run / "logs").iterdir()), "no TensorBoard events"
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["top1_error"] == pytest.approx(rows[-1]["eval_top1_error"])
    assert metrics["images_per_second"] > 0 and metrics["bam_params"] > 0
    assert metrics["params"] > metrics["bam_params"]


def test_the_model_reloads_in_safe_mode_and_matches_its_evaluation(finished_run):
    """model.keras is a float32 model that takes [0, 255] pixels; its top-1
    error on the evaluation split is the one metrics.json reports."""
    import keras_bam  # noqa: F401  (registers BAM for loading)
    from keras_bam.training import data

    model = keras.saving.load_model(finished_run / "model.keras")
    assert model.dtype_policy.name == "float32"
    assert any(type(layer).__name__ == "BAM"
               for layer in model._flatten_layers())
    _, eval_data, _ = data.make_datasets(None, image_size=16, channels=3,
                                         global_batch_size=32, seed=0)
    hits = total = 0
    for images, labels in eval_data:
        hits += int(np.sum(np.argmax(model(images), -1) == labels.numpy()))
        total += len(labels)
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert 1 - hits / total == pytest.approx(metrics["top1_error"], abs=1e-6)


def test_the_same_command_on_a_finished_run_changes_nothing(finished_run, capsys):
    before = (finished_run / "history.csv").read_text()
    assert cli.main(TINY + ["--epochs", "2", "--output", str(finished_run)]) == 0
    assert "resuming" in capsys.readouterr().out
    assert (finished_run / "history.csv").read_text() == before


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet5"], "Unknown --model 'resnet5'. Choose one of: small_cnn"),
    (["--dataset", "no_such_dataset_xyz"], "no_such_dataset_xyz"),
    (["--reduction-ratio", "0"], "BAM option: --reduction-ratio must be an integer >= 1"),
    (["--min-hidden-channels", "0"], "--min-hidden-channels must be an integer >= 1"),
    (["--epochs", "0"], "--epochs must be an integer of at least 1"),
])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = cli.main(TINY + ["--epochs", "1", "--output", str(tmp_path / "r")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "model.keras").exists()


def test_the_library_names_the_config_field_and_the_command_the_flag(tmp_path, capsys):
    from keras_bam.training.run import RunConfig, RunError, run

    with pytest.raises(RunError, match=r"`jit_compile` must be auto, on or off\. "
                                       r"Received: 'sometimes'"):
        run(RunConfig(output=str(tmp_path / "r"), jit_compile="sometimes"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match=r"`output` .* is a file"):
        run(RunConfig(output=str(blocker)))
    assert cli.main(TINY + ["--epochs", "1", "--output", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --output {blocker} is a file; give a folder."


def test_an_output_holding_another_run_is_refused(finished_run, capsys):
    before = sorted(p.name for p in finished_run.iterdir())
    code = cli.main(TINY + ["--epochs", "2", "--no-bam", "--output", str(finished_run)])
    err = capsys.readouterr().err
    assert code == 2 and "holds a different run (it differs in bam)" in err
    assert sorted(p.name for p in finished_run.iterdir()) == before
    code = cli.main(TINY + ["--epochs", "3", "--output", str(finished_run)])
    assert code == 2 and "set --resume to continue it to --epochs 3" in (
        capsys.readouterr().err)


def test_min_hidden_channels_reaches_every_bam():
    """The flag the exporter's advice names, as a BAM option of the run."""
    args = cli.build_parser().parse_args(["--min-hidden-channels", "1", "--combine",
                                          "product"])
    config = cli.config_from_args(args)
    assert config.bam_options == {"min_hidden_channels": 1, "combine": "product"}
    from keras_bam.training.models import build_model

    model = build_model("small_cnn", 10, 16, bam_options=config.bam_options, seed=0)
    bams = [layer for layer in model._flatten_layers() if type(layer).__name__ == "BAM"]
    assert len(bams) == 2
    assert all(b.get_config()["min_hidden_channels"] == 1 for b in bams)


def test_a_malformed_tf_config_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost"]}}')
    code = cli.main(TINY + ["--epochs", "1", "--output", str(tmp_path / "r")])
    assert code == 2 and "TF_CONFIG" in capsys.readouterr().err


def test_plot_training_draws_two_runs(finished_run, tmp_path, capsys):
    import runpy

    out = tmp_path / "curves.png"
    plot_training = runpy.run_path(PLOT)
    code = plot_training["main"]([str(finished_run), str(finished_run), "--output",
                                  str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_plot_training_on_a_folder_without_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    import runpy

    plot_training = runpy.run_path(PLOT)
    assert plot_training["main"]([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no history.csv" in err and len(err.strip().splitlines()) == 1
    assert plot_training["main"]([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(tmp_path, capsys, tiny_start_model):
    """SIGKILL after the first checkpoint; the same command then finishes
    the run, repeating at most the epoch that was interrupted.

    The killed run is a real process (a real SIGKILL leaves the folder as
    it was at that instant); the resume reads only that folder, so it runs
    in this process (`cli.main`, what examples/train.py calls), which saves
    an interpreter start. One step per epoch: the kill comes between
    epochs, whatever their length."""
    output = tmp_path / "run"
    argv = TINY_STEP + ["--init-from", tiny_start_model, "--epochs", "3",
                        "--output", str(output)]
    first = subprocess.Popen([sys.executable, TRAIN] + argv, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env())
    deadline = time.time() + 240
    while not (output / "checkpoints" / "checkpoint").exists():
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stdout.close()
    assert first.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (output / "model.keras").exists(), "the run ended before the kill"
    capsys.readouterr()
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    out = capsys.readouterr().out
    resumed = [line for line in out.splitlines() if "resuming" in line]
    assert resumed, out
    restored = int(resumed[0].rsplit(" ", 1)[-1])
    assert restored >= 1
    ran = [int(line.split()[1].split("/")[0]) for line in out.splitlines()
           if line.startswith("epoch ")]
    assert ran == list(range(restored + 1, 4)), out
    assert [r["epoch"] for r in history.read(output / "history.csv")] == [1, 2, 3]
    assert (output / "model.keras").exists()


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus(tmp_path, capsys, monkeypatch, tiny_start_model):
    """--strategy mirrored on the two logical CPU devices that
    tests/conftest.py makes: MirroredStrategy() is pointed at them, as it
    would find two local GPUs. A batch the replicas cannot share is
    refused; an even one trains two replicas with synchronized batch norm."""
    import tensorflow as tf

    mirrored = tf.distribute.MirroredStrategy
    monkeypatch.setattr(tf.distribute, "MirroredStrategy",
                        lambda *args, **kwargs: mirrored(["/cpu:0", "/cpu:1"]))
    start = ["--init-from", tiny_start_model]
    assert cli.main(TINY_STEP + start + ["--strategy", "mirrored", "--batch-size", "31",
                                         "--output", str(tmp_path / "odd"),
                                         "--epochs", "1"]) == 2
    assert "not divisible by the 2 replicas" in capsys.readouterr().err
    assert cli.main(TINY_STEP + start + ["--strategy", "mirrored", "--output",
                                         str(tmp_path / "ok"), "--epochs", "1"]) == 0, (
        capsys.readouterr().err[-3000:])
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert (config["replicas"], config["sync_batch_norm"]) == (2, True), config
    assert "2 replica(s)" in capsys.readouterr().out


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# One step of 8 images (of conftest's tiny_start_model, at its 16 x 16
# pixels): one step already moves every weight, so equal digests after it
# show that the workers stayed in sync.
WORKER_RUN = ["--batch-size", "8", "--steps-per-epoch", "1", "--no-progress",
              "--epochs", "1", "--strategy", "multi_worker"]


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_and_only_the_chief_writes(
        tmp_path, tiny_start_model):
    """MultiWorkerMirroredStrategy, two processes on 127.0.0.1: the custom
    loop works where Keras 3 model.fit does not (keras-team/keras#20585)."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    output = tmp_path / "run"
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, TRAIN] + WORKER_RUN + ["--init-from", tiny_start_model,
                                                    "--output", str(output)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env(TF_CONFIG=tf_config)))
    outputs = []
    for process in processes:
        try:
            out, _ = process.communicate(timeout=300)
        finally:
            process.kill()
        assert process.returncode == 0, out[-3000:]
        outputs.append(out)
    digests = [[line for line in out.splitlines() if line.startswith("weights digest")]
               for out in outputs]
    assert digests[0] and digests[0] == digests[1], digests
    assert "2 replica(s)" in outputs[0]
    assert "wrote" in outputs[0] and "wrote" not in outputs[1]
    assert (output / "model.keras").exists()
    assert sorted(p.name for p in (output / "checkpoints").iterdir() if "ckpt-" in p.name)


def test_a_tfds_dataset_trains_offline_and_mixed_float16_saves_float32(tmp_path):
    """One run, two behaviours that do not depend on each other (the recipe
    and class count come from the dataset, the precision from its flag), so
    that the training step is traced once instead of twice:

    - the real tensorflow-datasets path of examples/train.py (cifar100, its
      recipe and 100 classes), fed by tfds.testing.mock_data;
    - --mixed-precision float16 trains with loss scaling (finite losses),
      leaves the global policy as it was and saves a float32 model.
    """
    import tensorflow_datasets as tfds

    output = tmp_path / "cifar100"
    with tfds.testing.mock_data(num_examples=32):
        code = cli.main(["--dataset", "cifar100", "--batch-size", "16", "--epochs", "1",
                         "--mixed-precision", "float16", "--no-progress",
                         "--output", str(output)])
    assert code == 0
    config = json.loads((output / "config.json").read_text())
    # tfds
    assert config["recipe"]["name"] == "cifar" and config["steps_per_epoch"] == 2, config
    assert config["dataset"]["num_classes"] == 100, config["dataset"]
    assert config["dataset"]["image_size"] == [32, 32], config["dataset"]
    assert config["learning_rate"] == pytest.approx(0.1 * 16 / 128)
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 <= metrics["top1_error"] <= 1, metrics
    # mixed float16
    assert keras.mixed_precision.global_policy().name == "float32", (
        "the command left its mixed policy behind")
    assert config["dtype_policy"] == "mixed_float16", config["dtype_policy"]
    rows = history.read(output / "history.csv")
    assert np.isfinite(rows[0]["loss"]) and np.isfinite(rows[0]["eval_loss"]), (
        f"a loss that is not finite under float16: {rows}")
    model = keras.saving.load_model(output / "model.keras")
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {
        "float32"}, "model.keras is not float32"


# The ablation command's own data (the digits at 8 x 8, 1 epoch), three
# variants: the fewest that order baseline < one gate < BAM.
ABLATION_ARGV = ["--variants", "baseline", "bam", "channel_only", "--epochs", "1",
                 "--batch-size", "128", "--image-size", "8"]


def test_ablation_trains_each_variant_alike_shows_a_line_each_and_tabulates(
        tmp_path, capsys):
    """`python examples/ablation.py` (its `main`) trains the variants alike
    and shows one line per variant as it starts and ends, then the table;
    no text filtering: the runs' per-epoch lines only with --verbose. One
    ablation for the library's and the command's checks (they were two:
    here and in tests/commands/test_commands.py)."""
    from keras_bam.commands import ablation as command
    from keras_bam.training import ablation

    argv = ABLATION_ARGV + ["--output", str(tmp_path)]
    assert command.main(argv) == 0, capsys.readouterr().err[-3000:]
    out = capsys.readouterr().out.splitlines()

    # The runs: same data, seed and budget; only BAM differs.
    rows = [ablation.AblationRow(**row)
            for row in json.loads((tmp_path / "ablation.json").read_text())]
    by_name = {r.variant: r for r in rows}
    assert list(by_name) == ["baseline", "bam", "channel_only"], "ablation.json"
    configs = {name: json.loads((tmp_path / name / "config.json").read_text())
               for name in by_name}
    assert len({json.dumps({k: v for k, v in c["run"].items()
                            if k not in ("output", "bam", "bam_options")})
                for c in configs.values()}) == 1, "the variants' runs differ beyond BAM"
    bam = keras.saving.load_model(tmp_path / "bam" / "model.keras")
    bam_params = sum(layer.count_params() for layer in bam._flatten_layers()
                     if type(layer).__name__ == "BAM")
    assert by_name["bam"].params - by_name["baseline"].params == bam_params
    assert by_name["baseline"].params < by_name["channel_only"].params < by_name["bam"].params
    table = ablation.format_table(rows)
    assert table.count("\n") == 4 and "| channel_only |" in table, table

    # The console: a line as each variant starts and ends, then that table.
    assert out[0] == "--- baseline: no BAM", out
    assert out[1].startswith("baseline: top-1 error "), out
    assert out[2].startswith("--- bam: ") and out[3].startswith("bam: top-1 error "), out
    assert out[4].startswith("--- channel_only: "), out
    assert out[5].startswith("channel_only: top-1 error "), out
    assert out[6:] == table.splitlines(), "the printed table is not format_table's"
    assert not [line for line in out if line.startswith("epoch ")], out
    assert command.main(argv + ["--verbose"]) == 0  # finished: resumes, no training
    assert "resuming" in capsys.readouterr().out, "--verbose hides the runs' lines"
    assert command.main(ABLATION_ARGV + ["--output", str(tmp_path / "x"),
                                         "--epochs", "0"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --epochs must be an integer of at least 1")


@pytest.fixture(scope="module")
def init_from_files(tmp_path_factory):
    """A .keras image classifier, a model that takes no images, and two
    files that are no models."""
    from keras_bam.training.models import build_model

    folder = tmp_path_factory.mktemp("init_from")
    build_model("small_cnn", 4, 16, seed=1).save(folder / "cnn.keras")
    inputs = keras.Input((10,))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(folder / "vector.keras")
    (folder / "garbage.keras").write_bytes(b"not a zip file")
    (folder / "garbage.pth").write_bytes(b"not a pickle")
    return folder


@pytest.mark.parametrize("argv, message", [
    (["--init-from", "{d}/none.keras"], "--init-from {d}/none.keras does not exist. Give a "
                                        ".keras model, or the BAM authors' checkpoint"),
    (["--init-from", "{d}/garbage.keras"], "--init-from {d}/garbage.keras cannot be read as "
                                           "a .keras model, or the BAM authors' checkpoint"),
    (["--init-from", "{d}/garbage.pth"], "--init-from {d}/garbage.pth cannot be read as a "
                                         ".keras model"),
    (["--init-from", "{d}/vector.keras"], "is not an image model: its inputs are "
                                          "[(None, 10)], expected one (batch, height,"),
    (["--init-from", "{d}/cnn.keras", "--image-size", "32"],
     "--image-size 32 conflicts with the input of the model in --init-from (16 x 16)"),
    (["--init-from", "{d}/cnn.keras", "--model", "small_cnn", "--no-bam"],
     "--init-from trains the model in {d}/cnn.keras as it is; --model and --no-bam would "
     "describe another model. Leave them out"),
    (["--init-from", "{d}/cnn.keras", "--attention", "both"], "; --attention would describe"),
    (["--init-from", "{d}/cnn.keras", "--reduction-ratio", "8"], "; --reduction-ratio would"),
])
def test_init_from_bad_input_gets_one_line_and_exit_2(init_from_files, tmp_path, capsys,
                                                      argv, message):
    folder = init_from_files
    argv = [a.format(d=folder) for a in argv]
    code = cli.main(TINY[:-3] + ["--no-progress", "--epochs", "1", "--output",
                                 str(tmp_path / "r")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and message.format(d=folder) in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "model.keras").exists()


def test_init_from_a_pytorch_file_without_torch_says_how_to_install_it(
        tmp_path, capsys, monkeypatch):
    (tmp_path / "their.pth.tar").write_bytes(b"\x80\x02")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
    code = cli.main(["--init-from", str(tmp_path / "their.pth.tar"), "--output",
                     str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs torch, which is not installed" in err
    assert "pip install \"keras-bam[torch]\"" in err
