"""The authors' ResNet, with or without BAM, as Keras models.

The BAM authors trained their networks with their own ResNet
(github.com/Jongchan/attention-module, `MODELS/model_resnet.py`,
`ResidualNet(network_type, depth, num_classes, att_type)`), which is
torchvision's ResNet with BAM after stages 1, 2 and 3. `ResidualNet18`,
`ResidualNet34`, `ResidualNet50` and `ResidualNet101` build it layer for
layer, so that their checkpoints load with `keras_bam.from_torch_checkpoint`
and give their logits:

- the stride of a downsampling block is on its 3x3 convolution (torchvision
  style; `keras.applications.ResNet50`, and so `BAMResNet50`, put it on the
  first 1x1 convolution), and the padding is PyTorch's, symmetric;
- no convolution has a bias; batch norm has epsilon 1e-5 and PyTorch's
  momentum (0.9 in Keras' convention);
- BAM is `BAM(variant="official")`, the authors' module, with a hidden width
  of exactly C // 16 (also on the 64 channels of ResNet-18 and -34);
- "ImageNet" networks start with a 7x7 stride-2 convolution and a 3x3
  stride-2 max pool; "CIFAR" networks with a 3x3 stride-1 convolution and no
  pool.

Layer names follow the PyTorch parameter names with "." replaced by "_":
`conv1`, `bn1`, `layer1_0_conv1`, `layer1_0_downsample_0`, `bam1`, `fc`.

The models take float32 RGB pixels in [0, 255] and normalize them inside
(`include_preprocessing=True`) as the authors' evaluation does: scaled to
[0, 1], then the ImageNet mean (0.485, 0.456, 0.406) subtracted and divided
by the standard deviation (0.229, 0.224, 0.225). Their ImageNet evaluation
resizes the shorter side to 256 pixels and takes the central 224 x 224 crop;
feed the models images prepared that way (`resize_and_center_crop`). They
return logits.

Example:

>>> model = keras_bam.applications.ResidualNet18(network_type="CIFAR", classes=100)
>>> model.name, model.output_shape
('residualnet18_cifar_bam', (None, 100))
>>> [layer.name for layer in model.layers if isinstance(layer, keras_bam.BAM)]
['bam1', 'bam2', 'bam3']
"""

import keras

from keras_bam.data.views import resize_and_center_crop
from keras_bam.layers.bam import BAM

__all__ = [
    "ResidualNet",
    "ResidualNet18",
    "ResidualNet34",
    "ResidualNet50",
    "ResidualNet101",
    "replace_classifier",
    "resize_and_center_crop",
]

