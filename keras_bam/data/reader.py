"""Every source's two splits as `tf.data` datasets of decoded images.

`open_splits` is the one reader behind training's input pipelines
(`keras_bam.training.data`) and the in-memory images of export and QAT
(`keras_bam.data.images`): a source string gives the same images, labels,
class names and held-out split to both. Nothing is ever downloaded: a TFDS
dataset that is not prepared raises a `DataError` that says how to prepare
it, except the manual-download ones (imagenet2012), which are prepared from
their manual directory when the files are there.
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from keras_bam.data.sources import (
    DATASETS,
    DataError,
    first_line,
    holdout_mask,
    import_tfds,
    list_image_folder,
    open_tfds_builder,
    resolve_source,
    to_channels,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Splits:
    """A source's splits before any resizing or augmentation.

    Attributes:
        train, eval: datasets of (image uint8 (H, W, C), label int32).
        class_names: tuple of str, in label order.
        num_train, num_eval: image counts (None where the source does not say).
        stored_size: (H, W) of every image, None where it varies.
        source: the resolved `Source`.
    """

    train: tf.data.Dataset
    eval: tf.data.Dataset
    class_names: tuple
    num_train: int | None
    num_eval: int | None
    stored_size: tuple | None
    source: object


def open_splits(source, channels, data_dir=None, manual_dir=None, seed=None,
                shuffle_files=True, image_size=None):
    """The training and held-out splits of `source`.

    Args:
        source: a source string (`keras_bam.data.sources`) or a `Source`.
        channels: 1 or 3; images are converted (grey <-> RGB).
        data_dir: tensorflow-datasets' data directory (TFDS' default if None).
        manual_dir: where a manual-download dataset's files are (TFDS'
            default: `data_dir/downloads/manual`).
        seed: the order in which TFDS reads the training files.
        shuffle_files: whether TFDS reads the training files in a shuffled
            order (False: the stored order, for reproducible subsets).
        image_size: (height, width) the images will be resized to; the
            digits, 8x8 scans, are rendered once at the larger side (default
            32) rather than resized twice.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels!r}.")
    if not hasattr(source, "kind"):
        source = resolve_source(source)
    if source.kind == "digits":
        side = max(image_size) if image_size else 32
        return _digits(channels, source, side)
    if source.kind == "tfds":
        return _tfds(source, channels, data_dir, manual_dir, seed, shuffle_files)
    return _folder(source, channels)


def _digits(channels, source, side):
    from keras_bam.data.digits import CLASS_NAMES, load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(image_size=side, channels=channels)

    def split(images, labels):
        pixels = np.round(images * 255.0).astype("uint8")
        return tf.data.Dataset.from_tensor_slices((pixels, labels.astype("int32")))

    return Splits(split(x_train, y_train), split(x_test, y_test), CLASS_NAMES,
                  len(y_train), len(y_test), (side, side), source)


def _folder(source, channels):
    path = source.name
    files, labels, class_names = list_image_folder(path)
    held = holdout_mask(labels)
    if not held.any():
        raise DataError(f"'{path}' has fewer than 4 images in every class, so "
                        "no held-out quarter can be set aside; add images.")

    def split(mask):
        def decode(file, label):
            image = tf.io.decode_image(tf.io.read_file(file), channels=channels,
                                       expand_animations=False)
            return image, label
        data = tf.data.Dataset.from_tensor_slices((np.asarray(files)[mask], labels[mask]))
        return data.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    return Splits(split(~held), split(held), tuple(class_names), int((~held).sum()),
                  int(held.sum()), None, source)


def _tfds(source, channels, data_dir, manual_dir, seed, shuffle_files):
    name = source.name
    tfds = import_tfds(name)
    builder = open_tfds_builder(name, data_dir)
    info = builder.info
    known = source.known
    splits = dict(info.splits)
    if known is not None:
        eval_split = known.eval_split
    else:
        eval_split = "validation" if splits and "test" not in splits else "test"
    if splits and ("train" not in splits or eval_split not in splits):
        raise DataError(f"TFDS dataset '{name}' needs a 'train' split and a "
                        f"'test' or 'validation' split; it has {sorted(splits)}.")
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    try:
        train = builder.as_dataset(split="train", shuffle_files=shuffle_files,
                                   read_config=read_config)
    except Exception as error:  # noqa: BLE001 - TFDS raises many kinds
        if builder.is_prepared():
            raise DataError(f"tensorflow-datasets cannot read '{name}': "
                            f"{first_line(error)}.") from None
        prepare_manual(tfds, builder, name, data_dir, manual_dir)
        train = builder.as_dataset(split="train", shuffle_files=shuffle_files,
                                   read_config=read_config)
    evaluation = builder.as_dataset(split=eval_split, shuffle_files=False)

    def example(features):
        image = to_channels(features["image"], channels)
        return image, tf.cast(features["label"], tf.int32)

    shape = info.features["image"].shape
    stored = tuple(shape[:2]) if None not in shape[:2] else None
    return Splits(train.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                  evaluation.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                  tuple(info.features["label"].names),
                  _count(splits, "train", train), _count(splits, eval_split, evaluation),
                  stored, source)


def _count(splits, split, dataset):
    if split in splits:
        return int(splits[split].num_examples)
    count = int(dataset.cardinality())
    return count if count >= 0 else None


def prepare_manual(tfds, builder, name, data_dir, manual_dir):
    """Prepares a manual-download dataset from its files, downloading
    nothing; anything else that is not prepared raises a `DataError`."""
    root = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR")
                              or "~/tensorflow_datasets")
    instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if not instructions:
        raise DataError(
            f"TFDS dataset '{name}' is not prepared in {root}, and nothing is "
            f"downloaded here. On a machine with internet run `tfds build "
            f"{name} --data_dir DIR`, copy DIR here and pass it as `data_dir`.")
    manual = os.path.expanduser(manual_dir or os.path.join(root, "downloads", "manual"))
    if not (os.path.isdir(manual) and os.listdir(manual)):
        steps = " ".join(instructions.split())
        raise DataError(
            f"TFDS dataset '{name}' is not prepared in {root} and needs a manual "
            f"download into {manual} (or pass `manual_dir`): {steps} Then this "
            f"prepares it once, or run `tfds build {name} --data_dir {root} "
            f"--manual_dir {manual}`.")
    logger.info("Preparing %s from %s into %s (once; this takes a while).",
                name, manual, root)
    config = tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as error:  # noqa: BLE001
        raise DataError(f"Preparing '{name}' from {manual} failed: "
                        f"{first_line(error)}. Check the files there.") from None


# Re-exported for callers that pick a recipe by dataset.
__all__ = ["DATASETS", "Splits", "open_splits", "prepare_manual"]
