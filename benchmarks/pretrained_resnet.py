"""The authors' BAM-ResNet50 checkpoint to Keras and int8 TFLite: time, size, latency.

1. A checkpoint of their ImageNet ResNet-50 + BAM is written the way their
   training script writes one (the whole dict with state_dict, epoch, arch,
   best_prec1, optimizer; names prefixed `module.`; PyTorch's legacy
   serialization), with random weights: nothing can be downloaded here, and
   neither time nor size depends on the values.
2. `keras_bam.from_torch_checkpoint` converts it, timed (median of runs).
3. The converted model and the same network without BAM (the checkpoint's
   other tensors) are exported with `keras_bam.export.export_tflite` to
   full-integer int8 with a batch-1 signature, calibrated on the embedded
   digits upsampled to the input size, every check on but the top-1
   agreement, which random weights make meaningless (printed only).
4. Both files run alternately (ABBA order) in one process with LiteRT +
   XNNPACK, 1 thread and every core; the latency ratio is the median of
   per-round ratios.
Numbers only: nothing passes or fails. Needs torch.

    python benchmarks/pretrained_resnet.py [--quick] [--json out/pretrained_resnet.json]
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import measure, paired_ratio, summarize  # noqa: E402

import keras_bam  # noqa: E402
from keras_bam.data import load_digits  # noqa: E402
from keras_bam.export import export_tflite  # noqa: E402
from keras_bam.export.images import ImageSet  # noqa: E402


def write_checkpoint(path, seed):
    """Random weights of ResidualNet('ImageNet', 50, 1000, 'BAM'), saved as
    their train_imagenet.py saves (PyTorch 0.4's legacy format)."""
    import torch

    keras.utils.set_random_seed(seed)
    state_dict = keras_bam.to_torch_state_dict(keras_bam.applications.ResidualNet50())
    # Random values scaled so that activations stay of order one in eval mode
    # (as after training), not Keras' initial values with random statistics,
    # whose activations grow through the network.
    rng = np.random.default_rng(seed)
    for key, value in state_dict.items():
        field = key.rsplit(".", 1)[1]
        if field == "num_batches_tracked":
            continue
        if field in ("running_mean", "bias"):
            value = rng.normal(0, 0.1, value.shape)
        elif field == "running_var":
            value = rng.uniform(0.5, 1.5, value.shape)
        elif value.ndim == 1:  # a batch norm's weight
            value = rng.uniform(0.4, 1.0, value.shape)
        else:  # (out, in, ...) convolution or linear weight
            value = rng.normal(0, 1 / np.sqrt(np.prod(value.shape[1:])), value.shape)
        state_dict[key] = value.astype("float32")
    torch.save({"epoch": 90, "arch": "resnet",
                "state_dict": {"module." + k: torch.from_numpy(v)
                               for k, v in state_dict.items()},
                "best_prec1": torch.tensor(76.86),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.001}]}},
               path, _use_new_zipfile_serialization=False)
    return state_dict


def digits(size, count, offset=0):
    (x, y), _ = load_digits(image_size=32, channels=3)
    images = tf.image.resize(x[offset:offset + count] * 255.0, (size, size)).numpy()
    return ImageSet(np.clip(images, 0, 255), y[offset:offset + count], None, "digits")


