"""NumPy (float64) forward pass of the BAM authors' ResNet, in eval mode.

Written from the description of their network (github.com/Jongchan/
attention-module, MODELS/model_resnet.py, as summarized in the project's
notes), in PyTorch's layout and vocabulary: NCHW tensors, (out, in, kh, kw)
convolution weights, `nn.Conv2d`'s symmetric zero padding, `nn.MaxPool2d`'s
-inf padding, `nn.AvgPool2d(k)` windows of k with stride k, then
`x.view(n, -1)` and `nn.Linear`. Nothing here calls keras_bam; the BAM
modules go through `reference.torch_bam`, itself written from their
MODELS/bam.py.

Their network:
- pixels -> [0, 1] -> (x - mean) / std with ImageNet's mean and std;
- ImageNet: conv1 7x7 stride 2 pad 3, bn1, ReLU, max pool 3x3 stride 2 pad 1;
  CIFAR: conv1 3x3 stride 1 pad 1, bn1, ReLU;
- layer1..layer4 of BasicBlock (depth 18, 34) or Bottleneck (50, 101,
  expansion 4) with 64, 128, 256, 512 planes and stride 1, 2, 2, 2 on the
  first block, whose stride sits on the 3x3 convolution; a block has a
  `downsample` (1x1 conv with the stride, then BN) when its stride is not 1
  or its input width differs from planes * expansion;
- bam1, bam2, bam3 on the outputs of layer1, layer2, layer3 (with "BAM");
- ImageNet: AvgPool2d(7); CIFAR: avg_pool2d(x, 4); flatten; fc.
No convolution has a bias; every BN has epsilon 1e-5.
"""

import numpy as np
import reference

ARCHITECTURES = {  # depth -> (bottleneck?, blocks per stage)
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
}
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
EPS = 1e-5


# ---------------------------------------------------------------- the layout


def layout(network_type, depth, classes, attention):
    """{parameter name: shape} of their network, in PyTorch's layout."""
    bottleneck, blocks = ARCHITECTURES[depth]
    expansion = 4 if bottleneck else 1
    shapes = {}

    def bn(name, n):
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{field}"] = (n,)
        shapes[f"{name}.num_batches_tracked"] = ()

    stem = 7 if network_type == "ImageNet" else 3
    shapes["conv1.weight"] = (64, 3, stem, stem)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), 1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            if bottleneck:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                for i, n in ((1, planes), (2, planes), (3, planes * 4)):
                    bn(f"{p}.bn{i}", n)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn1", planes)
                bn(f"{p}.bn2", planes)
            if stride != 1 or inplanes != planes * expansion:
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
        if attention == "BAM" and stage < 4:
            bam_layout(shapes, f"bam{stage}.", inplanes)
    shapes["fc.weight"] = (classes, 512 * expansion)
    shapes["fc.bias"] = (classes,)
    return shapes


def bam_layout(shapes, prefix, channels, reduction=16):
    """Their BAM(channels): hidden width channels // 16, every bias."""
    hidden = channels // reduction
    c = prefix + "channel_att.gate_c.gate_c_"
    s = prefix + "spatial_att.gate_s.gate_s_"
    shapes[c + "fc_0.weight"], shapes[c + "fc_0.bias"] = (hidden, channels), (hidden,)
    for field in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{c}bn_1.{field}"] = (hidden,)
    shapes[c + "bn_1.num_batches_tracked"] = ()
    shapes[c + "fc_final.weight"] = (channels, hidden)
    shapes[c + "fc_final.bias"] = (channels,)
    for conv, bn, k, n_in in (("conv_reduce0", "bn_reduce0", 1, channels),
                              ("conv_di_0", "bn_di_0", 3, hidden),
                              ("conv_di_1", "bn_di_1", 3, hidden)):
        shapes[f"{s}{conv}.weight"] = (hidden, n_in, k, k)
        shapes[f"{s}{conv}.bias"] = (hidden,)
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{s}{bn}.{field}"] = (hidden,)
        shapes[f"{s}{bn}.num_batches_tracked"] = ()
    shapes[s + "conv_final.weight"] = (1, hidden, 1, 1)
    shapes[s + "conv_final.bias"] = (1,)


