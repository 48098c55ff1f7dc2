"""BAM, ChannelGate and SpatialGate against the NumPy reference of the paper.

float32 layers vs the float64 reference in tests/reference.py, at atol 1e-5.
Every variable is randomized first: with Keras' initial batch-norm statistics
(mean 0, variance 1, gamma 1, beta 0) inference-mode batch norm is nearly an
identity and zero biases are invisible, so a test would prove little.
"""

import keras
import numpy as np
import pytest
import reference

from keras_bam import BAM, ChannelGate, SpatialGate


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


ATOL = 1e-5
VARIANTS = ["paper", "official"]
DATA_FORMATS = ["channels_last", "channels_first"]
# Small enough to run fast, hidden width C // r = 4 above the minimum of 2.
SMALL = {"reduction_ratio": 4, "min_hidden_channels": 2}


def features(rng, shape, data_format=None):
    """A moderate-scale NHWC map with per-sample, per-channel offsets (so the
    pooled channel descriptors differ across the batch), in `data_format`."""
    n, _, _, c = shape
    x = rng.normal(size=shape) + rng.normal(size=(n, 1, 1, c))
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    return x.astype("float32")


def randomize(layer, rng):
    """Assigns random non-trivial values to every variable of `layer`."""
    for variable in layer.weights:
        shape = tuple(variable.shape)
        if variable.name == "kernel":
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif variable.name in ("bias", "beta", "moving_mean"):
            value = rng.normal(scale=0.5, size=shape)
        else:
            assert variable.name in ("gamma", "moving_variance"), variable.path
            value = rng.uniform(0.5, 2.0, size=shape)
        variable.assign(value.astype(variable.dtype))


def check(layer_cls, reference_fn, rng, shape=(3, 9, 7, 16), training=False,
          **kwargs):
    x = features(rng, shape, kwargs.get("data_format"))
    layer = layer_cls(**kwargs)
    layer.build(x.shape)
    randomize(layer, rng)
    expected = reference_fn(x, reference.weights_of(layer), training=training,
                            **kwargs)
    actual = keras.ops.convert_to_numpy(layer(x, training=training))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_bam(variant, data_format, training, rng):
    check(BAM, reference.bam, rng, training=training, variant=variant,
          data_format=data_format, **SMALL)


@pytest.mark.parametrize("training", [False, True])
def test_bam_batch_norm_epsilon(training, rng):
    check(BAM, reference.bam, rng, training=training, batch_norm_epsilon=0.1,
          **SMALL)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("combine", ["sum", "product", "max"])
def test_bam_combine(combine, variant, rng):
    check(BAM, reference.bam, rng, combine=combine, variant=variant, **SMALL)


@pytest.mark.parametrize("gate_activation", ["sigmoid", "tanh", "hard_sigmoid"])
def test_bam_gate_activation(gate_activation, rng):
    check(BAM, reference.bam, rng, gate_activation=gate_activation, **SMALL)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "branches",
    [{"use_spatial_gate": False}, {"use_channel_gate": False}],
    ids=["channel_only", "spatial_only"],
)
def test_bam_single_branch(branches, variant, training, rng):
    check(BAM, reference.bam, rng, training=training, variant=variant,
          gate_activation="tanh", **branches, **SMALL)


@pytest.mark.parametrize(
    "channels, kwargs",
    [
        (16, {}),  # C // 16 = 1: the official variant has no floor
        (64, {}),  # C // 16 = 4, the authors' ResNet-18/34 first BAM
        (16, {"min_hidden_channels": 8}),  # an explicit floor applies: 8
        (16, {"variant": "paper"}),  # the paper variant's default floor: 8
        (32, {"reduction_ratio": 8, "min_hidden_channels": 1}),  # C // r = 4
        (6, {"reduction_ratio": 16, "min_hidden_channels": 8}),  # capped at C
    ],
)
def test_bam_hidden_width(channels, kwargs, rng):
    kwargs = {"variant": "official", **kwargs}
    check(BAM, reference.bam, rng, shape=(2, 6, 5, channels), **kwargs)


@pytest.mark.parametrize("size", [(9, 7), (5, 11), (1, 1), (3, 2)])
@pytest.mark.parametrize("dilation_rate", [1, 2, 4])
@pytest.mark.parametrize("num_dilated_convs", [0, 1, 3])
def test_spatial_gate_geometry(num_dilated_convs, dilation_rate, size, rng):
    # (3, 2) and (1, 1) are smaller than the reach of a 3x3 kernel dilated by
    # 2 or 4: most taps fall into the zero padding.
    check(SpatialGate, reference.spatial_gate, rng, shape=(2, *size, 8),
          num_dilated_convs=num_dilated_convs, dilation_rate=dilation_rate,
          variant="official", **SMALL)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_spatial_gate(variant, data_format, training, rng):
    check(SpatialGate, reference.spatial_gate, rng, shape=(3, 5, 11, 16),
          training=training, variant=variant, data_format=data_format, **SMALL)


@pytest.mark.parametrize("size", [(9, 7), (1, 1)])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_channel_gate(variant, data_format, training, size, rng):
    check(ChannelGate, reference.channel_gate, rng, shape=(4, *size, 16),
          training=training, variant=variant, data_format=data_format, **SMALL)
