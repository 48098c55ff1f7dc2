"""`python examples/visualize_attention.py`: where each BAM looks, M(F) of
every BAM as a heatmap over the image (the paper's Figure 1).

Without --model it trains the export command's default model (BAM-SmallCNN
on the embedded digits, about 40 s); without --image it uses the two
photographs that ship with scikit-learn (CC BY 2.0). Exit code 2 with one
line for a path that cannot be read.
"""

import argparse
import os
import sys

from keras_bam.commands import common


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python examples/visualize_attention.py",
        description="Where each BAM looks: M(F) of every BAM as a heatmap over "
                    "the image.")
    parser.add_argument("--model", metavar="PATH.keras",
                        help="a Keras model with BAM layers (default: train "
                             "the export command's default model)")
    parser.add_argument("--image", nargs="+", metavar="PATH",
                        help="images to show (default: scikit-learn's two "
                             "sample photographs)")
    parser.add_argument("--output", default="out/attention.png",
                        help="the PNG to write (default out/attention.png)")
    parser.add_argument("--epochs", type=int, default=6,
                        help="training epochs of the default model (default 6)")
    return parser


def main(argv=None):
    common.quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = common.flag_names(parser)
    flags["paths"] = "--image"
    try:
        panels, count, layers = _run(args)
    except ValueError as error:
        return common.bad_input(error, flags)
    print(f"{args.output}: {count} image(s) x {layers} BAM layer(s), {panels} panels")
    if not args.image:
        from keras_bam.visualization import PHOTO_LICENSE

        print(PHOTO_LICENSE)
    return common.OK


def _run(args):
    import numpy as np
    import tensorflow as tf

    import keras_bam.visualization as visualization
    from keras_bam.attention_maps import attention_maps
    from keras_bam.commands import validate

    validate.number("--epochs", args.epochs, 1)
    validate.output_file(args.output, "--output")
    if args.model:
        validate.model_file(args.model)
    if args.image:
        photos = visualization.load_image_files(args.image)
        titles = [os.path.basename(p) for p in args.image]
    else:
        photos, titles = visualization.sample_photographs()
    if args.model:
        model = validate.load_model(args.model)
    else:
        from keras_bam.data.images import load_images

        training, _ = load_images("digits", (32, 32), 3)
        print(f"training the default model, {args.epochs} epochs ...", flush=True)
        model = common.train_default_model(training, epochs=args.epochs)
    shape = model.inputs[0].shape
    if len(shape) != 4 or None in shape[1:3]:
        raise ValueError(f"--model takes {tuple(shape)}; an image model "
                         "with a fixed input size is needed.")
    resized = [tf.image.resize(tf.cast(p, "float32"), shape[1:3]) for p in photos]
    if shape[3] == 1:
        resized = [tf.image.rgb_to_grayscale(r) for r in resized]
    inputs = np.stack([r.numpy() for r in resized])  # pixels in [0, 255]
    maps = attention_maps(model, inputs)
    panels = visualization.plot_attention(photos, maps, args.output, titles)
    return panels, len(photos), len(maps)


if __name__ == "__main__":
    sys.exit(main())
