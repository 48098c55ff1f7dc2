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

from keras_bam.layers import BAM
from keras_bam.layers.base import BaseGate
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


def _bam_option_names():
    names = set()
    for cls in (BAM, BaseGate):
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind is parameter.POSITIONAL_OR_KEYWORD:
                names.add(parameter.name)
    return names - {"self"}


BAM_OPTIONS = frozenset(_bam_option_names())


def build(backbone, *args, **kwargs):
    """`keras.applications.<backbone>(*args, **kwargs)` with BAM inserted.

    Keyword arguments that are `BAM` options go to every BAM; the rest, and
    all positional arguments, to the Keras constructor.
    """
    if backbone not in BACKBONES:
        raise ValueError(
            f"Unknown backbone '{backbone}'. Supported: {', '.join(BACKBONES)}.")
    constructor = getattr(keras.applications, backbone)
    bam_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in BAM_OPTIONS}
    signature = inspect.signature(constructor)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        options = sorted(set(signature.parameters) | BAM_OPTIONS)
        raise TypeError(f"BAM{backbone}: {error}. Accepted keyword arguments: "
                        f"{', '.join(options)}.") from None
    bound.apply_defaults()
    arguments = bound.arguments
    weights = arguments.get("weights")
    weights_file = None
    if weights not in (None, "imagenet"):
        weights_file, arguments["weights"] = weights, None  # BAM model weights
    model = constructor(**arguments)
    default_name = model.name.lower().replace("-", "_")
    name = kwargs.get("name") or f"bam_{default_name}"
    # With input_tensor, keep the caller's tensors as the model's inputs.
    input_tensors = model.inputs if arguments.get("input_tensor") is not None else None
    model = rewrite(model, after=None, share_weights=True, name=name,
                    input_tensors=input_tensors, bam_kwargs=bam_kwargs)
    if weights_file is not None:
        model.load_weights(weights_file)
    return model


def _constructor(backbone):
    def constructor(*args, **kwargs):
        return build(backbone, *args, **kwargs)

    constructor.__name__ = constructor.__qualname__ = f"BAM{backbone}"
    constructor.__doc__ = (
        f"`keras.applications.{backbone}` with BAM at the paper's "
        f"bottlenecks.\n\n    Takes `keras.applications.{backbone}`'s "
        "arguments (`include_top`, `weights`, `input_tensor`, `input_shape`, "
        "`pooling`, `classes`, ...) and any `keras_bam.BAM` option "
        "(`reduction_ratio`, `variant`, ...), passed to every BAM. The model "
        "is named `bam_<name>`. See `keras_bam.applications.backbones`.\n")
    return constructor


BAMResNet50 = _constructor("ResNet50")
BAMResNet101 = _constructor("ResNet101")
BAMResNet152 = _constructor("ResNet152")
BAMResNet50V2 = _constructor("ResNet50V2")
BAMResNet101V2 = _constructor("ResNet101V2")
BAMResNet152V2 = _constructor("ResNet152V2")
BAMMobileNet = _constructor("MobileNet")
BAMMobileNetV2 = _constructor("MobileNetV2")
BAMMobileNetV3Small = _constructor("MobileNetV3Small")
BAMMobileNetV3Large = _constructor("MobileNetV3Large")
BAMEfficientNetB0 = _constructor("EfficientNetB0")
BAMEfficientNetB1 = _constructor("EfficientNetB1")
BAMEfficientNetB2 = _constructor("EfficientNetB2")
BAMEfficientNetB3 = _constructor("EfficientNetB3")
BAMEfficientNetB4 = _constructor("EfficientNetB4")
BAMEfficientNetB5 = _constructor("EfficientNetB5")
BAMEfficientNetB6 = _constructor("EfficientNetB6")
BAMEfficientNetB7 = _constructor("EfficientNetB7")
BAMEfficientNetV2B0 = _constructor("EfficientNetV2B0")
BAMEfficientNetV2B1 = _constructor("EfficientNetV2B1")
BAMEfficientNetV2B2 = _constructor("EfficientNetV2B2")
BAMEfficientNetV2B3 = _constructor("EfficientNetV2B3")
BAMEfficientNetV2S = _constructor("EfficientNetV2S")
BAMEfficientNetV2M = _constructor("EfficientNetV2M")
BAMEfficientNetV2L = _constructor("EfficientNetV2L")
BAMDenseNet121 = _constructor("DenseNet121")
BAMDenseNet169 = _constructor("DenseNet169")
BAMDenseNet201 = _constructor("DenseNet201")
