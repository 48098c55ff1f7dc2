"""The paper's ablation (Table 1): baseline and BAM variants, same data,
seed and budget, then a table of parameters, MACs and top-1 error.

    python examples/ablation.py                      # embedded digits, minutes on a CPU
    python examples/ablation.py --model resnet50 --dataset cifar100 \\
        --epochs 200 --output runs/ablation_cifar100   # the real experiment, on a GPU

The command is `keras_bam.commands.ablation`.
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
        from keras_bam.commands.ablation import main
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
else:
    from keras_bam.commands.ablation import main

if __name__ == "__main__":
    sys.exit(main())
