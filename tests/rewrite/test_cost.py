"""cost_report: MACs and parameters from layer shapes, against hand counts
and the paper's Table (ImageNet: ResNet50 and MobileNet with BAM)."""

import json
import math

import keras
import pytest

import keras_bam


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


A = keras.applications


def graph_only(constructor, **kwargs):
    """`constructor(weights=None, **kwargs)` with its weights created but
    never given a value (`keras.StatelessScope(initialize_variables=False)`
    defers that): costs are counted from the graph and the shapes, and the
    build takes a third of the time. Reading a weight's value would raise,
    not pass; insert_bam(share_weights=True) copies none."""
    with keras.StatelessScope(initialize_variables=False):
        return constructor(weights=None, **kwargs)


def trainable_parameters(model):
    """Counted by Keras' own variables, not by the report."""
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def test_macs_of_a_small_model_counted_by_hand():
    inputs = keras.Input((10, 10, 8))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)  # folded: 0
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = keras.layers.SeparableConv2D(32, 3, padding="same")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    report = keras_bam.cost_report(keras.Model(inputs, outputs))
    expected = (
        10 * 10 * (3 * 3 * 8) * 16  # conv: positions x kernel
        + 5 * 5 * (3 * 3) * 16  # depthwise, strided to 5 x 5
        + 5 * 5 * (3 * 3 * 16 + 16 * 32)  # separable: depthwise + pointwise
        + 5 * 5 * (3 * 3 * 32 * 8)  # transpose: each input position once
        + 8 * 10  # dense
    )
    assert report.backbone_macs == expected
    assert report.bams == [] and report.uncounted == []


def bam_macs_formula(height, width, channels, hidden, num_dilated_convs=2):
    """The paper's branches: two Dense layers on the pooled vector; a 1x1
    conv to `hidden`, 3x3 dilated convs, a 1x1 conv to one channel."""
    channel = 2 * channels * hidden
    spatial = height * width * (channels * hidden
                                + num_dilated_convs * 9 * hidden * hidden
                                + hidden)
    return channel + spatial


def paper_params_formula(channels, hidden, num_dilated_convs=2):
    """Trainable parameters of BAM(variant="paper"): biases only where no
    batch norm follows (the first Dense), gamma and beta of every BN."""
    channel = channels * hidden + hidden + hidden * channels + 2 * channels
    spatial = (channels * hidden + 2 * hidden
               + num_dilated_convs * (9 * hidden * hidden + 2 * hidden)
               + hidden + 2)
    return channel + spatial


