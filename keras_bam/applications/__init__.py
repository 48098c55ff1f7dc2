"""Ready-made models with BAM."""

from keras_bam.applications.small_cnn import SmallCNN

__all__ = ["SmallCNN"]
