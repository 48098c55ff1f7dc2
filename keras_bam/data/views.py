"""How an image becomes a model's input: resized straight, or centre-cropped.

Two views, one rule for choosing between them, shared by training's
evaluation (`keras_bam.training.data`), the in-memory images that export
calibrates and verifies on (`keras_bam.data.images`) and the authors'
networks (`keras_bam.applications.resize_and_center_crop`):

- "resize": bilinear resize to the input size, the aspect ratio not kept
  (as `keras.utils.image_dataset_from_directory`). For small images that
  fill their frame: the digits, CIFAR.
- "center_crop": the ImageNet evaluation view of the BAM authors' code, and
  of torchvision's `Resize(256)` + `CenterCrop(224)`: the shorter side
  resized to 256 (the longer one to `int(256 * long / short)`, the aspect
  ratio kept), then the central 224 x 224 pixels, the top-left corner at
  `round((side - 224) / 2)` (Python's round, half to even). For other input
  sizes the crop keeps the ratio 224 / 256 (`resize_for_crop`). For photos.

The rule (`default_view`): photos get the centre crop, which is also when
training picks the "imagenet" recipe; everything else is resized.
"""

import tensorflow as tf

VIEWS = ("resize", "center_crop")
# Their evaluation: shorter side 256, central 224 x 224.
EVAL_RESIZE, EVAL_CROP = 256, 224
# Images up to this size (when a source does not say what they are) are
# small objects filling the frame, not photos.
SMALL_IMAGE_PIXELS = 64

__all__ = ["EVAL_CROP", "EVAL_RESIZE", "VIEWS", "apply_view", "default_view",
           "is_photo_source", "resize_and_center_crop", "resize_for_crop"]


def _pair(size, name):
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f"`{name}` must be a positive int or (height, width). "
                         f"Received: {name}={size!r}.")
    return pair


def resize_for_crop(crop):
    """The shorter side to resize to before a central crop of `crop` (an int
    or (height, width)): 256 for 224, the same ratio rounded up otherwise
    (37 for 32, 64 for 56)."""
    height, width = _pair(crop, "crop")
    side = max(height, width)
    return -(-side * EVAL_RESIZE // EVAL_CROP)  # integer ceil: 224 -> 256 exactly


def _resized_size(height, width, resize):
    """torchvision's Resize(int): the shorter side (the width when equal) to
    `resize`, the other to int(resize * long / short)."""
    if width <= height:
        return int(resize * height / width), resize
    return resize, int(resize * width / height)


def resize_and_center_crop(images, resize=EVAL_RESIZE, crop=EVAL_CROP):
    """The authors' evaluation view: `Resize(resize)`, then `CenterCrop(crop)`.

    torchvision's arithmetic exactly: the shorter side becomes `resize`
    pixels and the longer `int(resize * long / short)`; the crop's top-left
    corner is at `round((side - crop) / 2)`, half to even. So a 375 x 500
    photo is resized to 256 x 341 and cropped at (16, 58). The resize is
    bilinear with antialiasing (PIL's bilinear filter, which their code used,
    differs by a few pixel levels). Pixel values are kept (0..255 in, 0..255
    out): the models normalize inside.

    Works on images of any size: eagerly on NumPy arrays, and inside
    `tf.data.Dataset.map` on images whose size is known only when they are
    decoded.

    Args:
        images: one image (H, W, C) or a batch (N, H, W, C) of one size,
            any real dtype (uint8 is fine).
        resize: length of the shorter side after resizing. Default 256.
        crop: side of the central square (an int), or (height, width).
            Default 224. Must not exceed `resize`.

    Returns:
        A float32 tensor (crop, crop, C) or (N, crop, crop, C).

    Example:

    >>> images = np.zeros((2, 375, 500, 3), "float32")
    >>> tuple(keras_bam.applications.resize_and_center_crop(images).shape)
    (2, 224, 224, 3)
    """
    crop_h, crop_w = _pair(crop, "crop")
    if isinstance(resize, bool) or not isinstance(resize, int) or not (
            0 < max(crop_h, crop_w) <= resize):
        raise ValueError(
            "`resize` and `crop` must be integers with 0 < crop <= resize (the "
            "crop must fit in the resized image). Received: "
            f"resize={resize!r}, crop={crop!r}.")
    images = tf.convert_to_tensor(images)
    rank = images.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            "`images` must be (height, width, channels) or (batch, height, "
            f"width, channels). Received shape {tuple(images.shape)}.")
    images = tf.cast(images, tf.float32)
    static = images.shape[rank - 3:rank - 1]
    if None not in static:  # sizes known now: Python's own arithmetic
        new_h, new_w = _resized_size(*static, resize)
        if (new_h, new_w) != tuple(static):
            images = tf.image.resize(images, (new_h, new_w), "bilinear", antialias=True)
        top = int(round((new_h - crop_h) / 2.0))
        left = int(round((new_w - crop_w) / 2.0))
    else:  # known when the graph runs (tf.data on decoded images)
        shape = tf.shape(images)
        height, width = shape[rank - 3], shape[rank - 2]
        long_side = tf.maximum(height, width)
        short_side = tf.minimum(height, width)
        # int(resize * long / short), in double precision as Python does it.
        new_long = tf.cast(tf.math.floor(
            tf.cast(resize, tf.float64) * tf.cast(long_side, tf.float64)
            / tf.cast(short_side, tf.float64)), tf.int32)
        portrait = width <= height
        new_h = tf.where(portrait, new_long, resize)
        new_w = tf.where(portrait, resize, new_long)
        unchanged = tf.logical_and(tf.equal(new_h, height), tf.equal(new_w, width))
        original = images
        images = tf.cond(unchanged, lambda: original, lambda: tf.image.resize(
            original, tf.stack([new_h, new_w]), "bilinear", antialias=True))
        # round((side - crop) / 2) half to even, as Python's round; so is tf.round.
        top = tf.cast(tf.round(tf.cast(new_h - crop_h, tf.float64) / 2.0), tf.int32)
        left = tf.cast(tf.round(tf.cast(new_w - crop_w, tf.float64) / 2.0), tf.int32)
    begin = tf.stack([top, left, 0]) if rank == 3 else tf.stack([0, top, left, 0])
    size = [crop_h, crop_w, -1] if rank == 3 else [-1, crop_h, crop_w, -1]
    out = tf.slice(images, begin, size)
    out_shape = (images.shape[:rank - 3]
                 + tf.TensorShape([crop_h, crop_w, images.shape[-1]]))
    return tf.ensure_shape(out, out_shape)


