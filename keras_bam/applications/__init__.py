"""Ready-made models with BAM.

- `BAMResNet50`, `BAMMobileNetV2`, ...: the `keras.applications` models with
  BAM at the paper's bottlenecks (see `backbones.BACKBONES`).
- `ResidualNet18`, ..., `ResidualNet101`: the BAM authors' own ResNet (stride
  on the 3x3 convolution), into which their checkpoints load
  (`keras_bam.from_torch_checkpoint`); `replace_classifier` for new classes.
- `SmallCNN`: a CIFAR-style network for quick experiments and the demo.
"""

from keras_bam.applications.backbones import *  # noqa: F403
from keras_bam.applications.backbones import BACKBONES, FAMILIES, build
from keras_bam.applications.residual_net import (
    ResidualNet,
    ResidualNet18,
    ResidualNet34,
    ResidualNet50,
    ResidualNet101,
    replace_classifier,
    resize_and_center_crop,
)
from keras_bam.applications.small_cnn import SmallCNN

__all__ = [
    "BACKBONES",
    "FAMILIES",
    "ResidualNet",
    "ResidualNet18",
    "ResidualNet34",
    "ResidualNet50",
    "ResidualNet101",
    "SmallCNN",
    "build",
    "replace_classifier",
    "resize_and_center_crop",
] + [
    f"BAM{name}" for name in BACKBONES
]
