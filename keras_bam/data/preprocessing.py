"""The one map from pixels in [0, 255] to what a network was trained on.

Every model this project trains or exports takes float32 RGB pixels in
[0, 255], its preprocessing inside it as layers, so that the `.keras` file,
the `.tflite` file and a phone's camera frames agree. The schemes are those
of `keras.applications`' `preprocess_input`:

| scheme | what the network sees | used by |
| --- | --- | --- |
| "none" | the pixels as they are | EfficientNet, MobileNetV3 (they rescale inside) |
| "unit" | pixels / 255, in [0, 1] | SmallCNN |
| "tf" (also "mobilenet") | pixels / 127.5 - 1, in [-1, 1] | MobileNet, ResNetV2 |
| "caffe" | pixels minus the ImageNet mean | ResNet (v1) |
| "torch" | (pixels / 255 - mean) / std, ImageNet's | DenseNet |

Caffe models also take BGR; `fold_bgr` reverses the first convolution's
input channels instead, which keeps the graph free of a GATHER that XNNPACK
would not take.
"""

import keras

SCHEMES = ("none", "unit", "tf", "caffe", "torch")
ALIASES = {"mobilenet": "tf"}
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # caffe: in pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torch: in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def standardize_scheme(scheme):
    """The canonical name of `scheme` ("mobilenet" -> "tf"); None -> "none"."""
    scheme = "none" if scheme is None else ALIASES.get(scheme, scheme)
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown preprocessing scheme {scheme!r}. Expected one of "
                         f"{', '.join(SCHEMES + tuple(ALIASES))}.")
    return scheme


def preprocessing_layers(scheme):
    """The Keras layers that map [0, 255] pixels as `scheme` says (a list,
    empty for "none")."""
    scheme = standardize_scheme(scheme)
    if scheme == "unit":
        return [keras.layers.Rescaling(1 / 255.0, name="to_unit_range")]
    if scheme == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_symmetric_range")]
    if scheme == "caffe":
        return [keras.layers.Normalization(mean=IMAGENET_MEAN_RGB, variance=(1.0,) * 3,
                                           name="subtract_imagenet_mean")]
    if scheme == "torch":
        return [keras.layers.Normalization(
            mean=[255 * m for m in IMAGENET_MEAN],
            variance=[(255 * s) ** 2 for s in IMAGENET_STD],
            name="imagenet_standardize")]
    return []


def apply_preprocessing(x, scheme):
    """`x` (a symbolic tensor of pixels) through `preprocessing_layers(scheme)`."""
    for layer in preprocessing_layers(scheme):
        x = layer(x)
    return x


def with_preprocessing(model, scheme):
    """`model` behind `scheme`'s layers: a model that takes [0, 255] pixels
    where `model` took preprocessed inputs. "none" returns `model` itself."""
    if standardize_scheme(scheme) == "none":
        return model
    inputs = keras.Input(model.inputs[0].shape[1:], name="pixels")
    return keras.Model(inputs, model(apply_preprocessing(inputs, scheme)),
                       name=model.name)


def fold_bgr(model):
    """Makes the first convolution of `model` take RGB where it was trained
    on BGR (the caffe scheme's channel order)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel[:, :, ::-1, :]] + rest)
            return
    raise ValueError(f"Model '{model.name}' has no convolution to fold the BGR "
                     "order into.")
