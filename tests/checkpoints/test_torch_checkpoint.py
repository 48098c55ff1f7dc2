"""`from_torch_checkpoint` against a NumPy forward pass of the authors' network.

The checkpoints hold random weights and random batch-norm statistics in the
authors' names and layouts (`resnet_reference.random_state_dict`); the
expected logits come from `resnet_reference.forward`, written from the
description of their network, not from keras_bam. Files are saved the way
their training script saves them: the whole dict (state_dict, epoch, arch,
best_prec1, optimizer), names prefixed `module.` by DataParallel, PyTorch's
legacy (non-zip) serialization. Tests that need torch skip without it; the
NumPy state dict path needs no torch.
"""

import argparse
import collections
import json
import os
import re
import runpy
import sys

import keras
import numpy as np
import pytest
import resnet_reference

import keras_bam
from keras_bam import (
    from_torch_checkpoint,
    inspect_state_dict,
    load_torch_checkpoint,
    to_torch_state_dict,
)
from keras_bam.torch_checkpoint import load_pretrained

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "convert_checkpoint.py")

RTOL = 1e-4  # relative to the largest logit; float32 against float64
NETWORKS = {
    # id: (network_type, depth, classes, image size): their evaluation sizes
    "imagenet_resnet50_bam": ("ImageNet", 50, 1000, 224),
    "cifar_resnet18_bam": ("CIFAR", 18, 100, 32),
}
_CASES = {}


def case(network):
    """(state dict, images, expected logits), computed once per network."""
    if network not in _CASES:
        network_type, depth, classes, size = NETWORKS[network]
        rng = np.random.default_rng(1807_06514 + depth)
        state_dict = resnet_reference.random_state_dict(rng, network_type, depth, classes)
        # Blocky colour images with noise, so that the two differ everywhere.
        coarse = rng.uniform(0, 255, (2, 8, 8, 3))
        images = np.kron(coarse, np.ones((1, size // 8, size // 8, 1)))
        images = np.clip(images + rng.normal(0, 20, images.shape), 0, 255)
        images = images.astype("float32")
        expected = resnet_reference.forward(images, state_dict, network_type, depth)
        _CASES[network] = state_dict, images, expected
    return _CASES[network]


def assert_logits_match(model, images, expected):
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=RTOL * scale)
    # The part of the logits that depends on the image, on its own scale.
    difference, expected_difference = actual[0] - actual[1], expected[0] - expected[1]
    np.testing.assert_allclose(difference, expected_difference, rtol=0,
                               atol=RTOL * np.abs(expected_difference).max())


def save_like_their_script(torch, state_dict, path):
    """torch.save of what their train_imagenet.py saves, from PyTorch 0.4."""
    tensors = collections.OrderedDict(
        ("module." + k, torch.from_numpy(np.array(v))) for k, v in state_dict.items())
    momentum = {i: {"momentum_buffer": torch.zeros(3)} for i in range(2)}
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet",
            "state_dict": tensors,
            "best_prec1": torch.tensor(76.86),
            "optimizer": {"state": momentum,
                          "param_groups": [{"lr": 0.001, "momentum": 0.9,
                                            "weight_decay": 1e-4, "params": [0, 1]}]},
        },
        path,
        _use_new_zipfile_serialization=False,
    )


@pytest.mark.parametrize("network", list(NETWORKS))
def test_numpy_state_dict_reproduces_their_logits(network):
    state_dict, images, expected = case(network)
    model = from_torch_checkpoint(state_dict)
    network_type, depth, classes, size = NETWORKS[network]
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, classes)
    assert_logits_match(model, images, expected)


