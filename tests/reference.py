"""NumPy (float64) references for BAM, written from the paper and the authors' code.

Nothing here calls keras_bam: the layers under test only lend their weights,
through `weights_of`, which copies them into plain dicts of NumPy arrays. The
hyper-parameters (variant, combine, dilation, ...) are the keyword arguments
the test gave the layer, resolved here with the defaults docs/layers.md states, so a
layer that mis-reads its own arguments disagrees with the reference.

Park et al., "BAM: Bottleneck Attention Module", BMVC 2018, arXiv 1807.06514:

    Mc(F) = BN(W1 ReLU(W0 AvgPool(F) + b0))              (eq. 2, no b1 before BN)
    Ms(F) = BN(f3_1x1(f2_3x3(f1_3x3(f0_1x1(F)))))        (eq. 3, BN + ReLU inside)
    F'    = F * (1 + act(combine(Mc, Ms)))               (eq. 1)

"official" follows the authors' MODELS/bam.py: every bias, BN + ReLU after the
first channel Linear and after every hidden conv, no BN at either branch end.
Batch norm's epsilon is `batch_norm_epsilon`, by default PyTorch's 1e-5.
"""

import numpy as np

EPSILON = 1e-5  # the layers' documented default, PyTorch's
DEFAULT_COMBINE = {"paper": "sum", "official": "product"}
ACTIVATIONS = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
}
COMBINATIONS = {"sum": np.add, "product": np.multiply, "max": np.maximum}


# ---------------------------------------------------------------- weights


def _array(variable):
    return np.asarray(variable.numpy(), dtype=np.float64)


def _conv(conv):
    bias = getattr(conv, "bias", None)
    return {
        "kernel": _array(conv.kernel),
        "bias": None if bias is None else _array(bias),
    }


def _bn(bn):
    if bn is None:
        return None
    return {
        "gamma": _array(bn.gamma),
        "beta": _array(bn.beta),
        "mean": _array(bn.moving_mean),
        "var": _array(bn.moving_variance),
    }


def _channel_weights(gate):
    return {
        "fc_0": _conv(gate.fc_0),
        "bn_0": _bn(gate.bn_0),
        "fc_final": _conv(gate.fc_final),
        "bn_final": _bn(gate.bn_final),
    }


def _spatial_weights(gate):
    return {
        "hidden": [
            (_conv(c), _bn(b)) for c, b in zip(gate.hidden_convs, gate.hidden_bns)
        ],
        "conv_final": _conv(gate.conv_final),
        "bn_final": _bn(gate.bn_final),
    }


def weights_of(layer):
    """Copies a built BAM, ChannelGate or SpatialGate's weights into dicts."""
    if hasattr(layer, "use_channel_gate"):  # BAM
        return {
            "channel": None
            if layer.channel_gate is None
            else _channel_weights(layer.channel_gate),
            "spatial": None
            if layer.spatial_gate is None
            else _spatial_weights(layer.spatial_gate),
        }
    if hasattr(layer, "fc_0"):
        return _channel_weights(layer)
    return _spatial_weights(layer)


# ---------------------------------------------------------------- primitives


def conv2d_same(x, kernel, bias=None, dilation=1):
    """NHWC stride-1 'same' convolution (cross-correlation), dilated by d.

    The dilated kernel spans (k - 1) * d + 1 pixels; 'same' pads (k - 1) * d
    zeros in total, the smaller half before (TensorFlow's convention).
    """
    kh, kw, _, out = kernel.shape
    n, h, w, _ = x.shape

    def pads(k):
        total = (k - 1) * dilation
        return total // 2, total - total // 2

    padded = np.pad(x, ((0, 0), pads(kh), pads(kw), (0, 0)))
    y = np.zeros((n, h, w, out))
    for a in range(kh):
        for b in range(kw):
            window = padded[:, a * dilation : a * dilation + h,
                            b * dilation : b * dilation + w]
            y += np.einsum("nhwi,io->nhwo", window, kernel[a, b])
    return y if bias is None else y + bias


def batch_norm(x, bn, epsilon, training):
    """Over the last axis; training uses the batch's mean and biased variance."""
    if training:
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = bn["mean"], bn["var"]
    return bn["gamma"] * (x - mean) / np.sqrt(var + epsilon) + bn["beta"]


