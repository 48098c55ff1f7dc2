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



# ---------------------------------------------------------------- starting from a file


def load_initial_model(path):
    """The model that training starts from instead of building one: a
    `.keras` file, or the BAM authors' checkpoint (`.pth`, `.pth.tar`, a
    `.npz` state dict; `keras_bam.torch_checkpoint.load_pretrained`).

    The model must be an image classifier: one input (batch, height, width,
    1 or 3) of float32 pixels in [0, 255], one output of logits (batch,
    classes). Its weights stay as in the file; `with_classes` gives it a new
    head, `rebuild` copies it under a dtype policy.

    Raises:
        ModelError: the file is missing or unreadable (reading a PyTorch
            file needs torch: the message says how to install it), or the
            model is not such a classifier. The messages name `init_from`.
    """
    import os

    from keras_bam.torch_checkpoint import load_pretrained

    path = os.fspath(path)
    kinds = ("a .keras model, or the BAM authors' checkpoint (.pth, .pth.tar) or "
             "a .npz state dict of it")
    if not os.path.isfile(path):
        raise ModelError(f"`init_from` {path} does not exist. Give {kinds}.")
    try:
        model = load_pretrained(path)
    except ImportError as error:  # torch, for a PyTorch file
        raise ModelError(f"`init_from` {path}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any reason it cannot be read
        lines = str(error).strip().splitlines()
        raise ModelError(
            f"`init_from` {path} cannot be read as {kinds} "
            f"({lines[0] if lines else type(error).__name__}).") from None
    input_shape(model)
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise ModelError(
            f"The model in `init_from` {path} has outputs "
            f"{[tuple(t.shape) for t in outputs]}; a classifier has one, "
            "(batch, classes) logits. Save the model with its classifier.")
    return model


def input_shape(model):
    """((height, width), channels) of an image model's one input; a size
    is None where the model takes any."""
    inputs = getattr(model, "inputs", None) or []
    shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelError(
            f"The model in `init_from` is not an image model: its inputs are "
            f"{[tuple(t.shape) for t in inputs]}, expected one (batch, height, "
            "width, 1 or 3) input of pixels.")
    return shape[1:3], shape[3]


def _classifier(model):
    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and getattr(layer, "layers", None):
        layer = layer.layers[-1]
    return layer


def with_classes(model, num_classes, seed=None):
    """`model` with a new `Dense(num_classes)` classifier (seeded) when its
    output width differs, else `model` itself. Training takes logits: a
    classifier kept as it is must have no activation."""
    from keras_bam.applications.residual_net import replace_classifier

    classifier = _classifier(model)
    if model.outputs[0].shape[-1] != num_classes:
        if seed is not None:
            keras.utils.set_random_seed(seed)
        try:
            return replace_classifier(model, num_classes)
        except ValueError as error:
            raise ModelError(f"`init_from`: a new classifier for {num_classes} "
                             f"classes cannot replace the old one: {error}") from None
    activation = getattr(classifier, "activation", None)
    if not isinstance(classifier, keras.layers.Dense) or (
            activation is not keras.activations.linear):
        raise ModelError(
            f"The model in `init_from` ends in {classifier.name!r} "
            f"({type(classifier).__name__}"
            + (f", activation {activation.__name__}" if activation else "")
            + "), not in logits, which training takes. Save it with a Dense "
            "classifier without activation (classifier_activation=None).")
    return model


def rebuild(model, dtype_policy=None):
    """A copy of `model` whose layers compute under `dtype_policy` (default:
    the global policy, e.g. mixed_float16), with `model`'s weights.

    A loaded model keeps the float32 policy it was saved with; training
    under mixed precision rebuilds it from its layers' configurations with
    the policy, which `keras.models.clone_model` does (nested models too),
    then copies every weight. Variables are created where this is called
    (in a tf.distribute strategy's scope for training).
    """
    policy = dtype_policy or keras.config.dtype_policy().name

    def clone(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer) and "dtype" in config:
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
