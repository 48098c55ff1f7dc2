"""`python export/to_tflite.py`: a Keras BAM model in, a verified .tflite out.

With no arguments: trains the default model (BAM-SmallCNN on the embedded
digits, `common.train_default_model`), exports it to full-integer int8 and
prints the report. With `--quantization qat` it fine-tunes with
quantization-aware training (`keras_bam.qat`, in a child process) and hands
the file to the same verification and write as every export
(`keras_bam.export.verify_and_write`). Exit codes: 0 written; 1 converted
but rejected by a check (nothing written); 2 bad input (one line on stderr,
nothing written).
"""

import argparse
import pathlib
import sys
import time

from keras_bam.commands import common, validate
from keras_bam.data.sources import DIGITS, describe_sources

QUANTIZATION_CHOICES = ("int8", "float16", "dynamic", "float32", "qat")
# Schemes of keras_bam.data.preprocessing the command offers: "caffe" is
# left out, as its BGR order cannot be baked in front of someone else's model.
PREPROCESSING_CHOICES = ("none", "unit", "tf", "mobilenet", "torch")
DEFAULT_OUTPUT = "out/export/bam_small_cnn_digits_int8.tflite"
DEFAULT_IMAGE_SIZE = (32, 32)
QAT_EPOCHS = 2
# A QAT file is compared with the fine-tuned float weights it came with; the
# fake quantization in training moves them, hence a looser minimum.
QAT_MIN_AGREEMENT = 0.98


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
        "--representative-data", metavar="SOURCE", default=DIGITS,
        help="images to calibrate on (training split) and to verify on "
             f"(held-out split): {describe_sources()}. Default '{DIGITS}'")
    parser.add_argument(
        "--data-dir", metavar="DIR",
        help="tensorflow-datasets data directory for tfds:NAME sources")
    parser.add_argument(
        "--image-view", choices=("auto", "center-crop", "resize"), default="auto",
        help="how --representative-data images become the model's input: "
             "center-crop resizes the shorter side to 256/224 of the input "
             "and takes the central crop (ImageNet's evaluation, as training "
             "evaluates photos); resize resizes straight, aspect not kept; "
             "auto (default): center-crop for photos (ImageNet-like datasets, "
             "images over 64 pixels), resize for the digits and CIFAR")
    parser.add_argument(
        "--num-calibration-samples", type=int, default=500, metavar="N",
        help="calibration images for int8 (default 500); if an activation "
             "turns out constant, calibration is redone on all of them")
    parser.add_argument(
        "--input-type", choices=("int8", "uint8", "float32"), default=None,
        help="for int8 and qat: the file's input and output type. uint8 (default) "
             "takes camera pixels 0..255 as they are (scale 1, the model's "
             "preprocessing baked in), as MediaPipe Tasks feeds them; int8 for "
             "runtimes that want int8 end to end (MediaPipe refuses it); "
             "float32 adds a QUANTIZE op at the input")
    parser.add_argument(
        "--preprocessing", choices=PREPROCESSING_CHOICES, default="none",
        help="bake a map of [0, 255] pixels into the exported model, for "
             "models trained on preprocessed inputs: unit ([0, 1]), tf or "
             "mobilenet ([-1, 1]), torch (ImageNet mean and std); none "
             "(default) when the model already takes pixels")
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
             f"float16/float32, {QAT_MIN_AGREEMENT} for qat)")
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
        "--save-model", metavar="PATH.keras",
        help="without --model: also save the default model it trains (Keras, "
             "float32, takes pixels 0..255, logits out), written only when the "
             "export passes, e.g. for --model, examples/visualize_attention.py "
             "or fine-tuning")
    parser.add_argument(
        "--qat-epochs", type=int, default=QAT_EPOCHS, metavar="N",
        help="with --quantization qat: fine-tuning epochs on the training "
             f"split (default {QAT_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--verbose", action="store_true",
                        help="show every library log line, TensorFlow's included")
    return parser


