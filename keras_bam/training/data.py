"""Input pipelines for training: any image source as `tf.data` pipelines
that keep an accelerator fed.

Sources are the strings of `keras_bam.data.sources` (`None` or "digits",
"cifar10", "tfds:NAME", "folder:PATH", a folder's path, ...), read by
`keras_bam.data.reader`, the reader export uses too: a folder's held-out
quarter is the one `export/to_tflite.py` verifies on.

Images are float32 in [0, 255] (models carry their own preprocessing),
labels int32. Decoding and augmentation run in parallel (AUTOTUNE), decoded
images are cached in memory before augmentation when they fit in
`CACHE_LIMIT_BYTES`, and with a seed the stream is deterministic: the same
seed gives the same batches.
"""

import dataclasses
import logging
import os
import random

import tensorflow as tf

from keras_bam.data.reader import open_splits
from keras_bam.data.sources import (
    DATASETS,
    DataError,
    describe_sources,
    resolve_source,
)
from keras_bam.data.views import is_photo_source
from keras_bam.training import augment
from keras_bam.training.recipes import get_recipe

logger = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 4 << 30  # per split, as uint8 pixels
SHUFFLE_LIMIT_BYTES = 1 << 30
NOMINAL_PHOTO_BYTES = 500 * 375 * 3  # a decoded ImageNet photo, on average

__all__ = ["DATASETS", "DataError", "DataInfo", "default_recipe", "describe_sources",
           "make_datasets", "resolve_source"]


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


def default_recipe(source, image_size, stored_size=None):
    """The recipe a source trains with by default: the digits "digits",
    photos "imagenet" and other images "cifar", photos being what
    `keras_bam.data.views.is_photo_source` says (ImageNet-like datasets, and
    images larger than 64 pixels); their evaluation is the centre crop."""
    source = source if hasattr(source, "known") else resolve_source(source)
    if source.known is not None and source.known.images == "digits":
        return "digits"
    return "imagenet" if is_photo_source(source, image_size, stored_size) else "cifar"


def make_datasets(source, *, image_size, channels, global_batch_size,
                  recipe=None, data_dir=None, seed=None, cache=True,
                  manual_dir=None):
    """`(train_ds, eval_ds, info)` for training on `source`.

    Args:
        source: a source string (`keras_bam.data.sources`; `describe_sources()`
            says them in a line).
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
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels!r}.")
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError("global_batch_size must be a positive integer. "
                         f"Received: global_batch_size={global_batch_size!r}.")
    raw = open_splits(source, channels, data_dir=data_dir, manual_dir=manual_dir,
                      seed=seed, image_size=image_size)
    recipe = get_recipe(
        recipe or default_recipe(raw.source, image_size, raw.stored_size)).name
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
                    raw.num_eval, image_size, recipe, str(raw.source))
    return train, evaluation, info


def _image_size(image_size):
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError("image_size must be a positive int or (height, "
                         f"width). Received: image_size={image_size!r}.")
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
        logger.info("Not caching the %s split in memory (%s images of about "
                     "%d bytes); pass cache=PATH to cache it on disk.",
                     split, count or "an unknown number of", per_image)
        return dataset
    return dataset.cache()
