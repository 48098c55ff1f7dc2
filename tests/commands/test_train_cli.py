"""examples/train.py end to end: outputs, resume after a kill, bad input,
two logical devices, two workers, and plot_training."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
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
def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    """SIGKILL after the first checkpoint; the same command then finishes
    the run, repeating at most the epoch that was interrupted."""
    output = tmp_path / "run"
    command = [sys.executable, TRAIN] + TINY + ["--epochs", "3", "--output", str(output)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env())
    deadline = time.time() + 240
    while not (output / "checkpoints" / "checkpoint").exists():
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (output / "model.keras").exists()
    second = subprocess.run(command, capture_output=True, text=True, env=env(),
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr[-2000:]
    resumed = [line for line in second.stdout.splitlines() if "resuming" in line]
    assert resumed, second.stdout
    restored = int(resumed[0].rsplit(" ", 1)[-1])
    assert restored >= 1
    ran = [int(line.split()[1].split("/")[0]) for line in second.stdout.splitlines()
           if line.startswith("epoch ")]
    assert ran == list(range(restored + 1, 4))
    assert [r["epoch"] for r in history.read(output / "history.csv")] == [1, 2, 3]
    assert (output / "model.keras").exists()


TWO_DEVICES = textwrap.dedent("""
    import json, sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.distribute.MirroredStrategy = (lambda f: lambda *a, **k: f(["/cpu:0", "/cpu:1"]))(
        tf.distribute.MirroredStrategy)
    from keras_bam.commands import train as cli
    out = sys.argv[1]
    tiny = %r
    assert cli.main(tiny + ["--strategy", "mirrored", "--batch-size", "31",
                            "--output", out + "/odd", "--epochs", "1"]) == 2
    assert cli.main(tiny + ["--strategy", "mirrored", "--output", out + "/ok",
                            "--epochs", "1"]) == 0
    config = json.load(open(out + "/ok/config.json"))
    print("replicas", config["replicas"], "sync", config["sync_batch_norm"])
""") % TINY


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus(tmp_path):
    result = subprocess.run([sys.executable, "-c", TWO_DEVICES, str(tmp_path)],
                            capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "replicas 2 sync True" in result.stdout
    assert "not divisible by the 2 replicas" in result.stderr


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_and_only_the_chief_writes(tmp_path):
    """MultiWorkerMirroredStrategy, two processes on 127.0.0.1: the custom
    loop works where Keras 3 model.fit does not (keras-team/keras#20585)."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    output = tmp_path / "run"
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, TRAIN] + TINY + ["--epochs", "1", "--strategy",
                                              "multi_worker", "--output", str(output)],
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


def test_mixed_float16_trains_with_loss_scaling_and_saves_float32(tmp_path):
    output = tmp_path / "fp16"
    assert cli.main(TINY + ["--epochs", "1", "--mixed-precision", "float16",
                            "--output", str(output)]) == 0
    assert keras.mixed_precision.global_policy().name == "float32"
    config = json.loads((output / "config.json").read_text())
    assert config["dtype_policy"] == "mixed_float16"
    rows = history.read(output / "history.csv")
    assert np.isfinite(rows[0]["loss"]) and np.isfinite(rows[0]["eval_loss"])
    model = keras.saving.load_model(output / "model.keras")
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}


def test_ablation_trains_each_variant_alike_and_tabulates(tmp_path):
    from keras_bam.training import ablation

    rows = ablation.run_ablation(
        tmp_path, ["baseline", "bam", "channel_only"],
        epochs=1, batch_size=32, steps_per_epoch=3, image_size=16, progress=False)
    by_name = {r.variant: r for r in rows}
    configs = {name: json.loads((tmp_path / name / "config.json").read_text())
               for name in by_name}
    # Same data, seed and budget; only BAM differs.
    assert len({json.dumps({k: v for k, v in c["run"].items()
                            if k not in ("output", "bam", "bam_options")})
                for c in configs.values()}) == 1
    bam = keras.saving.load_model(tmp_path / "bam" / "model.keras")
    bam_params = sum(layer.count_params() for layer in bam._flatten_layers()
                     if type(layer).__name__ == "BAM")
    assert by_name["bam"].params - by_name["baseline"].params == bam_params
    assert by_name["baseline"].params < by_name["channel_only"].params < by_name["bam"].params
    table = ablation.format_table(rows)
    assert table.count("\n") == 4 and "| channel_only |" in table
    assert json.loads((tmp_path / "ablation.json").read_text())[1]["variant"] == "bam"


def test_train_on_a_tfds_dataset_offline_through_mock_data(tmp_path):
    """The real tensorflow-datasets path of examples/train.py (cifar100, its
    recipe and 100 classes), fed by tfds.testing.mock_data."""
    import tensorflow_datasets as tfds

    output = tmp_path / "cifar100"
    with tfds.testing.mock_data(num_examples=32):
        code = cli.main(["--dataset", "cifar100", "--batch-size", "16", "--epochs", "1",
                         "--no-progress", "--output", str(output)])
    assert code == 0
    config = json.loads((output / "config.json").read_text())
    assert config["recipe"]["name"] == "cifar" and config["steps_per_epoch"] == 2
    assert config["dataset"]["num_classes"] == 100
    assert config["dataset"]["image_size"] == [32, 32]
    assert config["learning_rate"] == pytest.approx(0.1 * 16 / 128)
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 <= metrics["top1_error"] <= 1


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
