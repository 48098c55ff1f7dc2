"""The authors' ResNet family in Keras: structure, parameter counts, options.

The expected parameter counts were measured from the authors' PyTorch code
(`sum(p.numel() for p in ResidualNet(...).parameters())`), or are
torchvision's published counts for its ResNet-18 and -34, which their plain
ResNet is; none is computed by keras_bam.
"""

import keras
import numpy as np
import pytest
import resnet_reference

from keras_bam import BAM
from keras_bam.applications import (
    ResidualNet,
    ResidualNet18,
    ResidualNet50,
    replace_classifier,
    resize_and_center_crop,
)


def graph_only(constructor, *args, **kwargs):
    """`constructor(*args, **kwargs)` with every weight created but never
    given a value (`keras.StatelessScope(initialize_variables=False)` defers
    that): for the tests that read the graph, names and shapes only, a third
    of the build time. Reading a weight's value would raise, not pass."""
    with keras.StatelessScope(initialize_variables=False):
        return constructor(*args, **kwargs)


def trainable_parameters(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "constructor, kwargs, expected",
    [
        (ResidualNet50, {"attention": None}, 25_557_032),  # their code
        (ResidualNet50, {}, 25_915_099),  # their code, "BAM"
        (ResidualNet50, {"network_type": "CIFAR", "classes": 100}, 24_063_319),
        (ResidualNet18, {"attention": None}, 11_689_512),  # torchvision resnet18
    ],
    ids=["imagenet50", "imagenet50_bam", "cifar100_50_bam", "imagenet18"],
)
def test_trainable_parameters_match_theirs(constructor, kwargs, expected):
    assert trainable_parameters(graph_only(constructor, **kwargs)) == expected


def test_bam_hidden_width_is_exactly_c_over_16():
    """ResNet-18 (and -34) put BAM on 64 channels: hidden width 4, as in
    their code, where the layer's default minimum of 8 would differ."""
    model = graph_only(ResidualNet, 18, "CIFAR", classes=10)
    bams = [layer for layer in model.layers if isinstance(layer, BAM)]
    assert [b.name for b in bams] == ["bam1", "bam2", "bam3"]
    widths = [tuple(b.channel_gate.fc_0.kernel.shape[2:]) for b in bams]
    assert widths == [(64, 4), (128, 8), (256, 16)]
    assert all(b.variant == "official" for b in bams)


def test_structure_is_theirs():
    """Every Conv2D, BatchNormalization and Dense is named after the PyTorch
    module ('.' -> '_'), and together they are exactly their network's; the
    stride of a downsampling block is on its 3x3 convolution; no convolution
    has a bias; batch norm has PyTorch's epsilon and momentum."""
    model = graph_only(ResidualNet50, attention=None)
    names = {layer.name.replace("_", ".") for layer in model.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense,
                                   keras.layers.BatchNormalization))}
    theirs = {k.rsplit(".", 1)[0]
              for k in resnet_reference.layout("ImageNet", 50, 1000, None)}
    assert names == theirs
    assert model.get_layer("layer2_0_conv1").strides == (1, 1)
    assert model.get_layer("layer2_0_conv2").strides == (2, 2)
    assert model.get_layer("layer2_0_downsample_0").strides == (2, 2)
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == 53 and not any(c.use_bias for c in convs)
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert {(b.epsilon, b.momentum) for b in bns} == {(1e-5, 0.9)}
    assert tuple(model.get_layer("layer1_0_out").output.shape[1:]) == (56, 56, 256)
    assert tuple(model.get_layer("layer4_2_out").output.shape[1:]) == (7, 7, 2048)


@pytest.mark.parametrize(
    "network_type, input_shape, shapes",
    [("CIFAR", None, {"layer1_1_out": (32, 32, 64), "layer4_1_out": (4, 4, 512)}),
     ("ImageNet", (160, 128, 3), {"layer1_1_out": (40, 32, 64),
                                  "layer4_1_out": (5, 4, 512)})],
)
def test_feature_map_sizes(network_type, input_shape, shapes):
    model = graph_only(ResidualNet18, network_type=network_type,
                       input_shape=input_shape, include_top=False)
    for name, shape in shapes.items():
        assert tuple(model.get_layer(name).output.shape[1:]) == shape
    assert model.output_shape[1:] == list(shapes.values())[-1]


@pytest.mark.parametrize("pooling, shape", [(None, (None, 4, 4, 512)),
                                            ("avg", (None, 512)),
                                            ("max", (None, 512))])
