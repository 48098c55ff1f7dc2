"""Shared pieces of the contract battery (tests/test_contract_*.py, issue 15).

The README's contract for every command: exit 0 when what it writes is
written (for an export: written and verified); exit 1 when the exporter's
file failed a check (nothing written); exit 2 for bad input, with one line
on stderr that names what was received and what to do, no traceback, and
nothing written.

The commands are run in-process through their script paths (`runpy`), as a
user runs them, so that the battery does not depend on how the code behind
them is organised. An exception escaping a script is printed as Python
would print it and counts as exit 1, so a test sees the traceback in stderr
and fails on the contract rather than erroring out.
"""

import os
import pathlib
import re
import runpy
import sys
import traceback
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPORT = ROOT / "export" / "to_tflite.py"
TRAIN = ROOT / "examples" / "train.py"
VISUALIZE = ROOT / "examples" / "visualize_attention.py"
PLOT = ROOT / "examples" / "plot_training.py"
ABLATION = ROOT / "examples" / "ablation.py"

IMAGE_SIZE = 16  # the tiny models' input: 16x16x3 pixels in [0, 255]
NUM_CLASSES = 10


# ------------------------------------------------------------ running

def run_script(script, args):
    """Runs `script` as `python script args...` in this process.

    Returns the exit code: SystemExit's code, 0 when the script ends without
    one, 1 (with the traceback on stderr) when an exception escapes, as the
    interpreter would. BaseExceptions other than SystemExit (a simulated
    kill) propagate.
    """
    saved = sys.argv
    sys.argv = [str(script)] + [str(a) for a in args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        if done.code is None:
            return 0
        if isinstance(done.code, int):
            return done.code
        print(done.code, file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - what a user would see: a traceback
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved
    return 0


def message_lines(err):
    """The lines of stderr that are the command's own message: argparse's
    usage block (`usage: ...` and its indented continuation) is left out,
    since a flag argparse itself rejects comes with it."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    kept, in_usage = [], False
    for line in lines:
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        kept.append(line)
    return kept


def assert_bad_input(code, err, *patterns):
    """Exit 2, no traceback, exactly one line of message, and that line
    matches every regex in `patterns` (case-insensitive). Returns the line."""
    assert "Traceback" not in err, f"a traceback instead of one line:\n{err[-3000:]}"
    lines = message_lines(err)
    assert code == 2, f"exit code {code}, expected 2 (bad input); stderr:\n{err[-3000:]}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[-3000:]}"
    for pattern in patterns:
        assert re.search(pattern, lines[0], re.IGNORECASE), (
            f"the message does not match {pattern!r}: {lines[0]}")
    return lines[0]


def flag_pattern(flag):
    """A regex for a flag as the message may name it: `--dilation-rate` or
    the argument behind it, `dilation_rate`."""
    return re.escape(flag[2:]).replace("\\-", "[-_]")


def snapshot(*folders):
    """Every path (files and folders) under `folders`, for before/after."""
    found = set()
    for folder in folders:
        folder = pathlib.Path(folder)
        if folder.exists():
            found.add(str(folder))
            found.update(str(p) for p in folder.rglob("*"))
    return found


def assert_nothing_written(before, *folders):
    after = snapshot(*folders)
    assert after == before, f"written although refused: {sorted(after - before)}"


def tflite_files(*folders):
    return sorted(str(p) for folder in folders
                  for p in pathlib.Path(folder).rglob("*.tflite"))


# ------------------------------------------------------------ models

def tiny_bam_model(num_classes=NUM_CLASSES, seed=0, dead_spatial_branch=False):
    """A 16x16x3 Functional CNN with one BAM, taking pixels in [0, 255].

    `dead_spatial_branch` pushes the spatial branch's hidden batch norms to
    -1e4 so that its ReLUs are dead on every input: an int8 file of it has
    degenerate scales and the exporter must reject it (exit 1).
    """
    import keras

    import keras_bam

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    bam = keras_bam.BAM(name="bam1")
    x = bam(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name="tiny_bam")
    if dead_spatial_branch:
        for variable in bam.weights:
            if "spatial" in variable.path and variable.path.endswith("beta"):
                variable.assign(np.full(variable.shape, -1e4, "float32"))
    return model


def tiny_sequential_bam_model(seed=0):
    import keras

    import keras_bam

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras_bam.BAM(name="bam1"),
        keras.layers.MaxPooling2D(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(NUM_CLASSES),
    ], name="tiny_sequential_bam")


def rewrite_keras_config(source, target, edit):
    """Copies the .keras archive `source` to `target`, passing its
    config.json (a dict) through `edit` on the way."""
    import json

    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def layer_configs(config):
    """Every layer config dict in a saved model's config, nested included."""
    if isinstance(config, dict):
        if "class_name" in config and "config" in config:
            yield config
        for value in config.values():
            yield from layer_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from layer_configs(value)


# ------------------------------------------------------------ files

def png_bytes(rng, size=IMAGE_SIZE):
    import tensorflow as tf

    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def image_folder(root, classes, per_class, seed=0, size=IMAGE_SIZE):
    """A folder with one sub-folder of random PNGs per class; returns it."""
    rng = np.random.default_rng(seed)
    root = pathlib.Path(root)
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            (folder / f"{number:03d}.png").write_bytes(png_bytes(rng, size))
    return root


def truncate_file(path, keep_fraction=0.5):
    """Cuts a file to a fraction of its bytes (a half-copied download)."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return path


def truncated_png(path, seed=0, size=IMAGE_SIZE):
    """A PNG whose header is intact but whose pixel data is cut off: it
    passes a look at its first bytes and fails only when decoded."""
    data = png_bytes(np.random.default_rng(seed), size)
    pathlib.Path(path).write_bytes(data[: len(data) // 2])
    return pathlib.Path(path)


def read_only_folder(tmp_path):
    """A folder this process cannot create files in.

    A folder with mode 0o555 where that holds (not as root); else /sys,
    which the kernel keeps read-only even for root. Fails (not skips) when
    neither is available, so the case is never silently dropped.
    """
    folder = pathlib.Path(tmp_path) / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if _cannot_create_in(folder):
        return folder
    folder.chmod(0o755)
    for candidate in (pathlib.Path("/sys/kernel"), pathlib.Path("/sys")):
        if candidate.is_dir() and _cannot_create_in(candidate):
            return candidate
    raise AssertionError("no read-only folder is available on this machine")


def _cannot_create_in(folder):
    probe = folder / ".write_probe"
    try:
        with open(probe, "wb"):
            pass
    except OSError:
        return True
    os.unlink(probe)
    return False


def history_epochs(run_dir):
    """The epoch column of a run's history.csv, as read from the file."""
    import csv

    path = pathlib.Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def checkpoint_epoch(run_dir):
    """The epoch of the latest checkpoint in a run folder (0 if none), read
    from the checkpoint itself through TensorFlow's index of them."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(pathlib.Path(run_dir) / "checkpoints"))
    if latest is None:
        return 0
    reader = tf.train.load_checkpoint(latest)
    names = [name for name in reader.get_variable_to_shape_map()
             if name.split("/")[0] == "epoch"]
    if names:
        return int(reader.get_tensor(names[0]))
    # No epoch counter: the checkpoint's number, as CheckpointManager names it.
    return int(re.search(r"(\d+)$", latest).group(1))
