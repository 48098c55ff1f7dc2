"""find_bottlenecks: the paper's placement on keras.applications and others.

The expected layer names are the issue's (from the paper: after the last
block of every stage but the last); the expected shapes are read from the
models' own layers, not from keras_bam.
"""

import functools
import pathlib
import re

import keras
import pytest

import keras_bam
from keras_bam.applications import SmallCNN
from keras_bam.rewrite.keras_internals import call_count


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


A = keras.applications

# At 224 x 224: anchors and (height, channels) of their outputs.
EXPECTED = {
    "ResNet50": (["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"],
                 [(56, 256), (28, 512), (14, 1024)]),
    "ResNet101": (["conv2_block3_out", "conv3_block4_out", "conv4_block23_out"],
                  [(56, 256), (28, 512), (14, 1024)]),
    "ResNet152": (["conv2_block3_out", "conv3_block8_out", "conv4_block36_out"],
                  [(56, 256), (28, 512), (14, 1024)]),
    "MobileNet": (["conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu"],
                  [(56, 128), (28, 256), (14, 512)]),
    "MobileNetV2": (["block_2_add", "block_5_add", "block_12_add"],
                    [(56, 24), (28, 32), (14, 96)]),
    # V2 ResNets downsample inside a stage's last block: BAM follows the
    # block before it, the last one at the stage's resolution.
    "ResNet50V2": (["conv2_block2_out", "conv3_block3_out", "conv4_block5_out"],
                   [(56, 256), (28, 512), (14, 1024)]),
    "ResNet101V2": (["conv2_block2_out", "conv3_block3_out", "conv4_block22_out"],
                    [(56, 256), (28, 512), (14, 1024)]),
    "ResNet152V2": (["conv2_block2_out", "conv3_block7_out", "conv4_block35_out"],
                    [(56, 256), (28, 512), (14, 1024)]),
    # Rescaling, hard-swish as bare keras.ops nodes, squeeze-excitation
    # Multiply; Small's first stage has no residual: its block output is the
    # projection's batch norm, before the next block's expansion.
    "MobileNetV3Small": (["expanded_conv_project_bn", "expanded_conv_2_add",
                          "expanded_conv_7_add"],
                         [(56, 16), (28, 24), (14, 48)]),
    "MobileNetV3Large": (["expanded_conv_2_add", "expanded_conv_5_add",
                          "expanded_conv_11_add"],
                         [(56, 24), (28, 40), (14, 112)]),
    "EfficientNetB0": (["block2b_add", "block3b_add", "block5c_add"],
                       [(56, 24), (28, 40), (14, 112)]),
    "EfficientNetV2B0": (["block2b_add", "block3b_add", "block5e_add"],
                         [(56, 32), (28, 48), (14, 112)]),
    # Dense blocks end with a Concatenate; the transition layer follows.
    "DenseNet121": (["conv2_block6_concat", "conv3_block12_concat",
                     "conv4_block24_concat"],
                    [(56, 256), (28, 512), (14, 1024)]),
}


@functools.cache
def application(name, include_top=True, pooling=None, input_shape=(224, 224, 3),
                **kwargs):
    """The Keras model, its weights created but never given a value
    (`keras.StatelessScope(initialize_variables=False)` defers that):
    placement and cost read the graph and the shapes only, and building
    takes a third of the time (ResNet152: about 1 s of CPU instead of 4).
    Reading a weight's value would raise, not pass."""
    with keras.StatelessScope(initialize_variables=False):
        return getattr(A, name)(weights=None, include_top=include_top,
                                pooling=pooling, input_shape=input_shape,
                                **kwargs)


def feature(model, name):
    """(height, channels) of a layer's output, from Keras itself."""
    shape = model.get_layer(name).output.shape
    return shape[1], shape[3]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_keras_applications(name):
    names, features = EXPECTED[name]
    model = application(name)
    assert keras_bam.find_bottlenecks(model) == names
    assert [feature(model, n) for n in names] == features


@pytest.mark.parametrize(
    "name, include_top, pooling, input_shape",
    [
        ("ResNet50", False, None, (224, 224, 3)),
        ("ResNet50", False, "avg", (96, 96, 3)),
        ("ResNet50", False, "max", (160, 224, 3)),
        ("ResNet50", True, None, (32, 32, 3)),
        ("ResNet50", False, "avg", (None, None, 3)),
        ("MobileNet", False, "max", (160, 224, 3)),
        ("MobileNet", True, None, (32, 32, 3)),
        ("MobileNetV2", False, None, (96, 96, 3)),
        ("MobileNetV2", False, "avg", (None, None, 3)),
        ("MobileNetV3Small", True, None, (32, 32, 3)),
        ("MobileNetV3Small", False, "max", (160, 224, 3)),
    ],
)
def test_same_places_at_other_sizes_and_heads(name, include_top, pooling,
                                              input_shape):
    model = application(name, include_top, pooling, input_shape)
    assert keras_bam.find_bottlenecks(model) == EXPECTED[name][0]