def interpreter(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return runner.invoke


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (default 224; 64 with --quick)")
    parser.add_argument("--conversions", type=int, default=3,
                        help="timed checkpoint conversions (default 3)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of each file per thread count "
                             "(default 50; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-samples", type=int, default=None,
                        help="default 100; 8 with --quick")
    parser.add_argument("--quick", action="store_true", help="checks the script")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    for name, full, quick in (("size", 224, 64), ("repeats", 50, 5),
                              ("calibration_samples", 100, 8)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick:
        args.conversions = 1

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = os.path.join(folder, "RESNET50_IMAGENET_BAM_best.pth.tar")
        state_dict = write_checkpoint(checkpoint, args.seed)
        results["checkpoint_mib"] = os.path.getsize(checkpoint) / 2**20
        shape = (args.size, args.size, 3)
        seconds = []
        for _ in range(args.conversions):
            keras.utils.clear_session()
            start = time.perf_counter()
            with_bam = keras_bam.from_torch_checkpoint(checkpoint, input_shape=shape)
            seconds.append(time.perf_counter() - start)
        results["conversion_s"] = seconds
        plain = keras_bam.from_torch_checkpoint(
            {k: v for k, v in state_dict.items() if not k.startswith("bam")},
            input_shape=shape)

        calibration = digits(args.size, args.calibration_samples)
        held_out = digits(args.size, 64, offset=args.calibration_samples)
        files = {}
        for name, model in (("plain", plain), ("bam", with_bam)):
            path = os.path.join(folder, f"{name}.tflite")
            start = time.perf_counter()
            # Random weights give near-equal logits, whose top-1 int8 flips
            # easily: agreement is printed, not required (min_agreement=0).
            # Every other check (XNNPACK, every op int8, scales) applies.
            report = export_tflite(model, path, calibration=calibration,
                                   held_out=held_out, latency_runs=0,
                                   min_agreement=0.0)
            files[name] = {
                "path": path,
                "export_s": time.perf_counter() - start,
                "int8_bytes": report.size_bytes,
                "float32_bytes": report.float32_size_bytes,
                "xnnpack_partitions": report.xnnpack_partitions,
                "top1_agreement": report.agreement.top1_agreement,
                "trainable_parameters": sum(int(np.prod(w.shape))
                                            for w in model.trainable_weights),
            }
        results["latency"] = []
        for threads in sorted({1, len(os.sched_getaffinity(0))}):
            runs = {name: interpreter(f["path"], threads) for name, f in files.items()}
            times = measure(runs, args.warmup, args.repeats)
            results["latency"].append({
                "threads": threads,
                "plain": summarize(times["plain"], 1),
                "bam": summarize(times["bam"], 1),
                "ratio": paired_ratio(times["bam"], times["plain"]),
            })
        for f in files.values():
            del f["path"]
        results["files"] = files

    environment = {"python": platform.python_version(), "tensorflow": tf.__version__,
                   "keras": keras.__version__, "machine": platform.machine(),
                   "cpus": len(os.sched_getaffinity(0))}
    print(", ".join(f"{k} {v}" for k, v in environment.items()))
    print(f"checkpoint {results['checkpoint_mib']:.1f} MiB; from_torch_checkpoint "
          f"{np.median(seconds):.1f} s (median of {len(seconds)}: "
          + ", ".join(f"{s:.1f}" for s in seconds) + ")")
    print(f"{'int8, input ' + str(args.size):<22}{'params':>12}{'int8 KiB':>11}"
          f"{'x float32':>10}{'export s':>10}{'agreement':>11}")
    for name, f in files.items():
        print(f"{name:<22}{f['trainable_parameters']:>12,}{f['int8_bytes'] / 1024:>11,.0f}"
              f"{f['int8_bytes'] / f['float32_bytes']:>10.3f}{f['export_s']:>10.0f}"
              f"{f['top1_agreement']:>11.3f}")
    print(f"{'XNNPACK, batch 1':<22}{'plain ms':>12}{'p90':>8}{'BAM ms':>10}{'p90':>8}"
          f"{'ratio':>8}   ({args.repeats} alternating runs)")
    for row in results["latency"]:
        print(f"{str(row['threads']) + ' thread(s)':<22}{row['plain']['median_ms']:>12.1f}"
              f"{row['plain']['p90_ms']:>8.1f}{row['bam']['median_ms']:>10.1f}"
              f"{row['bam']['p90_ms']:>8.1f}{row['ratio']:>8.3f}")
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": vars(args), "environment": environment,
                                    "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