@pytest.mark.parametrize("network", list(NETWORKS))
def test_checkpoint_file_reproduces_their_logits(network, tmp_path, caplog):
    torch = pytest.importorskip("torch")
    state_dict, images, expected = case(network)
    path = tmp_path / "RESNET_BAM_best.pth.tar"
    save_like_their_script(torch, state_dict, path)
    with open(path, "rb") as f:  # the legacy format: a pickle, not a zip or tar
        assert f.read(2) == b"\x80\x02"
    with caplog.at_level("INFO", logger="keras_bam"):
        model = from_torch_checkpoint(str(path))
    assert "epoch 90" in caplog.text and "best_prec1 76.8" in caplog.text
    assert_logits_match(model, images, expected)


def cifar18_state_dict(seed=7, classes=10, attention="BAM"):
    rng = np.random.default_rng(seed)
    return resnet_reference.random_state_dict(rng, "CIFAR", 18, classes, attention)


@pytest.fixture(scope="module")
def cifar18():
    """A CIFAR ResNet-18 + BAM with a checkpoint's weights, shared by the
    tests that only read it or check that a failed load leaves it alone."""
    state_dict = cifar18_state_dict()
    return from_torch_checkpoint(state_dict), state_dict


def snapshot(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


def test_torch_tensors_in_memory(cifar18, rng):
    torch = pytest.importorskip("torch")
    model, state_dict = cifar18
    checkpoint = {"state_dict": {"module." + k: torch.from_numpy(np.array(v))
                                 for k, v in state_dict.items()}, "epoch": 3}
    loaded = from_torch_checkpoint(checkpoint)
    for a, b in zip(snapshot(loaded), snapshot(model)):
        np.testing.assert_array_equal(a, b)


def test_npz_file_and_weights_argument(cifar18, tmp_path):
    model, state_dict = cifar18
    path = str(tmp_path / "resnet18.npz")
    np.savez(path, **state_dict)
    for loaded in (from_torch_checkpoint(path),
                   keras_bam.applications.ResidualNet18("CIFAR", classes=10,
                                                        weights=path)):
        for a, b in zip(snapshot(loaded), snapshot(model)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("network_type", ["ImageNet", "CIFAR"])
@pytest.mark.parametrize("attention", ["BAM", None])
def test_inspect_state_dict(depth, network_type, attention):
    layout = resnet_reference.layout(network_type, depth, 37, attention)
    state_dict = {k: np.zeros(shape, np.float32) for k, shape in layout.items()}
    spec = inspect_state_dict(state_dict)
    assert (spec.depth, spec.network_type, spec.attention, spec.classes) == (
        depth, network_type, "bam" if attention else None, 37)


def test_cbam_checkpoint_is_refused_by_name():
    state_dict = {"module." + k: v for k, v in cifar18_state_dict(attention=None).items()}
    state_dict["module.layer1.0.cbam.ChannelGate.mlp.1.weight"] = np.zeros((4, 64))
    state_dict["module.layer1.0.cbam.SpatialGate.spatial.conv.weight"] = np.zeros(
        (1, 2, 7, 7))
    with pytest.raises(ValueError, match=r"(?i)^the checkpoint holds CBAM modules"):
        from_torch_checkpoint(state_dict)


@pytest.mark.parametrize(
    "change, match",
    [(lambda sd: sd.pop("conv1.weight"), "no conv1.weight"),
     (lambda sd: sd.update({"conv1.weight": np.zeros((64, 3, 5, 5))}),
      r"conv1.weight of shape \(64, 3, 5, 5\)"),
     (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("layer3.1.")],
      r"\(2, 2, 1, 2\) basic blocks")],
    ids=["no_stem", "odd_stem", "no_such_depth"],
)
def test_not_their_resnet(change, match):
    state_dict = cifar18_state_dict()
    change(state_dict)
    with pytest.raises(ValueError, match=match):
        from_torch_checkpoint(state_dict)


def test_every_problem_named_in_one_error_and_nothing_loaded(cifar18):
    model, state_dict = cifar18
    before = snapshot(model)
    bad = {k: np.array(v) + 1 for k, v in state_dict.items()}
    del bad["layer2.0.downsample.1.running_var"]  # missing, trunk
    del bad["bam2.spatial_att.gate_s.gate_s_conv_di_1.bias"]  # missing, BAM
    bad["layer2.0.conv3.weight"] = np.zeros((128, 128, 1, 1))  # unexpected
    bad["layer1.1.conv2.weight"] = bad["layer1.1.conv2.weight"][:, :, :1]  # mis-shaped
    bad["fc.weight"] = bad["fc.weight"].T  # mis-shaped: (in, out)
    with pytest.raises(ValueError) as error:
        load_torch_checkpoint(model, bad)
    message = str(error.value)
    for key in ["layer2.0.downsample.1.running_var", "layer2.0.conv3.weight",
                "layer1.1.conv2.weight", "fc.weight",
                "bam2.spatial_att.gate_s.gate_s_conv_di_1.bias"]:
        assert key in message, key
    assert re.search(r"missing: layer2\.0\.downsample\.1\.running_var", message)
    assert re.search(r"unexpected: layer2\.0\.conv3\.weight", message)
    for old, new in zip(before, snapshot(model)):
        np.testing.assert_array_equal(old, new)


def test_plain_checkpoint_into_a_bam_model_names_the_bam_entries(cifar18):
    model, _ = cifar18
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"bam1: No BAM under prefix 'bam1\.'"):
        load_torch_checkpoint(model, cifar18_state_dict(attention=None))
    for old, new in zip(before, snapshot(model)):
        np.testing.assert_array_equal(old, new)


