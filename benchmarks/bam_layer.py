"""Speed of one keras_bam.BAM layer on CPU, at the paper's ResNet50 placements.

Prints two tables (one row per shape and mode; `--torch` adds a third):

1. BAM compiled as a plain `tf.function` (what Keras runs on CPU) and as
   `tf.function(jit_compile=True)` (XLA): median and p90 milliseconds per
   batch, images per second, and the XLA/plain time ratio. "fwd" is
   inference (training=False); "fwd+bwd" is training=True with the gradients
   with respect to the input and every trainable weight.
2. With `--torch`: `keras_bam.BAM(variant="official")` against a PyTorch BAM
   written here from the authors' description (docs/layers.md), both holding the
   same weights, with the Keras/PyTorch time ratio.

The compared functions run alternately (ABBA order) within one run, and each
ratio is the median of the per-round ratios, so that load from other
processes hits both sides alike. Numbers only: nothing passes or fails.

    python benchmarks/bam_layer.py [--quick] [--torch] [--json out/bam_layer.json]
"""

import argparse
import collections
import json
import os
import pathlib
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import measure, paired_ratio, summarize  # noqa: E402

import keras_bam  # noqa: E402

# (channels, height = width): after ResNet50's stages 1, 2 and 3 at 224x224.
PLACEMENTS = ((256, 56), (512, 28), (1024, 14))
QUICK_PLACEMENTS = ((64, 14), (128, 7))
MODES = ("fwd", "fwd+bwd")


# ---------------------------------------------------------------- Keras


def keras_step(layer, mode, jit_compile):
    """A compiled BAM call that returns NumPy arrays, so the work is done.

    np.asarray of a CPU tensor shares its buffer: no copy is timed.
    """
    weights = layer.trainable_weights

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return [layer(x, training=False)]

    @tf.function(jit_compile=jit_compile)
    def forward_backward(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, [x] + weights, output_gradients=dy)

    def run(x, dy):
        outputs = forward(x) if mode == "fwd" else forward_backward(x, dy)
        return [np.asarray(t) for t in outputs]

    return run


# ---------------------------------------------------------------- PyTorch


def torch_bam(channels, reduction_ratio=16, dilation_rate=4, num_dilated_convs=2):
    """The authors' BAM structure, written from docs/layers.md; NCHW.

    Channel: mean over H, W -> Linear -> BatchNorm1d -> ReLU -> Linear.
    Spatial: 1x1 conv -> BN -> ReLU -> n x [dilated 3x3 conv -> BN -> ReLU]
    -> 1x1 conv to one channel. Output x * (1 + sigmoid(channel * spatial)).
    Module names give the authors' state_dict keys, so the weights load
    into keras_bam.BAM(variant="official") with load_torch_weights.
    """
    import torch
    from torch import nn

    hidden = channels // reduction_ratio
    gate_c = nn.Sequential(collections.OrderedDict([
        ("gate_c_fc_0", nn.Linear(channels, hidden)),
        ("gate_c_bn_1", nn.BatchNorm1d(hidden)),
        ("gate_c_relu_1", nn.ReLU()),
        ("gate_c_fc_final", nn.Linear(hidden, channels)),
    ]))
    spatial = [
        ("gate_s_conv_reduce0", nn.Conv2d(channels, hidden, 1)),
        ("gate_s_bn_reduce0", nn.BatchNorm2d(hidden)),
        ("gate_s_relu_reduce0", nn.ReLU()),
    ]
    for i in range(num_dilated_convs):
        spatial += [
            (f"gate_s_conv_di_{i}", nn.Conv2d(
                hidden, hidden, 3, padding=dilation_rate, dilation=dilation_rate)),
            (f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden)),
            (f"gate_s_relu_di_{i}", nn.ReLU()),
        ]
    spatial.append(("gate_s_conv_final", nn.Conv2d(hidden, 1, 1)))

    class TorchBAM(nn.Module):
        def __init__(self):
            super().__init__()
            self.channel_att = nn.ModuleDict({"gate_c": gate_c})
            self.spatial_att = nn.ModuleDict(
                {"gate_s": nn.Sequential(collections.OrderedDict(spatial))}
            )

        def forward(self, x):
            c = self.channel_att["gate_c"](x.mean(dim=(2, 3)))
            s = self.spatial_att["gate_s"](x)
            return x * (1 + torch.sigmoid(c[:, :, None, None] * s))

    return TorchBAM()


