"""Conversion of Keras BAM models to TFLite and inspection of the result."""

from keras_bam.export.convert import QUANTIZATIONS, to_tflite
from keras_bam.export.litert import TFLiteGraph, inspect_tflite, predict, xnnpack_check

__all__ = [
    "QUANTIZATIONS",
    "TFLiteGraph",
    "inspect_tflite",
    "predict",
    "to_tflite",
    "xnnpack_check",
]
