"""A dilated 3x3 convolution that stays one op when exported to TFLite."""

import keras


def _tf_dilated_conv(inputs, kernel, dilation_rate):
    """NHWC dilated convolution as a single `Conv2D` op in the graph.

    `tf.nn.convolution` (what Keras calls) lowers a dilated convolution to
    SpaceToBatchND -> Conv2D -> BatchToSpaceND. With an unknown batch size the
    TFLite converter cannot fold that back into one CONV_2D, and XNNPACK does
    not take the result. `tf.nn.conv2d(..., dilations=d)` is one op, but
    TensorFlow's CPU kernels cannot differentiate it, so the gradient is
    taken through `tf.nn.convolution`, which computes the same function.
    """
    import tensorflow as tf

    kernel = tf.convert_to_tensor(kernel)

    @tf.custom_gradient
    def conv(x, k):
        y = tf.nn.conv2d(x, k, strides=1, padding="SAME", dilations=dilation_rate)

        def grad(dy):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                reference = tf.nn.convolution(
                    x, k, strides=1, padding="SAME", dilations=dilation_rate
                )
            return tape.gradient(reference, [x, k], output_gradients=dy)

        return y, grad

    return conv(inputs, kernel)


@keras.saving.register_keras_serializable(package="keras_bam")
class DilatedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose TensorFlow graph holds one Conv2D op.

    Used by `SpatialGate` for its dilated 3x3 convolutions. Restricted to what
    the gate needs: stride 1, "same" padding, channels_last. On backends other
    than TensorFlow it is exactly `keras.layers.Conv2D`.
    """

    def __init__(self, filters, kernel_size, dilation_rate=1, **kwargs):
        for name, expected in (("strides", 1), ("padding", "same"),
                               ("data_format", "channels_last"), ("groups", 1)):
            if name in kwargs and kwargs[name] not in (expected, (1, 1)):
                raise ValueError(
                    f"DilatedConv2D supports only {name}={expected!r}. "
                    f"Received: {name}={kwargs[name]!r}"
                )
            kwargs.pop(name, None)
        super().__init__(
            filters,
            kernel_size,
            dilation_rate=dilation_rate,
            padding="same",
            data_format="channels_last",
            **kwargs,
        )

    def convolution_op(self, inputs, kernel):
        if keras.backend.backend() != "tensorflow" or self.dilation_rate == (1, 1):
            return super().convolution_op(inputs, kernel)
        return _tf_dilated_conv(inputs, kernel, self.dilation_rate)