def test_include_top_false(pooling, shape):
    model = graph_only(ResidualNet18, network_type="CIFAR", include_top=False,
                       pooling=pooling)
    assert model.output_shape == shape
    assert not any(layer.name == "fc" for layer in model.layers)


def test_preprocessing_is_their_normalization(rng):
    """With include_preprocessing=False, the model fed (x / 255 - mean) / std
    gives the same logits as the default model fed pixels x."""
    pixels = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalized = ((pixels / 255.0 - mean) / std).astype("float32")
    keras.utils.set_random_seed(1)
    with_pre = ResidualNet18(network_type="CIFAR", classes=10)
    without = ResidualNet18(network_type="CIFAR", classes=10,
                            include_preprocessing=False)
    for layer in without.layers:
        layer.set_weights(with_pre.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(without(normalized, training=False)),
        keras.ops.convert_to_numpy(with_pre(pixels, training=False)),
        rtol=1e-5, atol=1e-5)


def test_replace_classifier_shares_the_backbone():
    model = graph_only(ResidualNet18, network_type="CIFAR", classes=100)
    new = replace_classifier(model, 7, classifier_activation="softmax")
    assert new.output_shape == (None, 7)
    assert new.get_layer("fc") is not model.get_layer("fc")
    assert new.get_layer("fc").activation is keras.activations.softmax
    assert new.get_layer("layer4_1_conv2") is model.get_layer("layer4_1_conv2")
    assert new.name == model.name
    features = graph_only(ResidualNet18, network_type="CIFAR", include_top=False,
                          pooling="avg")
    with pytest.raises(ValueError, match="is a GlobalAveragePooling2D.*include_top=True"):
        replace_classifier(features, 7)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"layer_name": "classifier"}, "no layer named 'classifier'"),
     ({"layer_name": "layer4_1_conv2"}, "is a Conv2D, not a Dense"),
     ({"classes": 0}, r"classes=0")],
)
def test_replace_classifier_errors(kwargs, match):
    model = graph_only(ResidualNet18, network_type="CIFAR", classes=10)
    kwargs = {"classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        replace_classifier(model, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"depth": 20}, ValueError, r"\[18, 34, 50, 101\].*depth=20"),
     ({"network_type": "imagenet21k"}, ValueError, "'ImageNet'.*'CIFAR'"),
     ({"attention": "cbam"}, ValueError, "CBAM.*not implemented"),
     ({"attention": "se"}, ValueError, "attention='se'"),
     ({"input_shape": (224, 224, 1)}, ValueError, r"\(height, width, 3\)"),
     ({"pooling": "sum"}, ValueError, "pooling='sum'"),
     ({"classes": 0}, ValueError, "classes=0"),
     ({"weights": "imagenet"}, ValueError, "does not exist"),
     ({"weights": 3}, TypeError, "path of a weights file")],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"depth": 18, **kwargs}
    with pytest.raises(error, match=match):
        ResidualNet(**kwargs)


def test_weights_path_loads_keras_weights(tmp_path, rng):
    keras.utils.set_random_seed(2)
    model = ResidualNet18(network_type="CIFAR", classes=10)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    loaded = ResidualNet18(network_type="CIFAR", classes=10, weights=path)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)))


def test_resize_and_center_crop(rng):
    image = rng.uniform(0, 255, (256, 320, 3)).astype("float32")
    # Shorter side already 256: no resize, the central 224 x 224 pixels.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(resize_and_center_crop(image)),
        image[16:240, 48:272])
    # A constant image stays constant through the resize; 600 x 450 -> 341 x 256.
    batch = np.full((2, 600, 450, 3), 77.0, "float32")
    out = keras.ops.convert_to_numpy(resize_and_center_crop(batch))
    assert out.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(out, 77.0, rtol=1e-5)
    with pytest.raises(ValueError, match="crop <= resize"):
        resize_and_center_crop(image, resize=200, crop=224)


@pytest.mark.parametrize("attention", [None, "bam"])
def test_pixels_are_channels_last_whatever_the_keras_setting(attention, rng):
    keras.config.set_image_data_format("channels_first")  # reset by conftest
    model = ResidualNet18(network_type="CIFAR", attention=attention, include_top=False)
    assert model.output_shape == (None, 4, 4, 512)
    x = rng.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(model(x, training=False)).shape == (1, 4, 4, 512)
