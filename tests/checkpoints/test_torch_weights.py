"""`load_torch_weights` against a NumPy re-implementation of the authors' module.

The state dicts are random, in PyTorch's layout and with the authors' names
(github.com/Jongchan/attention-module, MODELS/bam.py); torch is not imported.
The expected outputs come from `reference.torch_bam`, which computes the
PyTorch module's eval-mode forward directly in NCHW.
"""

import re

import keras
import numpy as np
import pytest
import reference

from keras_bam import BAM, load_torch_weights


@pytest.fixture(autouse=True)
def _seeded():
    """Every model's initial weights fixed, whatever ran before in this
    worker."""
    keras.utils.set_random_seed(1807)


ATOL = 1e-5
CHANNELS, REDUCTION = 32, 8  # hidden width 4
C = "channel_att.gate_c.gate_c_"
S = "spatial_att.gate_s.gate_s_"


def torch_state_dict(rng, prefix="", channels=CHANNELS, num_dilated_convs=2):
    """A random state dict of the authors' BAM(channels), reduction 8."""
    hidden = channels // REDUCTION
    sd = {}

    def weight_and_bias(name, shape):
        fan_in = np.prod(shape[1:])
        sd[name + ".weight"] = rng.normal(size=shape) / np.sqrt(fan_in)
        sd[name + ".bias"] = rng.normal(scale=0.5, size=shape[0])

    def batch_norm(name, n):
        sd[name + ".weight"] = rng.uniform(0.5, 2.0, n)
        sd[name + ".bias"] = rng.normal(scale=0.5, size=n)
        sd[name + ".running_mean"] = rng.normal(scale=0.5, size=n)
        sd[name + ".running_var"] = rng.uniform(0.5, 2.0, n)
        sd[name + ".num_batches_tracked"] = np.array(5005, dtype=np.int64)

    weight_and_bias(C + "fc_0", (hidden, channels))  # nn.Linear: (out, in)
    batch_norm(C + "bn_1", hidden)
    weight_and_bias(C + "fc_final", (channels, hidden))
    weight_and_bias(S + "conv_reduce0", (hidden, channels, 1, 1))
    batch_norm(S + "bn_reduce0", hidden)
    for i in range(num_dilated_convs):
        weight_and_bias(f"{S}conv_di_{i}", (hidden, hidden, 3, 3))
        batch_norm(f"{S}bn_di_{i}", hidden)
    weight_and_bias(S + "conv_final", (1, hidden, 1, 1))
    return {
        prefix + k: v if v.dtype == np.int64 else v.astype(np.float32)
        for k, v in sd.items()
    }


def official_bam(data_format="channels_last", built=True, **kwargs):
    layer = BAM(variant="official", reduction_ratio=REDUCTION,
                min_hidden_channels=1, data_format=data_format, **kwargs)
    if built:
        shape = (None, None, None, CHANNELS)
        layer.build(shape if data_format == "channels_last"
                    else (None, CHANNELS, None, None))
    return layer


def keras_output(layer, x_nchw):
    """The layer's eval-mode output for an NCHW input, returned as NCHW."""
    if layer.data_format == "channels_first":
        return keras.ops.convert_to_numpy(layer(x_nchw, training=False))
    y = layer(x_nchw.transpose(0, 2, 3, 1), training=False)
    return keras.ops.convert_to_numpy(y).transpose(0, 3, 1, 2)


def check_matches_torch(layer, sd, rng, prefix="", shape=(2, CHANNELS, 9, 9),
                        **torch_kwargs):
    x = (rng.normal(size=shape) + rng.normal(size=shape[:2] + (1, 1))).astype(
        "float32")
    expected = reference.torch_bam(x, sd, prefix=prefix, **torch_kwargs)
    np.testing.assert_allclose(keras_output(layer, x), expected, rtol=0,
                               atol=ATOL)


def snapshot(layer):
    return [keras.ops.convert_to_numpy(v).copy() for v in layer.weights]