def apply_view(images, image_size, view="resize"):
    """`images` ((H, W, C) or a batch) as a model with input `image_size`
    sees them, float32 in [0, 255].

    Args:
        images: pixels, any real dtype, any size.
        image_size: the model's input (height, width), or an int.
        view: "resize" (straight to `image_size`, aspect not kept) or
            "center_crop" (`resize_and_center_crop` to `image_size`, from
            the shorter side resized to `resize_for_crop(image_size)`).
    """
    if view not in VIEWS:
        raise ValueError(f"`view` must be one of {', '.join(VIEWS)}. "
                         f"Received: view={view!r}.")
    size = _pair(image_size, "image_size")
    if view == "center_crop":
        out = resize_and_center_crop(images, resize_for_crop(size), size)
    else:
        out = tf.cast(tf.convert_to_tensor(images), tf.float32)
        if tuple(out.shape[-3:-1]) != size:
            out = tf.image.resize(out, size, "bilinear")
    return tf.clip_by_value(out, 0.0, 255.0)


def is_photo_source(source, image_size, stored_size=None):
    """Whether `source` holds photos (ImageNet-like), by the rule that also
    picks training's "imagenet" recipe: a known dataset says so itself
    (`keras_bam.data.sources.DATASETS`); other images are photos when larger
    than 64 pixels (`stored_size` if every image has it, else `image_size`).

    Args:
        source: a source string or a resolved `Source`.
        image_size: the model's input, an int or (height, width).
        stored_size: (height, width) of every stored image, None if they vary.
    """
    from keras_bam.data.sources import resolve_source

    known = (source if hasattr(source, "known") else resolve_source(source)).known
    if known is not None:
        return known.images == "photos"
    size = stored_size or _pair(image_size, "image_size")
    return max(size) > SMALL_IMAGE_PIXELS


def default_view(source, image_size, stored_size=None):
    """"center_crop" for photos (`is_photo_source`), else "resize"."""
    photos = is_photo_source(source, image_size, stored_size)
    return "center_crop" if photos else "resize"
