"""Input pipelines for training: the embedded digits, tensorflow-datasets
or a folder of images, as `tf.data` pipelines that keep an accelerator fed.

Sources are named as for `export/to_tflite.py --representative-data`
(`keras_bam.data.sources`), plus a few shorthands:

- `None`, `"digits"` or `"embedded"`: scikit-learn's handwritten digits,
  shipped with scikit-learn, offline.
- `"cifar10"`, `"imagenette"`, ... or `"tfds:NAME"`: any tensorflow-datasets
  image classification dataset (an `image` and a `label` feature), read
  from `data_dir`. Nothing is ever downloaded: a dataset that is not
  prepared raises a `DataError` that says how to prepare it, except the
  manual-download ones (imagenet2012), which are prepared from their
  manual directory when the files are there.
- `"folder:PATH"` or the path of an existing folder: one sub-folder of
  images per class; a fixed, class-stratified quarter is the evaluation
  split (the same quarter `export/to_tflite.py` verifies on).

Images are float32 in [0, 255] (models carry their own preprocessing),
labels int32. Decoding and augmentation run in parallel (AUTOTUNE), decoded
images are cached in memory before augmentation when they fit in
`CACHE_LIMIT_BYTES`, and with a seed the stream is deterministic: the same
seed gives the same batches.
"""

import dataclasses
import difflib
import os
import random

import numpy as np
import tensorflow as tf
from absl import logging

from keras_bam.data.sources import (
    EMBEDDED,
    FOLDER_PREFIX,
    TFDS_PREFIX,
    DataError,
    first_line,
    holdout_mask,
    import_tfds,
    list_image_folder,
    open_tfds_builder,
    to_channels,
)
from keras_bam.training import augment
from keras_bam.training.recipes import get_recipe

CACHE_LIMIT_BYTES = 4 << 30  # per split, as uint8 pixels
SHUFFLE_LIMIT_BYTES = 1 << 30
NOMINAL_PHOTO_BYTES = 500 * 375 * 3  # a decoded ImageNet photo, on average
DIGITS = "digits"


@dataclasses.dataclass(frozen=True)
class KnownDataset:
    description: str
    recipe: str
    eval_split: str = "test"


DATASETS = {
    DIGITS: KnownDataset("scikit-learn's handwritten digits, 1,797 images, "
                         "offline (also 'embedded')", "digits"),
    "cifar10": KnownDataset("TFDS, 50,000 + 10,000 images of 32x32, 10 classes", "cifar"),
    "cifar100": KnownDataset("TFDS, 50,000 + 10,000 images of 32x32, 100 classes", "cifar"),
    "imagenette": KnownDataset("TFDS, 9,469 + 3,925 ImageNet photos, 10 classes",
                               "imagenet", "validation"),
    "imagenet2012": KnownDataset(
        "TFDS, 1.28M + 50,000 photos, 1,000 classes; manual download of "
        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar", "imagenet",
        "validation"),
}


