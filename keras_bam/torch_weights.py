"""Loading the authors' PyTorch BAM weights into `BAM(variant="official")`.

The authors' code (github.com/Jongchan/attention-module, MODELS/bam.py) names
its parameters after its `nn.Sequential` modules. This module maps those names
onto the Keras layer's sublayers and converts the layouts: a PyTorch Linear
weight is (out, in), the kernel of the 1x1 convolution `ChannelGate` uses in
its place (1, 1, in, out); a PyTorch conv weight is
(out, in, kh, kw), a Keras kernel (kh, kw, in, out). torch is not needed:
the state dict may hold NumPy arrays (`{k: v.numpy() for k, v in sd.items()}`)
or anything `numpy.asarray` accepts.
"""

import difflib
import re

import keras
import numpy as np

__all__ = ["load_torch_weights", "name_problems", "torch_entries", "torch_name"]

_CHANNEL = "channel_att.gate_c."
_SPATIAL = "spatial_att.gate_s."
_ANCHOR = _CHANNEL + "gate_c_fc_0.weight"
# `BAM.named_sublayers()` path -> the authors' module name (regular
# expressions, a dilated convolution's index carried over).
_TORCH_NAMES = (
    (r"channel_gate/fc_0", _CHANNEL + "gate_c_fc_0"),
    (r"channel_gate/bn_0", _CHANNEL + "gate_c_bn_1"),
    (r"channel_gate/fc_final", _CHANNEL + "gate_c_fc_final"),
    (r"spatial_gate/conv_reduce", _SPATIAL + "gate_s_conv_reduce0"),
    (r"spatial_gate/bn_reduce", _SPATIAL + "gate_s_bn_reduce0"),
    (r"spatial_gate/conv_dilated_(\d+)", _SPATIAL + r"gate_s_conv_di_\1"),
    (r"spatial_gate/bn_dilated_(\d+)", _SPATIAL + r"gate_s_bn_di_\1"),
    (r"spatial_gate/conv_final", _SPATIAL + "gate_s_conv_final"),
)
_BN_FIELDS = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)


def _linear(variable_owner, torch_name):
    # Keras kernel (1, 1, in, out) <- PyTorch Linear weight (out, in).
    kernel, bias = variable_owner.kernel, variable_owner.bias
    return [
        (f"{torch_name}.weight", kernel, lambda w: w.T[None, None],
         (kernel.shape[3], kernel.shape[2])),
        (f"{torch_name}.bias", bias, None, tuple(bias.shape)),
    ]


def _conv(layer, torch_name):
    # Keras kernel (kh, kw, in, out) <- PyTorch conv weight (out, in, kh, kw).
    kernel, bias = layer.kernel, layer.bias
    return [
        (f"{torch_name}.weight", kernel, lambda w: w.transpose(2, 3, 1, 0),
         tuple(kernel.shape[i] for i in (3, 2, 0, 1))),
        (f"{torch_name}.bias", bias, None, tuple(bias.shape)),
    ]


def _batch_norm(layer, torch_name):
    return [
        (f"{torch_name}.{torch_field}", variable, None, tuple(variable.shape))
        for torch_field, keras_field in _BN_FIELDS
        for variable in [getattr(layer, keras_field)]
    ]


def torch_name(path):
    """The authors' module name (without a checkpoint's prefix) for a path of
    `BAM.named_sublayers()`, e.g. "spatial_gate/conv_dilated_1" ->
    "spatial_att.gate_s.gate_s_conv_di_1"; None for a sublayer their BAM
    does not have (the paper variant's final batch norms)."""
    for pattern, replacement in _TORCH_NAMES:
        if re.fullmatch(pattern, path):
            return re.sub(pattern, replacement, path)
    return None


def torch_entries(layer):
    """(PyTorch name without prefix, Keras variable, layout change, shape in
    PyTorch's layout) entries, one per weight of `layer.named_sublayers()`."""
    entries = []
    for path, sublayer in layer.named_sublayers().items():
        name = torch_name(path)
        if isinstance(sublayer, keras.layers.BatchNormalization):
            entries += _batch_norm(sublayer, name)
        elif path.startswith("channel_gate/"):  # 1x1 conv standing for Linear
            entries += _linear(sublayer, name)
        else:
            entries += _conv(sublayer, name)
    return entries


def _find_prefix(state_dict, prefix):
    if prefix is not None:
        if prefix + _ANCHOR not in state_dict:
            raise ValueError(
                f"No BAM under prefix {prefix!r}: the state dict has no key "
                f"{prefix + _ANCHOR!r}. Prefixes found: "
                f"{_prefixes(state_dict) or 'none'}."
            )
        return prefix
    found = _prefixes(state_dict)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(
            "The state dict holds no BAM parameters: no key ends with "
            f"{_ANCHOR!r}. Keys found: {_preview(state_dict)}. Pass the state "
            "dict of a BAM module from the authors' code (MODELS/bam.py)."
        )
    raise ValueError(
        f"The state dict holds {len(found)} BAM modules, under the prefixes "
        f"{found}. Choose one with prefix=..., e.g. "
        f"load_torch_weights(layer, state_dict, prefix={found[0]!r})."
    )


def _prefixes(state_dict):
    return sorted(k[: -len(_ANCHOR)] for k in state_dict if k.endswith(_ANCHOR))


