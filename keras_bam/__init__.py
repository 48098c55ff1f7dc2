"""keras_bam: the Bottleneck Attention Module (BAM) for Keras 3.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018,
arXiv 1807.06514.
"""

import gc
import importlib

# Importing Keras and TensorFlow creates a few hundred thousand objects, and
# Python's collector, triggered by the allocations, walks them again and
# again: 0.6 s of the import's CPU on 2 idle cores, 2 s on busy ones
# (benchmarks/startup.py). Nothing they create is garbage yet, so the
# collector is paused while the package loads.
_was_collecting = gc.isenabled()
gc.disable()
try:
    from keras_bam import applications
    from keras_bam.attention_maps import AttentionMap, attention_maps
    from keras_bam.layers import BAM, ChannelGate, SpatialGate
    from keras_bam.rewrite import cost_report, find_bottlenecks, insert_bam
    from keras_bam.torch_checkpoint import (
        from_torch_checkpoint,
        inspect_state_dict,
        load_torch_checkpoint,
        read_torch_checkpoint,
        to_torch_state_dict,
    )
    from keras_bam.torch_weights import load_torch_weights
    from keras_bam.version import __version__  # noqa: F401 (the package version)
finally:
    if _was_collecting:
        gc.enable()

__all__ = [
    "applications",
    "data",
    "export",
    "AttentionMap",
    "BAM",
    "ChannelGate",
    "SpatialGate",
    "attention_maps",
    "cost_report",
    "find_bottlenecks",
    "from_torch_checkpoint",
    "insert_bam",
    "inspect_state_dict",
    "load_torch_checkpoint",
    "load_torch_weights",
    "read_torch_checkpoint",
    "to_torch_state_dict",
]


# `data` and `export` need TensorFlow (tf.data, the TFLite converter); they are
# imported on first use so that the layers, the rewriter and the applications
# work on any Keras 3 backend (JAX, PyTorch) with `import keras_bam` alone.
_LAZY_SUBMODULES = ("data", "export")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_bam.{name}")
    raise AttributeError(f"module 'keras_bam' has no attribute {name!r}")
