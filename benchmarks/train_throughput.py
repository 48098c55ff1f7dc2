"""Training throughput (images/s) of BAM-ResNet50 against ResNet50.

Both models are built by the library (`keras.applications.ResNet50` and
`keras_bam.applications.BAMResNet50`, weights=None, 1000 classes) and
trained with `model.fit` on one synthetic batch that stays on the device,
so the figure is the model's step time and not the input pipeline's. The
two models are timed in alternation, several rounds each, after a warm-up
epoch that compiles the step; the report gives each model's median
images/s and the BAM/plain step-time ratio from the same run.

    python benchmarks/train_throughput.py --batch-size 256 --precision mixed_float16

Runs on any Keras 3 backend. On the JAX backend every training step is an
XLA computation; on TensorFlow `--jit-compile` asks for XLA. Prints a table
and, with `--json`, writes the numbers for the docs.
"""

import argparse
import json
import os
import statistics
import time

import keras
import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per model")
    parser.add_argument("--precision", default="mixed_float16",
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--jit-compile", action="store_true",
                        help="XLA on the TensorFlow backend (JAX always compiles)")
    parser.add_argument("--bam-variant", action="append", default=[], metavar="KEY=VALUE[,...]",
                        help="also time BAM-ResNet50 with these BAM options, e.g. "
                             "dilation_rate=1 or use_spatial_gate=False (repeatable)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    for name in ("batch_size", "image_size", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        args.bam_variant = [_parse_options(spec) for spec in args.bam_variant]
    except ValueError as error:
        parser.error(str(error))
    return args


def _parse_options(spec):
    options = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--bam-variant expects KEY=VALUE, received {item!r}")
        options[key.strip()] = {"True": True, "False": False}.get(value) if value in (
            "True", "False") else (int(value) if value.isdigit() else value)
    return options


def build_models(image_size, bam_variants=()):
    import keras_bam

    shape = (image_size, image_size, 3)
    keras.utils.set_random_seed(0)
    plain = keras.applications.ResNet50(weights=None, input_shape=shape, classes=1000)
    keras.utils.set_random_seed(0)
    bam = keras_bam.applications.BAMResNet50(weights=None, input_shape=shape, classes=1000)
    models = {"resnet50": plain, "bam_resnet50": bam}
    for options in bam_variants:
        keras.utils.set_random_seed(0)
        label = ",".join(f"{k}={v}" for k, v in options.items())
        models[f"bam_resnet50[{label}]"] = keras_bam.applications.BAMResNet50(
            weights=None, input_shape=shape, classes=1000, **options)
    return models


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # The epoch's logs are concrete numbers here, so the device has
        # finished every step of the epoch.
        self.seconds.append(time.perf_counter() - self._start)


def synthetic_batches(batch_size, image_size):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, 1000, (batch_size,)).astype("int32")
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    while True:
        yield x, y


def main(argv=None):
    args = parse_args(argv)
    keras.mixed_precision.set_global_policy(args.precision)
    models = build_models(args.image_size, args.bam_variant)
    timers = {}
    for name, model in models.items():
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False),
            jit_compile=True if args.jit_compile else "auto",
        )
        timers[name] = _EpochTimer()
        start = time.perf_counter()
        model.fit(synthetic_batches(args.batch_size, args.image_size),
                  steps_per_epoch=3, epochs=1, verbose=0)
        print(f"{name}: warm-up (compile) {time.perf_counter() - start:.1f} s", flush=True)
    for _ in range(args.rounds):
        for name, model in models.items():
            model.fit(synthetic_batches(args.batch_size, args.image_size),
                      steps_per_epoch=args.steps, epochs=1, verbose=0,
                      callbacks=[timers[name]])
    results = {
        "backend": keras.backend.backend(),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "models": {},
    }
    for name, timer in timers.items():
        step = statistics.median(timer.seconds) / args.steps
        results["models"][name] = {
            "params": models[name].count_params(),
            "step_ms": 1e3 * step,
            "images_per_s": args.batch_size / step,
            "round_seconds": timer.seconds,
        }
    plain_ms = results["models"]["resnet50"]["step_ms"]
    for row in results["models"].values():
        row["step_time_over_plain"] = row["step_ms"] / plain_ms
    ratio = results["models"]["bam_resnet50"]["step_time_over_plain"]
    results["bam_over_plain_step_time"] = ratio
    print(f"backend {results['backend']}, {args.precision}, batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}")
    width = max(len(name) for name in results["models"]) + 2
    print(f"{'model':<{width}}{'params':>12}{'step ms':>10}{'images/s':>10}{'x plain':>9}")
    for name, row in results["models"].items():
        print(f"{name:<{width}}{row['params']:>12,}{row['step_ms']:>10.1f}"
              f"{row['images_per_s']:>10.0f}{row['step_time_over_plain']:>9.3f}")
    print(f"BAM/plain step time: {ratio:.3f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
