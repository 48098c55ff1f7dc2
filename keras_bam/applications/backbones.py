"""keras.applications backbones with BAM at the paper's bottlenecks.

`BAMResNet50(...)` is `keras.applications.ResNet50(...)` passed through
`keras_bam.insert_bam`: it takes the same arguments as the Keras
constructor, plus any `keras_bam.BAM` option (`reduction_ratio`,
`variant`, ...). With `weights="imagenet"` the backbone starts from the
pretrained weights and the BAM layers from their initializers; a path to a
weights file is loaded into the model with BAM (e.g. one saved by
`model.save_weights`).

Example:

>>> model = keras_bam.applications.BAMMobileNetV2(
...     weights=None, alpha=0.35, input_shape=(96, 96, 3), classes=5)
>>> model.name, [l.name for l in model.layers if isinstance(l, keras_bam.BAM)]
('bam_mobilenetv2_0.35_96', ['block_2_add_bam', 'block_5_add_bam', 'block_12_add_bam'])
"""

import inspect

import keras

from keras_bam.layers.bam import BAM
from keras_bam.rewrite.insert import rewrite

# Name -> keras.applications constructor. Each family's placement is tested.
FAMILIES = {
    "ResNet": ["ResNet50", "ResNet101", "ResNet152"],
    "ResNetV2": ["ResNet50V2", "ResNet101V2", "ResNet152V2"],
    "MobileNet": ["MobileNet", "MobileNetV2", "MobileNetV3Small",
                  "MobileNetV3Large"],
    "EfficientNet": [f"EfficientNetB{i}" for i in range(8)],
    "EfficientNetV2": [f"EfficientNetV2{s}" for s in
                       ("B0", "B1", "B2", "B3", "S", "M", "L")],
    "DenseNet": ["DenseNet121", "DenseNet169", "DenseNet201"],
}
BACKBONES = [name for names in FAMILIES.values() for name in names]

# Every keyword BAM's constructor takes, keras.layers.Layer's own left out:
# what `build` hands to each BAM rather than to the Keras constructor.
BAM_OPTIONS = frozenset(
    name for name, parameter in inspect.signature(BAM).parameters.items()
    if parameter.kind is parameter.POSITIONAL_OR_KEYWORD)

__all__ = ["BACKBONES", "BAM_OPTIONS", "FAMILIES", "build"] + [
    f"BAM{name}" for name in BACKBONES]


def build(backbone, name=None, **kwargs):
    """`keras.applications.<backbone>(**kwargs)` with BAM inserted.

    Args:
        backbone: a name of `BACKBONES`, e.g. "ResNet50".
        name: the model's name. Default "bam_<the Keras model's name>".
        **kwargs: the Keras constructor's arguments, and `keras_bam.BAM`
            options (`BAM_OPTIONS`), which go to every BAM. `weights` may
            also be the path of a weights file of the model with BAM.

    Returns:
        A Functional `keras.Model`.
    """
    if backbone not in BACKBONES:
        raise ValueError(
            f"Unknown backbone '{backbone}'. Supported: {', '.join(BACKBONES)}.")
    constructor = getattr(keras.applications, backbone)
    accepted = inspect.signature(constructor).parameters
    bam_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in BAM_OPTIONS}
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = sorted((set(accepted) | BAM_OPTIONS) - {"name"}) + ["name"]
        raise TypeError(
            f"BAM{backbone}: unexpected keyword argument(s) "
            f"{', '.join(repr(k) for k in unknown)}. Accepted keyword "
            f"arguments: {', '.join(options)}.")
    weights_file = None
    if kwargs.get("weights") not in (None, "imagenet"):
        weights_file, kwargs["weights"] = kwargs["weights"], None  # BAM model weights
    model = constructor(**kwargs)
    default_name = model.name.lower().replace("-", "_")
    # With input_tensor, keep the caller's tensors as the model's inputs.
    input_tensors = model.inputs if kwargs.get("input_tensor") is not None else None
    model = rewrite(model, after=None, share_weights=True,
                    name=name or f"bam_{default_name}",
                    input_tensors=input_tensors, bam_kwargs=bam_kwargs)
    if weights_file is not None:
        model.load_weights(weights_file)
    return model


_COMMON_ARGS = """\
        include_top: whether to include the fully-connected classifier at the
            top of the network. Default True.
        weights: None (random initialization), "imagenet" (the Keras
            backbone's ImageNet weights, downloaded by Keras; the BAM layers
            start from their initializers), or the path of a weights file
            of the model *with* BAM, as `model.save_weights` writes it.
        input_tensor: optional Keras tensor (output of `keras.Input()`) to
            use as the model's input; the model keeps it.
        input_shape: optional shape tuple, e.g. (224, 224, 3); see
            `keras.applications.{backbone}` for the sizes it accepts.
        pooling: when `include_top` is False, None (a 4-D feature map), "avg"
            or "max" (global pooling to a 2-D tensor).
        classes: number of classes, with `include_top` and no `weights`.
        classifier_activation: activation of the top layer (None for
            logits). Default "softmax".
"""
_FAMILY_ARGS = {
    "MobileNet": """\
        alpha: width multiplier of the network. Default 1.0.
        depth_multiplier: depth multiplier of the depthwise convolutions.
            Default 1.
        dropout: dropout rate before the classifier. Default 1e-3.
""",
    "MobileNetV2": """\
        alpha: width multiplier of the network. Default 1.0.
""",
    "MobileNetV3": """\
        alpha: width multiplier of the network. Default 1.0.
        minimalistic: the variant without squeeze-excitation, hard-swish
            and 5x5 convolutions. Default False.
        dropout_rate: dropout rate before the classifier. Default 0.2.
        include_preprocessing: whether the model rescales pixels 0..255
            itself. Default True.
""",
    "EfficientNetV2": """\
        include_preprocessing: whether the model rescales pixels 0..255
            itself. Default True.
""",
}
_DOC = """`keras.applications.{backbone}` with BAM at the paper's bottlenecks.

    The Keras model is built with the arguments below, then
    `keras_bam.insert_bam` puts a `keras_bam.BAM` at the end of every stage
    that the next stage downsamples, the last stage excepted (see
    `keras_bam.find_bottlenecks`). The backbone's layers are the Keras
    model's own, with its weights.

    Args:
{args}        name: the model's name. Default "bam_" + the Keras model's name.
        **bam_kwargs: `keras_bam.BAM` arguments given to every BAM
            (`reduction_ratio`, `variant`, `min_hidden_channels`, ...).

    Returns:
        A Functional `keras.Model`.

    Raises:
        TypeError: a keyword argument that neither the Keras constructor nor
            `keras_bam.BAM` takes.
"""