def test_resnet50_matches_the_paper():
    backbone = graph_only(A.ResNet50)
    model = keras_bam.insert_bam(backbone, share_weights=True)
    report = keras_bam.cost_report(model)
    assert [(b.anchor, b.feature_shape) for b in report.bams] == [
        ("conv2_block3_out", (56, 56, 256)),
        ("conv3_block4_out", (28, 28, 512)),
        ("conv4_block6_out", (14, 14, 1024)),
    ]
    for b in report.bams:
        height, width, channels = b.feature_shape
        assert b.macs == bam_macs_formula(height, width, channels, channels // 16)
        assert b.params == paper_params_formula(channels, channels // 16)
    # Parameters counted by Keras itself, not by the report.
    added = trainable_parameters(model) - trainable_parameters(backbone)
    assert report.bam_params == added == 359_302
    # The paper: 25.56M -> 25.92M parameters, 3.86 -> 3.94 GFLOPs (MACs).
    # Keras' ResNet50 has conv biases the paper's (torchvision's) has not.
    assert report.backbone_params == pytest.approx(25.56e6, rel=2e-3)
    assert report.backbone_params + report.bam_params == pytest.approx(
        25.92e6, rel=2e-3)
    assert report.backbone_macs == pytest.approx(3.86e9, rel=2e-3)
    assert report.backbone_macs + report.bam_macs == pytest.approx(3.94e9,
                                                                  rel=2e-3)


def test_mobilenet_matches_the_paper():
    model = keras_bam.insert_bam(graph_only(A.MobileNet), share_weights=True)
    report = keras_bam.cost_report(model)
    # The paper: 4.23M -> 4.32M parameters, 0.569 -> 0.589 GFLOPs (MACs).
    assert report.backbone_params == pytest.approx(4.23e6, rel=2e-3)
    assert report.backbone_params + report.bam_params == pytest.approx(
        4.32e6, rel=2e-3)
    assert report.backbone_macs == pytest.approx(0.569e9, rel=2e-3)
    assert report.backbone_macs + report.bam_macs == pytest.approx(0.589e9,
                                                                  rel=2e-3)


@pytest.mark.parametrize("backbone, overhead", [
    (A.ResNet50, 358_067),
    (A.MobileNet, 90_331),
], ids=["ResNet50", "MobileNet"])
def test_official_variant_adds_what_the_authors_code_adds(backbone, overhead):
    """The authors' bam.py with reduction 16 at the same three places
    (their BAM has every bias and BN only inside the branches)."""
    base = graph_only(backbone)
    model = keras_bam.insert_bam(base, variant="official", share_weights=True)
    assert trainable_parameters(model) - trainable_parameters(base) == overhead
    assert keras_bam.cost_report(model).bam_params == overhead


def test_official_variant_on_narrow_maps_is_c_over_r():
    """The authors' ResNet-18 places BAM on 64, 128 and 256 channels, where
    C' = C // 16 = 4, 8 and 16: no floor of 8 on the first one."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(64, 3, padding="same", name="s1")(inputs)
    x = keras.layers.Conv2D(128, 3, strides=2, padding="same", name="s2")(x)
    x = keras.layers.Conv2D(256, 3, strides=2, padding="same", name="s3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras_bam.insert_bam(keras.Model(inputs, x), after=["s1", "s2", "s3"],
                                 variant="official")
    report = keras_bam.cost_report(model)
    # 3 C C' + 18 C'^2 + 13 C' + C + 1, by hand:
    # C = 64:  768 + 288 + 52 + 64 + 1 = 1,173
    # C = 128: 3,072 + 1,152 + 104 + 128 + 1 = 4,457
    # C = 256: 12,288 + 4,608 + 208 + 256 + 1 = 17,361 (the first BAM of ResNet50)
    assert [b.params for b in report.bams] == [1_173, 4_457, 17_361]
    # MACs of the first, on 32 x 32: channel MLP 64*4 + 4*64 = 512 once;
    # spatial 64*4 + 2 * 9*4*4 + 4*1 = 548 at each of 1,024 positions.
    assert report.bams[0].macs == 512 + 548 * 1024


def test_report_formats():
    model = keras_bam.insert_bam(graph_only(A.MobileNetV2, alpha=0.35,
                                            input_shape=(96, 96, 3)),
                                 share_weights=True)
    report = keras_bam.cost_report(model)
    text = str(report)
    for b in report.bams:
        assert b.name in text and f"{b.macs:,}" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["bam_macs"] == sum(b["macs"] for b in data["bams"])
    assert data["input_shape"] == [1, 96, 96, 3]
    assert data["mac_ratio"] == pytest.approx(
        (report.backbone_macs + report.bam_macs) / report.backbone_macs)


def test_unknown_size_is_counted_at_224():
    model = graph_only(A.MobileNetV2, alpha=0.35, include_top=False,
                       input_shape=(None, None, 3))
    fixed = graph_only(A.MobileNetV2, alpha=0.35, include_top=False,
                       input_shape=(224, 224, 3))
    assert (keras_bam.cost_report(model).backbone_macs
            == keras_bam.cost_report(fixed).backbone_macs)


def test_layers_without_a_formula_are_listed():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Reshape((8, 32))(inputs)
    x = keras.layers.LSTM(5)(x)
    report = keras_bam.cost_report(keras.Model(inputs, x))
    assert report.uncounted == ["LSTM"]
