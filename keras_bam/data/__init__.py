"""Datasets that work offline."""

from keras_bam.data.digits import load_digits

__all__ = ["load_digits"]
