"""The public library API against hostile but fair input (issue 15):
`keras_bam.BAM`, `insert_bam`, `find_bottlenecks`, `load_torch_weights`,
`keras_bam.applications`.

Contract: a mistake gets a ValueError or TypeError that names the argument
(or layer, or tensor) and the value received; a failed call leaves its
input as it was, so that a corrected retry works. Placement is checked
against a LeNet whose stages are derived by hand.
"""

import keras
import numpy as np
import pytest
import reference
from contract_helpers import tiny_bam_model

import keras_bam

C = "channel_att.gate_c.gate_c_"
S = "spatial_att.gate_s.gate_s_"


# ------------------------------------------------------------ the layer

@pytest.mark.parametrize("kwargs, named", [
    ({"reduction_ratio": 0}, "reduction_ratio"),
    ({"reduction_ratio": -4}, "reduction_ratio"),
    ({"reduction_ratio": 2.5}, "reduction_ratio"),
    ({"reduction_ratio": "16"}, "reduction_ratio"),
    ({"dilation_rate": 0}, "dilation_rate"),
    ({"num_dilated_convs": -1}, "num_dilated_convs"),
    ({"combine": "mean"}, "combine"),
    ({"gate_activation": "relu"}, "gate_activation"),
    ({"variant": "v2"}, "variant"),
])
def test_bam_refuses_a_bad_argument_naming_it_and_the_value(kwargs, named):
    with pytest.raises((ValueError, TypeError)) as info:
        keras_bam.BAM(**kwargs)
    message = str(info.value)
    assert named in message and repr(kwargs[named]) in message, message


def test_bam_refuses_to_have_no_branch():
    with pytest.raises(ValueError, match="use_channel_gate.*use_spatial_gate"):
        keras_bam.BAM(use_channel_gate=False, use_spatial_gate=False)


def test_bam_refuses_a_map_that_is_not_4d_naming_its_shape():
    with pytest.raises(ValueError, match=r"4-D.*\(None, 8, 16\)"):
        keras_bam.BAM()(keras.Input((8, 16)))


def test_bam_refuses_an_integer_feature_map():
    with pytest.raises(ValueError, match="int32"):
        keras_bam.BAM()(np.ones((1, 4, 4, 16), "int32"))


# ------------------------------------------------------------ the rewriter

def lenet():
    """LeNet-5 with 'valid' convolutions: 32 -> conv1 28 -> pool1 14 ->
    conv2 10 -> pool2 5, then the classifier."""
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(6, 5, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="lenet")


def test_placement_on_lenet_counts_stages_by_downsampling_not_by_shrinkage():
    """By hand: the valid convolutions shrink 32 -> 28 and 14 -> 10 (by four
    pixels, not by a factor); the pools halve 28 -> 14 and 10 -> 5. So the
    stages are {conv1} at 28, {pool1, conv2} at 14/10 and {pool2} at 5, and
    BAM goes at the end of the first two: after conv1 and after conv2 (two
    BAMs, on 28x28x6 and 10x10x16), never after pool1."""
    model = lenet()
    assert keras_bam.find_bottlenecks(model) == ["conv1", "conv2"]
    rewritten = keras_bam.insert_bam(model)
    bams = [layer for layer in rewritten.layers if isinstance(layer, keras_bam.BAM)]
    assert [layer.name for layer in bams] == ["conv1_bam", "conv2_bam"]
    assert [tuple(layer.input.shape) for layer in bams] == [(None, 28, 28, 6),
                                                            (None, 10, 10, 16)]


def test_find_bottlenecks_never_names_a_bam_layer():
    model = tiny_bam_model()
    names = keras_bam.find_bottlenecks(model)
    bam_names = {layer.name for layer in model.layers if isinstance(layer, keras_bam.BAM)}
    assert not bam_names & set(names), f"a BAM chosen as a bottleneck: {names}"


def test_insert_bam_after_the_bottlenecks_of_a_bam_model_never_stacks_a_bam():
    """The issue's repro: after=find_bottlenecks(model) on a model with BAM
    inserted a BAM right after the BAM (`bam1_bam`)."""
    model = tiny_bam_model()
    try:
        rewritten = keras_bam.insert_bam(model, after=keras_bam.find_bottlenecks(model))
    except ValueError as error:
        assert "BAM" in str(error), str(error)
        return
    bams = {layer.name for layer in rewritten.layers if isinstance(layer, keras_bam.BAM)}
    stacked = sorted(name for name in bams if name + "_bam" in bams)
    assert stacked == [], f"a BAM right after a BAM: {[n + '_bam' for n in stacked]}"


def test_insert_bam_refuses_after_naming_a_bam_layer():
    model = tiny_bam_model()
    with pytest.raises(ValueError, match=r"bam1.*BAM|BAM.*bam1"):
        keras_bam.insert_bam(model, after=["bam1"])


