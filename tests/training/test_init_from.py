"""Training that starts from a model in a file (`RunConfig.init_from`):
a `.keras` model or the authors' checkpoint, a new head when the classes
differ, resume identity, mixed precision."""

import json

import keras
import numpy as np
import pytest
import resnet_reference

from keras_bam.training import models
from keras_bam.training.run import (
    RunConfig,
    RunError,
    file_digest,
    read_saved_run,
    resolve_start,
    run,
)

TINY = dict(batch_size=16, steps_per_epoch=1, epochs=1, progress=False)


def small_model(path, classes=4, seed=1):
    """The small_cnn of examples/train.py for `classes` classes, 16 x 16."""
    model = models.build_model("small_cnn", classes, 16, seed=seed)
    model.save(path)
    return model


def kernel(model, name="stem_conv"):
    """A backbone convolution's kernel, inside the nested small_cnn."""
    return keras.ops.convert_to_numpy(model.layers[-1].get_layer(name).kernel)


def test_a_keras_file_is_fine_tuned_with_a_new_head_and_resumes(tmp_path):
    path = tmp_path / "start.keras"
    start = small_model(path)
    output = tmp_path / "run"
    # A learning rate of 1e-9: the weights stay the file's, visibly.
    config = RunConfig(output=str(output), init_from=str(path), learning_rate=1e-9,
                       **TINY)
    metrics = run(config)
    trained = keras.saving.load_model(output / "model.keras")
    # The digits have 10 classes, the file 4: a new head on the same features.
    assert trained.output_shape == (None, 10)
    assert not isinstance(trained(np.zeros((1, 16, 16, 3), "float32")), (list, tuple))
    assert trained.layers[-1].get_layer("logits").kernel.shape == (
        start.layers[-1].get_layer("logits").kernel.shape[0], 10)
    np.testing.assert_allclose(kernel(trained), kernel(start), atol=1e-6)
    fresh = models.build_model("small_cnn", 10, 16, seed=0)  # what --model builds
    assert not np.allclose(kernel(fresh), kernel(start), atol=1e-2)
    saved = json.loads((output / "config.json").read_text())
    assert saved["run"]["init_from"] == str(path) and saved["run"]["model"] is None
    assert len(saved["init_from_sha256"]) == 64
    assert saved["dataset"]["image_size"] == [16, 16] and metrics["params"] > 0

    # The same config is the same run (it would resume); another file, or
    # the same path holding another model, is another run.
    assert read_saved_run(resolve_start(config), file_digest(path)) == saved
    other = tmp_path / "other.keras"
    small_model(other, seed=2)
    with pytest.raises(RunError, match="differs in init_from"):
        run(RunConfig(output=str(output), init_from=str(other), learning_rate=1e-9,
                      **TINY))
    small_model(path, seed=2)
    with pytest.raises(RunError, match=r"started from another .* \(the file changed"):
        run(config)


@pytest.mark.parametrize("field, value", [("model", "small_cnn"), ("bam", True),
                                          ("bam_options", {"reduction_ratio": 8}),
                                          ("weights", "imagenet")])
def test_build_fields_do_not_combine_with_init_from(tmp_path, field, value):
    config = RunConfig(output=str(tmp_path / "r"), init_from="x.keras", **{field: value})
    with pytest.raises(RunError, match=f"`init_from` trains the model in x.keras as "
                                       f"it is; `{field}` would describe another"):
        run(config)
    assert not (tmp_path / "r").exists()


def test_the_authors_cifar_resnet18_from_a_numpy_state_dict(tmp_path):
    """Their CIFAR ResNet-18 + BAM (random weights in their layout) as a
    starting point: its input size, a new 10-class head, the rest loaded;
    and the copy trained under mixed precision computes in bfloat16 with
    the same float32 weights."""
    rng = np.random.default_rng(18)
    state_dict = resnet_reference.random_state_dict(rng, "CIFAR", 18, 100, "BAM")
    path = tmp_path / "resnet18_bam.npz"
    np.savez(path, **{"module." + k: v for k, v in state_dict.items()})
    start = models.load_initial_model(path)
    assert models.input_shape(start) == ((32, 32), 3)
    model = models.with_classes(start, 10, seed=0)
    assert model.output_shape == (None, 10)
    # PyTorch's (out, in, kh, kw) is Keras' (kh, kw, in, out).
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("layer3_0_conv2").kernel),
        state_dict["layer3.0.conv2.weight"].transpose(2, 3, 1, 0))

    mixed = models.rebuild(model, "mixed_bfloat16")
    assert mixed.get_layer("bam2").compute_dtype == "bfloat16"
    assert mixed.get_layer("layer3_0_conv2").compute_dtype == "bfloat16"
    assert {w.dtype for w in mixed.weights} == {"float32"}
    for a, b in zip(mixed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert not isinstance(model(images[:1]), (list, tuple))  # one tensor, as before
    full = keras.ops.convert_to_numpy(model(images, training=False))
    half = keras.ops.convert_to_numpy(mixed(images, training=False)).astype("float32")
    # bfloat16 keeps 8 bits of mantissa: about 1e-2 of the largest logit.
    np.testing.assert_allclose(half, full, atol=5e-2 * np.abs(full).max())


def test_a_softmax_head_kept_as_it_is_is_refused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    with pytest.raises(models.ModelError, match="not in logits"):
        models.with_classes(model, 10)
    assert models.with_classes(model, 3).output_shape == (None, 3)  # a new head