@pytest.mark.parametrize("prefix", ["", "module.bam1."])
@pytest.mark.parametrize("built", [True, False], ids=["built", "unbuilt"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_pytorch_forward(data_format, built, prefix, rng):
    layer = official_bam(data_format, built=built)
    sd = torch_state_dict(rng, prefix)
    assert load_torch_weights(layer, sd) is layer
    assert layer.built
    check_matches_torch(layer, sd, rng, prefix)


@pytest.mark.parametrize("num_dilated_convs, dilation_rate", [(1, 2), (3, 4)])
def test_other_geometry(num_dilated_convs, dilation_rate, rng):
    layer = official_bam(num_dilated_convs=num_dilated_convs,
                         dilation_rate=dilation_rate)
    sd = torch_state_dict(rng, num_dilated_convs=num_dilated_convs)
    load_torch_weights(layer, sd)
    check_matches_torch(layer, sd, rng, num_dilated_convs=num_dilated_convs,
                        dilation_rate=dilation_rate)


@pytest.mark.parametrize("prefix", [None, "module.bam1."])
def test_whole_checkpoint_loads_one_module(prefix, rng):
    """Keys outside the prefix (even a BAM of another width under a prefix
    that starts alike) and num_batches_tracked entries are ignored."""
    sd = torch_state_dict(rng, "module.bam1.")
    sd.update({
        "module.conv1.weight": rng.normal(size=(64, 3, 7, 7)),
        "module.fc.bias": rng.normal(size=1000),
        "module.bam1x.unrelated": rng.normal(size=3),
    })
    if prefix is not None:  # a second BAM is only allowed with prefix=
        sd.update(torch_state_dict(rng, "module.bam10.", channels=64))
    layer = official_bam()
    load_torch_weights(layer, sd, prefix=prefix)
    check_matches_torch(layer, sd, rng, "module.bam1.")


def assert_load_fails(layer, sd, match, **kwargs):
    """ValueError whose message matches, and no variable of `layer` changed."""
    before = snapshot(layer)
    with pytest.raises(ValueError, match=match):
        load_torch_weights(layer, sd, **kwargs)
    for old, new in zip(before, snapshot(layer), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize(
    "key",
    [C + "fc_0.weight", C + "bn_1.running_var", S + "conv_di_1.bias",
     S + "conv_final.weight"],
)
def test_missing_key(key, rng):
    sd = torch_state_dict(rng, "module.bam2.")
    del sd["module.bam2." + key]
    assert_load_fails(official_bam(), sd, re.escape(key))


def test_unexpected_key(rng):
    sd = torch_state_dict(rng)
    key = S + "conv_di_2.weight"  # the module had a third dilated conv
    sd[key] = np.zeros((4, 4, 3, 3), np.float32)
    assert_load_fails(official_bam(), sd, re.escape(key))


@pytest.mark.parametrize(
    "key, change",
    [
        (C + "fc_final.weight", lambda w: w.T),  # (in, out) instead of (out, in)
        (S + "bn_di_0.bias", lambda b: b[:-1]),
        (S + "conv_final.weight", lambda w: w[..., None]),
    ],
)
def test_misshaped_tensor(key, change, rng):
    sd = torch_state_dict(rng)
    sd[key] = change(sd[key])
    assert_load_fails(official_bam(), sd, re.escape(key))


def test_paper_variant_is_refused(rng):
    layer = BAM(variant="paper", reduction_ratio=REDUCTION, min_hidden_channels=1)
    layer.build((None, 9, 9, CHANNELS))
    assert_load_fails(layer, torch_state_dict(rng), "variant='paper'")


def test_several_modules_need_a_prefix(rng):
    sd = {**torch_state_dict(rng, "module.bam1."),
          **torch_state_dict(rng, "module.bam2.")}
    assert_load_fails(official_bam(), sd, r"module\.bam1\..*module\.bam2\..*prefix=")


def test_wrong_prefix(rng):
    sd = torch_state_dict(rng, "module.bam1.")
    assert_load_fails(official_bam(), sd, re.escape("module.bam3."),
                      prefix="module.bam3.")
