"""The Bottleneck Attention Module."""

import keras
from keras import ops

from keras_bam.layers import options
from keras_bam.layers.base import BaseGate
from keras_bam.layers.channel_gate import ChannelGate
from keras_bam.layers.spatial_gate import SpatialGate

_ACTIVATIONS = {
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "hard_sigmoid": ops.hard_sigmoid,
}
def _maximum(a, b):
    # max(a, b) written as a + relu(b - a): the same numbers, but int8 TFLite
    # files keep it on XNNPACK, which has no quantized MAXIMUM.
    return a + ops.relu(b - a)


_COMBINATIONS = {
    "sum": ops.add,
    "product": ops.multiply,
    "max": _maximum,
}


@keras.saving.register_keras_serializable(package="keras_bam")
class BAM(BaseGate):
    """Bottleneck Attention Module (BAM).

    For a feature map F:

        M(F) = sigmoid(Mc(F) + Ms(F))      (paper, eq. 1)
        F'   = F + F * M(F)

    where Mc is the `ChannelGate` (one logit per channel) and Ms the
    `SpatialGate` (one logit per position), both broadcast to F's shape.
    The residual form keeps the features when the attention is near zero, so
    the module can be inserted into a pretrained network.

    Two variants:
    - "paper" (default): the formula above; batch norm at the end of each
      branch; branches summed.
    - "official": what the authors' released PyTorch code computes:
      F' = F * (1 + sigmoid(Mc(F) * Ms(F))), batch norm inside each branch
      and none at the ends, and every bias. Its weights load with
      `keras_bam.load_torch_weights`.

    Reference: Park et al., "BAM: Bottleneck Attention Module", BMVC 2018,
    arXiv 1807.06514.

    Args:
        reduction_ratio: r, both branches squeeze C channels to C // r.
            Default 16.
        dilation_rate: d, dilation of the spatial branch's 3x3 convolutions.
            Default 4.
        num_dilated_convs: how many dilated 3x3 convolutions. Default 2.
        combine: how the branch logits are merged: "sum" (the paper),
            "product" (the authors' code) or "max" (the paper's ablation).
            None (default) follows `variant`.
        gate_activation: "sigmoid" (default), "tanh" (attention may be
            negative, F' ranges over (0, 2F)), or "hard_sigmoid" (cheaper on
            phones).
        variant: "paper" (default) or "official".
        data_format: "channels_last", "channels_first" or None (Keras'
            image data format).
        use_channel_gate, use_spatial_gate: set one to False for the paper's
            channel-only or spatial-only ablation; M(F) is then the gate
            activation of the remaining branch.
        min_hidden_channels: lower bound on the hidden width C // r of both
            branches (never above C). None (default) means 8 for the paper's
            variant, so that narrow feature maps (MobileNetV2 at alpha 0.35
            has 8 to 32 channels) keep a branch wide enough to train and to
            quantize, and no bound for the official variant, which computes
            `C // r` exactly at every width, as the authors' code does (64
            channels, r = 16: 4). A value given applies to either variant.
            A width of 0 (C < r without a bound) is refused when the layer
            is built.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: for every Dense and convolution inside.
        batch_norm_momentum, batch_norm_epsilon: of every batch norm
            inside. Default 0.9 and 1e-5, PyTorch's defaults, with which the
            paper's and the authors' models were trained.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: a 4-D floating-point feature map of any height and width.
        training: whether batch norm uses batch statistics.

    Input shape: (N, H, W, C), or (N, C, H, W) with `channels_first`.
    Output shape: the input's.

    Mixed precision: the sublayers follow this layer's dtype policy; batch
    norm and the average pool compute in float32 internally, and the output
    is in the compute dtype.

    Example:

    >>> inputs = keras.Input((32, 32, 64))
    >>> outputs = BAM()(inputs)
    >>> keras.Model(inputs, outputs).output_shape
    (None, 32, 32, 64)
    """

    def __init__(
        self,
        reduction_ratio=16,
        dilation_rate=4,
        num_dilated_convs=2,
        combine=None,
        gate_activation="sigmoid",
        variant="paper",
        data_format=None,
        use_channel_gate=True,
        use_spatial_gate=True,
        min_hidden_channels=None,
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
        self.combine = options.combine(combine, self.variant)
        self.gate_activation = options.gate_activation(gate_activation)
        self.use_channel_gate = bool(use_channel_gate)
        self.use_spatial_gate = bool(use_spatial_gate)
        if not (self.use_channel_gate or self.use_spatial_gate):
            raise ValueError(
                "BAM needs at least one branch. Received: use_channel_gate=False "
                "and use_spatial_gate=False. Set either to True (or leave the "
                "feature map as it is by not adding the layer)."
            )

    def build(self, input_shape):
        # Checked here first, so that an error names this layer, not a gate.
        self.hidden_channels(options.feature_channels(self, input_shape))
        shared = self._shared_config()
        shared["dtype"] = self.dtype_policy
        self.channel_gate = None
        if self.use_channel_gate:
            self.channel_gate = ChannelGate(name="channel_gate", **shared)
            self.channel_gate.build(input_shape)
        self.spatial_gate = None
        if self.use_spatial_gate:
            self.spatial_gate = SpatialGate(
                dilation_rate=self.dilation_rate,
                num_dilated_convs=self.num_dilated_convs,
                name="spatial_gate",
                **shared,
            )
            self.spatial_gate.build(input_shape)

    def named_sublayers(self):
        """The map from BAM's weights to its sublayers: {path: sublayer}.

        Paths are "channel_gate/<name>" and "spatial_gate/<name>", with the
        names of `ChannelGate.named_sublayers()` and
        `SpatialGate.named_sublayers()`, in the order of computation; a
        branch that is off has none. Every weight of the layer belongs to
        exactly one of these sublayers, so code that reads or writes BAM's
        weights (cost counting, the tf_keras twin for quantization-aware
        training, the PyTorch loader) goes through this map rather than
        through BAM's attributes. "channel_gate/..." layers act on the
        pooled (N, 1, 1, C) map, "spatial_gate/..." on the whole map.

        Raises:
            ValueError: the layer is not built yet.

        Example:

        >>> layer = BAM(num_dilated_convs=1)
        >>> layer.build((None, 8, 8, 32))
        >>> list(layer.named_sublayers())
        ['channel_gate/fc_0', 'channel_gate/fc_final', 'channel_gate/bn_final',
         'spatial_gate/conv_reduce', 'spatial_gate/bn_reduce',
         'spatial_gate/conv_dilated_0', 'spatial_gate/bn_dilated_0',
         'spatial_gate/conv_final', 'spatial_gate/bn_final']
        """
        self._require_built()
        found = {}
        for prefix, gate in (("channel_gate", self.channel_gate),
                             ("spatial_gate", self.spatial_gate)):
            if gate is not None:
                for name, layer in gate.named_sublayers().items():
                    found[f"{prefix}/{name}"] = layer
        return found

    def attention(self, inputs, training=None):
        """Returns M(F), broadcastable to `inputs` (not expanded to it).

        (N, H, W, C) with both branches, (N, 1, 1, C) channel-only,
        (N, H, W, 1) spatial-only; channels_first likewise. A layer that is
        not built yet is built for `inputs` first, as calling it would.
        """
        options.check_float_input(self, inputs)
        if not self.built:
            self.build(tuple(inputs.shape))
        logits = None
        if self.channel_gate is not None:
            logits = self.channel_gate(inputs, training=training)
        if self.spatial_gate is not None:
            spatial = self.spatial_gate(inputs, training=training)
            logits = (
                spatial
                if logits is None
                else _COMBINATIONS[self.combine](logits, spatial)
            )
        return _ACTIVATIONS[self.gate_activation](logits)

    def call(self, inputs, training=None):
        # F + F * M computed as F * (1 + M): 1 + M is only as large as M,
        # which with a single branch is far smaller than F.
        return inputs * (1.0 + self.attention(inputs, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dilation_rate": self.dilation_rate,
                "num_dilated_convs": self.num_dilated_convs,
                "combine": self.combine,
                "gate_activation": self.gate_activation,
                "use_channel_gate": self.use_channel_gate,
                "use_spatial_gate": self.use_spatial_gate,
            }
        )
        return config