def random_state_dict(rng, network_type, depth, classes, attention="BAM"):
    """Random weights and batch-norm statistics in their names and layouts.

    Scaled so that activations stay of order one through the network in
    eval mode (random running statistics, not the batch's).
    """
    state_dict = {}
    for name, shape in layout(network_type, depth, classes, attention).items():
        field = name.rsplit(".", 1)[1]
        if field == "num_batches_tracked":
            value = np.array(1000, np.int64)
        elif field == "running_mean":
            value = rng.normal(0.0, 0.1, shape)
        elif field == "running_var":
            value = rng.uniform(0.5, 1.5, shape)
        elif field == "bias":
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # a BN's weight (gamma)
            value = rng.uniform(0.4, 1.0, shape)
        else:  # conv (out, in, kh, kw) or linear (out, in)
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        state_dict[name] = value if value.dtype == np.int64 else value.astype(np.float32)
    return state_dict


# ---------------------------------------------------------------- the forward pass


def conv2d(x, weight, stride=1, padding=0):
    """nn.Conv2d(bias=False) forward, NCHW, cross-correlation."""
    weight = np.asarray(weight, np.float64)
    out, _, kh, kw = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # (n, c, oh, ow, kh, kw)
    y = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))  # (n, oh, ow, out)
    return y.transpose(0, 3, 1, 2)


def batch_norm(x, sd, name):
    """nn.BatchNorm2d in eval mode."""
    shape = (1, -1, 1, 1)
    p = {k: np.asarray(sd[f"{name}.{k}"], np.float64).reshape(shape)
         for k in ("weight", "bias", "running_mean", "running_var")}
    return p["weight"] * (x - p["running_mean"]) / np.sqrt(p["running_var"] + EPS) + p["bias"]


def relu(x):
    return np.maximum(x, 0.0)


def max_pool_3x3_s2_p1(x):
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
    return windows[:, :, ::2, ::2].max(axis=(4, 5))


def avg_pool(x, k):
    """F.avg_pool2d(x, k): windows of k x k, stride k, no padding."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return windows[:, :, ::k, ::k].mean(axis=(4, 5))


def _block(x, sd, p, bottleneck, stride):
    if bottleneck:
        y = relu(batch_norm(conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
        y = relu(batch_norm(conv2d(y, sd[f"{p}.conv2.weight"], stride, 1), sd, f"{p}.bn2"))
        y = batch_norm(conv2d(y, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
    else:
        y = relu(batch_norm(conv2d(x, sd[f"{p}.conv1.weight"], stride, 1), sd, f"{p}.bn1"))
        y = batch_norm(conv2d(y, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
    if f"{p}.downsample.0.weight" in sd:
        x = batch_norm(conv2d(x, sd[f"{p}.downsample.0.weight"], stride), sd,
                       f"{p}.downsample.1")
    return relu(y + x)


def forward(pixels_nhwc, sd, network_type, depth, attention="BAM"):
    """Their network's eval-mode logits for float pixels in [0, 255], NHWC."""
    bottleneck, blocks = ARCHITECTURES[depth]
    x = np.asarray(pixels_nhwc, np.float64) / 255.0
    x = ((x - MEAN) / STD).transpose(0, 3, 1, 2)  # ToTensor + Normalize, NCHW
    if network_type == "ImageNet":
        x = relu(batch_norm(conv2d(x, sd["conv1.weight"], 2, 3), sd, "bn1"))
        x = max_pool_3x3_s2_p1(x)
    else:
        x = relu(batch_norm(conv2d(x, sd["conv1.weight"], 1, 1), sd, "bn1"))
    for stage, count in enumerate(blocks, 1):
        for b in range(count):
            stride = 2 if stage > 1 and b == 0 else 1
            x = _block(x, sd, f"layer{stage}.{b}", bottleneck, stride)
        if attention == "BAM" and stage < 4:
            x = reference.torch_bam(x, sd, prefix=f"bam{stage}.")
    x = avg_pool(x, 7 if network_type == "ImageNet" else 4)
    x = x.reshape(x.shape[0], -1)
    return x @ np.asarray(sd["fc.weight"], np.float64).T + sd["fc.bias"]
