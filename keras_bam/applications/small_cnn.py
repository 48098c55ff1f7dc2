"""A small CIFAR-style CNN, with or without BAM at its two bottlenecks."""

import keras

from keras_bam.layers.bam import BAM


def _conv_bn_relu(x, filters, strides, name):
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        name=f"{name}_conv",
    )(x)
    # momentum 0.9: with Keras' 0.99 a run of a few hundred steps leaves the
    # moving statistics far off and inference-mode accuracy near chance.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def SmallCNN(input_shape=(32, 32, 1), classes=10, widths=(16, 32, 64),
             blocks_per_stage=2, use_bam=True, name=None, **bam_kwargs):
    """Three stages at full, 1/2 and 1/4 resolution, like the CIFAR ResNets.

    The stem does not downsample, so the bottlenecks (where the next stage
    halves the resolution) follow stages 1 and 2; with `use_bam` a BAM is
    placed at each, as the paper does, named `stage{i}_bam`.

    Args:
        input_shape: image shape, channels last.
        classes: number of output logits.
        widths: channels of the three stages.
        blocks_per_stage: conv-BN-ReLU blocks per stage.
        use_bam: insert BAM at the two bottlenecks.
        name: model name (default "small_cnn" or "small_cnn_bam").
        **bam_kwargs: passed to every `BAM`.

    Returns:
        A Functional `keras.Model` that outputs logits.
    """
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(inputs, widths[0], 1, "stem")
    for stage, filters in enumerate(widths, start=1):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _conv_bn_relu(x, filters, strides, f"stage{stage}_block{block}")
        if use_bam and stage < len(widths):
            x = BAM(name=f"stage{stage}_bam", **bam_kwargs)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    default = "small_cnn_bam" if use_bam else "small_cnn"
    return keras.Model(inputs, outputs, name=name or default)