class _BadInput(Exception):
    pass


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    common.quiet_tensorflow()
    from keras_bam.data.sources import DataError
    from keras_bam.export.exporter import ExportError
    from keras_bam.qat import QATError

    flags = common.flag_names(parser)
    flags.update(calibration="--representative-data", held_out="--representative-data")
    try:
        # Before any work (nothing is written); the model it loaded is the one
        # exported, so a large .keras is read once.
        model = validate.export_inputs(args)
        with common.console(verbose=args.verbose):
            return _run(args, model)
    except (_BadInput, DataError, ExportError) as error:
        return common.bad_input(error, flags)
    except QATError as error:
        if error.usage:
            return common.bad_input(error, flags)
        print(f"error: quantization-aware training failed: {error}", file=sys.stderr)
        return common.REJECTED
    finally:
        # Output folders this export created stay only if it wrote into them.
        validate.remove_created_folders(args.output)


def _run(args, model=None):
    from keras_bam.data.images import load_images
    from keras_bam.data.preprocessing import with_preprocessing
    from keras_bam.export import exporter

    for name in ("num_calibration_samples", "epochs", "qat_epochs"):
        if getattr(args, name) < 1:
            raise _BadInput(f"--{name.replace('_', '-')} must be at least 1.")
    if args.latency_runs < 0:
        raise _BadInput("--latency-runs must be 0 or more.")
    if args.min_agreement is not None and not 0 <= args.min_agreement <= 1:
        raise _BadInput("--min-agreement must be between 0 and 1.")
    if args.quantization == "qat":
        from keras_bam.qat import INSTALL_HINT, missing_requirements

        missing = missing_requirements()
        if missing:
            raise _BadInput(f"--quantization qat needs {' and '.join(missing)}, "
                            f"which are not installed: {INSTALL_HINT}")
    if args.input_type not in (None, "float32") and args.quantization not in (
            "int8", "qat"):
        raise _BadInput(f"--input-type {args.input_type} needs --quantization int8 "
                        "or qat.")
    start = time.perf_counter()
    exporter.check_output_path(args.output)
    size, channels = _image_shape(model) if model is not None else (
        DEFAULT_IMAGE_SIZE, 3)
    calibration, held_out = load_images(args.representative_data, size, channels,
                                        args.data_dir,
                                        view=args.image_view.replace("-", "_"))
    about = {}
    if model is None:
        print(f"training the default model (BAM-SmallCNN) on {len(calibration)} "
              f"{calibration.source} images, {args.epochs} epochs ...", flush=True)
        model = common.train_default_model(calibration, epochs=args.epochs,
                                           seed=args.seed)
        from keras_bam.version import __version__

        # The file's metadata: this model is the project's, so are its fields.
        about = dict(
            name="BAM-SmallCNN digits",
            description=(f"SmallCNN with two BAMs (Bottleneck Attention Module, "
                         f"arXiv 1807.06514) trained {args.epochs} epochs on "
                         f"{calibration.source}; takes RGB pixels 0..255 at "
                         f"{size[0]} x {size[1]}, returns class probabilities."),
            version=f"keras_bam {__version__}", author="keras_bam",
            license="Apache-2.0")
    trained = model if args.model is None else None
    model = with_preprocessing(model, args.preprocessing)
    labels_path = args.labels or _default_labels_path(args.output)
    options = dict(held_out=held_out, batch_size=None if args.dynamic_batch else 1,
                   min_agreement=args.min_agreement, latency_runs=args.latency_runs,
                   report_path=args.report)
    try:
        if args.quantization == "qat":
            report = _export_qat(model, args, calibration, options, about)
        else:
            report = exporter.export_tflite(
                model, args.output, quantization=args.quantization,
                calibration=calibration, input_type=args.input_type,
                num_calibration_samples=args.num_calibration_samples, **about,
                **options)
    except exporter.VerificationError as error:
        print(error.report)
        print(f"rejected: {error}. Nothing was written to {args.output}.",
              file=sys.stderr)
        return common.REJECTED
    if calibration.class_names:
        from keras_bam.atomic import write_atomically

        write_atomically(labels_path, "\n".join(calibration.class_names) + "\n")
    if args.save_model:
        from keras_bam.atomic import save_model_atomically

        save_model_atomically(trained, args.save_model)
    print(report)
    if calibration.class_names:
        print(f"{'labels':<22}{labels_path}")
    if args.save_model:
        print(f"{'Keras model':<22}{args.save_model}")
    print(f"{'total time':<22}{time.perf_counter() - start:.1f} s")
    return common.OK