def _documented(backbone, family=None):
    """Gives a constructor the docstring of `backbone` (and its family's
    extra arguments), so that `help()` lists every parameter."""
    args = _COMMON_ARGS.format(backbone=backbone) + _FAMILY_ARGS.get(family, "")

    def decorate(function):
        function.__doc__ = _DOC.format(backbone=backbone, args=args)
        return function

    return decorate



@_documented("ResNet50")
def BAMResNet50(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "ResNet50", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("ResNet101")
def BAMResNet101(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "ResNet101", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("ResNet152")
def BAMResNet152(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "ResNet152", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("ResNet50V2")
def BAMResNet50V2(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "ResNet50V2", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("ResNet101V2")
def BAMResNet101V2(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "ResNet101V2", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("ResNet152V2")
def BAMResNet152V2(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "ResNet152V2", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("MobileNet", "MobileNet")
def BAMMobileNet(
    input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3,
    include_top=True, weights="imagenet", input_tensor=None, pooling=None,
    classes=1000, classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "MobileNet", input_shape=input_shape, alpha=alpha,
        depth_multiplier=depth_multiplier, dropout=dropout,
        include_top=include_top, weights=weights, input_tensor=input_tensor,
        pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, **bam_kwargs,
    )


@_documented("MobileNetV2", "MobileNetV2")
def BAMMobileNetV2(
    input_shape=None, alpha=1.0, include_top=True, weights="imagenet",
    input_tensor=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "MobileNetV2", input_shape=input_shape, alpha=alpha,
        include_top=include_top, weights=weights, input_tensor=input_tensor,
        pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, **bam_kwargs,
    )


@_documented("MobileNetV3Small", "MobileNetV3")
def BAMMobileNetV3Small(
    input_shape=None, alpha=1.0, minimalistic=False, include_top=True,
    weights="imagenet", input_tensor=None, classes=1000, pooling=None,
    dropout_rate=0.2, classifier_activation="softmax",
    include_preprocessing=True, name=None, **bam_kwargs,
):
    return build(
        "MobileNetV3Small", input_shape=input_shape, alpha=alpha,
        minimalistic=minimalistic, include_top=include_top, weights=weights,
        input_tensor=input_tensor, classes=classes, pooling=pooling,
        dropout_rate=dropout_rate, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, name=name, **bam_kwargs,
    )


@_documented("MobileNetV3Large", "MobileNetV3")
def BAMMobileNetV3Large(
    input_shape=None, alpha=1.0, minimalistic=False, include_top=True,
    weights="imagenet", input_tensor=None, classes=1000, pooling=None,
    dropout_rate=0.2, classifier_activation="softmax",
    include_preprocessing=True, name=None, **bam_kwargs,
):
    return build(
        "MobileNetV3Large", input_shape=input_shape, alpha=alpha,
        minimalistic=minimalistic, include_top=include_top, weights=weights,
        input_tensor=input_tensor, classes=classes, pooling=pooling,
        dropout_rate=dropout_rate, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, name=name, **bam_kwargs,
    )


@_documented("EfficientNetB0")
def BAMEfficientNetB0(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB0", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB1")
def BAMEfficientNetB1(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB1", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB2")
def BAMEfficientNetB2(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB2", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB3")
def BAMEfficientNetB3(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB3", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB4")
def BAMEfficientNetB4(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB4", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB5")
def BAMEfficientNetB5(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB5", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB6")
def BAMEfficientNetB6(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB6", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetB7")
def BAMEfficientNetB7(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "EfficientNetB7", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2B0", "EfficientNetV2")
def BAMEfficientNetV2B0(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2B0", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2B1", "EfficientNetV2")
def BAMEfficientNetV2B1(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2B1", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2B2", "EfficientNetV2")
def BAMEfficientNetV2B2(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2B2", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2B3", "EfficientNetV2")
def BAMEfficientNetV2B3(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2B3", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2S", "EfficientNetV2")
def BAMEfficientNetV2S(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2S", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2M", "EfficientNetV2")
def BAMEfficientNetV2M(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2M", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("EfficientNetV2L", "EfficientNetV2")
def BAMEfficientNetV2L(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", include_preprocessing=True,
    name=None, **bam_kwargs,
):
    return build(
        "EfficientNetV2L", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        name=name, **bam_kwargs,
    )


@_documented("DenseNet121")
def BAMDenseNet121(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "DenseNet121", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("DenseNet169")
def BAMDenseNet169(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "DenseNet169", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )


@_documented("DenseNet201")
def BAMDenseNet201(
    include_top=True, weights="imagenet", input_tensor=None,
    input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, **bam_kwargs,
):
    return build(
        "DenseNet201", include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation,
        name=name, **bam_kwargs,
    )
