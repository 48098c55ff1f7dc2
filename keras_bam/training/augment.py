"""The recipes' per-image transforms, as TensorFlow functions for tf.data.

Every random choice is a stateless op keyed by `seed`, a (2,) int tensor
that `keras_bam.training.data` derives from the run's seed and the image's
position in the stream, so a seeded run gives the same images however many
threads map them. Images come in as (H, W, C) uint8 or float32 and leave as
float32 in [0, 255].
"""

import tensorflow as tf

from keras_bam.data import views


def pad_pixels(side):
    """The CIFAR pad: 1/8 of the side, i.e. 4 pixels at 32 (at least 1)."""
    return max(1, round(side / 8))


def resize(image, image_size):
    """Bilinear resize to `image_size` (height, width), aspect not kept (as
    `keras.utils.image_dataset_from_directory`); float32 in [0, 255]."""
    return views.apply_view(image, image_size, "resize")


def cifar_train(image, seed, flip=True):
    """CIFAR training augmentation (He et al., arXiv 1512.03385, section 4.2).

    Zero-pads `pad_pixels(side)` on every side (4 pixels at 32x32, the
    image's black border, as torchvision's `RandomCrop(32, padding=4)`),
    takes a random crop of the original size, and flips left-right with
    probability 1/2 when `flip` (the digits recipe does not flip).
    `image`: (H, W, C), already at the training size.
    """
    image = tf.cast(image, tf.float32)
    height, width, channels = image.shape
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    pad_h, pad_w = pad_pixels(height), pad_pixels(width)
    padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    image = tf.image.stateless_random_crop(padded, (height, width, channels),
                                           seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image


def imagenet_train(image, seed, image_size, area_range=(0.08, 1.0),
                   aspect_ratio_range=(3 / 4, 4 / 3)):
    """ImageNet training augmentation (Szegedy et al., arXiv 1409.4842; the
    authors' code uses torchvision's `RandomResizedCrop` + flip).

    A crop of 8-100 % of the image's area with aspect ratio 3/4-4/3, drawn
    by `tf.image.stateless_sample_distorted_bounding_box` (the whole image
    after 10 failed draws), resized bilinearly with antialiasing to
    `image_size`, then flipped left-right with probability 1/2. `image`:
    (H, W, C) at any size, e.g. as decoded.
    """
    box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=box_seed, min_object_covered=0.0, aspect_ratio_range=aspect_ratio_range,
        area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.cast(tf.slice(image, begin, size), tf.float32)
    crop = tf.image.resize(crop, image_size, "bilinear", antialias=True)
    crop = tf.image.stateless_random_flip_left_right(crop, flip_seed)
    return tf.clip_by_value(crop, 0.0, 255.0)


def imagenet_eval(image, image_size):
    """ImageNet evaluation: the shorter side resized to `image_size * 256 /
    224` (256 for 224), then the central `image_size` (torchvision's
    Resize + CenterCrop, `keras_bam.data.views.resize_and_center_crop`).
    Deterministic; works on images of any size."""
    return views.apply_view(image, image_size, "center_crop")
