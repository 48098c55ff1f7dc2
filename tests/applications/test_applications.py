"""keras_bam.applications: keras.applications constructors with BAM."""

import functools
import inspect

import keras
import numpy as np
import pytest

import keras_bam
from keras_bam import applications
from keras_bam.rewrite import graph


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


A = keras.applications


def graph_only(constructor, **kwargs):
    """`constructor(**kwargs)` with every weight created but never given a
    value (`keras.StatelessScope(initialize_variables=False)` defers that):
    for the tests that read the graph, names, options and shapes only,
    a third of the build time. Reading a weight's value would raise, not
    pass."""
    with keras.StatelessScope(initialize_variables=False):
        return constructor(**kwargs)


def bam_names(model):
    return [layer.name for layer in model.layers
            if isinstance(layer, keras_bam.BAM)]


@pytest.mark.parametrize("name, anchors", [
    ("ResNet50V2", ["conv2_block2_out", "conv3_block3_out", "conv4_block5_out"]),
    ("MobileNetV3Small", ["expanded_conv_project_bn", "expanded_conv_2_add",
                          "expanded_conv_7_add"]),
    ("EfficientNetB0", ["block2b_add", "block3b_add", "block5c_add"]),
    ("DenseNet121", ["conv2_block6_concat", "conv3_block12_concat",
                     "conv4_block24_concat"]),
])
def test_one_of_each_family(name, anchors):
    model = graph_only(getattr(applications, f"BAM{name}"), weights=None,
                       input_shape=(64, 64, 3), include_top=False, pooling="avg")
    assert model.name.startswith("bam_")
    assert bam_names(model) == [f"{a}_bam" for a in anchors]
    # The anchor layer is shared with the discarded plain model, so its
    # `.output` is that model's; read in the model's graph what feeds BAM.
    producer = {}
    feeds = {}
    for call in graph.calls(model):
        for tensor in call.outputs:
            producer[id(tensor)] = call.operation
        if isinstance(call.operation, keras_bam.BAM):
            feeds[call.operation.name] = producer[id(call.inputs[0])]
    for anchor in anchors:
        assert feeds[f"{anchor}_bam"] is model.get_layer(anchor)


def test_every_listed_backbone_has_a_constructor():
    for family, names in applications.FAMILIES.items():
        for name in names:
            assert callable(getattr(applications, f"BAM{name}")), family
            assert hasattr(A, name)


@pytest.mark.parametrize("name", applications.BACKBONES)
def test_constructor_is_a_documented_function_with_keras_parameters(name):
    """help(BAMResNet50) shows Keras' parameters, in Keras' order, each
    documented, then the BAM options."""
    ours = getattr(applications, f"BAM{name}")
    assert inspect.isfunction(ours) and ours.__name__ == f"BAM{name}"
    parameters = inspect.signature(ours).parameters
    keras_parameters = inspect.signature(getattr(A, name)).parameters
    assert list(parameters) == [*keras_parameters, "bam_kwargs"]
    for key, parameter in keras_parameters.items():
        if key != "name":
            assert parameters[key].default == parameter.default, key
        assert f"        {key}: " in ours.__doc__, key
    assert parameters["name"].default is None
    assert "**bam_kwargs:" in ours.__doc__


def test_package_exports_every_constructor():
    expected = {f"BAM{name}" for name in applications.BACKBONES}
    residual = {"ResidualNet", "ResidualNet18", "ResidualNet34", "ResidualNet50",
                "ResidualNet101", "replace_classifier", "resize_and_center_crop"}
    assert expected | residual | {"BACKBONES", "BAM_OPTIONS", "FAMILIES", "SmallCNN",
                                  "build"} == set(applications.__all__)
    assert all(hasattr(applications, name) for name in applications.__all__)


def test_backbone_and_bam_arguments_together():
    model = graph_only(
        applications.BAMMobileNetV2, weights=None, alpha=0.35,
        input_shape=(64, 64, 3), classes=7, classifier_activation=None,
        variant="official", reduction_ratio=8, name="mine")
    assert model.name == "mine"
    assert model.output.shape == (None, 7)
    bams = [layer for layer in model.layers if isinstance(layer, keras_bam.BAM)]
    assert [(b.variant, b.reduction_ratio) for b in bams] == [("official", 8)] * 3
    # The same as inserting into the Keras model by hand.
    by_hand = keras_bam.insert_bam(
        graph_only(A.MobileNetV2, weights=None, alpha=0.35,
                   input_shape=(64, 64, 3), classes=7, classifier_activation=None),
        variant="official", reduction_ratio=8, share_weights=True)
    assert [type(layer) for layer in model.layers] == [
        type(layer) for layer in by_hand.layers]
    assert bam_names(model) == bam_names(by_hand)
    assert model.count_params() == by_hand.count_params()


def test_unknown_argument_lists_the_accepted_ones():
    with pytest.raises(TypeError, match="BAMResNet50: .*reductio_ratio.*"
                                        "Accepted keyword arguments: .*"
                                        "reduction_ratio"):
        applications.BAMResNet50(weights=None, reductio_ratio=8)


def test_weights_file_of_a_bam_model(tmp_path, rng):
    kwargs = dict(input_shape=(32, 32, 3), alpha=0.35, classes=3)
    model = applications.BAMMobileNetV2(weights=None, **kwargs)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(scale=0.1, size=variable.shape))
    path = tmp_path / "bam.weights.h5"
    model.save_weights(path)
    loaded = applications.BAMMobileNetV2(weights=str(path), **kwargs)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # Called in inference mode, as predict() would, without tracing it.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(loaded(x, training=False)))


def test_imagenet_weights_go_to_the_keras_constructor(monkeypatch):
    """No download here: the Keras constructor is replaced by one that
    records its arguments; keras_bam must ask it for "imagenet"."""
    seen = {}
    real = A.ResNet50

    @functools.wraps(real)  # the same signature
    def recording(**kwargs):
        seen.update(kwargs)
        return real(**{**kwargs, "weights": None})

    monkeypatch.setattr(A, "ResNet50", recording)
    model = graph_only(applications.BAMResNet50, input_shape=(32, 32, 3),
                       include_top=False)
    assert seen["weights"] == "imagenet"
    assert bam_names(model) == ["conv2_block3_out_bam", "conv3_block4_out_bam",
                                "conv4_block6_out_bam"]


def test_input_tensor_is_kept():
    tensor = keras.Input((32, 32, 3))
    model = graph_only(applications.BAMMobileNet, weights=None, input_tensor=tensor,
                       include_top=False, alpha=0.25)
    assert model.inputs[0] is tensor
    assert len(bam_names(model)) == 3


def test_unknown_backbone():
    with pytest.raises(ValueError, match="Unknown backbone 'ResNet18'.*ResNet50"):
        applications.build("ResNet18")
