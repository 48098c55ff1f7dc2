"""`python export/to_tflite.py`: a Keras BAM model in, a verified .tflite out.

With no arguments: trains the default model (a small CIFAR-style CNN with
BAM, on the embedded digits, see `default_model`), exports it to full-integer int8 and
prints the report. Exit codes: 0 written; 1 converted but rejected by a
check (nothing written); 2 bad input (one line on stderr, nothing written).
"""

import argparse
import os
import pathlib
import sys
import time

from keras_bam.export import images as image_sources
from keras_bam.qat import QATError  # imports neither tfmot nor tf_keras

QUANTIZATION_CHOICES = ("int8", "float16", "dynamic", "float32", "qat")
PREPROCESSING = {
    # Maps pixels in [0, 255] to what the model expects.
    "none": None,
    "mobilenet": (1 / 127.5, -1.0),  # [-1, 1], keras.applications MobileNets
    "unit": (1 / 255.0, 0.0),  # [0, 1]
}
DEFAULT_OUTPUT = "out/export/bam_small_cnn_digits_int8.tflite"
QAT_EPOCHS = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python export/to_tflite.py",
        description="Convert a Keras model with BAM to TFLite, check the file "
                    "against the float model (agreement, XNNPACK, float ops), "
                    "and write it only if it passes. Without --model, trains "
                    "a small BAM CNN on the embedded digits first.",
        epilog="Exit codes: 0 written; 1 rejected by a check (the report says "
               "why, nothing written); 2 bad input.")
    parser.add_argument(
        "--model", metavar="PATH.keras",
        help="the Keras model to export (.keras). It must take float32 pixels "
             "in [0, 255] (its preprocessing inside it) unless --preprocessing "
             "says otherwise. Default: train the default model")
    parser.add_argument(
        "--quantization", choices=QUANTIZATION_CHOICES, default="int8",
        help="int8: full integer, every op int8, calibrated on "
             "--representative-data (default); float16: float16 weights; "
             "dynamic: int8 weights, float activations; float32: no "
             "quantization; qat: full integer int8 after quantization-aware "
             "fine-tuning on --representative-data with "
             "tensorflow-model-optimization (pip install 'keras-bam[qat]'), "
             "in a child process on legacy Keras")
    parser.add_argument(
        "--representative-data", metavar="SOURCE",
        default=image_sources.EMBEDDED,
        help="images to calibrate on (training split) and to verify on "
             f"(held-out split): {image_sources.describe_sources()}. Default "
             f"'{image_sources.EMBEDDED}'")
    parser.add_argument(
        "--data-dir", metavar="DIR",
        help="tensorflow-datasets data directory for tfds:NAME sources")
    parser.add_argument(
        "--num-calibration-samples", type=int, default=500, metavar="N",
        help="calibration images for int8 (default 500); if an activation "
             "turns out constant, calibration is redone on all of them")
    parser.add_argument(
        "--input-type", choices=("int8", "uint8", "float32"), default=None,
        help="for int8: the file's input and output type. uint8 takes camera "
             "pixels 0..255 directly (scale 1, the model's preprocessing "
             "baked in); int8 is the default; float32 adds a QUANTIZE op at "
             "the input")
    parser.add_argument(
        "--preprocessing", choices=sorted(PREPROCESSING), default="none",
        help="bake a rescaling of [0, 255] pixels into the exported model: "
             "mobilenet ([-1, 1]) or unit ([0, 1]), for models trained on "
             "preprocessed inputs; none (default) when the model already "
             "takes pixels")
    parser.add_argument(
        "--output", metavar="PATH.tflite", default=DEFAULT_OUTPUT,
        help=f"where the .tflite goes (default {DEFAULT_OUTPUT})")
    parser.add_argument(
        "--report", metavar="PATH.json",
        help="also write the report as JSON (written even when rejected)")
    parser.add_argument(
        "--labels", metavar="PATH.txt",
        help="class names, one per line, in output order (default: beside "
             "the .tflite, NAME.labels.txt)")
    parser.add_argument(
        "--min-agreement", type=float, default=None, metavar="F",
        help="reject the file if its top-1 agreement with the float model is "
             "below F (default 0.99 for int8/dynamic, 0.999 for "
             "float16/float32)")
    parser.add_argument(
        "--dynamic-batch", action="store_true",
        help="unknown batch size in the signature instead of 1")
    parser.add_argument(
        "--latency-runs", type=int, default=50, metavar="N",
        help="timed batch-1 runs with 1 thread and with all cores (default "
             "50; 0 skips)")
    parser.add_argument(
        "--epochs", type=int, default=6,
        help="training epochs of the default model (default 6)")
    parser.add_argument(
        "--qat-epochs", type=int, default=QAT_EPOCHS, metavar="N",
        help="with --quantization qat: fine-tuning epochs on the training "
             f"split (default {QAT_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except _Usage as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


class _Usage(Exception):
    pass


def _run(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_bam.export import exporter

    for name in ("num_calibration_samples", "epochs", "qat_epochs"):
        if getattr(args, name) < 1:
            raise _Usage(f"--{name.replace('_', '-')} must be at least 1.")
    if args.min_agreement is not None and not 0 <= args.min_agreement <= 1:
        raise _Usage("--min-agreement must be between 0 and 1.")
    if args.quantization == "qat":
        from keras_bam import qat

        missing = qat.missing_requirements()
        if missing:
            raise _Usage(f"--quantization qat needs {' and '.join(missing)}, "
                         f"which are not installed: {qat.INSTALL_HINT}")
    start = time.perf_counter()
    model = _load_model(args.model) if args.model else None
    size, channels = _image_shape(model) if model is not None else (
        (32, 32), 3)
    try:
        calibration, held_out = image_sources.load_images(
            args.representative_data, size, channels, args.data_dir)
    except image_sources.ImageSourceError as error:
        raise _Usage(str(error)) from None
    if model is None:
        from keras_bam.export.default_model import train_default_model

        print(f"training the default model (BAM-SmallCNN) on "
              f"{len(calibration)} {calibration.source} images, "
              f"{args.epochs} epochs ...", flush=True)
        model = train_default_model(calibration, epochs=args.epochs,
                                    seed=args.seed)
    model = _with_preprocessing(model, args.preprocessing)
    labels_path = args.labels or _default_labels_path(args.output)
    options = dict(
        calibration=calibration, held_out=held_out, input_type=args.input_type,
        batch_size=None if args.dynamic_batch else 1,
        min_agreement=args.min_agreement, latency_runs=args.latency_runs,
        report_path=args.report,
        num_calibration_samples=args.num_calibration_samples)
    try:
        if args.quantization == "qat":
            report = _export_qat(model, args, options)
        else:
            report = exporter.export_tflite(
                model, args.output, quantization=args.quantization, **options)
    except exporter.ExportError as error:
        raise _Usage(str(error)) from None
    except QATError as error:  # not the user's input: a failed run
        print(f"error: quantization-aware training failed: {error}",
              file=sys.stderr)
        return 1
    except exporter.VerificationError as error:
        print(error.report)
        print(f"rejected: {error}. Nothing was written to {args.output}.",
              file=sys.stderr)
        return 1
    if calibration.class_names:
        exporter.write_atomically(
            labels_path, ("\n".join(calibration.class_names) + "\n").encode())
    print(report)
    if calibration.class_names:
        print(f"{'labels':<22}{labels_path}")
    print(f"{'total time':<22}{time.perf_counter() - start:.1f} s")
    return 0


def _export_qat(model, args, options):
    from keras_bam import qat

    if options["calibration"].labels is None:
        raise _Usage("--quantization qat fine-tunes on labelled images; "
                     f"'{args.representative_data}' has no labels.")
    print(f"quantization-aware training: {args.qat_epochs} epoch(s) on "
          f"{len(options['calibration'])} images, in a child process on "
          "legacy Keras ...", flush=True)
    options["input_type"] = options["input_type"] or "int8"
    report, _, _ = qat.export_qat(model, args.output, epochs=args.qat_epochs,
                                  seed=args.seed, **options)
    return report


def _load_model(path):
    import keras

    import keras_bam  # noqa: F401 - registers the BAM layers for loading

    if not os.path.isfile(path):
        raise _Usage(f"--model {path} does not exist. Give the path of a "
                     "model saved with model.save('NAME.keras').")
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - any reason it cannot load
        reason = str(error).strip().splitlines()
        raise _Usage(f"--model {path} cannot be loaded as a Keras model "
                     f"({reason[0] if reason else type(error).__name__}). Save "
                     "it with model.save('NAME.keras') from Keras 3.") from None
    _image_shape(model)
    return model


def _image_shape(model):
    shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else ()
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3, 4):
        raise _Usage(
            f"The model is not an image model with a fixed input size: its "
            f"input is {[tuple(t.shape) for t in model.inputs]}, expected one "
            "(batch, height, width, 1|3|4) input. Rebuild it with a fixed "
            "input_shape.")
    return shape[1:3], shape[3]


def _with_preprocessing(model, name):
    factors = PREPROCESSING[name]
    if factors is None:
        return model
    import keras

    inputs = keras.Input(model.inputs[0].shape[1:], name="pixels")
    x = keras.layers.Rescaling(*factors, name=f"{name}_preprocessing")(inputs)
    return keras.Model(inputs, model(x), name=model.name)


def _default_labels_path(output):
    path = pathlib.Path(output)
    return str(path.with_name(path.stem + ".labels.txt"))


if __name__ == "__main__":
    sys.exit(main())
