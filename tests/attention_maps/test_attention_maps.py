"""attention_maps: M(F) of every BAM, checked against the BAM's own gates;
the figure and examples/visualize_attention.py."""

import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bam
from keras_bam.applications import SmallCNN


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def randomize_batch_norms(model, rng):
    for variable in model.weights:
        if "moving" in variable.path or "beta" in variable.path:
            variable.assign(rng.normal(scale=0.3, size=variable.shape))


def expected_attention(model, layer_name, images):
    """M(F) from the BAM's gates, on F taken from the model independently."""
    bam = model.get_layer(layer_name)
    features = keras.Model(model.inputs[0], bam.input)(images, training=False)
    mc = keras.ops.convert_to_numpy(bam.channel_gate(features, training=False))
    ms = keras.ops.convert_to_numpy(bam.spatial_gate(features, training=False))
    return sigmoid(mc.astype(np.float64) + ms)  # the paper's sum


def test_maps_equal_the_gates(rng):
    model = keras_bam.insert_bam(SmallCNN(input_shape=(32, 32, 3)))
    randomize_batch_norms(model, rng)
    images = rng.uniform(0, 1, (5, 32, 32, 3)).astype("float32")
    maps = keras_bam.attention_maps(model, images, batch_size=2)
    assert [m.name for m in maps] == ["stage1_block1_relu_bam", "stage2_block1_relu_bam"]
    for m in maps:
        expected = expected_attention(model, m.name, images)
        np.testing.assert_allclose(m.attention, expected, atol=1e-5)
        np.testing.assert_allclose(m.spatial, expected.mean(-1), atol=1e-5)
        np.testing.assert_allclose(m.channel, expected.mean((1, 2)), atol=1e-5)
    assert maps[0].resolution == (32, 32) and maps[1].resolution == (16, 16)


def test_nested_model(rng):
    backbone = keras_bam.insert_bam(
        keras.applications.MobileNetV2(weights=None, alpha=0.35,
                                       input_shape=(64, 64, 3),
                                       include_top=False))
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(backbone(inputs * 2.0 - 1.0))
    model = keras.Model(inputs, outputs)
    images = rng.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    maps = keras_bam.attention_maps(model, images)
    assert [m.name for m in maps] == [
        f"{backbone.name}/block_2_add_bam", f"{backbone.name}/block_5_add_bam",
        f"{backbone.name}/block_12_add_bam"]
    expected = expected_attention(backbone, "block_5_add_bam", images * 2.0 - 1.0)
    np.testing.assert_allclose(maps[1].attention, expected, atol=1e-5)


def test_sequential_model_and_a_subclassed_one(rng):
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(16, 3, padding="same", name="conv"),
        keras_bam.BAM(name="bam"),
        keras.layers.GlobalAveragePooling2D(),
    ])
    randomize_batch_norms(model, rng)
    images = rng.uniform(0, 1, (3, 12, 12, 3)).astype("float32")
    (only,) = keras_bam.attention_maps(model, images)
    assert only.name == "bam"
    np.testing.assert_allclose(only.attention,
                               expected_attention(model, "bam", images),
                               atol=1e-5)

    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="Functional.*Received: Net"):
        keras_bam.attention_maps(Net(), images)


def test_model_without_bam():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="no BAM layer.*insert_bam"):
        keras_bam.attention_maps(model, np.zeros((1, 8, 8, 3)))


# ---------------------------------------------------------------- the figure

SCRIPT = pathlib.Path(__file__).parents[2] / "examples" / "visualize_attention.py"


def run_script(*args):
    """The script in a fresh process: only for what a process shows (the
    lines a real start-up prints)."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def run_in_process(capsys, *args):
    """The script run in this process, as `python SCRIPT args` would
    (exit code, stdout, stderr): no TensorFlow start-up to pay again."""
    from contract_helpers import run_script as run_path

    code = run_path(SCRIPT, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.keras"
    inputs = keras.Input((32, 32, 3))
    net = keras_bam.insert_bam(SmallCNN(input_shape=(32, 32, 3), widths=(8, 16, 16),
                                        blocks_per_stage=1))
    keras.Model(inputs, net(keras.layers.Rescaling(1 / 255)(inputs))).save(path)
    return path


def test_figure_has_a_panel_per_image_and_bam(saved_model, tmp_path, rng):
    from keras_bam.visualization import plot_attention

    model = keras.saving.load_model(saved_model)
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    maps = keras_bam.attention_maps(model, images)
    output = tmp_path / "fig.png"
    assert plot_attention(images, maps, output) == 3 * (1 + 2)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_script_on_a_model_and_image_files(saved_model, tmp_path, rng, capsys):
    image = tmp_path / "photo.png"
    image.write_bytes(tf.io.encode_png(
        rng.integers(0, 255, (40, 60, 3)).astype("uint8")).numpy())
    output = tmp_path / "attention.png"
    code, out, err = run_in_process(capsys, "--model", saved_model, "--image",
                                    image, image, "--output", output)
    assert code == 0, err[-2000:]
    assert "2 image(s) x 2 BAM layer(s), 6 panels" in out
    assert output.stat().st_size > 0


@pytest.mark.parametrize("args, message, fresh_process", [
    (["--image", "missing.jpg"], "--image missing.jpg does not exist", False),
    # In a process of its own too: TensorFlow's start-up adds no line.
    (["--model", "missing.keras"], "--model missing.keras does not exist", True),
])
def test_script_bad_paths(args, message, fresh_process, tmp_path, capsys):
    if fresh_process:
        result = run_script(*args, "--output", tmp_path / "a.png")
        code, err = result.returncode, result.stderr
    else:
        code, _, err = run_in_process(capsys, *args, "--output", tmp_path / "a.png")
    assert code == 2
    lines = err.strip().splitlines()
    # One line: what is wrong, then (where it helps) what to give instead.
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert "Traceback" not in err
    assert not (tmp_path / "a.png").exists()


@pytest.mark.slow
def test_script_default_runs_offline(tmp_path, capsys, monkeypatch):
    """No --model, no --image: the default model trained on the embedded
    digits and scikit-learn's two photographs, nothing downloaded.

    On the first 64 digits, 1 epoch: one training step is the same path
    as the full run's 22 per epoch (about 20 s of CPU fewer); how well the
    default model learns is the export's default_export tests' concern.
    In-process: what a fresh process adds (its start-up lines) is
    test_script_bad_paths' fresh case."""
    from keras_bam.data import images as image_sources

    load_images = image_sources.load_images

    def first_digits(source, *args, **kwargs):
        assert source == "digits", source  # the default model's data
        return load_images(source, *args, **{**kwargs, "limit": 64})

    monkeypatch.setattr(image_sources, "load_images", first_digits)
    output = tmp_path / "attention.png"
    code, out, err = run_in_process(capsys, "--epochs", 1, "--output", output)
    assert code == 0, err[-2000:]
    assert "2 image(s) x 2 BAM layer(s)" in out
    assert "CC BY 2.0" in out
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
