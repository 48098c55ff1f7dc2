"""The paper's ablation (Table 1): baseline and BAM variants, same data,
seed and budget, then a table of parameters, MACs and top-1 error.

    python examples/ablation.py                      # embedded digits, minutes on a CPU
    python examples/ablation.py --model resnet50 --dataset cifar100 \\
        --epochs 200 --output runs/ablation_cifar100   # the real experiment, on a GPU

The command is `keras_bam.commands.ablation`.
"""

import sys

from keras_bam.commands.ablation import main

if __name__ == "__main__":
    sys.exit(main())
