"""Behaviour every keras_bam layer must have: the Keras layer contract."""

import inspect
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from reference import bam as reference_bam
from reference import weights_of

from keras_bam import BAM, ChannelGate, SpatialGate
from keras_bam.rewrite.keras_internals import all_sublayers


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


LAYERS = [BAM, ChannelGate, SpatialGate]

# Every layer's own constructor arguments, written out here rather than read
# from the code: a signature that hides one in **kwargs fails.
SHARED_ARGUMENTS = {
    "reduction_ratio", "min_hidden_channels", "variant", "data_format",
    "kernel_initializer", "bias_initializer", "kernel_regularizer",
    "bias_regularizer", "batch_norm_momentum", "batch_norm_epsilon",
}
OWN_ARGUMENTS = {
    BAM: SHARED_ARGUMENTS | {"dilation_rate", "num_dilated_convs", "combine",
                             "gate_activation", "use_channel_gate",
                             "use_spatial_gate"},
    ChannelGate: SHARED_ARGUMENTS,
    SpatialGate: SHARED_ARGUMENTS | {"dilation_rate", "num_dilated_convs"},
}


def _expected_shape(layer_cls, shape):
    n, h, w, c = shape
    return {BAM: shape, ChannelGate: (n, 1, 1, c), SpatialGate: (n, h, w, 1)}[
        layer_cls
    ]


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_signature_lists_every_argument(layer_cls):
    parameters = inspect.signature(layer_cls).parameters
    named = {n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}
    assert named == OWN_ARGUMENTS[layer_cls]
    # Only keras.layers.Layer's own arguments travel in **kwargs.
    assert [p.kind for p in parameters.values()].count(
        inspect.Parameter.VAR_KEYWORD) == 1
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        layer_cls(not_an_argument=1)


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_config_mirrors_constructor(layer_cls):
    layer = layer_cls(reduction_ratio=8, min_hidden_channels=4, name="g")
    config = layer.get_config()
    base = set(keras.layers.Layer(name="x").get_config())
    assert set(config) - base == OWN_ARGUMENTS[layer_cls]
    assert (config["reduction_ratio"], config["min_hidden_channels"]) == (8, 4)
    # Each argument stored once, under its own name.
    for name in OWN_ARGUMENTS[layer_cls] - {"kernel_initializer",
                                             "bias_initializer"}:
        value = getattr(layer, name)
        if name.endswith("_regularizer"):
            value = keras.regularizers.serialize(value)
        assert config[name] == value, name
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("layer_cls", LAYERS)
@pytest.mark.parametrize(
    "shape", [(2, 9, 7, 16), (3, 1, 1, 16), (1, 5, 11, 24), (2, 2, 3, 8)]
)
def test_any_spatial_size(layer_cls, shape, rng):
    layer = layer_cls()
    x = rng.normal(size=shape).astype("float32")
    y = layer(x)
    assert tuple(y.shape) == _expected_shape(layer_cls, shape)
    assert tuple(layer.compute_output_shape(shape)) == _expected_shape(layer_cls, shape)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(y)))


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_unknown_height_width_and_batch_in_functional_model(layer_cls, rng):
    inputs = keras.Input((None, None, 16))
    model = keras.Model(inputs, layer_cls()(inputs))
    assert model.output_shape == _expected_shape(layer_cls, (None, None, None, 16))
    for shape in [(1, 8, 8, 16), (4, 13, 6, 16), (2, 1, 1, 16)]:
        y = model.predict(rng.normal(size=shape).astype("float32"), verbose=0)
        assert y.shape == _expected_shape(layer_cls, shape)


