"""Figures of BAM's attention maps (the paper's Figure 1) and their inputs."""

import io
import os

import numpy as np

from keras_bam.atomic import write_atomically

PHOTO_LICENSE = (
    "Photographs: scikit-learn's sample images china.jpg and flower.jpg, "
    "CC BY 2.0 (creativecommons.org/licenses/by/2.0), by danielbuechele and "
    "vultilion on Flickr.")


def sample_photographs():
    """The two photographs that ship with scikit-learn (uint8, 427x640x3),
    with their file names; see PHOTO_LICENSE."""
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return list(data.images), [os.path.basename(f) for f in data.filenames]


def load_image_files(paths):
    """Reads image files (any format TensorFlow decodes) as uint8 RGB.

    Raises a `ValueError` naming a path that does not exist or cannot be
    decoded."""
    import tensorflow as tf

    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"`paths` {path} does not exist.")
        try:
            data = tf.io.read_file(path)
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            raise ValueError(f"`paths` {path} is not an image TensorFlow can "
                             "decode (JPEG, PNG, BMP or GIF).") from None
        images.append(image.numpy())
    return images


def plot_attention(images, maps, path, titles=None):
    """Writes a figure: per image, the image then each BAM's spatial map as
    a heatmap over it, stage by stage, titled with layer and resolution.

    Args:
        images: the model's inputs as displayed, (N, H, W, 3) or a list, any
            numeric range (scaled to [0, 1] per image for display).
        maps: `keras_bam.attention_maps(model, inputs)` for those images.
        path: the PNG to write.
        titles: optional names of the images.

    Each heatmap is scaled to its own range (jet: blue low, red high), so
    that the pattern shows even where M varies little.

    Returns:
        The number of panels with a picture in the saved figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    count = len(images)
    columns = 1 + len(maps)
    figure, axes = plt.subplots(count, columns, squeeze=False,
                                figsize=(2.6 * columns, 2.6 * count))
    for row, image in enumerate(images):
        shown = np.asarray(image, np.float32)
        shown = (shown - shown.min()) / max(float(np.ptp(shown)), 1e-6)
        height, width = shown.shape[:2]
        axes[row, 0].imshow(shown)
        axes[row, 0].set_title(titles[row] if titles else "input", fontsize=9)
        for column, item in enumerate(maps, start=1):
            spatial = item.spatial[row][..., None]
            heat = tf.image.resize(spatial, (height, width), "bilinear").numpy()
            ax = axes[row, column]
            ax.imshow(shown)
            ax.imshow(heat[..., 0], cmap="jet", alpha=0.5)
            h, w = item.resolution
            ax.set_title(f"{item.name.rsplit('/', 1)[-1]}\n{h}x{w}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=80)
    panels = sum(1 for ax in figure.axes if ax.images)
    plt.close(figure)
    write_atomically(path, image.getvalue())
    return panels
