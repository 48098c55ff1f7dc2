"""The convert-checkpoint command: the BAM authors' PyTorch checkpoint to a `.keras` model.

Run as `python examples/convert_checkpoint.py CHECKPOINT --output MODEL.keras`.
The work is in `keras_bam.torch_checkpoint.convert_checkpoint`; this module
parses the arguments, calls it and prints what it found. Exit codes: 0
written; 2 bad input (one line on stderr, nothing written).
"""

import argparse
import json
import logging
import sys
import time


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python examples/convert_checkpoint.py",
        description="Read the BAM authors' checkpoint (their ResidualNet with "
                    "BAM or without, ImageNet or CIFAR, depth 18/34/50/101; "
                    "reading .pth needs torch) or a .npz state dict, and save "
                    "the Keras model with its weights. The model takes float32 "
                    "RGB pixels 0..255 (their normalization inside; ImageNet "
                    "models expect the central 224x224 crop of the image "
                    "resized to 256) and returns logits.",
        epilog="Exit codes: 0 written; 2 bad input.")
    parser.add_argument("checkpoint", help="their .pth/.pth.tar file or a .npz state dict")
    parser.add_argument("--output", required=True, metavar="MODEL.keras",
                        help="where the Keras model goes (.keras)")
    parser.add_argument("--input-size", type=int, metavar="PIXELS",
                        help="square input size (default: 224 ImageNet, 32 CIFAR)")
    parser.add_argument("--classes", type=int, metavar="N",
                        help="a new, untrained classifier for N classes, for "
                             "fine-tuning (default: keep theirs)")
    parser.add_argument("--no-top", action="store_true",
                        help="drop the classifier: a feature extractor")
    parser.add_argument("--pooling", choices=("avg", "max"),
                        help="with --no-top: pool the features to a vector")
    parser.add_argument("--report", metavar="PATH.json",
                        help="also write what was found as JSON")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import numpy as np

    from keras_bam.commands import validate
    from keras_bam.torch_checkpoint import convert_checkpoint

    size = args.input_size
    start = time.perf_counter()
    try:
        validate.numbers(args, {"--input-size": (1,), "--classes": (1,)})
        # Found before the work, not after the model is saved.
        validate.output_file(args.output, "--output", create_folder=False)
        if args.report:
            validate.output_file(args.report, "--report", create_folder=False)
        if args.pooling and not args.no_top:
            raise ValueError("--pooling needs --no-top.")
        model, spec, metadata = convert_checkpoint(
            args.checkpoint, args.output, include_top=not args.no_top,
            input_shape=None if size is None else (size, size, 3),
            pooling=args.pooling, classes=args.classes)
    except (ValueError, TypeError, ImportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    report = {
        "checkpoint": args.checkpoint,
        "output": args.output,
        "network": f"ResidualNet-{spec.depth} {spec.network_type}",
        "attention": spec.attention or "none",
        "checkpoint_classes": spec.classes,
        "input_shape": list(model.input_shape[1:]),
        "output_shape": list(model.output_shape[1:]),
        "trainable_parameters": sum(int(np.prod(w.shape)) for w in model.trainable_weights),
        "seconds": round(seconds, 2),
        **{f"checkpoint_{k}": v for k, v in metadata.items()},
    }
    for key, value in report.items():
        print(f"{key:<22}{value}")
    if args.report:
        from keras_bam.atomic import write_atomically

        write_atomically(args.report, json.dumps(report, indent=1))
    return 0

