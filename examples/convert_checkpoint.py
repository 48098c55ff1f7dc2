"""Convert the BAM authors' PyTorch checkpoint to a Keras model; see --help.

    python examples/convert_checkpoint.py RESNET50_IMAGENET_BAM_best.pth.tar \
        --output resnet50_bam.keras

The command is `keras_bam.commands.convert_checkpoint` (importable and tested).
"""

import os
import sys

if "--verbose" not in sys.argv:
    # Before TensorFlow loads (importing keras_bam loads it): its C++ start-up
    # lines ignore TF_CPP_MIN_LOG_LEVEL, so native stderr is muted meanwhile.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _saved, _null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(_null, 2)
    try:
        from keras_bam.commands.convert_checkpoint import main
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
else:
    from keras_bam.commands.convert_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