def torch_step(module, mode):
    import torch

    params = list(module.parameters())
    module.train(mode != "fwd")

    def run(x, dy):
        if mode == "fwd":
            with torch.inference_mode():
                return [module(x).numpy()]
        x = x.detach().requires_grad_(True)
        grads = torch.autograd.grad(module(x), [x] + params, grad_outputs=dy)
        return [g.numpy() for g in grads]

    return run


# ---------------------------------------------------------------- benchmarks


def bench_xla(channels, size, args):
    """Plain tf.function vs XLA, the same layer and input, alternately."""
    rng = np.random.default_rng(args.seed)
    x = tf.constant(rng.standard_normal((args.batch_size, size, size, channels),
                                        dtype=np.float32))
    dy = tf.constant(rng.standard_normal(x.shape, dtype=np.float32))
    layer = keras_bam.BAM(variant=args.variant, dtype="float32")
    layer.build(x.shape)
    rows = []
    for mode in MODES:
        plain, xla = keras_step(layer, mode, False), keras_step(layer, mode, True)
        times = measure({"plain": lambda p=plain: p(x, dy), "xla": lambda f=xla: f(x, dy)},
                        args.warmup, args.repeats)
        rows.append({
            "table": "xla", "channels": channels, "size": size, "mode": mode,
            "plain": summarize(times["plain"], args.batch_size),
            "xla": summarize(times["xla"], args.batch_size),
            "ratio_xla_over_plain": paired_ratio(times["xla"], times["plain"]),
        })
    return rows


def bench_torch(channels, size, args):
    """keras_bam.BAM(variant="official") vs PyTorch, same weights, alternately."""
    import torch

    torch.manual_seed(args.seed)
    module = torch_bam(channels)
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch_size, channels, size, size), dtype=np.float32)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    x_torch, dy_torch = torch.from_numpy(x), torch.from_numpy(dy)
    x_tf = tf.constant(x.transpose(0, 2, 3, 1))
    dy_tf = tf.constant(dy.transpose(0, 2, 3, 1))

    # Same function, same weights: the comparison times the same work.
    layer = keras_bam.BAM(variant="official", min_hidden_channels=1, dtype="float32")
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    keras_bam.load_torch_weights(layer, state)
    module.eval()
    with torch.inference_mode():
        expected = module(x_torch).numpy().transpose(0, 2, 3, 1)
    max_abs_diff = float(np.max(np.abs(np.asarray(layer(x_tf)) - expected)))

    rows = []
    for mode in MODES:
        ours, theirs = keras_step(layer, mode, False), torch_step(module, mode)
        times = measure(
            {"keras": lambda f=ours: f(x_tf, dy_tf),
             "torch": lambda f=theirs: f(x_torch, dy_torch)},
            args.warmup, args.repeats)
        rows.append({
            "table": "torch", "channels": channels, "size": size, "mode": mode,
            "keras": summarize(times["keras"], args.batch_size),
            "torch": summarize(times["torch"], args.batch_size),
            "ratio_keras_over_torch": paired_ratio(times["keras"], times["torch"]),
            "eval_max_abs_diff": max_abs_diff,
        })
    return rows


# ---------------------------------------------------------------- report