def test_cifar_style_network_gets_bam_after_its_first_two_stages():
    # No downsampling in the stem: stages at 32, 16 and 8.
    model = SmallCNN(input_shape=(32, 32, 3))
    assert keras_bam.find_bottlenecks(model) == [
        "stage1_block1_relu", "stage2_block1_relu"]


def test_custom_functional_resnet():
    """Any Functional CNN: a residual network written by hand, whose stages
    end with Add + ReLU, downsampled by a strided conv in the next block."""
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(inputs)
    for stage, filters in enumerate([16, 32, 64, 128]):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            y = keras.layers.Conv2D(filters, 3, strides=strides, padding="same")(x)
            y = keras.layers.Conv2D(filters, 3, padding="same")(y)
            if strides > 1 or x.shape[-1] != filters:
                x = keras.layers.Conv2D(filters, 1, strides=strides)(x)
            x = keras.layers.Add(name=f"s{stage}b{block}_add")(
                [x, y])
            x = keras.layers.ReLU(name=f"s{stage}b{block}_out")(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    # Stem at 32 is a run of its own: five runs, the last four are stages.
    assert keras_bam.find_bottlenecks(model) == ["s0b1_out", "s1b1_out",
                                                 "s2b1_out"]


def test_nested_backbone_names_carry_the_model_name():
    backbone = application("MobileNetV2", False, None, (96, 96, 3), alpha=0.35)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = backbone(x)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    assert keras_bam.find_bottlenecks(model) == [
        f"{backbone.name}/block_2_add", f"{backbone.name}/block_5_add",
        f"{backbone.name}/block_12_add"]


@pytest.mark.parametrize("name", ["MobileNet", "MobileNetV3Small", "ResNet50"])
def test_a_model_with_bam_has_the_bottlenecks_of_its_backbone(name):
    """BAM layers are looked through: MobileNet's anchors end a run without
    a merge, MobileNetV3Small's first one sits before the next block's
    expansion (with the BAM now in between), ResNet50's follow a merge."""
    with keras.StatelessScope(initialize_variables=False):
        model = getattr(A, name)(weights=None, include_top=False,
                                 input_shape=(32, 32, 3))
    # Sharing the layers: no weight value copied (there is none); the graph
    # is the same as with copies.
    with_bam = keras_bam.insert_bam(model, share_weights=True)
    assert keras_bam.find_bottlenecks(with_bam) == EXPECTED[name][0]


def test_valid_convolutions_do_not_start_a_stage():
    """A stage begins where a stride or a pooling at least halves the map's
    area; 'valid' convolutions trim a border (32 -> 30 -> 28, 14 -> 12 -> 10)
    and stay in their stage. By hand: stages {c1, c2} at 30/28,
    {p1, c3, c4} at 14/12/10 and {p2} at 5: BAM after c2 and c4."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="c2")(x)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(16, 3, name="c3")(x)
    x = keras.layers.Conv2D(16, 3, name="c4")(x)
    x = keras.layers.MaxPooling2D(name="p2")(x)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    assert keras_bam.find_bottlenecks(keras.Model(inputs, outputs)) == ["c2", "c4"]


def test_network_that_never_downsamples_has_no_bottleneck():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    assert keras_bam.find_bottlenecks(keras.Model(inputs, x)) == []


def test_channels_first_model():
    keras.config.set_image_data_format("channels_first")
    model = application("MobileNetV2", alpha=0.35, input_shape=(3, 96, 96))
    assert keras_bam.find_bottlenecks(model) == EXPECTED["MobileNetV2"][0]


def test_the_model_is_left_as_it_was():
    model = application("MobileNetV2", False, None, (96, 96, 3), alpha=0.35)
    calls = {layer.name: call_count(layer) for layer in model.layers}
    keras_bam.find_bottlenecks(model)
    keras_bam.cost_report(model)
    assert {layer.name: call_count(layer) for layer in model.layers} == calls


def test_readme_table_lists_these_places():
    """The placement table in docs/placement.md agrees with the models built here."""
    readme = (pathlib.Path(__file__).parents[2] / "docs" / "placement.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| (`.*`.*) \|$", readme, re.MULTILINE))
    for name, (anchors, features) in EXPECTED.items():
        listed = [f"`{a}` ({c} @ {h})" for a, (h, c) in zip(anchors, features)]
        assert rows[name] == ", ".join(listed), name
    assert set(rows) == set(keras_bam.applications.BACKBONES)