def _preview(keys, limit=8):
    keys = sorted(keys)
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _channels(state_dict, prefix):
    """The number of input channels of the BAM in the state dict."""
    weight = np.asarray(state_dict[prefix + _ANCHOR])
    if weight.ndim != 2:
        raise ValueError(
            f"{prefix + _ANCHOR!r} should be a Linear weight of shape "
            f"(hidden, channels). Received shape {weight.shape}."
        )
    return weight.shape[1]


def _build_for(layer, channels):
    if layer.data_format == "channels_last":
        layer.build((None, None, None, channels))
    else:
        layer.build((None, channels, None, None))


def _shape_problem(name, value, variable, torch_shape):
    """Why `value` does not fit: a transposed tensor, or one already in
    Keras' layout, is named as such."""
    problem = (
        f"{name}: shape {value.shape}, expected {torch_shape} (PyTorch's "
        f"layout) to fit the Keras variable {variable.path} of shape "
        f"{tuple(variable.shape)}"
    )
    if value.ndim >= 2 and value.shape[::-1] == torch_shape:
        problem += (" - it looks transposed (its shape is the expected one "
                    "reversed): pass PyTorch's tensor as it is, not transposed")
    elif value.shape == tuple(variable.shape):
        problem += (" - it looks already converted to Keras' layout: pass "
                    "PyTorch's tensor as it is")
    return problem


def name_problems(expected_names, given_names, prefix=""):
    """["missing: ...", "unexpected: ..."] for the names of a state dict
    against those a model expects (each shown with `prefix`); an unexpected
    name comes with the closest expected one, as a hint at a typo."""
    missing = sorted(set(expected_names) - set(given_names))
    unexpected = sorted(set(given_names) - set(expected_names))
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(prefix + m for m in missing)}")
    if unexpected:
        hints = []
        for name in unexpected:
            close = difflib.get_close_matches(name, expected_names, n=1)
            hints.append(prefix + name + (f" (did you mean {close[0]}?)" if close else ""))
        problems.append(f"unexpected: {', '.join(hints)}")
    return problems


def _fitted_values(layer, ours, prefix):
    """{PyTorch name: value in Keras' layout} for every weight of the built
    `layer`, or a ValueError naming every entry that is missing, unexpected
    or mis-shaped."""
    expected = torch_entries(layer)
    problems = name_problems({name for name, _, _, _ in expected}, ours, prefix)

    values = {}
    for name, variable, convert, torch_shape in expected:
        if name not in ours:
            continue
        value = np.asarray(ours[name], dtype=np.float32)
        # Checked in PyTorch's layout, before the layout change, which cannot
        # be applied to a tensor with the wrong number of axes.
        if value.shape != torch_shape:
            problems.append(_shape_problem(prefix + name, value, variable, torch_shape))
            continue
        values[name] = value if convert is None else convert(value)
    if problems:
        raise ValueError(
            f"The state dict does not fit {layer.name} (num_dilated_convs="
            f"{layer.num_dilated_convs}, reduction_ratio={layer.reduction_ratio},"
            f" min_hidden_channels={layer.min_hidden_channels}): "
            + "; ".join(problems)
            + ". Build the BAM with the same channels, reduction_ratio and "
            "num_dilated_convs as the PyTorch module, and min_hidden_channels="
            "None (the official variant's default: C // r exactly, as theirs)."
        )
    return values


def load_torch_weights(layer, state_dict, prefix=None):
    """Loads the authors' PyTorch BAM parameters into a Keras `BAM`.

    Args:
        layer: a `keras_bam.BAM(variant="official")`, with both branches.
            If it is not built yet, it is built for the state dict's number
            of channels once the whole state dict is checked: one that does
            not fit leaves it unbuilt.
        state_dict: mapping from the authors' parameter names
            (`channel_att.gate_c.gate_c_fc_0.weight`, ...) to arrays. May be a
            whole checkpoint: keys outside `prefix` are not looked at, and
            `num_batches_tracked` entries are ignored.
        prefix: the key prefix of the BAM to load, e.g. "module.bam1." in the
            authors' ResNet checkpoint. None finds it when there is only one.

    Returns:
        The layer, whose eval-mode output then matches the PyTorch module's.

    Raises:
        ValueError: the layer is not an official-variant BAM, or entries are
            missing, unexpected or mis-shaped (all are named). Nothing is
            assigned unless every entry fits.
    """
    from keras_bam.layers.bam import BAM

    if not isinstance(layer, BAM) or layer.variant != "official":
        raise ValueError(
            "load_torch_weights needs a keras_bam.BAM(variant='official'): the "
            "authors' code places batch norm differently from the paper, so "
            f"its weights only fit that variant. Received: {layer!r}"
            + (f" with variant={layer.variant!r}" if isinstance(layer, BAM) else "")
        )
    if not (layer.use_channel_gate and layer.use_spatial_gate):
        raise ValueError(
            "The authors' BAM has both branches; build the layer with "
            "use_channel_gate=True and use_spatial_gate=True."
        )
    prefix = _find_prefix(state_dict, prefix)
    ours = {
        k[len(prefix):]: v
        for k, v in state_dict.items()
        if k.startswith(prefix) and not k.endswith(".num_batches_tracked")
    }
    if layer.built:
        values = _fitted_values(layer, ours, prefix)
    else:
        # Checked on a twin first, so that a state dict that does not fit
        # leaves the layer unbuilt, ready for the right one.
        channels = _channels(state_dict, prefix)
        twin = BAM.from_config(layer.get_config())
        _build_for(twin, channels)
        values = _fitted_values(twin, ours, prefix)
        _build_for(layer, channels)
    for name, variable, _, _ in torch_entries(layer):
        variable.assign(values[name].astype(variable.dtype))
    return layer
