"""Ready-made models with BAM.

- `BAMResNet50`, `BAMMobileNetV2`, ...: the `keras.applications` models with
  BAM at the paper's bottlenecks (see `backbones.BACKBONES`).
- `SmallCNN`: a CIFAR-style network for quick experiments and the demo.
"""

from keras_bam.applications.backbones import *  # noqa: F403
from keras_bam.applications.backbones import BACKBONES, FAMILIES, build
from keras_bam.applications.small_cnn import SmallCNN

__all__ = ["BACKBONES", "FAMILIES", "SmallCNN", "build"] + [
    f"BAM{name}" for name in BACKBONES
]
