"""Conversion of Keras models to TFLite, and verification before writing.

- `convert.to_tflite`: a Keras model to a .tflite file's bytes.
- `exporter.export_tflite`: convert, then `verify_and_write`: check the file
  (XNNPACK in a child process, int8 scales, float ops, agreement with the
  Keras model) and write it atomically only if it passes.
- `litert`, `verify`: the pieces of those checks.

No command line here: `python export/to_tflite.py` is
`keras_bam.commands.export`. This package imports neither
`keras_bam.qat` nor `keras_bam.training`.
"""

from keras_bam.export.convert import QUANTIZATIONS, to_tflite
from keras_bam.export.exporter import (
    ExportError,
    ExportReport,
    VerificationError,
    check_output_path,
    export_tflite,
    verify_and_write,
)
from keras_bam.export.litert import TFLiteGraph, inspect_tflite, predict, xnnpack_check

__all__ = [
    "QUANTIZATIONS",
    "ExportError",
    "ExportReport",
    "TFLiteGraph",
    "VerificationError",
    "check_output_path",
    "export_tflite",
    "inspect_tflite",
    "predict",
    "to_tflite",
    "verify_and_write",
    "xnnpack_check",
]
