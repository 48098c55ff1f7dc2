"""insert_bam: the rewritten model's structure, weights, training and errors."""

import re

import keras
import numpy as np
import pytest

import keras_bam
from keras_bam.applications import SmallCNN
from keras_bam.rewrite import graph
from keras_bam.rewrite.keras_internals import call_count


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


A = keras.applications
MNV2_ANCHORS = ["block_2_add", "block_5_add", "block_12_add"]


def small_mobilenet_v2(input_shape=(32, 32, 3), **kwargs):
    """MobileNetV2 at its smallest (alpha 0.35, 32 x 32 pixels): the
    bottlenecks are the same at any input size (test_placement), and the
    rewrite is structural."""
    kwargs.setdefault("include_top", False)
    return A.MobileNetV2(weights=None, alpha=0.35, input_shape=input_shape,
                         **kwargs)


@pytest.fixture(scope="module")
def plain_mnv2():
    """One small_mobilenet_v2() for the tests that only read it: insert_bam
    (share_weights=False, the default) leaves it as it was, which
    test_training_the_new_model_and_the_original checks."""
    keras.utils.set_random_seed(1807)
    return small_mobilenet_v2()


@pytest.fixture(scope="module")
def mnv2_with_bam(plain_mnv2):
    """insert_bam(plain_mnv2), for the tests that only read it."""
    keras.utils.set_random_seed(1807)  # whichever test asks first
    return keras_bam.insert_bam(plain_mnv2)


def infer(model, x):
    """What predict() computes (inference mode), without tracing a
    tf.function for it."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def randomize(model, rng):
    """Non-trivial values everywhere, batch-norm statistics included."""
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path or "gamma" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(scale=0.2, size=shape)
        variable.assign(value.astype(variable.dtype))


def bam_layers(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += bam_layers(layer)
        elif isinstance(layer, keras_bam.BAM):
            found.append(layer)
    return found


def images(rng, shape=(4, 64, 64, 3)):
    return rng.uniform(0, 1, shape).astype("float32")


# ---------------------------------------------------------------- structure


def by_hand_with_bam(plain, after):
    """`plain` (a chain of layers) rebuilt by hand, a fresh BAM named
    NAME_bam called after each layer named in `after`."""
    x = inputs = keras.Input(plain.inputs[0].shape[1:])
    for layer in plain.layers[1:]:
        x = layer(x)
        if layer.name in after:
            x = keras_bam.BAM(name=f"{layer.name}_bam")(x)
    return keras.Model(inputs, x)


def test_matches_a_model_built_with_bam_by_hand(rng):
    """BAM placed by hand at SmallCNN's two bottlenecks; with the same
    weights, insert_bam's model computes the same function."""
    plain = SmallCNN(input_shape=(32, 32, 3))
    rewritten = keras_bam.insert_bam(plain)
    randomize(rewritten, rng)
    by_hand = by_hand_with_bam(SmallCNN(input_shape=(32, 32, 3)),
                               ("stage1_block1_relu", "stage2_block1_relu"))
    for layer in by_hand.layers:
        if layer.weights:
            layer.set_weights(rewritten.get_layer(layer.name).get_weights())
    x = images(rng, (3, 32, 32, 3))
    np.testing.assert_allclose(infer(rewritten, x), infer(by_hand, x),
                               rtol=1e-6, atol=1e-6)


def test_bam_follows_its_anchor_and_feeds_the_anchors_consumers(plain_mnv2,
                                                                 mnv2_with_bam):
    model, new = plain_mnv2, mnv2_with_bam
    assert [layer.name for layer in bam_layers(new)] == [
        f"{a}_bam" for a in MNV2_ANCHORS]
    for anchor in MNV2_ANCHORS:
        bam = new.get_layer(f"{anchor}_bam")
        assert bam.input is new.get_layer(anchor).output
        # Every layer that read the anchor now reads the BAM's output.
        anchor_output = model.get_layer(anchor).output
        consumers = [call.operation.name for call in graph.calls(model)
                     if any(t is anchor_output for t in call.inputs)]
        assert consumers
        for name in consumers:
            assert new.get_layer(name).input is bam.output, name
    assert len(new.layers) == len(model.layers) + 3


