"""The one grammar of image sources, and what every source shares.

Training, export, quantization-aware training and the figures all name
their images with one string, read by `resolve_source`:

- `None`, `"digits"` or `"embedded"`: scikit-learn's handwritten digits,
  shipped with scikit-learn, offline.
- `"tfds:NAME"`: any tensorflow-datasets image classification dataset (an
  `image` and a ClassLabel `label` feature); NAME may carry a config and a
  version, as `tfds.builder` takes them (`"tfds:mnist:3.0.1"`).
- A shorthand of `DATASETS` (`"cifar10"`, `"imagenette"`, ...) or any other
  registered TFDS name without the prefix: the same as `"tfds:NAME"`.
- `"folder:PATH"` or the path of an existing folder: one sub-folder of
  images per class; a fixed, class-stratified quarter is held out.
"""

import dataclasses
import difflib
import os

import numpy as np

DIGITS = "digits"
EMBEDDED = "embedded"  # an older name of the digits, still accepted
TFDS_PREFIX = "tfds:"
FOLDER_PREFIX = "folder:"
# What keras.utils.image_dataset_from_directory reads; other files are skipped.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


class DataError(ValueError):
    """A data source that cannot be read; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class KnownDataset:
    """A dataset that has a shorthand name.

    `images` says what they look like, which decides the training recipe:
    "digits" (the embedded scans), "small" (32-pixel objects, as CIFAR) or
    "photos" (ImageNet-like photographs of any size).
    """

    description: str
    images: str
    eval_split: str = "test"


DATASETS = {
    DIGITS: KnownDataset("scikit-learn's handwritten digits, 1,797 images, "
                         "offline (also 'embedded')", "digits"),
    "cifar10": KnownDataset("TFDS, 50,000 + 10,000 images of 32x32, 10 classes", "small"),
    "cifar100": KnownDataset("TFDS, 50,000 + 10,000 images of 32x32, 100 classes", "small"),
    "imagenette": KnownDataset("TFDS, 9,469 + 3,925 ImageNet photos, 10 classes",
                               "photos", "validation"),
    "imagenet2012": KnownDataset(
        "TFDS, 1.28M + 50,000 photos, 1,000 classes; manual download of "
        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar", "photos",
        "validation"),
}


@dataclasses.dataclass(frozen=True)
class Source:
    """A resolved source string.

    Attributes:
        kind: "digits", "tfds" or "folder".
        name: the TFDS name (with config and version) or the folder's path;
            None for the digits.
    """

    kind: str
    name: str | None = None

    def __str__(self):
        if self.kind == "digits":
            return DIGITS
        prefix = TFDS_PREFIX if self.kind == "tfds" else FOLDER_PREFIX
        return prefix + self.name

    @property
    def known(self):
        """The `KnownDataset` of a shorthand name, else None."""
        if self.kind == "digits":
            return DATASETS[DIGITS]
        if self.kind == "tfds":
            return DATASETS.get(self.name.split("/")[0].split(":")[0])
        return None


def describe_sources():
    """One line naming every kind of source, for help texts and errors."""
    names = ", ".join(f"'{name}'" for name in DATASETS)
    return (f"{names}, any other tensorflow-datasets image classification "
            f"dataset ('{TFDS_PREFIX}NAME'), or a folder with one sub-folder "
            f"of images per class ('{FOLDER_PREFIX}PATH' or its path)")


def resolve_source(source):
    """The `Source` a source string names (see the module docstring).

    Raises:
        DataError: the string names nothing; the message lists close
            matches and the grammar.
    """
    if source is None:
        return Source("digits")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"An image source is a string or a path. Received: "
                        f"{source!r} of type {type(source).__name__}.")
    text = os.fspath(source)
    if text in (DIGITS, EMBEDDED):
        return Source("digits")
    if text.startswith(FOLDER_PREFIX):
        return Source("folder", text[len(FOLDER_PREFIX):])
    if text.startswith(TFDS_PREFIX):
        name = text[len(TFDS_PREFIX):]
        if not name:
            raise DataError(f"'{text}' names no dataset; write {TFDS_PREFIX}NAME, "
                            f"e.g. {TFDS_PREFIX}cifar10.")
        return Source("tfds", name)
    if os.path.isdir(text):
        return Source("folder", text)
    if text in DATASETS:
        return Source("tfds", text)
    builders = []
    if not (os.sep in text or text.startswith((".", "~"))):
        try:
            builders = import_tfds(text).list_builders()
        except DataError:
            pass
        if text.split("/")[0].split(":")[0] in builders:
            return Source("tfds", text)
    close = difflib.get_close_matches(text, [*DATASETS, *builders], n=5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise DataError(f"Image source '{text}' is neither a folder nor a known "
                    f"dataset.{hint} Use {describe_sources()}.")


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
            f"Check the name (tfds.list_builders()) and `data_dir`.{hint}"
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
    raise DataError(f"Images can be given 1 or 3 channels. Received: "
                    f"channels={channels!r}.")


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
    files with one whose first bytes are not JPEG, PNG, GIF or BMP, or that
    do not decode to the end (truncated, corrupt), raise a `DataError`
    naming them, rather than failing mid-training. Every image is decoded
    once per process for that.
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
    undecodable = [file for file in files if not _decodes(file)]
    if undecodable:
        raise DataError(
            f"{len(undecodable)} image(s) under '{path}' cannot be decoded "
            f"(truncated or corrupt), e.g. {', '.join(undecodable[:3])}. Remove "
            "or re-encode them.")
    return files, np.asarray(labels, "int32"), class_names


# (path, size, mtime) of the files that decoded: a folder read twice in one
# process (the export's checks, then its calibration) is decoded once.
_DECODED = set()


def _decodes(file):
    """Whether TensorFlow decodes the whole of an image file: a file cut
    off after its header passes a look at its first bytes and fails only
    here, which in a training pipeline is mid-epoch."""
    import tensorflow as tf

    status = os.stat(file)
    key = (file, status.st_size, status.st_mtime_ns)
    if key in _DECODED:
        return True
    try:
        tf.io.decode_image(tf.io.read_file(file), expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
            tf.errors.DataLossError):
        return False
    _DECODED.add(key)
    return True
