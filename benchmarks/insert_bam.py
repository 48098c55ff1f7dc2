"""What BAM costs in a whole network: latency against MACs, float32, CPU.

For each backbone, the `keras.applications` model and the same model through
`keras_bam.insert_bam` (the paper's placement) run inference alternately
(ABBA order) within one run, each in a plain `tf.function`. Printed per
backbone and batch size: median and p90 milliseconds per batch, the
latency ratio (BAM / plain, median of per-round ratios) and the MAC ratio
from `keras_bam.cost_report`. The paper's goal for BAM is an overhead in
time of the same order as in MACs. Numbers only: nothing passes or fails.

    python benchmarks/insert_bam.py [--quick] [--json out/insert_bam.json]
"""

import argparse
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

BACKBONES = ("ResNet50", "MobileNetV2")


def compiled(model, jit_compile=False):
    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return model(x, training=False)

    return lambda x: np.asarray(forward(x))


def bench(backbone, size, batch_sizes, args):
    plain = getattr(keras.applications, backbone)(
        weights=None, input_shape=(size, size, 3))
    with_bam = keras_bam.insert_bam(plain, variant=args.variant)
    report = keras_bam.cost_report(with_bam)
    run_plain, run_bam = (compiled(plain, args.jit_compile),
                          compiled(with_bam, args.jit_compile))
    rng = np.random.default_rng(args.seed)
    rows = []
    for batch_size in batch_sizes:
        x = tf.constant(rng.uniform(0, 255, (batch_size, size, size, 3)),
                        dtype="float32")
        times = measure({"plain": lambda x=x: run_plain(x),
                         "bam": lambda x=x: run_bam(x)},
                        args.warmup, args.repeats)
        rows.append({
            "backbone": backbone, "size": size, "batch_size": batch_size,
            "plain": summarize(times["plain"], batch_size),
            "bam": summarize(times["bam"], batch_size),
            "latency_ratio": paired_ratio(times["bam"], times["plain"]),
            "mac_ratio": report.mac_ratio,
            "param_ratio": report.param_ratio,
            "bam_layers": [b.anchor for b in report.bams],
        })
    return rows


def format_table(rows):
    lines = [f"{'backbone':<13}{'input':>7}{'batch':>7}{'plain ms':>11}"
             f"{'p90':>9}{'BAM ms':>11}{'p90':>9}{'time ratio':>12}"
             f"{'MAC ratio':>11}{'time/MAC overhead':>19}"]
    for row in rows:
        time_overhead = row["latency_ratio"] - 1
        mac_overhead = row["mac_ratio"] - 1
        lines.append(
            f"{row['backbone']:<13}{row['size']:>7}{row['batch_size']:>7}"
            f"{row['plain']['median_ms']:>11.2f}{row['plain']['p90_ms']:>9.2f}"
            f"{row['bam']['median_ms']:>11.2f}{row['bam']['p90_ms']:>9.2f}"
            f"{row['latency_ratio']:>12.3f}{row['mac_ratio']:>11.3f}"
            f"{time_overhead / mac_overhead:>19.2f}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Ratios are medians of per-round ratios between alternately "
               "run models; 'time/MAC overhead' is (time ratio - 1) / "
               "(MAC ratio - 1), about 2 or less is the goal.")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES),
                        choices=keras_bam.applications.BACKBONES,
                        help="keras.applications models (default: ResNet50 "
                             "MobileNetV2)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                        help="default 1 32; 1 2 with --quick")
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (default 224; 64 with "
                             "--quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls of each model (default 30; 3 with "
                             "--quick)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed calls first, at least 1 (default 3)")
    parser.add_argument("--variant", default="paper",
                        choices=keras_bam.layers.options.VARIANTS,
                        help="BAM variant (default paper)")
    parser.add_argument("--quick", action="store_true",
                        help="64x64 inputs, batch 1 and 2, 3 repeats: checks "
                             "that the script works; the numbers mean little")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the results as JSON to PATH")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile both models with XLA (fuses BAM's "
                             "element-wise tail into one pass)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, full, quick in (("batch_sizes", [1, 32], [1, 2]),
                              ("size", 224, 64), ("repeats", 30, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.batch_sizes) < 1 or args.repeats < 1 or args.size < 32:
        parser.error("--batch-sizes and --repeats must be >= 1 and --size "
                     f">= 32. Received: {args.batch_sizes}, {args.repeats}, "
                     f"{args.size}")
    return args


def main(argv=None):
    args = parse_args(argv)
    environment = {
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "keras_bam": keras_bam.__version__,
        "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
    }
    rows = [row for backbone in args.backbones
            for row in bench(backbone, args.size, args.batch_sizes, args)]
    print(", ".join(f"{k} {v}" for k, v in environment.items()))
    print(f"float32 inference, {args.repeats} timed calls after "
          f"{max(args.warmup, 1)} warm-up{', XLA' if args.jit_compile else ''}; "
          "ms per batch (median, p90); "
          f"BAM(variant={args.variant!r}) at keras_bam.find_bottlenecks")
    print(format_table(rows))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "json"}
        path.write_text(json.dumps(
            {"config": config, "environment": environment, "results": rows},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
