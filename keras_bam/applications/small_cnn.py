"""A small CIFAR-style CNN: the network of the quick experiments and of the
default export, BAM inserted by `keras_bam.insert_bam`."""

import keras


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
             blocks_per_stage=2, name="small_cnn"):
    """Three stages at full, 1/2 and 1/4 resolution, like the CIFAR ResNets.

    The stem does not downsample, so the bottlenecks (where the next stage
    halves the resolution) follow stages 1 and 2: `keras_bam.insert_bam`
    places a BAM at each, as the paper does.

    Args:
        input_shape: image shape, channels last.
        classes: number of output logits.
        widths: channels of the three stages.
        blocks_per_stage: conv-BN-ReLU blocks per stage.
        name: model name.

    Returns:
        A Functional `keras.Model` without BAM that outputs logits.

    Example:

    >>> model = keras_bam.insert_bam(SmallCNN(input_shape=(32, 32, 3)))
    >>> [layer.name for layer in model.layers if isinstance(layer, keras_bam.BAM)]
    ['stage1_block1_relu_bam', 'stage2_block1_relu_bam']
    """
    if len(widths) != 3 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError("`widths` must be three positive integers, one per stage. "
                         f"Received: widths={widths!r}.")
    if not isinstance(blocks_per_stage, int) or blocks_per_stage < 1:
        raise ValueError("`blocks_per_stage` must be a positive integer. "
                         f"Received: blocks_per_stage={blocks_per_stage!r}.")
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(inputs, widths[0], 1, "stem")
    for stage, filters in enumerate(widths, start=1):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _conv_bn_relu(x, filters, strides, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
