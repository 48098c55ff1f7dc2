"""The models `examples/train.py` trains, by snake-case name.

Every model takes float32 RGB pixels in [0, 255] and outputs logits: the
backbone's own preprocessing is a layer inside the model, so the trained
`.keras` file goes straight to `export/to_tflite.py` and to a phone's camera
pipeline. The head is global average pooling and one Dense layer, the same
for every backbone, so that `--no-bam` baselines differ from BAM models only
by BAM.

Names: `small_cnn` (the CIFAR-style `keras_bam.applications.SmallCNN`) and
the snake-case form of every supported `keras.applications` constructor
(`mobilenet_v2` for MobileNetV2, `resnet50_v2` for ResNet50V2,
`efficientnet_v2_s` for EfficientNetV2S, ...), see `MODELS`.
"""

import re

import keras

from keras_bam.applications.backbones import FAMILIES
from keras_bam.applications.small_cnn import SmallCNN
from keras_bam.data.preprocessing import apply_preprocessing, fold_bgr
from keras_bam.rewrite.insert import insert_bam

# The preprocessing scheme (`keras_bam.data.preprocessing`) of each
# keras.applications family: what its `preprocess_input` does. "none": the
# Keras model rescales by itself (include_preprocessing).
_PREPROCESSING = {
    "ResNet": "caffe",
    "ResNetV2": "tf",
    "MobileNet": "tf",
    "EfficientNet": "none",
    "EfficientNetV2": "none",
    "DenseNet": "torch",
}
_INSIDE = ("MobileNetV3Small", "MobileNetV3Large")


def snake_case(application_name):
    """`MobileNetV3Small` -> `mobilenet_v3_small`, `ResNet50` -> `resnet50`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=V\d)|(?<=V\d)(?=[A-Z])|(?<=Net)(?=B\d)",
                    "_", application_name)
    return spaced.lower()


# Snake-case name -> (keras.applications name or None, preprocessing).
MODELS = {"small_cnn": (None, "unit")}
for _family, _names in FAMILIES.items():
    for _name in _names:
        MODELS[snake_case(_name)] = (
            _name, "none" if _name in _INSIDE else _PREPROCESSING[_family])


class ModelError(ValueError):
    """An unknown model name or an impossible combination of options."""


def build_model(name, num_classes, image_size, bam=True, weights=None,
                bam_options=None, seed=None):
    """Builds a classifier taking (image_size, image_size, 3) pixels in [0, 255].

    Args:
        name: a key of `MODELS`.
        num_classes: logits of the Dense head.
        image_size: height and width of the input, an int or a pair.
        bam: insert BAM at the paper's bottlenecks (`keras_bam.insert_bam`);
            False gives the baseline.
        weights: None (random) or "imagenet" (the pretrained backbone; the
            BAM layers and the head start from their initializers).
        bam_options: dict of `keras_bam.BAM` arguments.
        seed: makes the initial weights reproducible.
    """
    if name not in MODELS:
        raise ModelError(f"Unknown model '{name}'. Choose one of: {', '.join(MODELS)}.")
    if weights not in (None, "imagenet"):
        raise ModelError(f"`weights` must be None or 'imagenet'. Received: "
                         f"weights={weights!r}.")
    application, mode = MODELS[name]
    if application is None and weights is not None:
        raise ModelError("small_cnn has no pretrained weights; leave `weights` "
                         "at None.")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    inputs = keras.Input((height, width, 3), name="pixels")
    x = apply_preprocessing(inputs, mode)
    if application is None:
        # SmallCNN ends in its own pooled Dense head; nested, which
        # insert_bam and attention_maps look into.
        trunk = SmallCNN(input_shape=(height, width, 3), classes=num_classes)
        plain = keras.Model(inputs, trunk(x), name=name)
    else:
        backbone = getattr(keras.applications, application)(
            include_top=False, weights=weights, input_tensor=x, pooling="avg")
        if mode == "caffe" and weights is not None:
            fold_bgr(backbone)
        outputs = keras.layers.Dense(num_classes, name="logits")(backbone.output)
        plain = keras.Model(inputs, outputs, name=name)
    if not bam:
        return plain
    return insert_bam(plain, share_weights=True, name=f"bam_{name}",
                      **(bam_options or {}))