def relu(x):
    return np.maximum(x, 0.0)


def hidden_width(channels, reduction_ratio, min_hidden_channels, variant="paper"):
    """C // r, raised to min(min_hidden_channels, C). min_hidden_channels=None
    is the layers' documented default: 8 for "paper", no floor for
    "official" (the authors' code computes C // r)."""
    if min_hidden_channels is None:
        min_hidden_channels = 8 if variant == "paper" else 0
    return max(channels // reduction_ratio, min(min_hidden_channels, channels))


def _check_kernel(conv, shape):
    assert conv["kernel"].shape == shape, (conv["kernel"].shape, shape)


def _bias(conv):
    """A bias the formula has: its absence is an error, not a zero."""
    assert conv["bias"] is not None, "the layer lacks a bias the formula has"
    return conv["bias"]


# ---------------------------------------------------------------- the gates (NHWC)


def _channel_logits(x, w, variant, training, hidden, eps):
    """(N, H, W, C) -> (N, 1, 1, C)."""
    c = x.shape[-1]
    _check_kernel(w["fc_0"], (1, 1, c, hidden))
    _check_kernel(w["fc_final"], (1, 1, hidden, c))
    pooled = x.mean(axis=(1, 2), keepdims=True)
    z = conv2d_same(pooled, w["fc_0"]["kernel"], _bias(w["fc_0"]))
    if variant == "official":
        # Linear -> BatchNorm1d -> ReLU -> Linear, every bias, no final BN.
        z = relu(batch_norm(z, w["bn_0"], eps, training))
        return conv2d_same(z, w["fc_final"]["kernel"], _bias(w["fc_final"]))
    # BN(W1 ReLU(W0 p + b0)): b1 would be cancelled by the BN, so none.
    z = conv2d_same(relu(z), w["fc_final"]["kernel"])
    return batch_norm(z, w["bn_final"], eps, training)


def _spatial_logits(x, w, variant, training, hidden, eps, dilation_rate,
                    num_dilated_convs):
    """(N, H, W, C) -> (N, H, W, 1)."""
    official = variant == "official"
    assert len(w["hidden"]) == 1 + num_dilated_convs
    in_channels = x.shape[-1]
    for i, (conv, bn) in enumerate(w["hidden"]):
        k, d = (1, 1) if i == 0 else (3, dilation_rate)
        _check_kernel(conv, (k, k, in_channels, hidden))
        bias = _bias(conv) if official else None
        x = relu(batch_norm(conv2d_same(x, conv["kernel"], bias, d), bn, eps,
                            training))
        in_channels = hidden
    _check_kernel(w["conv_final"], (1, 1, hidden, 1))
    if official:
        return conv2d_same(x, w["conv_final"]["kernel"], _bias(w["conv_final"]))
    return batch_norm(conv2d_same(x, w["conv_final"]["kernel"]),
                      w["bn_final"], eps, training)


# ---------------------------------------------------------------- public API


def _nhwc(x, data_format):
    return x.transpose(0, 2, 3, 1) if data_format == "channels_first" else x


def _back(x, data_format):
    return x.transpose(0, 3, 1, 2) if data_format == "channels_first" else x


def channel_gate(x, weights, training=False, variant="paper", data_format=None,
                 reduction_ratio=16, min_hidden_channels=None,
                 batch_norm_epsilon=EPSILON):
    x = _nhwc(np.asarray(x, np.float64), data_format)
    hidden = hidden_width(x.shape[-1], reduction_ratio, min_hidden_channels,
                          variant)
    logits = _channel_logits(x, weights, variant, training, hidden,
                             batch_norm_epsilon)
    return _back(logits, data_format)


def spatial_gate(x, weights, training=False, variant="paper", data_format=None,
                 reduction_ratio=16, min_hidden_channels=None, dilation_rate=4,
                 num_dilated_convs=2, batch_norm_epsilon=EPSILON):
    x = _nhwc(np.asarray(x, np.float64), data_format)
    hidden = hidden_width(x.shape[-1], reduction_ratio, min_hidden_channels,
                          variant)
    logits = _spatial_logits(x, weights, variant, training, hidden,
                             batch_norm_epsilon, dilation_rate,
                             num_dilated_convs)
    return _back(logits, data_format)


def bam(x, weights, training=False, variant="paper", data_format=None,
        reduction_ratio=16, min_hidden_channels=None, dilation_rate=4,
        num_dilated_convs=2, combine=None, gate_activation="sigmoid",
        use_channel_gate=True, use_spatial_gate=True,
        batch_norm_epsilon=EPSILON):
    """F * (1 + act(combine(Mc, Ms))); with one gate off, act of the other."""
    x = _nhwc(np.asarray(x, np.float64), data_format)
    hidden = hidden_width(x.shape[-1], reduction_ratio, min_hidden_channels,
                          variant)
    assert (weights["channel"] is not None) == use_channel_gate
    assert (weights["spatial"] is not None) == use_spatial_gate
    logits = []
    if use_channel_gate:
        logits.append(_channel_logits(x, weights["channel"], variant, training,
                                      hidden, batch_norm_epsilon))
    if use_spatial_gate:
        logits.append(_spatial_logits(x, weights["spatial"], variant, training,
                                      hidden, batch_norm_epsilon, dilation_rate,
                                      num_dilated_convs))
    if len(logits) == 2:
        merge = COMBINATIONS[combine or DEFAULT_COMBINE[variant]]
        logits = [merge(*logits)]
    return _back(x * (1.0 + ACTIVATIONS[gate_activation](logits[0])),
                 data_format)


# ---------------------------------------------------------------- the authors' module


def _torch_conv(x, weight, bias, dilation=1, padding=0):
    """nn.Conv2d forward: NCHW input, (out, in, kh, kw) weight, cross-correlation."""
    n, _, h, w = x.shape
    out, _, kh, kw = weight.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = h + 2 * padding - dilation * (kh - 1)
    ow = w + 2 * padding - dilation * (kw - 1)
    y = np.zeros((n, out, oh, ow))
    for a in range(kh):
        for b in range(kw):
            window = padded[:, :, a * dilation : a * dilation + oh,
                            b * dilation : b * dilation + ow]
            y += np.einsum("nchw,oc->nohw", window, weight[:, :, a, b])
    return y + bias[None, :, None, None]


def _torch_bn_eval(x, sd, name, eps=1e-5):
    """nn.BatchNorm1d/2d in eval mode, on axis 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    p = {k: np.asarray(sd[f"{name}.{k}"], np.float64).reshape(shape)
         for k in ("weight", "bias", "running_mean", "running_var")}
    return (p["weight"] * (x - p["running_mean"])
            / np.sqrt(p["running_var"] + eps) + p["bias"])


def torch_bam(x, state_dict, prefix="", num_dilated_convs=2, dilation_rate=4):
    """The authors' BAM.forward in eval mode, in PyTorch's layout.

    x is NCHW; state_dict maps the authors' parameter names (after `prefix`)
    to arrays. MODELS/bam.py pools with a kernel of size H, which is the mean
    over the map for the square inputs that code supports.
    """
    sd = {k[len(prefix):]: np.asarray(v, np.float64)
          for k, v in state_dict.items() if k.startswith(prefix)}
    x = np.asarray(x, np.float64)
    c, s = "channel_att.gate_c.gate_c_", "spatial_att.gate_s.gate_s_"

    pooled = x.mean(axis=(2, 3))  # avg_pool2d + Flatten: (N, C)
    z = pooled @ sd[c + "fc_0.weight"].T + sd[c + "fc_0.bias"]
    z = relu(_torch_bn_eval(z, sd, c + "bn_1"))
    channel = z @ sd[c + "fc_final.weight"].T + sd[c + "fc_final.bias"]
    channel = channel[:, :, None, None]

    y = _torch_conv(x, sd[s + "conv_reduce0.weight"], sd[s + "conv_reduce0.bias"])
    y = relu(_torch_bn_eval(y, sd, s + "bn_reduce0"))
    for i in range(num_dilated_convs):
        y = _torch_conv(y, sd[f"{s}conv_di_{i}.weight"], sd[f"{s}conv_di_{i}.bias"],
                        dilation=dilation_rate, padding=dilation_rate)
        y = relu(_torch_bn_eval(y, sd, f"{s}bn_di_{i}"))
    spatial = _torch_conv(y, sd[s + "conv_final.weight"], sd[s + "conv_final.bias"])

    return x * (1.0 + ACTIVATIONS["sigmoid"](channel * spatial))
