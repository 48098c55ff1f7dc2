"""The spatial branch of BAM: where in the feature map to look."""

import keras

from keras_bam.layers import options
from keras_bam.layers.base import BaseGate
from keras_bam.layers.dilated_conv import DilatedConv2D


@keras.saving.register_keras_serializable(package="keras_bam")
class SpatialGate(BaseGate):
    """Spatial attention logits of the Bottleneck Attention Module.

    Ms(F) = BN(f3_1x1(f2_3x3(f1_3x3(f0_1x1(F)))))  (paper, eq. 3)

    A 1x1 convolution reduces C channels to C/r, `num_dilated_convs` 3x3
    convolutions with dilation d widen the receptive field, and a last 1x1
    convolution gives one logit per position, batch-normalized. The paper's
    equation leaves the nonlinearity between the convolutions implicit; as in
    the authors' code every hidden convolution is followed by batch norm and
    ReLU. With `variant="official"` there is no batch norm after the last
    convolution and every convolution has a bias (the authors' code); in the
    paper's variant a bias followed by batch norm is left out, since the
    batch norm's shift cancels it.

    Reference: Park et al., "BAM: Bottleneck Attention Module", BMVC 2018,
    arXiv 1807.06514.

    Args:
        reduction_ratio: r, channels in the hidden convolutions are C // r.
            Default 16.
        dilation_rate: d, dilation of the 3x3 convolutions. Default 4.
        num_dilated_convs: how many dilated 3x3 convolutions. Default 2.
        min_hidden_channels: lower bound on the hidden width (never above C).
            None (default) means 8 for the paper's variant and no bound
            (`C // r` exactly, as the authors' code) for the official one.
        variant: "paper" (default) or "official" (the authors' code).
        data_format: "channels_last", "channels_first" or None (Keras'
            image data format). Computation is channels_last inside, because
            TensorFlow's CPU convolutions only support it.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: for the convolutions.
        batch_norm_momentum, batch_norm_epsilon: of every batch norm
            inside. Default 0.9 and 1e-5, PyTorch's defaults, with which the
            paper's and the authors' models were trained.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: a 4-D floating-point feature map, any height and width.
        training: whether batch norm uses batch statistics.

    Input shape: (N, H, W, C) or (N, C, H, W) with `channels_first`.
    Output shape: (N, H, W, 1) or (N, 1, H, W): broadcastable to the input.

    Example:

    >>> gate = SpatialGate(dilation_rate=2)
    >>> tuple(gate(keras.ops.ones((2, 12, 10, 64))).shape)
    (2, 12, 10, 1)
    """

    def __init__(
        self,
        reduction_ratio=16,
        dilation_rate=4,
        num_dilated_convs=2,
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
        self.dilation_rate = options.positive_int("dilation_rate", dilation_rate)
        self.num_dilated_convs = options.positive_int(
            "num_dilated_convs", num_dilated_convs, minimum=0
        )

    def _conv(self, filters, kernel_size, name, use_bias, dilation_rate=1):
        return DilatedConv2D(
            filters,
            kernel_size,
            dilation_rate=dilation_rate,
            use_bias=use_bias,
            name=name,
            **self._sublayer_kwargs(),
        )

    def build(self, input_shape):
        channels, hidden = self._channels(input_shape)
        hidden_bias = self._bias_before_batch_norm()
        # Hidden convolutions, each followed by batch norm and ReLU: the 1x1
        # reduction, then the dilated 3x3 convolutions.
        self.hidden_convs = [self._conv(hidden, 1, "conv_reduce", hidden_bias)]
        self.hidden_bns = [self._batch_norm("bn_reduce")]
        for i in range(self.num_dilated_convs):
            self.hidden_convs.append(
                self._conv(hidden, 3, f"conv_dilated_{i}", hidden_bias,
                           self.dilation_rate)
            )
            self.hidden_bns.append(self._batch_norm(f"bn_dilated_{i}"))
        in_channels = channels
        for conv, bn in zip(self.hidden_convs, self.hidden_bns):
            conv.build((None, None, None, in_channels))
            bn.build((None, None, None, hidden))
            in_channels = hidden
        official = self.variant == "official"
        self.conv_final = self._conv(1, 1, "conv_final", official)
        self.conv_final.build((None, None, None, hidden))
        self.bn_final = None
        if not official:
            self.bn_final = self._batch_norm("bn_final")
            self.bn_final.build((None, None, None, 1))

    def named_sublayers(self):
        """{name: sublayer} of the built gate, in the order of computation:
        "conv_reduce", "bn_reduce", then "conv_dilated_{i}", "bn_dilated_{i}"
        for each dilated convolution, "conv_final", and "bn_final" (paper
        variant). Every one acts on the full-resolution map."""
        self._require_built()
        found = {}
        suffixes = ["reduce"] + [f"dilated_{i}" for i in range(self.num_dilated_convs)]
        for suffix, conv, bn in zip(suffixes, self.hidden_convs, self.hidden_bns):
            found[f"conv_{suffix}"] = conv
            found[f"bn_{suffix}"] = bn
        found["conv_final"] = self.conv_final
        if self.bn_final is not None:
            found["bn_final"] = self.bn_final
        return found

    def call(self, inputs, training=None):
        options.check_float_input(self, inputs)
        x = self._to_channels_last(inputs)
        for conv, bn in zip(self.hidden_convs, self.hidden_bns):
            x = keras.ops.relu(bn(conv(x), training=training))
        x = self.conv_final(x)
        if self.bn_final is not None:
            x = self.bn_final(x, training=training)
        return self._from_channels_last(x)

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            return tuple(input_shape[:3]) + (1,)
        return (input_shape[0], 1) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dilation_rate": self.dilation_rate,
                "num_dilated_convs": self.num_dilated_convs,
            }
        )
        return config