def test_in_sequential_model_with_training(rng):
    model = keras.Sequential(
        [
            keras.Input((12, 10, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            BAM(name="bam"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    # Eagerly: a step reaches BAM's weights or not whether or not it is
    # traced into a tf.function (seconds of CPU); test_trains_with_xla
    # runs a compiled step.
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    before = [w.numpy().copy() for w in model.get_layer("bam").trainable_weights]
    model.fit(
        rng.normal(size=(8, 12, 10, 3)).astype("float32"),
        rng.integers(0, 4, size=8),
        epochs=1,
        verbose=0,
    )
    after = model.get_layer("bam").trainable_weights
    assert all(not np.allclose(b, a.numpy()) for b, a in zip(before, after))


def test_channels_first_matches_channels_last(rng):
    x = rng.normal(size=(2, 9, 7, 16)).astype("float32")
    last = BAM(data_format="channels_last")
    first = BAM(data_format="channels_first")
    last(x)
    first(np.transpose(x, (0, 3, 1, 2)))
    first.set_weights(last.get_weights())
    for training in (False, True):
        y_last = keras.ops.convert_to_numpy(last(x, training=training))
        y_first = keras.ops.convert_to_numpy(
            first(np.transpose(x, (0, 3, 1, 2)), training=training)
        )
        np.testing.assert_allclose(
            np.transpose(y_first, (0, 2, 3, 1)), y_last, atol=1e-5
        )


def test_min_hidden_channels_keeps_narrow_maps_usable():
    narrow = BAM()
    narrow.build((None, None, None, 8))
    assert narrow.channel_gate.fc_0.filters == 8  # 8 // 16 == 0, clamped to 8
    assert narrow.spatial_gate.hidden_convs[0].filters == 8
    exact = BAM(min_hidden_channels=1)
    exact.build((None, None, None, 8))
    assert exact.channel_gate.fc_0.filters == 1
    wide = BAM()
    wide.build((None, None, None, 256))
    assert wide.channel_gate.fc_0.filters == 16
    assert BAM().get_config()["min_hidden_channels"] is None  # follows variant


@pytest.mark.parametrize("channels,reduction_ratio,hidden", [
    (64, 16, 4),  # the authors' ResNet-18/34 first BAM: 64 // 16
    (16, 16, 1),
    (256, 16, 16),
    (100, 8, 12),
    (48, 32, 1),
])
def test_official_variant_is_c_over_r_at_every_width(channels, reduction_ratio,
                                                     hidden):
    layer = BAM(variant="official", reduction_ratio=reduction_ratio)
    layer.build((None, None, None, channels))
    widths = {path: sub.filters for path, sub in layer.named_sublayers().items()
              if path in ("channel_gate/fc_0", "spatial_gate/conv_reduce",
                          "spatial_gate/conv_dilated_0",
                          "spatial_gate/conv_dilated_1")}
    assert widths == dict.fromkeys(widths, hidden) and len(widths) == 4


def test_official_variant_refuses_a_zero_width_bottleneck():
    with pytest.raises(ValueError, match=r"'too_narrow'.*8 channels.*"
                                         r"reduction_ratio=16.*= 0.*"
                                         r"min_hidden_channels"):
        BAM(variant="official", name="too_narrow").build((None, 4, 4, 8))
    # An explicit bound applies to the official variant as given.
    bounded = BAM(variant="official", min_hidden_channels=2)
    bounded.build((None, 4, 4, 8))
    assert bounded.channel_gate.fc_0.filters == 2


def test_configs_saved_with_min_hidden_channels_8_load_as_saved():
    """Before min_hidden_channels=None, every saved config held 8."""
    for layer_cls in LAYERS:
        config = layer_cls(variant="official").get_config()
        config["min_hidden_channels"] = 8
        layer = layer_cls.from_config(config)
        layer.build((None, 5, 5, 64))
        assert layer.get_config()["min_hidden_channels"] == 8
        first = next(iter(layer.named_sublayers().values()))
        assert first.filters == 8  # max(64 // 16, 8), not 64 // 16 = 4


@pytest.mark.parametrize("kwargs,paths", [
    ({}, ["channel_gate/fc_0", "channel_gate/fc_final", "channel_gate/bn_final",
          "spatial_gate/conv_reduce", "spatial_gate/bn_reduce",
          "spatial_gate/conv_dilated_0", "spatial_gate/bn_dilated_0",
          "spatial_gate/conv_dilated_1", "spatial_gate/bn_dilated_1",
          "spatial_gate/conv_final", "spatial_gate/bn_final"]),
    ({"variant": "official", "num_dilated_convs": 1},
     ["channel_gate/fc_0", "channel_gate/bn_0", "channel_gate/fc_final",
      "spatial_gate/conv_reduce", "spatial_gate/bn_reduce",
      "spatial_gate/conv_dilated_0", "spatial_gate/bn_dilated_0",
      "spatial_gate/conv_final"]),
    ({"use_spatial_gate": False},
     ["channel_gate/fc_0", "channel_gate/fc_final", "channel_gate/bn_final"]),
])
def test_named_sublayers_hold_every_weight_once(kwargs, paths):
    layer = BAM(**kwargs)
    with pytest.raises(ValueError, match="not built yet"):
        layer.named_sublayers()
    layer.build((None, 6, 6, 32))
    sublayers = layer.named_sublayers()
    assert list(sublayers) == paths
    owned = [id(w) for sub in sublayers.values() for w in sub.weights]
    assert sorted(owned) == sorted(id(w) for w in layer.weights)
    assert len(set(owned)) == len(owned)


@pytest.mark.parametrize(
    "channels,hidden", [(256, 16), (512, 32), (1024, 64), (128, 8), (2048, 128)]
)
def test_official_parameter_count_matches_authors_formula(channels, hidden):
    # docs/layers.md: one BAM in the authors' code has 3CC' + 18C'^2 + 13C' + C + 1
    # trainable parameters, C' = C / 16 (the official variant's default).
    layer = BAM(variant="official")
    layer.build((None, None, None, channels))
    count = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert count == 3 * channels * hidden + 18 * hidden**2 + 13 * hidden + channels + 1


@pytest.mark.parametrize("channels,hidden", [(256, 16), (1024, 64), (8, 8)])
def test_paper_parameter_count_matches_its_structure(channels, hidden):
    # Channel: C*h + h (Dense with bias), C*h (no bias before BN), 2C (BN).
    # Spatial: C*h + 2h (1x1, BN), 2 x (9h^2 + 2h), h + 2 (1x1 to 1, BN).
    layer = BAM()
    layer.build((None, None, None, channels))
    count = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert count == 3 * channels * hidden + 18 * hidden**2 + 8 * hidden + 2 * channels + 2


@pytest.mark.parametrize(
    "variant,channels,total",
    [
        ("official", (256, 512, 1024), 358_067),  # ResNet50
        ("official", (128, 256, 512), 90_331),  # MobileNet alpha 1.0
        ("paper", (256, 512, 1024), 359_302),  # the README's figures
        ("paper", (128, 256, 512), 90_950),
    ],
)
def test_overhead_at_the_papers_placements(variant, channels, total):
    count = 0
    for c in channels:
        layer = BAM(variant=variant)
        layer.build((None, 56, 56, c))
        count += sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert count == total


# The official variant's biases directly followed by batch norm: in training
# mode the batch norm subtracts the batch mean, bias included, so their
# gradient is zero (up to rounding). The paper variant leaves them out.
BIASES_BEFORE_BATCH_NORM = {
    "official": {"channel_gate/fc_0", "spatial_gate/conv_reduce",
                 "spatial_gate/conv_dilated_0", "spatial_gate/conv_dilated_1"},
    "paper": set(),
}


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_gradients_reach_every_weight(variant, training, rng):
    layer = BAM(variant=variant)
    x = tf.constant(rng.normal(size=(4, 9, 7, 64)).astype("float32"))
    layer(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=training) ** 2)
    weights = {f"{path}/{w.name}": w
               for path, sub in layer.named_sublayers().items()
               for w in sub.trainable_weights}
    grads = tape.gradient(loss, [*weights.values(), x])
    cancelled = {f"{path}/bias" for path in BIASES_BEFORE_BATCH_NORM[variant]}
    for name, grad in zip([*weights, "input"], grads):
        assert grad is not None, name
        size = float(np.max(np.abs(grads[-1].numpy())))
        if training and name in cancelled:
            assert np.max(np.abs(grad.numpy())) < 1e-4 * size, name
        else:
            assert np.any(grad.numpy() != 0), name


def test_dilated_conv_gradient_equals_keras_conv(rng):
    """The single-op dilated conv differentiates like Keras' own Conv2D."""
    from keras_bam.layers.dilated_conv import DilatedConv2D

    ours = DilatedConv2D(6, 3, dilation_rate=3)
    reference = keras.layers.Conv2D(6, 3, dilation_rate=3, padding="same")
    x = tf.constant(rng.normal(size=(2, 11, 9, 5)).astype("float32"))
    ours(x)
    reference(x)
    reference.set_weights(ours.get_weights())
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(y))
        results.append([y] + tape.gradient(loss, [x] + layer.trainable_weights))
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def _small_model(**bam_kwargs):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = BAM(name="bam", **bam_kwargs)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, dtype="float32")(x))


def test_trains_with_xla(rng):
    """A compiled (XLA) training step reaches every BAM weight, and the
    compiled model computes what the uncompiled one does."""
    model = _small_model()
    x = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=16)
    bam = model.get_layer("bam")
    before = [w.numpy().copy() for w in bam.trainable_weights]
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [w.numpy() for w in bam.trainable_weights]
    assert all(not np.allclose(b, a) for b, a in zip(before, after))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    compiled = model.predict(x, verbose=0)  # jit_compile=True
    # The uncompiled model: the same layers called in inference mode.
    uncompiled = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(uncompiled, compiled, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_mixed_precision(policy, scope, rng):
    x = rng.normal(size=(4, 9, 7, 16)).astype("float32")
    reference = BAM(dtype="float32")
    reference(x)
    if scope == "global":
        keras.config.set_dtype_policy(policy)
        layer = BAM()
    else:
        layer = BAM(dtype=policy)
    layer(x)
    layer.set_weights(reference.get_weights())
    compute_dtype = policy.split("_")[1]
    for sub in [layer, *all_sublayers(layer)]:
        assert sub.compute_dtype == compute_dtype, sub.name
    assert all(w.dtype == "float32" for w in layer.weights)
    y = layer(x, training=False)
    assert keras.backend.standardize_dtype(y.dtype) == compute_dtype
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
    tol = 2e-2 if compute_dtype == "bfloat16" else 5e-3
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * 4)
    # One training step under the policy keeps everything finite. Eagerly:
    # the step's dtypes (and float16's loss scaling) are those of a traced
    # one, without seconds of tracing per policy.
    keras.config.set_dtype_policy(policy if scope == "global" else "float32")
    model = _small_model(dtype=policy)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    model.fit(
        rng.normal(size=(8, 16, 16, 3)).astype("float32"),
        rng.integers(0, 4, size=8),
        verbose=0,
    )
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


