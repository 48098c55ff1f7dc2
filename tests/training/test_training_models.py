"""keras_bam.training.models: names, and the one pixel map
(keras_bam.data.preprocessing) inside each model."""

import keras
import numpy as np
import pytest

from keras_bam.data import preprocessing
from keras_bam.training import models


def test_every_supported_application_has_its_keras_snake_case_name():
    for name in ("mobilenet", "mobilenet_v2", "mobilenet_v3_small", "resnet50",
                 "resnet50_v2", "resnet152_v2", "efficientnet_b0",
                 "efficientnet_v2_s", "densenet121", "small_cnn"):
        assert name in models.MODELS
    # Each maps back to a keras.applications constructor.
    for name, (application, _) in models.MODELS.items():
        assert application is None or hasattr(keras.applications, application), name


def test_unknown_names_and_weights_are_refused_with_the_choices():
    with pytest.raises(models.ModelError, match="Choose one of: small_cnn, resnet50"):
        models.build_model("resnet5", 10, 32)
    with pytest.raises(models.ModelError, match="no pretrained weights"):
        models.build_model("small_cnn", 10, 32, weights="imagenet")


@pytest.mark.parametrize("mode, module", [
    ("tf", keras.applications.mobilenet_v2),
    ("mobilenet", keras.applications.mobilenet),
    ("torch", keras.applications.densenet),
    ("none", keras.applications.efficientnet),
])
def test_preprocessing_layers_match_keras_preprocess_input(mode, module, rng):
    pixels = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    x = preprocessing.apply_preprocessing(pixels, mode)
    expected = module.preprocess_input(pixels.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(x), expected, atol=1e-4)


def test_unit_scheme_and_with_preprocessing(rng):
    pixels = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])
    wrapped = preprocessing.with_preprocessing(inner, "unit")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(wrapped(pixels)),
                               pixels.reshape(2, -1) / 255.0, rtol=1e-6)
    assert preprocessing.with_preprocessing(inner, "none") is inner
    with pytest.raises(ValueError, match="Unknown preprocessing scheme 'imagenet'"):
        preprocessing.preprocessing_layers("imagenet")


def test_caffe_order_is_folded_into_the_first_convolution(rng):
    """ResNet (v1) was trained on BGR minus the mean: our model feeds RGB
    minus the mean to a first convolution whose input channels are
    reversed, which is the same function."""
    keras.utils.set_random_seed(1)
    model = keras.applications.ResNet50(weights=None, include_top=False,
                                        input_shape=(32, 32, 3))
    pixels = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = model(keras.applications.resnet50.preprocess_input(pixels.copy()))
    # Folded in place, once the reference output is taken: one ResNet50
    # built, not a second one cloned from it.
    preprocessing.fold_bgr(model)
    (normalize,) = preprocessing.preprocessing_layers("caffe")
    got = model(normalize(pixels))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                               keras.ops.convert_to_numpy(expected), rtol=1e-4, atol=1e-4)


def test_bam_and_baseline_differ_only_by_bam():
    bam = models.build_model("mobilenet_v2", 7, 64, seed=0)
    plain = models.build_model("mobilenet_v2", 7, 64, bam=False, seed=0)
    bam_layers = [layer for layer in bam.layers if type(layer).__name__ == "BAM"]
    assert [layer.name for layer in bam_layers] == [
        "block_2_add_bam", "block_5_add_bam", "block_12_add_bam"]
    assert bam.count_params() - plain.count_params() == sum(
        layer.count_params() for layer in bam_layers)
    assert bam.output_shape == plain.output_shape == (None, 7)
