"""Where each BAM looks: M(F) of every BAM as a heatmap over the image.

    python examples/visualize_attention.py [--model PATH.keras] [--image PATH ...]
                                           [--output attention.png]

Without --model it trains the export command's default model (a small CNN
with BAM, on the embedded digits, about 40 s); without --image it uses the
two photographs that ship with scikit-learn (CC BY 2.0). Exit code 2 with
one line for a path that cannot be read.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_bam
    from keras_bam import visualization

    try:
        if args.image:
            photos = visualization.load_image_files(args.image)
            titles = [os.path.basename(p) for p in args.image]
        else:
            photos, titles = visualization.sample_photographs()
        if args.model:
            if not os.path.isfile(args.model):
                raise ValueError(f"--model {args.model} does not exist.")
            try:
                model = keras.saving.load_model(args.model)
            except Exception as error:  # noqa: BLE001
                raise ValueError(f"--model {args.model} cannot be loaded as a "
                                 f"Keras model ({type(error).__name__}).") from None
        else:
            from keras_bam.export.default_model import train_default_model
            from keras_bam.export.images import load_images

            train, _ = load_images("embedded", (32, 32), 3)
            print(f"training the default model, {args.epochs} epochs ...")
            model = train_default_model(train, epochs=args.epochs)
        shape = model.inputs[0].shape
        if len(shape) != 4 or None in shape[1:3]:
            raise ValueError(f"--model takes {tuple(shape)}; an image model "
                             "with a fixed input size is needed.")
        resized = [tf.image.resize(tf.cast(p, "float32"), shape[1:3]) for p in photos]
        if shape[3] == 1:
            resized = [tf.image.rgb_to_grayscale(r) for r in resized]
        inputs = np.stack([r.numpy() for r in resized])  # pixels in [0, 255]
        maps = keras_bam.attention_maps(model, inputs)
        panels = visualization.plot_attention(photos, maps, args.output, titles)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.output}: {len(photos)} image(s) x {len(maps)} BAM layer(s), "
          f"{panels} panels")
    if not args.image:
        print(visualization.PHOTO_LICENSE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