# depth -> (block type, blocks in stages 1-4), as in their ResidualNet.
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
NETWORK_TYPES = ("ImageNet", "CIFAR")
ATTENTIONS = ("bam", None)
DEFAULT_INPUT_SHAPE = {"ImageNet": (224, 224, 3), "CIFAR": (32, 32, 3)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STAGE_PLANES = (64, 128, 256, 512)
# Pixels come as (H, W, 3) whatever keras.config.image_data_format() says.
_CHANNELS_LAST = "channels_last"
# PyTorch's defaults, which their networks were trained with.
_BN_EPSILON, _BN_MOMENTUM = 1e-5, 0.9


def _conv_initializer():
    # Their initialization: Kaiming normal, fan out (He et al. 2015).
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _network_type(value):
    if isinstance(value, str):
        for known in NETWORK_TYPES:
            if value.lower() == known.lower():
                return known
    raise ValueError(
        f"`network_type` must be 'ImageNet' (7x7 stride-2 stem and max pool) "
        f"or 'CIFAR' (3x3 stride-1 stem). Received: network_type={value!r}"
    )


def _attention(value):
    if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
        return None
    if isinstance(value, str) and value.lower() == "bam":
        return "bam"
    if isinstance(value, str) and value.lower() == "cbam":
        raise ValueError(
            "attention='cbam' (the authors' CBAM networks) is not implemented "
            "yet. Use attention='bam' or attention=None."
        )
    raise ValueError(
        f"`attention` must be 'bam' or None (the plain ResNet). "
        f"Received: attention={value!r}"
    )


def _input_shape(value, network_type):
    if value is None:
        return DEFAULT_INPUT_SHAPE[network_type]
    shape = tuple(value) if isinstance(value, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or shape[2] != 3
        or any(s is not None and (not isinstance(s, int) or s < 1) for s in shape[:2])
    ):
        raise ValueError(
            "`input_shape` must be (height, width, 3): RGB channels last, "
            "height and width positive integers or None. "
            f"Received: input_shape={value!r}"
        )
    return shape


def _check_weights(weights):
    if weights is None:
        return
    import os

    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be None (random initialization) or the path of a "
            "weights file: the authors' PyTorch checkpoint (.pth, .pth.tar), a "
            f"NumPy .npz state dict, or Keras .weights.h5. Received: {weights!r}"
        )
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` file {os.fspath(weights)!r} does not exist. Pass None or "
            "the path of a checkpoint or .weights.h5 file. There are no "
            "downloadable weights: get the authors' checkpoint from their "
            "repository (github.com/Jongchan/attention-module)."
        )


def _batch_norm(x, name):
    return keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )(x)


def _conv(x, filters, kernel_size, strides, name):
    """nn.Conv2d(bias=False, padding=kernel_size // 2), PyTorch's padding.

    Keras' "same" pads an even-sized map asymmetrically when the stride is 2
    (nothing before, one pixel after); PyTorch pads both sides. Strided
    convolutions therefore get an explicit symmetric ZeroPadding2D.
    """
    pad = kernel_size // 2
    padding = "same"
    if strides > 1:
        padding = "valid"
        if pad:
            x = keras.layers.ZeroPadding2D(pad, data_format=_CHANNELS_LAST,
                                           name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=_conv_initializer(),
        data_format=_CHANNELS_LAST,
        name=name,
    )(x)


def _block(x, kind, planes, strides, downsample, name):
    """BasicBlock or Bottleneck of their model_resnet.py."""
    shortcut = x
    if kind == "basic":
        y = _conv(x, planes, 3, strides, f"{name}_conv1")
        y = _batch_norm(y, f"{name}_bn1")
        y = keras.layers.ReLU(name=f"{name}_relu1")(y)
        y = _conv(y, planes, 3, 1, f"{name}_conv2")
        y = _batch_norm(y, f"{name}_bn2")
    else:
        y = _conv(x, planes, 1, 1, f"{name}_conv1")
        y = _batch_norm(y, f"{name}_bn1")
        y = keras.layers.ReLU(name=f"{name}_relu1")(y)
        y = _conv(y, planes, 3, strides, f"{name}_conv2")
        y = _batch_norm(y, f"{name}_bn2")
        y = keras.layers.ReLU(name=f"{name}_relu2")(y)
        y = _conv(y, planes * 4, 1, 1, f"{name}_conv3")
        y = _batch_norm(y, f"{name}_bn3")
    if downsample:
        shortcut = _conv(x, planes * EXPANSION[kind], 1, strides,
                         f"{name}_downsample_0")
        shortcut = _batch_norm(shortcut, f"{name}_downsample_1")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def ResidualNet(
    depth,
    network_type="ImageNet",
    attention="bam",
    include_top=True,
    weights=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation=None,
    include_preprocessing=True,
    name=None,
):
    """The authors' ResNet (`ResidualNet` of their model_resnet.py) in Keras.

    `ResidualNet(50, "ImageNet", "bam", classes=1000)` is their
    `ResidualNet("ImageNet", 50, 1000, "BAM")`. See `ResidualNet50` for
    the arguments; `depth` is 18, 34, 50 or 101.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth not in DEPTHS:
        raise ValueError(
            f"`depth` must be one of {sorted(DEPTHS)}, the depths of the "
            f"authors' ResidualNet. Received: depth={depth!r}"
        )
    network_type = _network_type(network_type)
    attention = _attention(attention)
    input_shape = _input_shape(input_shape, network_type)
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None (the last feature map), 'avg' or 'max'. "
            f"Received: pooling={pooling!r}"
        )
    if include_top and (
        isinstance(classes, bool) or not isinstance(classes, int) or classes < 1
    ):
        raise ValueError(
            f"`classes` must be a positive integer. Received: classes={classes!r}"
        )
    _check_weights(weights)
    kind, blocks = DEPTHS[depth]
    expansion = EXPANSION[kind]

    inputs = keras.Input(input_shape, name="pixels")
    x = inputs
    if include_preprocessing:
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
        x = keras.layers.Normalization(
            mean=IMAGENET_MEAN,
            variance=[s * s for s in IMAGENET_STD],
            name="normalize",
        )(x)
    if network_type == "ImageNet":
        x = _conv(x, 64, 7, 2, "conv1")
    else:
        x = _conv(x, 64, 3, 1, "conv1")
    x = _batch_norm(x, "bn1")
    x = keras.layers.ReLU(name="relu")(x)
    if network_type == "ImageNet":
        # MaxPool2d(3, stride 2, padding 1) pads with -inf; after a ReLU
        # zeros give the same maxima.
        x = keras.layers.ZeroPadding2D(1, data_format=_CHANNELS_LAST,
                                       name="maxpool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, data_format=_CHANNELS_LAST,
                                      name="maxpool")(x)

    in_channels = 64
    for stage, (planes, count) in enumerate(zip(_STAGE_PLANES, blocks), start=1):
        for index in range(count):
            strides = 2 if stage > 1 and index == 0 else 1
            downsample = index == 0 and (
                strides != 1 or in_channels != planes * expansion
            )
            x = _block(x, kind, planes, strides, downsample, f"layer{stage}_{index}")
            in_channels = planes * expansion
        if attention == "bam" and stage < 4:
            # Hidden width exactly C // 16, as in their code.
            x = BAM(variant="official", min_hidden_channels=1,
                    data_format="channels_last", name=f"bam{stage}")(x)

    if include_top:
        # Their AvgPool2d(7) (ImageNet at 224) and avg_pool2d(x, 4) (CIFAR at
        # 32) average the whole last map; so does this at any input size.
        x = keras.layers.GlobalAveragePooling2D(_CHANNELS_LAST, name="avgpool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               name="fc")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(_CHANNELS_LAST, name="avgpool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(_CHANNELS_LAST, name="maxpool_global")(x)

    if name is None:
        name = f"residualnet{depth}"
        name += "_cifar" if network_type == "CIFAR" else ""
        name += "_bam" if attention == "bam" else ""
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        import os

        if os.fspath(weights).endswith(".weights.h5"):
            model.load_weights(weights)
        else:
            from keras_bam.torch_checkpoint import load_torch_checkpoint

            load_torch_checkpoint(model, weights)
    return model


_DOCSTRING = """The authors' {depth}-layer ResNet, with BAM by default, in Keras.

    Their `ResidualNet(network_type, {depth}, num_classes, att_type)`
    (github.com/Jongchan/attention-module, `MODELS/model_resnet.py`), layer
    for layer: {blocks} {kind} blocks in stages 1-4 (64, 128, 256, 512
    planes), the stride of each downsampling block on its 3x3 convolution,
    no convolution biases, batch norm epsilon 1e-5, and with
    `attention="bam"` a `BAM(variant="official")` with hidden width C // 16
    after stages 1, 2 and 3. Not `keras.applications.ResNet{depth}` (nor
    `keras_bam.applications.BAMResNet50`), which puts the stride on the
    first 1x1 convolution and has convolution biases: the authors'
    checkpoints fit this model only. Load one with
    `keras_bam.from_torch_checkpoint(path)`, or `weights=path`.

    The model takes float32 RGB pixels in [0, 255] and normalizes them
    inside as the authors' evaluation does ([0, 1], then ImageNet mean and
    standard deviation); their ImageNet evaluation resizes the shorter side
    to 256 and takes the central 224 x 224 crop. It returns logits.

    Reference: Park et al., "BAM: Bottleneck Attention Module", BMVC 2018,
    arXiv 1807.06514; He et al., "Deep Residual Learning for Image
    Recognition", CVPR 2016.

    Args:
        network_type: "ImageNet" (default: 7x7 stride-2 convolution and 3x3
            stride-2 max pool first) or "CIFAR" (3x3 stride-1 convolution,
            no pool).
        attention: "bam" (default) or None (the plain ResNet).
        include_top: whether to end with the global average pool and the
            classifier `fc`. Default True.
        weights: None (random initialization, their scheme for convolutions)
            or the path of a weights file: the authors' checkpoint (`.pth`,
            `.pth.tar`; needs torch), a NumPy `.npz` state dict with their
            parameter names, or a Keras `.weights.h5`.
        input_shape: (height, width, 3). Default (224, 224, 3) for
            "ImageNet", (32, 32, 3) for "CIFAR", the sizes the authors
            trained at. None for height and width gives a model for any
            size (then not exportable to TFLite).
        pooling: with `include_top=False`: None (default: the last feature
            map, 512 * expansion channels), "avg" or "max" (a vector).
        classes: number of classes of `fc`. Default 1000.
        classifier_activation: activation of `fc`. Default None: logits,
            as the authors' network returns (keras.applications defaults to
            "softmax").
        include_preprocessing: normalize [0, 255] pixels inside the model.
            Default True; False takes inputs already normalized.
        name: model name. Default "residualnet{depth}", with "_cifar" and
            "_bam" appended for those options.

    Returns:
        A Functional `keras.Model`. See `keras_bam.applications.residual_net`
        for an example.
    """


def ResidualNet18(network_type="ImageNet", attention="bam", include_top=True,
                  weights=None, input_shape=None, pooling=None, classes=1000,
                  classifier_activation=None, include_preprocessing=True,
                  name=None):
    return ResidualNet(18, network_type, attention, include_top, weights,
                       input_shape, pooling, classes, classifier_activation,
                       include_preprocessing, name)


def ResidualNet34(network_type="ImageNet", attention="bam", include_top=True,
                  weights=None, input_shape=None, pooling=None, classes=1000,
                  classifier_activation=None, include_preprocessing=True,
                  name=None):
    return ResidualNet(34, network_type, attention, include_top, weights,
                       input_shape, pooling, classes, classifier_activation,
                       include_preprocessing, name)


def ResidualNet50(network_type="ImageNet", attention="bam", include_top=True,
                  weights=None, input_shape=None, pooling=None, classes=1000,
                  classifier_activation=None, include_preprocessing=True,
                  name=None):
    return ResidualNet(50, network_type, attention, include_top, weights,
                       input_shape, pooling, classes, classifier_activation,
                       include_preprocessing, name)


def ResidualNet101(network_type="ImageNet", attention="bam", include_top=True,
                   weights=None, input_shape=None, pooling=None, classes=1000,
                   classifier_activation=None, include_preprocessing=True,
                   name=None):
    return ResidualNet(101, network_type, attention, include_top, weights,
                       input_shape, pooling, classes, classifier_activation,
                       include_preprocessing, name)


for _constructor in (ResidualNet18, ResidualNet34, ResidualNet50, ResidualNet101):
    _depth = int(_constructor.__name__[len("ResidualNet"):])
    _kind, _blocks = DEPTHS[_depth]
    _constructor.__doc__ = _DOCSTRING.format(
        depth=_depth, blocks="-".join(map(str, _blocks)),
        kind="basic" if _kind == "basic" else "bottleneck",
    )
del _constructor, _depth, _kind, _blocks


def replace_classifier(model, classes, classifier_activation=None,
                       layer_name=None, name=None):
    """A model with a new, freshly initialized classifier for `classes`.

    For fine-tuning a loaded network on a dataset with other classes: the
    classifier (a `Dense` layer) is replaced by a new `Dense(classes)` on the
    same features. The rest of the network is shared with `model`, not
    copied (as when a `keras.applications` model is used as a base):
    training the new model changes `model`'s layers too;
    `keras.models.clone_model` first if both are needed apart.

    Args:
        model: a Functional model ending in a `Dense` classifier, e.g. from
            `ResidualNet50(...)` (its classifier is "fc") or
            `keras_bam.from_torch_checkpoint(...)`, or ending in a nested
            Functional model that does (as `examples/train.py`'s small_cnn).
        classes: number of classes of the new classifier.
        classifier_activation: its activation. Default None (logits).
        layer_name: the classifier to replace, a layer of `model`. Default
            None: the model's last layer (looking into a nested model that
            is the last layer), which must be a `Dense`.
        name: the new model's name. Default `model.name`.

    Returns:
        A Functional `keras.Model` with the inputs of `model`, ending in a
        `Dense(classes)` with the old classifier's name.

    Example:

    >>> model = keras_bam.applications.ResidualNet18(
    ...     network_type="CIFAR", classes=100)
    >>> keras_bam.applications.replace_classifier(model, 10).output_shape
    (None, 10)
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(
            f"`classes` must be a positive integer. Received: classes={classes!r}"
        )
    layers = list(getattr(model, "layers", []))
    if not layers or not getattr(model, "inputs", None):
        raise TypeError(
            "replace_classifier takes a Functional keras.Model. "
            f"Received: {model!r}"
        )
    if layer_name is None:
        old = layers[-1]
        while isinstance(old, keras.Model) and getattr(old, "layers", None):
            old = old.layers[-1]  # a nested model's own classifier
    else:
        names = [layer.name for layer in layers]
        if layer_name not in names:
            import difflib

            close = difflib.get_close_matches(layer_name, names, n=3)
            raise ValueError(
                f"{model.name!r} has no layer named {layer_name!r}"
                + (f" (close: {', '.join(close)})" if close else "")
                + ". Pass the classifier's name as layer_name=..., or build "
                "the model with include_top=True."
            )
        old = model.get_layer(layer_name)
    if not isinstance(old, keras.layers.Dense):
        raise ValueError(
            f"Layer {old.name!r} of {model.name!r} is a {type(old).__name__}, "
            "not a Dense classifier. Pass the classifier's name as "
            "layer_name=..., or build the model with include_top=True."
        )
    head = keras.layers.Dense(classes, activation=classifier_activation,
                              name=old.name)

    def call(layer, *args, **kwargs):
        return head(*args, **kwargs) if layer is old else layer(*args, **kwargs)

    # The model's own graph, re-traced with every layer but `old` shared (a
    # layer's `.input` would be ambiguous: insert_bam reuses layers).
    traced = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                      call_function=call, recursive=True)
    # `.input`/`.output`: the model's own structures (one tensor, not a list).
    return keras.Model(traced.input, traced.output, name=name or model.name)
