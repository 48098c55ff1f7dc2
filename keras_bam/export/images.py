"""Images for calibration and verification: the embedded dataset, a TFDS
dataset or a folder of images.

Every source gives float32 pixels in [0, 255], resized to the model's input,
with integer labels and class names where the source has them. Models are
expected to take such pixels, their preprocessing inside them (as a
`Rescaling` layer, or `keras_bam.export.with_preprocessing`), which is also
what a phone's camera pipeline feeds a uint8 TFLite model.
"""

import dataclasses
import os

import numpy as np

from keras_bam.data.sources import (
    EMBEDDED,
    TFDS_PREFIX,
    DataError,
    first_line,
    holdout_mask,
    open_tfds_builder,
    to_channels,
)

# One error for every image source, training's included.
ImageSourceError = DataError


@dataclasses.dataclass
class ImageSet:
    images: np.ndarray  # (N, H, W, C) float32 in [0, 255]
    labels: np.ndarray | None  # (N,) int, or None
    class_names: list | None
    source: str

    def __len__(self):
        return len(self.images)

    def take(self, count):
        return ImageSet(self.images[:count],
                        None if self.labels is None else self.labels[:count],
                        self.class_names, self.source)


def describe_sources():
    return (f"'{EMBEDDED}' (scikit-learn's handwritten digits, offline), "
            f"'{TFDS_PREFIX}NAME' (a tensorflow-datasets image classification "
            "dataset, e.g. tfds:cifar10, from --data-dir or TFDS' cache), or "
            "a folder with one sub-folder of images per class")


def load_images(source, image_size, channels, data_dir=None):
    """(calibration, held_out) ImageSets from `source`.

    Calibration images come from the source's training split, held-out
    images from its test split (TFDS: "test", else "validation"; a folder:
    a fixed 25 % of it). `image_size` is (height, width).
    """
    if source == EMBEDDED:
        return _embedded(image_size, channels)
    if source.startswith(TFDS_PREFIX):
        return _tfds(source[len(TFDS_PREFIX):], image_size, channels, data_dir)
    if os.path.isdir(source):
        return _folder(source, image_size, channels)
    raise ImageSourceError(
        f"Representative data '{source}' is neither a folder nor a known "
        f"source. Use {describe_sources()}.")


def _embedded(image_size, channels):
    from keras_bam.data import load_digits

    if image_size[0] != image_size[1]:
        raise ImageSourceError(
            f"The embedded digits are square; the model takes {image_size}. "
            "Pass --representative-data with images of your own.")
    (x_train, y_train), (x_test, y_test) = load_digits(
        image_size=image_size[0], channels=channels)
    names = [str(i) for i in range(10)]
    return (ImageSet(x_train * 255.0, y_train, names, EMBEDDED),
            ImageSet(x_test * 255.0, y_test, names, EMBEDDED))


def _tfds(name, image_size, channels, data_dir):
    builder = open_tfds_builder(name, data_dir)
    splits = builder.info.splits
    features = builder.info.features
    # Splits are known once the dataset is prepared; try the usual names.
    known = set(splits) or {"train", "test", "validation"}
    held_out_split = next((s for s in ("test", "validation") if s in known), None)
    if "train" not in known or held_out_split is None:
        raise ImageSourceError(
            f"TFDS dataset '{name}' needs a 'train' split and a 'test' or "
            f"'validation' split; it has {sorted(known)}.")
    try:
        train = _tfds_split(builder, "train[:2000]", image_size, channels)
        try:
            held_out = _tfds_split(builder, f"{held_out_split}[:2000]",
                                   image_size, channels)
        except ValueError:  # no test split: use validation
            held_out = _tfds_split(builder, "validation[:2000]", image_size,
                                   channels)
    except Exception as error:  # noqa: BLE001
        raise ImageSourceError(
            f"tensorflow-datasets cannot read '{name}': {first_line(error)}. "
            "Download and prepare it first (tfds build), or point --data-dir "
            "at where it is.") from None
    names = list(features["label"].names)
    source = TFDS_PREFIX + name
    return (ImageSet(*train, names, source), ImageSet(*held_out, names, source))


def _tfds_split(builder, split, image_size, channels):
    import tensorflow as tf

    dataset = builder.as_dataset(split=split, shuffle_files=False)
    images, labels = [], []
    for example in dataset.as_numpy_iterator():
        images.append(_resize(tf, example["image"], image_size, channels))
        labels.append(int(example["label"]))
    return np.stack(images), np.asarray(labels)


def _folder(path, image_size, channels):
    import keras

    try:
        dataset = keras.utils.image_dataset_from_directory(
            path, image_size=image_size, batch_size=None, shuffle=False,
            color_mode={1: "grayscale", 3: "rgb", 4: "rgba"}[channels],
            verbose=False)
    except Exception as error:  # noqa: BLE001
        raise ImageSourceError(
            f"Cannot read images from '{path}': {first_line(error)}. It needs "
            "one sub-folder per class with .jpg/.png/.bmp/.gif files.") from None
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image.astype("float32"))
        labels.append(int(label))
    if not images:
        raise ImageSourceError(f"No images found under '{path}'.")
    images, labels = np.stack(images), np.asarray(labels)
    held = holdout_mask(labels)  # a fixed, class-stratified quarter
    names = list(dataset.class_names)
    return (ImageSet(images[~held], labels[~held], names, path),
            ImageSet(images[held], labels[held], names, path))


def _resize(tf, image, image_size, channels):
    image = to_channels(tf.convert_to_tensor(image), channels)
    image = tf.image.resize(tf.cast(image, "float32"), image_size)
    return np.clip(image.numpy(), 0.0, 255.0)