SAVE_CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import keras_bam  # registers the layers: nothing else is imported
    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        model = keras.saving.load_model(path)  # safe_mode=True
        np.save(path + ".y.npy", keras.ops.convert_to_numpy(model(x, training=False)))
    """
)
SAVED_VARIANTS = [
    {},
    {"variant": "official"},
    {"combine": "max", "gate_activation": "tanh", "num_dilated_convs": 1},
    {"use_spatial_gate": False, "kernel_regularizer": "l2"},
]


@pytest.mark.slow
def test_save_and_load_in_a_fresh_process(tmp_path, rng):
    """Each variant saved to .keras and loaded in safe mode by a process
    that imports only keras_bam (one process for all, to save start-ups)."""
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    models, paths = [], []
    for index, bam_kwargs in enumerate(SAVED_VARIANTS):
        model = _small_model(**bam_kwargs)
        # Every weight random, the batch-norm statistics included, so that
        # none is at its initial value and a weight lost on the way shows.
        for weight in model.weights:
            low = 0.5 if "variance" in weight.path or "gamma" in weight.path else -0.5
            weight.assign(rng.uniform(low, low + 1, size=weight.shape).astype("float32"))
        paths.append(str(tmp_path / f"m{index}.keras"))
        model.save(paths[-1])
        models.append(model)
    subprocess.run(
        [sys.executable, "-c", SAVE_CHECK, str(tmp_path / "x.npy"), *paths],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    for model, path in zip(models, paths, strict=True):
        np.testing.assert_array_equal(
            np.load(path + ".y.npy"),
            keras.ops.convert_to_numpy(model(x, training=False)))
        loaded = keras.saving.load_model(path)
        assert loaded.get_layer("bam").get_config() == model.get_layer("bam").get_config()
        all_layers = [
            type(sub).__name__ for sub in all_sublayers(loaded)
        ]
        assert "Lambda" not in all_layers


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"reduction_ratio": 0}, "reduction_ratio=0"),
        ({"reduction_ratio": 2.5}, "reduction_ratio=2.5"),
        ({"dilation_rate": 0}, "dilation_rate=0"),
        ({"num_dilated_convs": -1}, "num_dilated_convs=-1"),
        ({"min_hidden_channels": 0}, "min_hidden_channels=0"),
        ({"combine": "mean"}, "combine='mean'"),
        ({"gate_activation": "relu"}, "gate_activation='relu'"),
        ({"variant": "pytorch"}, "variant='pytorch'"),
        ({"data_format": "NHWC"}, "data_format='NHWC'"),
        ({"batch_norm_epsilon": -1}, "batch_norm_epsilon"),
        ({"use_channel_gate": False, "use_spatial_gate": False}, "at least one"),
    ],
)
def test_bad_arguments_are_rejected_with_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        BAM(**kwargs)
    assert "must" in str(info.value) or "needs" in str(info.value)


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_bad_inputs_are_rejected(layer_cls):
    with pytest.raises(ValueError, match=r"4-D feature map.*rank 3"):
        layer_cls()(keras.Input((8, 8)))
    with pytest.raises(ValueError, match=r"channel dimension.*\(None, 8, 8, None\)"):
        layer_cls().build((None, 8, 8, None))
    with pytest.raises(ValueError, match="floating-point.*int32"):
        layer_cls()(keras.Input((8, 8, 16), dtype="int32"))
    with pytest.raises(ValueError, match="floating-point.*int32"):
        layer_cls()(np.ones((1, 8, 8, 16), dtype="int32"))


def test_channels_first_needs_known_channels_on_axis_1():
    with pytest.raises(ValueError, match="channels_first"):
        BAM(data_format="channels_first").build((None, None, 8, 8))


def test_attention_on_an_unbuilt_layer_builds_it_first(rng):
    """`attention()` is public: called before the layer, it builds the layer
    for its input as a call would, and returns the paper's M(F), checked
    through F * (1 + M(F)) against the NumPy reference."""
    layer = BAM()
    x = rng.normal(size=(2, 8, 8, 32)).astype("float32")
    attention = keras.ops.convert_to_numpy(layer.attention(x, training=False))
    assert layer.built
    assert attention.shape == (2, 8, 8, 32)
    expected = reference_bam(x, weights_of(layer))
    np.testing.assert_allclose(x * (1.0 + attention), expected, atol=1e-5)
    with pytest.raises(ValueError, match="4-D feature map"):
        BAM().attention(np.ones((2, 8, 32), "float32"))
