"""Convert the BAM authors' PyTorch checkpoint to a Keras model; see --help.

    python examples/convert_checkpoint.py RESNET50_IMAGENET_BAM_best.pth.tar \
        --output resnet50_bam.keras

The command is `keras_bam.commands.convert_checkpoint` (importable and tested).
"""

import sys

from keras_bam.commands.convert_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