def _export_qat(model, args, calibration, options, about):
    """Quantization-aware training, then the same verification and write.

    The file is app-ready like a post-training int8 file: uint8 pixels in
    by default (the input's range fixed to 0..255 in training, so scale 1),
    a softmax appended where the model ends in logits (by the worker, with
    the exporter's `app.with_probabilities`, which also gives the model the
    file is compared with), metadata with the class names, and MediaPipe
    Tasks and LiteRT's CompiledModel among the checks.

    The report's `accuracy_comparison` holds, on the held-out images, the
    accuracy of the model as given ("float_before_qat"), of its
    post-training int8 file ("post_training_int8", calibrated and ending as
    `--quantization int8` would), of the fine-tuned weights ("model") and of
    the QAT file ("file").
    """
    import numpy as np

    from keras_bam.export import app, convert, exporter, litert, verify
    from keras_bam.qat import QATError, run_qat

    if calibration.labels is None:
        raise _BadInput("--quantization qat fine-tunes on labelled images; "
                        f"'{args.representative_data}' has no labels.")
    held_out = options["held_out"]
    input_type = args.input_type or "uint8"
    probe = calibration.images[:8]
    comparison = {}
    if held_out is not None and held_out.labels is not None:
        predictions = verify.keras_outputs(model, held_out.images)
        comparison["float_before_qat"] = float(
            np.mean(np.argmax(predictions, -1) == held_out.labels))
        classifier, _ = app.with_probabilities(model, probe)
        ptq = convert.to_tflite(
            classifier, "int8", representative_data=calibration.images[
                :args.num_calibration_samples], input_type=input_type)
        if litert.xnnpack_check(ptq)["ok"]:  # only a file that ran isolated
            comparison["post_training_int8"] = verify.compare(
                classifier, ptq, held_out.images, held_out.labels).tflite_accuracy
    print(f"quantization-aware training: {args.qat_epochs} epoch(s) on "
          f"{len(calibration)} images, in a child process on legacy Keras ...",
          flush=True)
    finetuned, content, details = run_qat(
        model, calibration.images, calibration.labels, epochs=args.qat_epochs,
        input_type=input_type, seed=args.seed)
    classifier, appended = app.with_probabilities(finetuned, probe)
    if appended != details["softmax_appended"]:
        raise QATError("the QAT file and the fine-tuned model disagree on whether "
                       "the output is logits (a softmax appended to one of them "
                       "only); please report this model", usage=False)
    if options["min_agreement"] is None:
        options = {**options, "min_agreement": QAT_MIN_AGREEMENT}
    fields = {**about} if about else {"name": model.name}
    if fields.get("description"):
        fields["description"] += (f" Fine-tuned {args.qat_epochs} epoch(s) with "
                                  "quantization-aware training.")
    return exporter.verify_and_write(
        classifier, content, args.output, quantization="int8",
        calibration_info={"source": calibration.source,
                          "quantization_aware_training": details},
        accuracy_comparison=comparison, labels=calibration.class_names,
        probabilities=appended or app.is_probability_output(finetuned, probe),
        metadata_fields=fields, softmax_appended=appended, source_model=finetuned,
        **options)


def _image_shape(model):
    shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else ()
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3):
        raise _BadInput(
            f"The model is not an image model with a fixed input size: its "
            f"input is {[tuple(t.shape) for t in model.inputs]}, expected one "
            "(batch, height, width, 1|3) input. Rebuild it with a fixed "
            "input_shape.")
    return shape[1:3], shape[3]


def _default_labels_path(output):
    path = pathlib.Path(output)
    return str(path.with_name(path.stem + ".labels.txt"))


if __name__ == "__main__":
    sys.exit(main())