@pytest.mark.parametrize("after, pattern", [
    ("conv9", r"conv9.*Close matches:.*conv1"),
    ([], r"after"),
    ([3], r"after"),
    ("logits", r"logits.*4-D"),
])
def test_insert_bam_refuses_a_bad_after(after, pattern):
    with pytest.raises(ValueError, match=pattern):
        keras_bam.insert_bam(lenet_like_without_bam(), after=after)


def lenet_like_without_bam():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


@pytest.mark.parametrize("model", ["resnet50", None, 42])
def test_insert_bam_refuses_what_is_not_a_keras_model(model):
    with pytest.raises(TypeError, match=type(model).__name__):
        keras_bam.insert_bam(model)


def test_insert_bam_refuses_a_sequential_model_without_an_input_shape():
    model = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.MaxPooling2D()])
    with pytest.raises(ValueError, match="input shape"):
        keras_bam.insert_bam(model)


def test_an_application_refuses_a_bad_bam_option_before_building():
    with pytest.raises(ValueError, match="reduction_ratio"):
        keras_bam.applications.BAMMobileNetV2(weights=None, alpha=0.35,
                                              input_shape=(32, 32, 3),
                                              reduction_ratio=0)


# ------------------------------------------------------------ load_torch_weights

def authors_state_dict(channels, hidden, seed):
    """A random state dict of the authors' BAM (MODELS/bam.py) in PyTorch's
    layout: Linear (out, in), Conv2d (out, in, kh, kw)."""
    rng = np.random.default_rng(seed)
    sd = {}

    def weight_and_bias(name, shape):
        sd[name + ".weight"] = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        sd[name + ".bias"] = rng.normal(scale=0.5, size=shape[0])

    def batch_norm(name, n):
        sd[name + ".weight"] = rng.uniform(0.5, 2.0, n)
        sd[name + ".bias"] = rng.normal(scale=0.5, size=n)
        sd[name + ".running_mean"] = rng.normal(scale=0.5, size=n)
        sd[name + ".running_var"] = rng.uniform(0.5, 2.0, n)

    weight_and_bias(C + "fc_0", (hidden, channels))
    batch_norm(C + "bn_1", hidden)
    weight_and_bias(C + "fc_final", (channels, hidden))
    weight_and_bias(S + "conv_reduce0", (hidden, channels, 1, 1))
    batch_norm(S + "bn_reduce0", hidden)
    for i in range(2):
        weight_and_bias(f"{S}conv_di_{i}", (hidden, hidden, 3, 3))
        batch_norm(f"{S}bn_di_{i}", hidden)
    weight_and_bias(S + "conv_final", (1, hidden, 1, 1))
    return {k: v.astype(np.float32) for k, v in sd.items()}


def official_bam():
    # r = 16 and min_hidden_channels=1: the authors' hidden width C // 16.
    return keras_bam.BAM(variant="official", reduction_ratio=16, min_hidden_channels=1)


def test_load_torch_weights_names_a_transposed_tensor_as_transposed():
    layer = official_bam()
    layer.build((None, None, None, 64))
    sd = authors_state_dict(64, 4, seed=0)
    sd[C + "fc_final.weight"] = np.ascontiguousarray(sd[C + "fc_final.weight"].T)
    with pytest.raises(ValueError, match=r"fc_final\.weight.*transposed") as info:
        keras_bam.load_torch_weights(layer, sd)
    assert "(4, 64)" in str(info.value), str(info.value)


def test_load_torch_weights_on_an_unbuilt_bam_can_be_retried_after_a_failure():
    """A first dict that does not fit (another module's, a key missing)
    must not leave the layer built for its width: the right dict then loads,
    and the layer computes what the authors' module computes."""
    layer = official_bam()
    wrong = authors_state_dict(32, 2, seed=1)
    del wrong[S + "bn_di_1.running_var"]
    with pytest.raises(ValueError, match=r"bn_di_1\.running_var"):
        keras_bam.load_torch_weights(layer, wrong)
    right = authors_state_dict(64, 4, seed=2)
    keras_bam.load_torch_weights(layer, right)
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 64)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(x, training=False))
    expected = reference.torch_bam(x.transpose(0, 3, 1, 2), right).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_load_torch_weights_refuses_the_paper_variant():
    with pytest.raises(ValueError, match="variant"):
        keras_bam.load_torch_weights(keras_bam.BAM(), authors_state_dict(32, 2, seed=4))


def test_load_torch_weights_names_an_unexpected_key_with_a_close_match():
    layer = official_bam()
    layer.build((None, None, None, 32))
    sd = authors_state_dict(32, 2, seed=5)
    sd[S + "conv_di_2.weight"] = sd.pop(S + "conv_di_1.weight")
    with pytest.raises(ValueError, match=r"conv_di_2\.weight.*conv_di_1\.weight"):
        keras_bam.load_torch_weights(layer, sd)
