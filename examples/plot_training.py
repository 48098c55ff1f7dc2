"""Loss and top-1 error per epoch of one or more training runs, as a PNG.

    python examples/plot_training.py runs/baseline runs/bam --output curves.png

The command is `keras_bam.commands.plot_training`.
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
        from keras_bam.commands.plot_training import main
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
else:
    from keras_bam.commands.plot_training import main

if __name__ == "__main__":
    sys.exit(main())
