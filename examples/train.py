"""Train a BAM model (or its baseline) on tf.distribute; see --help.

    python examples/train.py --model mobilenet_v2 --dataset cifar100 \\
        --epochs 200 --batch-size 128 --output runs/bam_mobilenet_v2

The command is `keras_bam.commands.train`; the work is in
`keras_bam.training`. This script only calls it.
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
        from keras_bam.commands.train import main
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
else:
    from keras_bam.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
