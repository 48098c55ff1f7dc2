"""BAM and its two branches as Keras 3 layers."""

from keras_bam.layers.bam import BAM
from keras_bam.layers.channel_gate import ChannelGate
from keras_bam.layers.spatial_gate import SpatialGate

__all__ = ["BAM", "ChannelGate", "SpatialGate"]