@pytest.mark.parametrize("share_weights", [False, True])
def test_weights_are_kept(share_weights, rng):
    model = small_mobilenet_v2()
    randomize(model, rng)
    new = keras_bam.insert_bam(model, share_weights=share_weights)
    for layer in model.layers[1:]:  # inputs are always new
        copy = new.get_layer(layer.name)
        assert (copy is layer) == share_weights
        for old, fresh in zip(layer.weights, copy.weights, strict=True):
            assert (old is fresh) == share_weights
            np.testing.assert_array_equal(old.numpy(), fresh.numpy())


@pytest.mark.parametrize("share_weights", [False, True])
def test_training_the_new_model_and_the_original(share_weights, rng):
    model = SmallCNN(input_shape=(32, 32, 3), classes=3)
    before = [w.numpy().copy() for w in model.weights]
    nodes = {layer.name: call_count(layer) for layer in model.layers}
    new = keras_bam.insert_bam(model, share_weights=share_weights)
    if not share_weights:  # the original graph gained no call
        assert {layer.name: call_count(layer)
                for layer in model.layers} == nodes
    bam_before = [w.numpy().copy() for b in bam_layers(new)
                  for w in b.trainable_weights]
    # Run eagerly: which variables a step updates does not depend on
    # tracing it into a tf.function (seconds of CPU for this model).
    new.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)
    history = new.fit(images(rng, (16, 32, 32, 3)), rng.integers(0, 3, 16),
                      batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    bam_after = [w.numpy() for b in bam_layers(new) for w in b.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(bam_before, bam_after))
    original_changed = any(not np.array_equal(b, w.numpy())
                           for b, w in zip(before, model.weights))
    assert original_changed == share_weights


def test_save_and_load_in_safe_mode(plain_mnv2, tmp_path, rng):
    # block_2_add has 8 channels: the official variant needs a floor there.
    new = keras_bam.insert_bam(plain_mnv2, variant="official", min_hidden_channels=8)
    randomize(new, rng)
    path = tmp_path / "bam_mobilenet_v2.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    x = images(rng, (2, 32, 32, 3))
    np.testing.assert_array_equal(infer(new, x), infer(loaded, x))
    assert [b.name for b in bam_layers(loaded)] == [f"{a}_bam" for a in MNV2_ANCHORS]
    assert all(b.variant == "official" for b in bam_layers(loaded))
    assert [b.min_hidden_channels for b in bam_layers(loaded)] == [8] * 3


def test_official_variant_without_a_floor_refuses_a_too_narrow_map(plain_mnv2):
    with pytest.raises(ValueError, match=r"'block_2_add_bam'.*8 channels.*"
                                         r"min_hidden_channels"):
        keras_bam.insert_bam(plain_mnv2, variant="official")


def test_new_name_keeps_single_input_and_output(plain_mnv2):
    new = keras_bam.insert_bam(plain_mnv2, name="renamed")
    assert new.name == "renamed"
    assert tuple(new.output.shape) == (None, 1, 1, 1280)
    assert tuple(new.input.shape) == (None, 32, 32, 3)


def test_nested_backbone(tmp_path, rng):
    backbone = small_mobilenet_v2()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = backbone(x)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="classifier")
    new = keras_bam.insert_bam(model)
    nested = new.get_layer(backbone.name)
    assert [b.name for b in bam_layers(nested)] == [f"{a}_bam" for a in MNV2_ANCHORS]
    assert nested.get_layer("block_2_add_bam").input is nested.get_layer(
        "block_2_add").output
    path = tmp_path / "nested.keras"
    new.save(path)
    x = images(rng, (2, 32, 32, 3))
    np.testing.assert_array_equal(infer(new, x),
                                  infer(keras.saving.load_model(path), x))


def test_options_reach_every_bam(plain_mnv2):
    new = keras_bam.insert_bam(plain_mnv2, variant="official",
                               reduction_ratio=8, gate_activation="tanh")
    for bam in bam_layers(new):
        assert (bam.variant, bam.reduction_ratio, bam.gate_activation,
                bam.combine) == ("official", 8, "tanh", "product")


def test_explicit_after_and_name(plain_mnv2):
    model = plain_mnv2
    new = keras_bam.insert_bam(model, after="block_5_add", name="custom")
    assert new.name == "custom"
    assert [b.name for b in bam_layers(new)] == ["block_5_add_bam"]
    new = keras_bam.insert_bam(model, after=["block_13_expand_relu", "block_1_project_BN"])
    assert [b.name for b in bam_layers(new)] == [
        "block_1_project_BN_bam", "block_13_expand_relu_bam"]


