"""int8 TFLite with and without BAM: latency in LiteRT + XNNPACK, file size.

For each backbone, `keras.applications.<backbone>` and the same model through
`keras_bam.insert_bam` are converted to full-integer int8 with a batch-1
signature (calibrated on the embedded digits, upsampled to the input size;
random weights, as nothing can be downloaded here: latency and size do not
depend on the weights' values), checked with XNNPACK in a child process, and
then run alternately (ABBA order) in one process with the XNNPACK delegate,
with 1 thread and with every core. Printed: median and p90 ms, the latency
ratio (BAM / plain, median of per-round ratios), the MAC ratio from
`keras_bam.cost_report`, and each file's size against its float32 export.
Numbers only: nothing passes or fails.

    python benchmarks/tflite_latency.py [--backbones ResNet50 MobileNetV2] [--quick]
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
from keras_bam.data import load_digits  # noqa: E402
from keras_bam.export import to_tflite, xnnpack_check  # noqa: E402


def calibration_images(size, count):
    (x, _), _ = load_digits(image_size=32, channels=3)
    return tf.image.resize(x[:count] * 255.0, (size, size)).numpy()


def interpreter(content, threads):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content, num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return runner.invoke


def bench(backbone, args):
    plain = getattr(keras.applications, backbone)(
        weights=None, input_shape=(args.size, args.size, 3))
    with_bam = keras_bam.insert_bam(plain, variant=args.variant)
    mac_ratio = keras_bam.cost_report(with_bam).mac_ratio
    samples = calibration_images(args.size, args.calibration_samples)
    files, rows = {}, []
    for name, model in (("plain", plain), ("bam", with_bam)):
        content = to_tflite(model, "int8", representative_data=samples)
        check = xnnpack_check(content)
        if not check["ok"]:
            raise SystemExit(f"{backbone} {name}: XNNPACK refused the file: "
                             f"{check['error']}")
        files[name] = {"int8_bytes": len(content),
                       "float32_bytes": len(to_tflite(model, "float32")),
                       "partitions": check["partitions"],
                       "undelegated_ops": check["undelegated_ops"],
                       "content": content}
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        run = {name: interpreter(f["content"], threads) for name, f in files.items()}
        times = measure(run, args.warmup, args.repeats)
        rows.append({
            "backbone": backbone, "size": args.size, "threads": threads,
            "plain": summarize(times["plain"], 1),
            "bam": summarize(times["bam"], 1),
            "latency_ratio": paired_ratio(times["bam"], times["plain"]),
            "mac_ratio": mac_ratio,
            "files": {name: {k: v for k, v in f.items() if k != "content"}
                      for name, f in files.items()},
        })
    return rows


def format_table(rows):
    lines = [f"{'backbone':<13}{'input':>6}{'threads':>8}{'plain ms':>10}"
             f"{'p90':>8}{'BAM ms':>10}{'p90':>8}{'time ratio':>12}"
             f"{'MAC ratio':>11}{'BAM int8 KiB':>14}{'x float32':>11}"]
    for row in rows:
        bam = row["files"]["bam"]
        lines.append(
            f"{row['backbone']:<13}{row['size']:>6}{row['threads']:>8}"
            f"{row['plain']['median_ms']:>10.2f}{row['plain']['p90_ms']:>8.2f}"
            f"{row['bam']['median_ms']:>10.2f}{row['bam']['p90_ms']:>8.2f}"
            f"{row['latency_ratio']:>12.3f}{row['mac_ratio']:>11.3f}"
            f"{bam['int8_bytes'] / 1024:>14,.0f}"
            f"{bam['int8_bytes'] / bam['float32_bytes']:>11.3f}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["ResNet50"],
                        choices=keras_bam.applications.BACKBONES,
                        help="keras.applications models (default ResNet50)")
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (default 224; 64 with "
                             "--quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of each file per thread count "
                             "(default 100; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-samples", type=int, default=None,
                        help="default 100; 8 with --quick")
    parser.add_argument("--variant", default="paper",
                        choices=keras_bam.layers.options.VARIANTS)
    parser.add_argument("--quick", action="store_true",
                        help="64x64 inputs and few runs: checks the script")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    for name, full, quick in (("size", 224, 64), ("repeats", 100, 5),
                              ("calibration_samples", 100, 8)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv=None):
    args = parse_args(argv)
    environment = {"python": platform.python_version(),
                   "tensorflow": tf.__version__, "keras": keras.__version__,
                   "machine": platform.machine(),
                   "cpus": len(os.sched_getaffinity(0))}
    rows = [row for backbone in args.backbones for row in bench(backbone, args)]
    print(", ".join(f"{k} {v}" for k, v in environment.items()))
    print(f"int8 TFLite, batch 1, LiteRT + XNNPACK, {args.repeats} alternating "
          f"runs after {args.warmup} warm-up; ms (median, p90)")
    print(format_table(rows))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": vars(args), "environment": environment,
                                    "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
