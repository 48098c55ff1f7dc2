"""A source's images in memory, at a model's input size.

What export calibrates and verifies on, what quantization-aware training
fine-tunes on and what the default model trains on: the same splits that
training reads (`keras_bam.data.reader`), brought to the model's input by
one of the views of `keras_bam.data.views` (resized straight, or, for
photos, the centre crop that training evaluates on) and held as float32
pixels in [0, 255], with integer labels and class names. Models are expected to take such pixels,
their preprocessing inside them (`keras_bam.data.preprocessing`), which is
also what a phone's camera pipeline feeds a uint8 TFLite model.
"""

import dataclasses
import logging

import numpy as np

from keras_bam.data import views
from keras_bam.data.reader import open_splits
from keras_bam.data.sources import DataError, first_line

# Images taken from each split: enough to calibrate int8 (a few hundred)
# and to measure agreement, few enough to hold in memory at 224 pixels.
DEFAULT_LIMIT = 2000

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageSet:
    images: np.ndarray  # (N, H, W, C) float32 in [0, 255]
    labels: np.ndarray | None  # (N,) int, or None
    class_names: list | None
    source: str
    view: str = "resize"  # keras_bam.data.views: how images met the input size

    def __len__(self):
        return len(self.images)

    def take(self, count):
        return ImageSet(self.images[:count],
                        None if self.labels is None else self.labels[:count],
                        self.class_names, self.source, self.view)


def load_images(source, image_size, channels, data_dir=None, limit=DEFAULT_LIMIT,
                view="resize"):
    """(training, held_out) `ImageSet`s of `source` at `image_size`.

    Args:
        source: a source string (see `keras_bam.data.sources`).
        image_size: (height, width) of the model's input.
        channels: 1 or 3.
        data_dir: tensorflow-datasets' data directory.
        limit: at most this many images from each split, in the source's
            stored order (the first ones; the same ones on every call).
        view: how images become `image_size` (`keras_bam.data.views`):
            "resize" (default: straight, aspect not kept), "center_crop"
            (the shorter side resized to 256/224 of the input, then the
            central crop: ImageNet's evaluation), or "auto": the centre crop
            for photos, the rule by which training evaluates them that way.

    The training images come from the source's training split, the held-out
    ones from its test split (TFDS: "test", or "validation" for the
    datasets that have no labelled test split; a folder: a fixed 25 % of it).
    A centre-cropped set says so in its `source` ("..., center crop") and
    `view`.
    """
    import tensorflow as tf

    height, width = _pair(image_size)
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer. Received: limit={limit!r}.")
    if view not in views.VIEWS + ("auto",):
        raise ValueError(f"view must be one of {', '.join(views.VIEWS)} or auto. "
                         f"Received: view={view!r}.")
    splits = open_splits(source, channels, data_dir=data_dir, shuffle_files=False,
                         image_size=(height, width))
    if view == "auto":
        view = views.default_view(splits.source, (height, width), splits.stored_size)
    names = [str(n) for n in splits.class_names]
    described = str(splits.source) + (", center crop" if view == "center_crop" else "")
    if view == "center_crop":
        logger.info("%s: shorter side resized to %d, central %d x %d crop (the "
                    "ImageNet evaluation view)", splits.source,
                    views.resize_for_crop((height, width)), height, width)

    def read(dataset):
        images, labels = [], []
        try:
            for image, label in dataset.take(limit).as_numpy_iterator():
                image = views.apply_view(image, (height, width), view)
                images.append(image.numpy())
                labels.append(int(label))
        except tf.errors.OpError as error:
            raise DataError(f"Cannot read the images of '{splits.source}': "
                            f"{first_line(error)}.") from None
        if not images:
            raise DataError(f"'{splits.source}' has no images in one of its splits.")
        return ImageSet(np.stack(images).astype("float32"), np.asarray(labels, "int32"),
                        names, described, view)

    return read(splits.train), read(splits.eval)


def _pair(image_size):
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError("image_size must be a positive int or (height, width). "
                         f"Received: image_size={image_size!r}.")
    return size