def test_features_without_top(cifar18, rng):
    """include_top=False, pooling="avg" gives the features that their fc turns
    into the full model's logits."""
    model, state_dict = cifar18
    features = from_torch_checkpoint(state_dict, include_top=False, pooling="avg")
    assert not any(layer.name == "fc" for layer in features.layers)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    pooled = keras.ops.convert_to_numpy(features(x, training=False))
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(pooled @ state_dict["fc.weight"].T + state_dict["fc.bias"],
                               logits, rtol=1e-5, atol=1e-5)


def test_new_head_for_other_classes(cifar18, rng):
    model, state_dict = cifar18
    new = from_torch_checkpoint(state_dict, classes=3)
    assert new.output_shape == (None, 3)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(new.get_layer("layer4_1_conv2").kernel),
        keras.ops.convert_to_numpy(model.get_layer("layer4_1_conv2").kernel))


def test_saved_model_reloads_identically(cifar18, tmp_path, rng):
    model, _ = cifar18
    path = str(tmp_path / "converted.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)))


def test_torch_missing_is_a_clear_message(tmp_path, monkeypatch):
    path = tmp_path / "RESNET50_IMAGENET_BAM_best.pth.tar"
    path.write_bytes(b"\x80\x02not read")
    class NoTorch:  # as if torch were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoTorch(), *sys.meta_path])
    with pytest.raises(ImportError, match=r"needs torch.*keras-bam\[torch\].*\.npz"):
        from_torch_checkpoint(str(path))


def test_unreadable_files(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_torch_checkpoint(str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as a PyTorch checkpoint"):
        from_torch_checkpoint(str(garbage))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, unsafe)
    with pytest.raises(ValueError, match=r"argparse.Namespace.*weights_only=False"):
        from_torch_checkpoint(str(unsafe))


def test_importing_keras_bam_does_not_import_torch(fresh_import):
    assert "torch" not in fresh_import["alone"]["modules"]


@pytest.mark.parametrize(
    "value, error, match",
    [(42, TypeError, "takes a path or a state dict"),
     ({"conv1.weight": "zeros"}, TypeError, "'conv1.weight' is a str"),
     ({1: np.zeros(3)}, TypeError, "keys are parameter names")],
)
def test_bad_state_dicts(value, error, match):
    with pytest.raises(error, match=match):
        from_torch_checkpoint(value)


def test_to_torch_state_dict_inverts_the_loading(cifar18):
    """Back to their names and layouts, bit for bit, with the same keys."""
    model, state_dict = cifar18
    back = to_torch_state_dict(model)
    assert set(back) == set(state_dict)
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            assert back[key].dtype == np.int64 and back[key].shape == ()
        else:
            np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_convert_command(cifar18, tmp_path, capsys):
    model, state_dict = cifar18
    checkpoint = str(tmp_path / "resnet18.npz")
    np.savez(checkpoint, **{"module." + k: v for k, v in state_dict.items()})
    main = runpy.run_path(SCRIPT)["main"]
    output, report = tmp_path / "resnet18.keras", tmp_path / "report.json"
    assert main([checkpoint, "--output", str(output), "--report", str(report)]) == 0
    found = json.loads(report.read_text())
    assert found["network"] == "ResidualNet-18 CIFAR" and found["attention"] == "bam"
    # What their model.parameters() counts: every entry but the BN statistics.
    trainable = sum(v.size for k, v in state_dict.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert found["trainable_parameters"] == trainable
    reloaded = keras.saving.load_model(str(output))
    for a, b in zip(snapshot(reloaded), snapshot(model)):
        np.testing.assert_array_equal(a, b)

    # Bad input: one line on stderr, exit 2, nothing written.
    capsys.readouterr()
    for argv in ([checkpoint, "--output", str(tmp_path / "m.h5")],
                 [str(tmp_path / "none.pth"), "--output", str(tmp_path / "n.keras")],
                 [checkpoint, "--output", str(tmp_path / "p.keras"), "--pooling", "avg"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.json", "resnet18.keras", "resnet18.npz"]


def test_load_pretrained_keras_file_with_new_head(cifar18, tmp_path):
    model, _ = cifar18
    path = str(tmp_path / "m.keras")
    model.save(path)
    same = load_pretrained(path, classes=10)
    assert same.get_layer("fc").kernel.shape == (512, 10)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(same.get_layer("fc").kernel),
        keras.ops.convert_to_numpy(model.get_layer("fc").kernel))
    new = load_pretrained(path, classes=4)
    assert new.output_shape == (None, 4)


def export_int8(model, path, calibration, held_out):
    """The one call into keras_bam.export: convert, verify, write."""
    from keras_bam.data.images import ImageSet
    from keras_bam.export import export_tflite

    return export_tflite(
        model, path,
        calibration=ImageSet(calibration, None, None, "random pixels"),
        held_out=ImageSet(held_out, None, None, "random pixels"),
        latency_runs=0)


@pytest.mark.slow
def test_converted_model_fine_tunes_and_exports_to_int8(tmp_path, rng):
    """Their CIFAR ResNet-18 + BAM, converted, with a new 10-class head:
    one SGD step changes the trunk, BAM and the head with a finite loss, and
    the result passes every check of the int8 export (XNNPACK, every op
    int8, agreement with the float model)."""
    keras.utils.set_random_seed(3)
    model = from_torch_checkpoint(cifar18_state_dict(classes=100), classes=10)
    images = rng.uniform(0, 255, (64, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, 64)
    # Eagerly: the step's gradients reach the same weights as in a traced
    # step, without tracing (and compiling) a ResNet-18 training step for
    # one batch, which costs four times the step itself.
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    watched = {name: keras.ops.convert_to_numpy(model.get_layer(name).weights[0]).copy()
               for name in ("conv1", "bam2", "layer4_1_conv2", "fc")}
    loss = model.train_on_batch(images[:16], labels[:16])
    assert np.isfinite(loss)
    for name, before in watched.items():
        after = keras.ops.convert_to_numpy(model.get_layer(name).weights[0])
        assert not np.array_equal(before, after), name

    # 16 images calibrate (the conversion's cost grows with each one) and 16
    # others are held out: the checks of the file are the same for any count.
    path = tmp_path / "resnet18_bam_int8.tflite"
    report = export_int8(model, str(path), images[:16], images[48:])
    assert path.is_file() and report.status == "ok"
    assert report.float_ops == [] and report.xnnpack_partitions >= 1
    assert [name for name, _, _ in report.bam_layers] == ["bam1", "bam2", "bam3"]
