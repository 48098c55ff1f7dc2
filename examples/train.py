"""Train a BAM model (or its baseline) on tf.distribute; see --help.

    python examples/train.py --model mobilenet_v2 --dataset cifar100 \\
        --epochs 200 --batch-size 128 --output runs/bam_mobilenet_v2

The command is `keras_bam.commands.train`; the work is in
`keras_bam.training`. This script only calls it.
"""

import sys

from keras_bam.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
