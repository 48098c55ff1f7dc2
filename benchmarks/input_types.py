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
ratios (median over rounds of per-round ratios) and differences: uint8 /
int8 input (the input QUANTIZE) and softmax / logits (the final SOFTMAX).
As whole-model differences drown in the noise of a shared machine, the two
ops are also timed alone, each in a tiny file against one without it.
Numbers only: nothing passes or fails.

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
        "uint8_minus_int8_ms": 1e3 * float(np.median(
            np.asarray(times["uint8 + softmax"]) - np.asarray(times["int8 + softmax"]))),
        "softmax_minus_logits_ms": 1e3 * float(np.median(
            np.asarray(times["uint8 + softmax"]) - np.asarray(times["uint8 + logits"]))),
        "softmax_over_logits": paired_ratio(times["uint8 + softmax"],
                                            times["uint8 + logits"]),
        "files": {name: {k: v for k, v in f.items() if k != "content"}
                  for name, f in files.items()},
    }


def op_costs(args):
    """The two ops alone, each as the difference between two tiny files that
    differ by that op only, timed alternately many times: a global average
    pool of one image with uint8 input (QUANTIZE to int8 first) and with
    int8 input; one int8 SOFTMAX over the classes and two in a row."""
    def tiny(shape, layers, input_type, samples):
        inputs = x = keras.Input(shape)
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
        return to_tflite(model, "int8", representative_data=samples, input_type=input_type)

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(8, args.size, args.size, 3)).astype(np.float32)
    logits = rng.normal(0, 4, size=(8, 1, 1, args.classes)).astype(np.float32)
    pool = keras.layers.GlobalAveragePooling2D
    files = {
        "pool, uint8 input": tiny(image.shape[1:], [pool()], "uint8", image),
        "pool, int8 input": tiny(image.shape[1:], [pool()], "int8", image),
        "SOFTMAX x1": tiny(logits.shape[1:], [keras.layers.Softmax()], "int8", logits),
        "SOFTMAX x2": tiny(logits.shape[1:], [keras.layers.Softmax(), keras.layers.Softmax()],
                           "int8", logits),
    }
    checks = {name: xnnpack_check(content) for name, content in files.items()}
    run = {name: interpreter(content, args.threads) for name, content in files.items()}
    times = {name: np.asarray(t) for name, t in measure(run, 50, args.op_repeats).items()}
    return {
        "input_quantize_us": 1e6 * float(np.median(
            times["pool, uint8 input"] - times["pool, int8 input"])),
        "softmax_us": 1e6 * float(np.median(times["SOFTMAX x2"] - times["SOFTMAX x1"])),
        "median_us": {name: 1e6 * float(np.median(t)) for name, t in times.items()},
        "ops": {name: inspect_tflite(content).op_counts for name, content in files.items()},
        "undelegated_ops": {name: c["undelegated_ops"] for name, c in checks.items()},
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
        lines.append(f"{'':<16}uint8 / int8 input: {row['uint8_over_int8']:.3f} "
                     f"({row['uint8_minus_int8_ms']:+.2f} ms); softmax / logits: "
                     f"{row['softmax_over_logits']:.3f} "
                     f"({row['softmax_minus_logits_ms']:+.2f} ms)")
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
    parser.add_argument("--classes", type=int, default=1000,
                        help="classes of the lone SOFTMAX (default 1000, as the models)")
    parser.add_argument("--op-repeats", type=int, default=2000,
                        help="timed rounds of the lone-op files")
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
    ops = op_costs(args)
    rows = [bench(backbone, args) for backbone in args.backbones]
    print(", ".join(f"{k} {v}" for k, v in environment.items()))
    print(f"int8 TFLite, batch 1, LiteRT + XNNPACK, {args.threads} thread(s), "
          f"{args.repeats} alternating rounds after {args.warmup} warm-up; ms")
    print(format_table(rows))
    print(f"The ops alone ({args.op_repeats} alternating rounds): input QUANTIZE of a "
          f"{args.size}x{args.size}x3 image {ops['input_quantize_us']:.1f} us, "
          f"int8 SOFTMAX over {args.classes} classes {ops['softmax_us']:.1f} us "
          f"(median paired differences); outside XNNPACK: "
          + "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in ops["undelegated_ops"].items()))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": vars(args), "environment": environment,
                                    "results": rows, "op_costs": ops}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