def describe_datasets():
    """One line naming every kind of source, for `--help` and errors."""
    names = ", ".join(f"'{name}'" for name in DATASETS)
    return (f"{names}, any other tensorflow-datasets image classification "
            f"dataset ('{TFDS_PREFIX}NAME'), or a folder with one sub-folder "
            f"of images per class ('{FOLDER_PREFIX}PATH' or its path)")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    num_classes: int
    class_names: tuple = dataclasses.field(repr=False)
    num_train: int | None  # None where the source does not say
    num_eval: int | None
    image_size: tuple  # (height, width)
    recipe: str
    source: str

    def steps_per_epoch(self, global_batch_size):
        """Full batches in one pass over the training split."""
        return max(1, (self.num_train or 0) // global_batch_size)


@dataclasses.dataclass
class _Raw:
    """A source's splits before the recipe: (uint8 (H, W, C), int32)."""
    train: tf.data.Dataset
    eval: tf.data.Dataset
    class_names: tuple
    num_train: int | None
    num_eval: int | None
    stored_size: tuple | None  # (H, W) of every image, None if it varies
    recipe: str
    source: str


def resolve_source(source):
    """(kind, name) for a source: ("digits", None), ("tfds", NAME) or
    ("folder", PATH); raises `DataError` listing the valid names."""
    if source is None or source in (DIGITS, EMBEDDED):
        return "digits", None
    source = os.fspath(source)
    if source.startswith(FOLDER_PREFIX):
        return "folder", source[len(FOLDER_PREFIX):]
    if source.startswith(TFDS_PREFIX):
        return "tfds", source[len(TFDS_PREFIX):]
    if os.path.isdir(source):
        return "folder", source
    if source in DATASETS:
        return "tfds", source
    builders = []
    if not (os.sep in source or source.startswith((".", "~"))):
        try:
            builders = import_tfds(source).list_builders()
        except DataError:
            pass
        if source.split("/")[0] in builders:
            return "tfds", source
    close = difflib.get_close_matches(source, [*DATASETS, *builders], n=5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise DataError(f"Dataset '{source}' is neither a folder nor a known "
                    f"dataset.{hint} Use {describe_datasets()}.")


def make_datasets(source, *, image_size, channels, global_batch_size,
                  recipe=None, data_dir=None, seed=None, cache=True,
                  manual_dir=None):
    """`(train_ds, eval_ds, info)` for training on `source`.

    Args:
        source: see the module docstring; `describe_datasets()` says it in a line.
        image_size: the model's input, an int or (height, width).
        channels: the model's input channels, 1 or 3.
        global_batch_size: images per step over all replicas.
        recipe: "cifar", "imagenet" or "digits" (`recipes.RECIPES`); None
            picks by source: cifar* and images up to 64 pixels "cifar",
            imagenet*, imagenette and larger images "imagenet", digits "digits".
        data_dir: tensorflow-datasets' data directory (TFDS' default if None).
        seed: an int makes the stream deterministic; None shuffles freshly.
        cache: True caches decoded images in memory where they fit, a path
            caches them in files there, False not at all.
        manual_dir: where a manual-download dataset's files are (TFDS'
            default: `data_dir/downloads/manual`).

    Returns:
        train_ds: repeating, shuffled, augmented batches of exactly
            `global_batch_size` (images float32 in [0, 255], labels int32).
        eval_ds: one pass over the evaluation split, not augmented, the last
            batch possibly smaller.
        info: a `DataInfo`.
    """
    image_size = _image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: {channels!r}.")
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError("global_batch_size must be a positive integer. "
                         f"Received: {global_batch_size!r}.")
    kind, name = resolve_source(source)
    if kind == "digits":
        raw = _digits(image_size, channels)
    elif kind == "tfds":
        raw = _tfds(name, image_size, channels, data_dir, manual_dir, seed)
    else:
        raw = _folder(name, image_size, channels)
    recipe = get_recipe(recipe or raw.recipe).name
    if raw.num_train is not None and raw.num_train < global_batch_size:
        raise DataError(
            f"'{raw.source}' has {raw.num_train} training images, fewer than "
            f"one global batch of {global_batch_size}: lower the batch size.")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        deterministic = False
    else:
        deterministic = True
    options = tf.data.Options()
    options.deterministic = deterministic
    train = _train_pipeline(raw, recipe, image_size, channels, global_batch_size,
                            seed, cache).with_options(options)
    evaluation = _eval_pipeline(raw, recipe, image_size, channels,
                                global_batch_size, cache).with_options(options)
    info = DataInfo(len(raw.class_names), raw.class_names, raw.num_train,
                    raw.num_eval, image_size, recipe, raw.source)
    return train, evaluation, info


def _image_size(image_size):
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError("image_size must be a positive int or (height, "
                         f"width). Received: {image_size!r}.")
    return size


def _train_pipeline(raw, recipe, image_size, channels, batch, seed, cache):
    autotune = tf.data.AUTOTUNE
    if recipe == "imagenet":  # crops need the whole decoded image
        stored, size = raw.train, raw.stored_size
    else:
        stored = raw.train.map(lambda x, y: (_to_uint8(augment.resize(x, image_size)), y),
                               num_parallel_calls=autotune)
        size = image_size
    stored = _cache(stored, raw.num_train, size, channels, cache, "train")
    per_image = size[0] * size[1] * channels if size else NOMINAL_PHOTO_BYTES
    buffer = max(256, SHUFFLE_LIMIT_BYTES // per_image)
    buffer = min(buffer, raw.num_train or 10_000)
    stream = stored.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()

    def transform(index, example):
        image, label = example
        key = tf.stack([tf.constant(seed, tf.int64), index])
        if recipe == "imagenet":
            image = augment.imagenet_train(image, key, image_size)
        else:
            image = augment.cifar_train(image, key, flip=recipe == "cifar")
        return image, label

    stream = stream.enumerate().map(transform, num_parallel_calls=autotune)
    return stream.batch(batch, drop_remainder=True).prefetch(autotune)


def _eval_pipeline(raw, recipe, image_size, channels, batch, cache):
    autotune = tf.data.AUTOTUNE
    if recipe == "imagenet":
        def view(image):
            return augment.imagenet_eval(image, image_size)
    else:
        def view(image):
            return augment.resize(image, image_size)
    stored = raw.eval.map(lambda x, y: (_to_uint8(view(x)), y), num_parallel_calls=autotune)
    stored = _cache(stored, raw.num_eval, image_size, channels, cache, "eval")
    stream = stored.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    return stream.batch(batch).prefetch(autotune)


def _to_uint8(image):
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _cache(dataset, count, size, channels, cache, split):
    if cache is False or cache is None:
        return dataset
    if not isinstance(cache, bool):  # a path: tf.data's file cache
        os.makedirs(os.fspath(cache), exist_ok=True)
        return dataset.cache(os.path.join(os.fspath(cache), split))
    per_image = size[0] * size[1] * channels if size else NOMINAL_PHOTO_BYTES
    if count is None or count * per_image > CACHE_LIMIT_BYTES:
        logging.info("Not caching the %s split in memory (%s images of about "
                     "%d bytes); pass cache=PATH to cache it on disk.",
                     split, count or "an unknown number of", per_image)
        return dataset
    return dataset.cache()


def _digits(image_size, channels):
    from keras_bam.data import load_digits

    side = max(image_size)
    (x_train, y_train), (x_test, y_test) = load_digits(image_size=side, channels=channels)

    def split(images, labels):
        pixels = np.round(images * 255.0).astype("uint8")
        return tf.data.Dataset.from_tensor_slices((pixels, labels.astype("int32")))

    names = tuple(str(digit) for digit in range(10))
    return _Raw(split(x_train, y_train), split(x_test, y_test), names,
                len(y_train), len(y_test), (side, side), "digits", DIGITS)


def _folder(path, image_size, channels):
    files, labels, class_names = list_image_folder(path)
    held = holdout_mask(labels)
    if not held.any():
        raise DataError(f"'{path}' has fewer than 4 images in every class, so "
                        "no evaluation quarter can be held out; add images.")

    def split(mask):
        def decode(file, label):
            image = tf.io.decode_image(tf.io.read_file(file), channels=channels,
                                       expand_animations=False)
            return image, label
        data = tf.data.Dataset.from_tensor_slices((np.asarray(files)[mask], labels[mask]))
        return data.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    recipe = "cifar" if max(image_size) <= 64 else "imagenet"
    return _Raw(split(~held), split(held), tuple(class_names), int((~held).sum()),
                int(held.sum()), None, recipe, f"{FOLDER_PREFIX}{path}")


def _tfds(name, image_size, channels, data_dir, manual_dir, seed):
    tfds = import_tfds(name)
    builder = open_tfds_builder(name, data_dir)
    info = builder.info
    known = DATASETS.get(name.split("/")[0])
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
        train = builder.as_dataset(split="train", shuffle_files=True,
                                   read_config=read_config)
    except Exception as error:  # noqa: BLE001 - TFDS raises many kinds
        if builder.is_prepared():
            raise DataError(f"tensorflow-datasets cannot read '{name}': "
                            f"{first_line(error)}.") from None
        _prepare_manual(tfds, builder, name, data_dir, manual_dir)
        train = builder.as_dataset(split="train", shuffle_files=True,
                                   read_config=read_config)
    evaluation = builder.as_dataset(split=eval_split, shuffle_files=False)

    def example(features):
        image = to_channels(features["image"], channels)
        return image, tf.cast(features["label"], tf.int32)

    shape = info.features["image"].shape
    stored = tuple(shape[:2]) if None not in shape[:2] else None
    if known is not None:
        recipe = known.recipe
    else:
        recipe = "cifar" if max(stored or image_size) <= 64 else "imagenet"
    return _Raw(train.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                evaluation.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                tuple(info.features["label"].names),
                _count(splits, "train", train), _count(splits, eval_split, evaluation),
                stored, recipe, f"{TFDS_PREFIX}{name}")


def _count(splits, split, dataset):
    if split in splits:
        return int(splits[split].num_examples)
    count = int(dataset.cardinality())
    return count if count >= 0 else None


def _prepare_manual(tfds, builder, name, data_dir, manual_dir):
    """Prepares a manual-download dataset from its files, downloading
    nothing; anything else that is not prepared raises a `DataError`."""
    root = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR")
                              or "~/tensorflow_datasets")
    instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if not instructions:
        raise DataError(
            f"TFDS dataset '{name}' is not prepared in {root}, and nothing is "
            f"downloaded here. On a machine with internet run `tfds build "
            f"{name} --data_dir DIR`, copy DIR here and pass it as data_dir "
            "(--data-dir).")
    manual = os.path.expanduser(manual_dir or os.path.join(root, "downloads", "manual"))
    if not (os.path.isdir(manual) and os.listdir(manual)):
        steps = " ".join(instructions.split())
        raise DataError(
            f"TFDS dataset '{name}' is not prepared in {root} and needs a manual "
            f"download into {manual} (or pass manual_dir): {steps} Then this "
            f"prepares it once, or run `tfds build {name} --data_dir {root} "
            f"--manual_dir {manual}`.")
    logging.info("Preparing %s from %s into %s (once; this takes a while).",
                 name, manual, root)
    config = tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as error:  # noqa: BLE001
        raise DataError(f"Preparing '{name}' from {manual} failed: "
                        f"{first_line(error)}. Check the files there.") from None
