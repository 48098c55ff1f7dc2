"""Where each BAM looks: M(F) of every BAM as a heatmap over the image.

    python examples/visualize_attention.py [--model PATH.keras] [--image PATH ...]
                                           [--output attention.png]

The command is `keras_bam.commands.attention`.
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
        from keras_bam.commands.attention import main
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
else:
    from keras_bam.commands.attention import main

if __name__ == "__main__":
    sys.exit(main())
