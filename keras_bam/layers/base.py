"""The constructor arguments and sublayer factories the BAM layers share."""

import keras

from keras_bam.layers import options


class BaseGate(keras.layers.Layer):
    """Stores, validates and serializes the arguments common to all gates.

    Not public: `ChannelGate`, `SpatialGate` and `BAM` derive from it so that
    each argument is standardized once, the same way in all three. Each of
    them lists every one of its arguments in its own signature and passes
    them here by name; only `keras.layers.Layer`'s own arguments (name,
    dtype, trainable, ...) travel in `**kwargs`.
    """

    def __init__(
        self,
        *,
        reduction_ratio,
        min_hidden_channels,
        variant,
        data_format,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        batch_norm_momentum,
        batch_norm_epsilon,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction_ratio = options.positive_int(
            "reduction_ratio", reduction_ratio
        )
        # None stays None in get_config(): the floor then follows `variant`.
        self.min_hidden_channels = options.optional_positive_int(
            "min_hidden_channels", min_hidden_channels
        )
        self.variant = options.variant(variant)
        self.data_format = options.data_format(data_format)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        # PyTorch's defaults (momentum 0.1 there is 0.9 in Keras' convention),
        # which the paper's and the authors' models were trained with. Keras'
        # 0.99 leaves the moving statistics far from the data after a short
        # fine-tuning, and inference-mode accuracy then collapses.
        self.batch_norm_momentum = options.batch_norm_value(
            "batch_norm_momentum", batch_norm_momentum
        )
        self.batch_norm_epsilon = options.batch_norm_value(
            "batch_norm_epsilon", batch_norm_epsilon
        )

    def hidden_channels(self, channels):
        """The width of the gate's bottleneck on a map with `channels`
        channels: `channels // reduction_ratio`, floored by
        `min_hidden_channels` (8 for the paper's variant and none for the
        official one when it is None)."""
        return options.hidden_channels(
            channels,
            self.reduction_ratio,
            options.min_hidden_channels(self.min_hidden_channels, self.variant),
            layer_name=f"{type(self).__name__} '{self.name}'",
        )

    def _require_built(self):
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' is not built yet, so its "
                "sublayers do not exist. Call it on a feature map or call "
                "`build(input_shape)` first.")

    def compute_output_spec(self, inputs, *args, **kwargs):
        # Symbolic calls (keras.Input) do not run call(), so the dtype check
        # that call() makes on real tensors is made here too.
        options.check_float_input(self, inputs)
        return super().compute_output_spec(inputs, *args, **kwargs)

    # In the paper's variant a bias directly followed by batch norm is
    # cancelled by the batch norm's own shift, so it is left out; the
    # authors' code keeps every bias, so "official" does too.
    def _bias_before_batch_norm(self):
        return self.variant == "official"

    def _sublayer_kwargs(self):
        # Each sublayer gets its own initializer instance: Keras initializers
        # draw the same values on every call, so sharing one would give the
        # sublayers identical kernels.
        return {
            "kernel_initializer": _fresh(self.kernel_initializer),
            "bias_initializer": _fresh(self.bias_initializer),
            "kernel_regularizer": self.kernel_regularizer,
            "bias_regularizer": self.bias_regularizer,
            "dtype": self.dtype_policy,
        }

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(
            axis=-1,
            momentum=self.batch_norm_momentum,
            epsilon=self.batch_norm_epsilon,
            dtype=self.dtype_policy,
            name=name,
        )

    def _channels(self, input_shape):
        channels = options.feature_channels(self, input_shape)
        return channels, self.hidden_channels(channels)

    def _to_channels_last(self, x):
        if self.data_format == "channels_first":
            return keras.ops.transpose(x, (0, 2, 3, 1))
        return x

    def _from_channels_last(self, x):
        if self.data_format == "channels_first":
            return keras.ops.transpose(x, (0, 3, 1, 2))
        return x

    def _shared_config(self):
        """The constructor arguments every gate takes, serialized: also the
        keyword arguments BAM builds its two gates with."""
        return {
            "reduction_ratio": self.reduction_ratio,
            "min_hidden_channels": self.min_hidden_channels,
            "variant": self.variant,
            "data_format": self.data_format,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "bias_regularizer": keras.regularizers.serialize(
                self.bias_regularizer
            ),
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        }

    def get_config(self):
        config = super().get_config()
        config.update(self._shared_config())
        return config


def _fresh(initializer):
    return keras.initializers.get(keras.initializers.serialize(initializer))
