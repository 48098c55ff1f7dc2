"""What an app-ready int8 file costs: uint8 camera input, and a final softmax.

For each backbone, BAM-<backbone> (`keras_bam.applications`, random weights,
as nothing can be downloaded here: latency does not depend on the weights'
values) is converted three times to full-integer int8 with a batch-1
signature, calibrated on a few seeded random images in 0..255:

    uint8 + softmax   uint8 input and output, the model ends in a softmax
    int8 + softmax    int8 input and output (the graph inside is the same)
    uint8 + logits    uint8 input, classifier_activation=None

Each file goes through the XNNPACK check (child process: partitions, ops left
outside the delegate), then the three run alternately in one process with
the XNNPACK delegate and 1 thread. Printed: median and p90 ms, and two paired
ratios (median over rounds of per-round ratios): uint8 / int8 input (the
input QUANTIZE) and softmax / logits (the final SOFTMAX). Numbers only:
nothing passes or fails.

    python benchmarks/input_types.py [--backbones ResNet50 MobileNetV2] [--quick]
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
from keras_bam.export import inspect_tflite, to_tflite, xnnpack_check  # noqa: E402

VARIANTS = {  # name: (input type, classifier activation)
    "uint8 + softmax": ("uint8", "softmax"),
    "int8 + softmax": ("int8", "softmax"),
    "uint8 + logits": ("uint8", None),
}


def calibration_images(size, count, seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, size=(count, size, size, 3)).astype(np.float32)


def interpreter(content, threads):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content, num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    pixels = np.random.default_rng(1).integers(0, 256, detail["shape"])
    if detail["dtype"] == np.int8:
        pixels = pixels - 128
    runner.set_tensor(detail["index"], pixels.astype(detail["dtype"]))
    return runner.invoke


def bench(backbone, args):
    samples = calibration_images(args.size, args.calibration_samples)
    files = {}
    for name, (input_type, activation) in VARIANTS.items():
        keras.utils.set_random_seed(0)
        model = getattr(keras_bam.applications, f"BAM{backbone}")(
            weights=None, input_shape=(args.size, args.size, 3),
            classifier_activation=activation)
        content = to_tflite(model, "int8", representative_data=samples,
                            input_type=input_type)
        check = xnnpack_check(content)
        if not check["ok"]:
            raise SystemExit(f"{backbone} {name}: XNNPACK refused the file: "
                             f"{check['error']}")
        graph = inspect_tflite(content)
        files[name] = {
            "bytes": len(content),
            "partitions": check["partitions"],
            "undelegated_ops": dict(collections.Counter(check["undelegated_ops"])),
            "ops": graph.op_counts,
            "content": content,
        }
        del model
        keras.utils.clear_session()
    run = {name: interpreter(f["content"], args.threads) for name, f in files.items()}
    times = measure(run, args.warmup, args.repeats)
    return {
        "backbone": f"BAM-{backbone}", "size": args.size, "threads": args.threads,
        "variants": {name: summarize(times[name], 1) for name in files},
        "uint8_over_int8": paired_ratio(times["uint8 + softmax"], times["int8 + softmax"]),
        "softmax_over_logits": paired_ratio(times["uint8 + softmax"],
                                            times["uint8 + logits"]),
        "files": {name: {k: v for k, v in f.items() if k != "content"}
                  for name, f in files.items()},
    }


def format_table(rows):
    lines = [f"{'model':<16}{'variant':<17}{'ms':>9}{'p90':>9}{'partitions':>12}"
             f"  ops outside XNNPACK"]
    for row in rows:
        for name, timing in row["variants"].items():
            f = row["files"][name]
            outside = ", ".join(f"{op} x{n}" for op, n in f["undelegated_ops"].items())
            lines.append(f"{row['backbone']:<16}{name:<17}{timing['median_ms']:>9.2f}"
                         f"{timing['p90_ms']:>9.2f}{f['partitions']:>12}  {outside or '-'}")
        lines.append(f"{'':<16}uint8 / int8 input: {row['uint8_over_int8']:.3f}; "
                     f"softmax / logits: {row['softmax_over_logits']:.3f}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["ResNet50", "MobileNetV2"],
                        choices=["ResNet50", "MobileNetV2"])
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (default 224; 64 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds (default 60; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration-samples", type=int, default=8)
    parser.add_argument("--quick", action="store_true",
                        help="64x64 inputs and few rounds: checks the script")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    for name, full, quick in (("size", 224, 64), ("repeats", 60, 5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv=None):
    args = parse_args(argv)
    environment = {"python": platform.python_version(),
                   "tensorflow": tf.__version__, "keras": keras.__version__,
                   "machine": platform.machine(), "processor": platform.processor(),
                   "cpus": len(os.sched_getaffinity(0))}
    rows = [bench(backbone, args) for backbone in args.backbones]
    print(", ".join(f"{k} {v}" for k, v in environment.items()))
    print(f"int8 TFLite, batch 1, LiteRT + XNNPACK, {args.threads} thread(s), "
          f"{args.repeats} alternating rounds after {args.warmup} warm-up; ms")
    print(format_table(rows))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": vars(args), "environment": environment,
                                    "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