def format_table(rows, names, ratio_key, ratio_label):
    header = f"{'C x H x W':<14}{'mode':<9}"
    for name in names:
        header += f"{name + ' ms':>12}{'p90':>9}{'img/s':>9}"
    lines = [header + f"{ratio_label:>14}"]
    for row in rows:
        shape = f"{row['channels']}x{row['size']}x{row['size']}"
        line = f"{shape:<14}{row['mode']:<9}"
        for name in names:
            stats = row[name]
            line += (f"{stats['median_ms']:>12.2f}{stats['p90_ms']:>9.2f}"
                     f"{stats['images_per_s']:>9.1f}")
        lines.append(line + f"{row[ratio_key]:>14.3f}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Times are per batch, float32, CPU; ratios are medians of "
               "per-round ratios between alternately run functions.")
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="images per batch (default 32; 4 with --quick)")
    parser.add_argument(
        "--repeats", type=int, default=None,
        help="timed calls of each function per shape and mode "
             "(default 20; 3 with --quick)")
    parser.add_argument(
        "--warmup", type=int, default=None,
        help="untimed calls first, at least 1, which traces and compiles "
             "(default 3; 2 with --quick)")
    parser.add_argument(
        "--quick", action="store_true",
        help="small shapes (64x14x14, 128x7x7), batch 4, few repeats: checks "
             "that the script works, in seconds; the numbers mean little")
    parser.add_argument(
        "--variant", default="paper", choices=keras_bam.layers.options.VARIANTS,
        help="BAM variant in the plain-vs-XLA table (default paper); the "
             "PyTorch comparison always uses 'official'")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="TensorFlow intra-op threads, and PyTorch's with --torch "
             "(default: the CPUs this process may use). On a machine busy "
             "with other work, PyTorch's OpenMP threads stall more than "
             "TensorFlow's pool; --threads 1 shows how much")
    parser.add_argument(
        "--torch", action="store_true",
        help="also compare BAM(variant='official') with a PyTorch BAM of the "
             "same structure and weights (needs `import torch` to work)")
    parser.add_argument(
        "--json", metavar="PATH", default=None,
        help="also write the results, every timing included, as JSON to PATH")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of inputs and weights (default 0)")
    args = parser.parse_args(argv)
    defaults = {"batch_size": (32, 4), "repeats": (20, 3), "warmup": (3, 2),
                "threads": (len(os.sched_getaffinity(0)),) * 2}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("batch_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1. "
                         f"Received: {getattr(args, name)}")
    if args.torch:
        try:
            import torch  # noqa: F401
        except ImportError as error:
            parser.error(f"--torch needs PyTorch, which does not import here "
                         f"({error}); install it (pip install torch) or leave "
                         "--torch out.")
    return args


def main(argv=None):
    args = parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.config.set_floatx("float32")
    environment = {
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "keras_bam": keras_bam.__version__,
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "threads": args.threads,
    }
    if args.torch:
        import torch

        torch.set_num_threads(args.threads)
        environment["torch"] = torch.__version__
    placements = QUICK_PLACEMENTS if args.quick else PLACEMENTS

    xla_rows = [row for c, s in placements for row in bench_xla(c, s, args)]
    torch_rows = []
    if args.torch:
        torch_rows = [row for c, s in placements for row in bench_torch(c, s, args)]

    print(", ".join(f"{k} {v}" for k, v in environment.items()))
    print(f"batch {args.batch_size}, float32, {args.repeats} timed calls after "
          f"{max(args.warmup, 1)} warm-up; ms per batch (median, p90)")
    print(f"\nBAM(variant={args.variant!r}): plain tf.function vs XLA "
          "(ratio < 1: XLA faster)")
    print(format_table(xla_rows, ("plain", "xla"), "ratio_xla_over_plain", "xla/plain"))
    if torch_rows:
        worst = max(row["eval_max_abs_diff"] for row in torch_rows)
        print("\nBAM(variant='official'), plain tf.function vs PyTorch eager "
              f"(same weights; eval outputs differ by at most {worst:.1e})")
        print(format_table(torch_rows, ("keras", "torch"),
                           "ratio_keras_over_torch", "keras/torch"))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "json"}
        path.write_text(json.dumps(
            {"config": config, "environment": environment,
             "results": xla_rows + torch_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
