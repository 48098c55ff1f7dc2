"""`python examples/classify.py IMAGE_OR_FOLDER...`: an exported file at work.

Classifies images with MediaPipe Tasks' `ImageClassifier`, the client an
app would use (through `keras_bam.export.clients.mediapipe_classify`, in a
child process), and prints the top-k class names with their probabilities
and the per-image latency. The class names come from the file's metadata.
Exit codes: 0 done; 1 MediaPipe refused the file; 2 bad input.
"""

import argparse
import os
import sys

from keras_bam.commands import common

DEFAULT_MODEL = "out/export/bam_small_cnn_digits_int8.tflite"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python examples/classify.py",
        description="Classify images with an exported .tflite file through "
                    "MediaPipe Tasks' ImageClassifier, as an app would: top-k "
                    "class names with probabilities, and the latency per image.",
        epilog="Exit codes: 0 done; 1 MediaPipe refused the file; 2 bad input.")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, or folders of them (.png, .jpg, ...)")
    parser.add_argument("--model", metavar="FILE.tflite", default=DEFAULT_MODEL,
                        help=f"the exported file (default {DEFAULT_MODEL}, what "
                             "`make export` writes)")
    parser.add_argument("--top-k", type=int, default=3, metavar="K",
                        help="classes shown per image (default 3)")
    parser.add_argument("--verbose", action="store_true",
                        help="show every library log line")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    common.quiet_tensorflow()
    try:
        with common.console(verbose=args.verbose):
            return _run(args)
    except (ValueError, OSError) as error:
        return common.bad_input(error, common.flag_names(parser))


def _image_paths(arguments):
    paths = []
    for argument in arguments:
        if os.path.isdir(argument):
            found = sorted(os.path.join(argument, name) for name in os.listdir(argument)
                           if name.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise ValueError(f"The folder {argument} holds no image "
                                 f"({', '.join(IMAGE_SUFFIXES)}).")
            paths.extend(found)
        elif os.path.isfile(argument):
            paths.append(argument)
        else:
            raise ValueError(f"{argument} is neither an image file nor a folder.")
    return paths


def _read_image(path, size):
    """The image as uint8 RGB, resized (bilinear) to the model's input size."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(rgb, np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} cannot be read as an image ({error}).") from None


def _run(args):
    from keras_bam.export import clients, litert

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1.")
    if not os.path.isfile(args.model):
        hint = (" Run `make export` (python export/to_tflite.py) first."
                if args.model == DEFAULT_MODEL else "")
        raise ValueError(f"--model {args.model} does not exist.{hint}")
    with open(args.model, "rb") as f:
        content = f.read()
    try:
        shape = litert.inspect_tflite(content).input_shapes[0]
    except Exception as error:  # noqa: BLE001 - any reason LiteRT cannot read it
        raise ValueError(f"--model {args.model} is not a .tflite file LiteRT can "
                         f"read ({str(error).strip().splitlines()[0]}).") from None
    paths = _image_paths(args.images)
    import numpy as np

    images = np.stack([_read_image(path, shape[1:3]) for path in paths])
    result = clients.mediapipe_classify(content, images)
    if not result.ok:
        print(f"error: MediaPipe Tasks refused {args.model}: {result.error}",
              file=sys.stderr)
        return common.REJECTED
    for path, scores, seconds in zip(paths, result.outputs, result.seconds):
        order = np.argsort(-scores)[:args.top_k]
        names = ", ".join(
            f"{result.category_names[i] or f'class {i}'} {scores[i]:.3f}" for i in order)
        print(f"{path}: {names}  ({1e3 * seconds:.2f} ms)")
    print(f"{len(paths)} image(s), median {1e3 * np.median(result.seconds):.2f} ms "
          "per image in MediaPipe Tasks' ImageClassifier")
    return common.OK


if __name__ == "__main__":
    sys.exit(main())
