"""Conversion of Keras BAM models to TFLite, and its verification.

`export_tflite` converts, checks (XNNPACK in a child process, int8 scales,
float ops, agreement with the float model) and writes atomically; it is what
`python export/to_tflite.py` runs. The rest are its pieces.
"""

from keras_bam.export.convert import QUANTIZATIONS, to_tflite
from keras_bam.export.exporter import (
    ExportError,
    ExportReport,
    VerificationError,
    export_tflite,
)
from keras_bam.export.litert import TFLiteGraph, inspect_tflite, predict, xnnpack_check

__all__ = [
    "QUANTIZATIONS",
    "ExportError",
    "ExportReport",
    "TFLiteGraph",
    "VerificationError",
    "export_tflite",
    "inspect_tflite",
    "predict",
    "to_tflite",
    "xnnpack_check",
]
