"""Argument handling shared by the BAM layers.

Every constructor argument of `ChannelGate`, `SpatialGate` and `BAM` is
standardized here once, so the three layers accept the same names, reject the
same mistakes with the same messages, and store the same values in
`get_config()`.
"""

import operator

import keras

VARIANTS = ("paper", "official")
COMBINES = ("sum", "product", "max")
GATE_ACTIVATIONS = ("sigmoid", "tanh", "hard_sigmoid")

# The combination of the two branches each variant uses when `combine=None`.
DEFAULT_COMBINE = {"paper": "sum", "official": "product"}

# The floor on the hidden width each variant uses when
# `min_hidden_channels=None`: 8 for the paper's variant (a branch one or two
# channels wide trains poorly and breaks int8 quantization), none for the
# authors' code, which computes C // r at every width.
DEFAULT_MIN_HIDDEN_CHANNELS = {"paper": 8, "official": None}


def positive_int(name, value, minimum=1):
    """Returns `value` as an int, or raises if it is not an int >= minimum."""
    try:
        as_int = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        as_int = None
    if as_int is None or as_int < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return as_int


def optional_positive_int(name, value):
    """None, or `value` as an int >= 1."""
    if value is None:
        return None
    return positive_int(name, value)


def min_hidden_channels(value, variant_name):
    """The floor on the hidden width that a layer with `min_hidden_channels=
    value` and `variant=variant_name` applies (None: no floor)."""
    if value is None:
        return DEFAULT_MIN_HIDDEN_CHANNELS[variant_name]
    return value


def choice(name, value, allowed):
    """Returns `value` lower-cased if it is one of `allowed`, else raises."""
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise ValueError(
        f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}. "
        f"Received: {name}={value!r}"
    )


def variant(value):
    return choice("variant", value, VARIANTS)


def combine(value, variant_name):
    if value is None:
        return DEFAULT_COMBINE[variant_name]
    return choice("combine", value, COMBINES)


def gate_activation(value):
    return choice("gate_activation", value, GATE_ACTIVATIONS)


def data_format(value):
    if value is None:
        return keras.config.image_data_format()
    if isinstance(value, str) and value.lower() in ("channels_last", "channels_first"):
        return value.lower()
    raise ValueError(
        "`data_format` must be 'channels_last', 'channels_first' or None "
        "(None reads keras.config.image_data_format()). "
        f"Received: data_format={value!r}"
    )


def batch_norm_value(name, value):
    """`batch_norm_momentum` or `batch_norm_epsilon`: a float in (0, 1)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = None
    if value is None or not 0.0 < value < 1.0:
        raise ValueError(
            f"`{name}` must be a float in (0, 1). Received: {name}={value!r}"
        )
    return value


def hidden_channels(channels, reduction_ratio, min_hidden_channels, layer_name="BAM"):
    """Width of the bottleneck inside each gate.

    `channels // reduction_ratio`, as the paper and the authors' code compute
    it, but never below `min_hidden_channels` (and never above `channels`);
    `min_hidden_channels=None` applies no floor. Raises a ValueError when
    the width comes out as 0.
    """
    hidden = channels // reduction_ratio
    if min_hidden_channels is not None:
        hidden = max(hidden, min(min_hidden_channels, channels))
    if hidden == 0:
        raise ValueError(
            f"{layer_name} on a feature map with {channels} channels and "
            f"reduction_ratio={reduction_ratio} has channels // reduction_ratio "
            f"= 0 hidden channels (min_hidden_channels={min_hidden_channels!r} "
            "sets no floor). Use a reduction_ratio of at most "
            f"{channels}, or set min_hidden_channels (e.g. "
            "min_hidden_channels=1) to keep at least that many hidden channels.")
    return hidden


def feature_channels(layer, input_shape):
    """Checks a 4-D input shape and returns its (known) channel count."""
    shape = tuple(input_shape)
    if len(shape) != 4:
        raise ValueError(
            f"{layer.__class__.__name__} expects a 4-D feature map "
            f"(batch, height, width, channels) for data_format='channels_last' "
            f"or (batch, channels, height, width) for 'channels_first'. "
            f"Received: input_shape={shape} (rank {len(shape)})"
        )
    channels = shape[-1] if layer.data_format == "channels_last" else shape[1]
    if channels is None:
        raise ValueError(
            f"{layer.__class__.__name__} needs the channel dimension to be "
            f"known when it is built (data_format={layer.data_format!r}). "
            f"Received: input_shape={shape}. Give the model an input with a "
            "fixed number of channels, e.g. keras.Input((None, None, 64))."
        )
    return int(channels)


def check_float_input(layer, inputs):
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if "float" not in dtype:
        raise ValueError(
            f"{layer.__class__.__name__} expects a floating-point feature map. "
            f"Received: inputs.dtype={dtype}. Cast the input first, e.g. "
            "keras.layers.Rescaling(1 / 255) for images stored as uint8."
        )
