"""What every image source shares: names, errors, TFDS builders, folders.

Used by `keras_bam.export.images` (calibration and verification images) and
`keras_bam.training.data` (training input pipelines), so that a source
string means the same thing to `export/to_tflite.py` and to training:
`'embedded'` (scikit-learn's digits), `'tfds:NAME'` (tensorflow-datasets)
or a folder with one sub-folder of images per class.
"""

import os

import numpy as np

EMBEDDED = "embedded"
TFDS_PREFIX = "tfds:"
FOLDER_PREFIX = "folder:"
# What keras.utils.image_dataset_from_directory reads; other files are skipped.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


class DataError(ValueError):
    """A data source that cannot be read; the message says what to do."""


def first_line(error):
    """The first line of an exception's message (TFDS errors run long)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def import_tfds(name):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            f"Reading '{TFDS_PREFIX}{name}' needs tensorflow-datasets: "
            "pip install 'keras-bam[data]'.") from None
    return tfds


def open_tfds_builder(name, data_dir=None):
    """`tfds.builder(name, data_dir=data_dir)`, checked to be an image
    classification dataset (an `image` and a ClassLabel `label` feature).

    Opening reads metadata only; nothing is downloaded.
    """
    import difflib

    tfds = import_tfds(name)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        features = builder.info.features
    except Exception as error:  # noqa: BLE001 - TFDS raises many kinds
        close = difflib.get_close_matches(name.split("/")[0],
                                          tfds.list_builders(), n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise DataError(
            f"tensorflow-datasets cannot open '{name}': {first_line(error)}. "
            f"Check the name (tfds.list_builders()) and --data-dir.{hint}"
        ) from None
    if ("image" not in features or "label" not in features
            or not hasattr(features["label"], "num_classes")):
        raise DataError(
            f"TFDS dataset '{name}' has no 'image' and 'label' features; "
            "an image classification dataset is needed.")
    return builder


def to_channels(image, channels):
    """An image tensor (..., H, W, C) converted to `channels` (1 or 3):
    RGB(A) to grey by luminance, grey to RGB by repetition, alpha dropped."""
    import tensorflow as tf

    have = image.shape[-1]
    if have == channels:
        return image
    if channels == 1:
        return (tf.image.rgb_to_grayscale(image[..., :3]) if have in (3, 4)
                else image[..., :1])
    if channels == 3:
        return image[..., :3] if have == 4 else tf.image.grayscale_to_rgb(image[..., :1])
    raise DataError(f"Images can be given 1 or 3 channels; the model wants "
                    f"{channels}.")


def holdout_mask(labels, seed=0):
    """A fixed, class-stratified quarter of `labels`, as a boolean mask."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held[members[: len(members) // 4]] = True
    return held


def list_image_folder(path):
    """(files, labels, class_names) of a folder with one sub-folder per class.

    The order is that of `keras.utils.image_dataset_from_directory(path,
    shuffle=False)`: classes sorted, files sorted within each walk of a class
    folder. Files without an image extension are skipped, as Keras does;
    files with one whose first bytes are not JPEG, PNG, GIF or BMP raise a
    `DataError` naming them, rather than failing mid-training.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"'{path}' is not a folder.")
    class_names = sorted(name for name in os.listdir(path)
                         if not name.startswith(".")
                         and os.path.isdir(os.path.join(path, name)))
    files, labels, broken = [], [], []
    for label, name in enumerate(class_names):
        for root, _, names in sorted(os.walk(os.path.join(path, name)),
                                     key=lambda walk: walk[0]):
            for file in sorted(names):
                if not file.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                file = os.path.join(root, file)
                with open(file, "rb") as handle:
                    if not handle.read(8).startswith(_MAGIC):
                        broken.append(file)
                files.append(file)
                labels.append(label)
    if broken:
        raise DataError(
            f"{len(broken)} file(s) under '{path}' are not JPEG, PNG, GIF or "
            f"BMP images despite their names, e.g. {', '.join(broken[:3])}. "
            "Remove or re-encode them.")
    if not files:
        raise DataError(
            f"No images found under '{path}'. It needs one sub-folder per "
            f"class holding {'/'.join(IMAGE_EXTENSIONS)} files.")
    return files, np.asarray(labels, "int32"), class_names