def test_mixed_precision_model(rng):
    keras.config.set_dtype_policy("mixed_float16")
    model = small_mobilenet_v2()
    keras.config.set_dtype_policy("float32")  # BAM follows the model, not this
    new = keras_bam.insert_bam(model)
    for bam in bam_layers(new):
        assert bam.dtype_policy.name == "mixed_float16"
        assert bam.output.dtype == "float16"
    assert np.all(np.isfinite(infer(new, images(rng, (2, 32, 32, 3)))))


def test_channels_first_model():
    keras.config.set_image_data_format("channels_first")
    model = A.MobileNetV2(weights=None, alpha=0.35, input_shape=(3, 64, 64),
                          include_top=False)
    keras.config.set_image_data_format("channels_last")  # BAM follows the model
    new = keras_bam.insert_bam(model)
    for bam in bam_layers(new):
        assert bam.data_format == "channels_first"
        assert bam.output.shape == bam.input.shape
    assert new.get_layer("block_2_add_bam").output.shape == (None, 8, 16, 16)


def test_built_sequential_model_is_converted():
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c2"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c3"),
    ])
    new = keras_bam.insert_bam(model)
    assert [b.name for b in bam_layers(new)] == ["c1_bam", "c2_bam"]


# ---------------------------------------------------------------- refusals


def test_second_insertion_is_refused(mnv2_with_bam):
    new = mnv2_with_bam
    with pytest.raises(ValueError, match="already has BAM layers.*after="):
        keras_bam.insert_bam(new)
    with pytest.raises(ValueError, match="'block_2_add' is already followed by"):
        keras_bam.insert_bam(new, after="block_2_add")
    # Other places can still be added explicitly.
    again = keras_bam.insert_bam(new, after="block_9_add")
    assert len(bam_layers(again)) == 4


def test_a_bam_model_keeps_its_backbones_bottlenecks_and_is_not_stacked(
        mnv2_with_bam):
    """find_bottlenecks looks through BAM: the places are the backbone's,
    each already served, so inserting BAM there again is refused, naming
    the BAM that serves it; and a BAM is never a place for a BAM."""
    new = mnv2_with_bam
    assert keras_bam.find_bottlenecks(new) == MNV2_ANCHORS
    with pytest.raises(ValueError, match="'block_2_add' is already followed by "
                                         "the BAM layer 'block_2_add_bam'"):
        keras_bam.insert_bam(new, after=keras_bam.find_bottlenecks(new))
    with pytest.raises(ValueError, match="'block_5_add_bam' is a BAM layer.*"
                                         "already serves 'block_5_add'"):
        keras_bam.insert_bam(new, after=["block_9_add", "block_5_add_bam"])


def test_unknown_name_lists_close_matches_and_candidates(plain_mnv2):
    model = plain_mnv2
    message = ("No layer named 'block_2_ad' in model .* Close matches: "
               "block_2_add.* Default bottlenecks .*: block_2_add, block_5_add, "
               "block_12_add")
    with pytest.raises(ValueError, match=message):
        keras_bam.insert_bam(model, after=["block_5_add", "block_2_ad"])


def test_layer_that_is_not_a_feature_map():
    model = small_mobilenet_v2(include_top=True)
    with pytest.raises(ValueError, match="'predictions' outputs shape .*not a "
                                         "4-D feature map"):
        keras_bam.insert_bam(model, after="predictions")


def test_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="subclassed model .*Net.*Functional API"):
        keras_bam.insert_bam(Net())


def test_sequential_without_input_shape():
    model = keras.Sequential([keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=re.escape("keras.Input(shape=")):
        keras_bam.insert_bam(model)


def test_not_a_model():
    with pytest.raises(TypeError, match="Functional model.*Received: Conv2D"):
        keras_bam.insert_bam(keras.layers.Conv2D(4, 3))


def test_layer_called_twice():
    inputs = keras.Input((16, 16, 3))
    relu = keras.layers.ReLU(name="shared_relu")
    x = relu(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    x = relu(keras.layers.Conv2D(4, 3, strides=2, padding="same")(x))
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError, match="'shared_relu' is called 2 times"):
        keras_bam.insert_bam(model, after="shared_relu")


def test_empty_after(plain_mnv2):
    with pytest.raises(ValueError, match="non-empty list of layer names"):
        keras_bam.insert_bam(plain_mnv2, after=[])


def test_model_without_bottleneck():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    with pytest.raises(ValueError, match="never downsamples.*after="):
        keras_bam.insert_bam(model)
