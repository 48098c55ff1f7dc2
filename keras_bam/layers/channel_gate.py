"""The channel branch of BAM: which channels matter."""

import keras
from keras import ops

from keras_bam.layers import options
from keras_bam.layers.base import BaseGate


@keras.saving.register_keras_serializable(package="keras_bam")
class ChannelGate(BaseGate):
    """Channel attention logits of the Bottleneck Attention Module.

    Mc(F) = BN(W1 · ReLU(W0 · AvgPool(F) + b0))  (paper, eq. 2)

    The feature map is averaged over height and width, squeezed through a
    one-hidden-layer MLP (C -> C/r -> C) and batch-normalized. The result is a
    logit per channel; `BAM` adds it to the spatial logits before the gate
    activation. With `variant="official"` the layer computes what the
    authors' PyTorch code computes instead: Dense -> BN -> ReLU -> Dense, with
    every bias and no batch norm at the end.

    Reference: Park et al., "BAM: Bottleneck Attention Module", BMVC 2018,
    arXiv 1807.06514.

    Args:
        reduction_ratio: r, the MLP's squeeze factor. Default 16.
        min_hidden_channels: lower bound on the hidden width C // r (never
            above C), so that narrow feature maps keep a usable branch.
            None (default) means 8 for the paper's variant and no bound
            (`C // r` exactly, as the authors' code) for the official one.
        variant: "paper" (default) or "official" (the authors' code).
        data_format: "channels_last", "channels_first" or None (Keras'
            image data format).
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: for the MLP's two layers.
        batch_norm_momentum, batch_norm_epsilon: of every batch norm
            inside. Default 0.9 and 1e-5, PyTorch's defaults, with which the
            paper's and the authors' models were trained.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: a 4-D floating-point feature map.
        training: whether batch norm uses batch statistics.

    Input shape: (N, H, W, C) or (N, C, H, W) with `channels_first`.
    Output shape: (N, 1, 1, C) or (N, C, 1, 1): broadcastable to the input.

    Example:

    >>> gate = ChannelGate()
    >>> tuple(gate(keras.ops.ones((2, 8, 8, 64))).shape)
    (2, 1, 1, 64)
    """

    def __init__(
        self,
        reduction_ratio=16,
        min_hidden_channels=None,
        variant="paper",
        data_format=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(
            reduction_ratio=reduction_ratio,
            min_hidden_channels=min_hidden_channels,
            variant=variant,
            data_format=data_format,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            batch_norm_momentum=batch_norm_momentum,
            batch_norm_epsilon=batch_norm_epsilon,
            **kwargs,
        )

    def build(self, input_shape):
        channels, hidden = self._channels(input_shape)
        official = self.variant == "official"
        # The MLP's two Dense layers act on the pooled (N, 1, 1, C) tensor as
        # 1x1 convolutions: the same arithmetic, but a graph without the
        # reshapes that a Dense on a 4-D tensor puts into TFLite files with
        # an unknown batch size.
        # They see the pooled map channels-last whatever the layer's
        # data_format (call transposes), so they must not take Keras'
        # global image_data_format.
        self.fc_0 = keras.layers.Conv2D(
            hidden, 1, name="fc_0", data_format="channels_last", **self._sublayer_kwargs()
        )
        self.fc_0.build((None, 1, 1, channels))
        self.bn_0 = None
        if official:
            self.bn_0 = self._batch_norm("bn_0")
            self.bn_0.build((None, 1, 1, hidden))
        self.fc_final = keras.layers.Conv2D(
            channels,
            1,
            use_bias=official,
            name="fc_final",
            data_format="channels_last",
            **self._sublayer_kwargs(),
        )
        self.fc_final.build((None, 1, 1, hidden))
        self.bn_final = None
        if not official:
            self.bn_final = self._batch_norm("bn_final")
            self.bn_final.build((None, 1, 1, channels))

    def named_sublayers(self):
        """{name: sublayer} of the built gate, in the order of computation:
        "fc_0", "bn_0" (official variant), "fc_final", "bn_final" (paper
        variant). The two "fc" layers are 1x1 convolutions on the pooled
        (N, 1, 1, C) map, standing for the paper's Dense layers."""
        self._require_built()
        found = {"fc_0": self.fc_0, "bn_0": self.bn_0,
                 "fc_final": self.fc_final, "bn_final": self.bn_final}
        return {name: layer for name, layer in found.items() if layer is not None}

    def call(self, inputs, training=None):
        options.check_float_input(self, inputs)
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        x = ops.mean(inputs, axis=spatial_axes, keepdims=True)
        # (N, C, 1, 1) -> (N, 1, 1, C): a transpose of C numbers per sample.
        x = self._to_channels_last(x)
        x = self.fc_0(x)
        if self.bn_0 is not None:
            x = self.bn_0(x, training=training)
        x = ops.relu(x)
        x = self.fc_final(x)
        if self.bn_final is not None:
            x = self.bn_final(x, training=training)
        return self._from_channels_last(x)

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            return (input_shape[0], 1, 1, input_shape[-1])
        return (input_shape[0], input_shape[1], 1, 1)
