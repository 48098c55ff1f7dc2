"""Classify images with an exported .tflite file, the way an app would.

    python examples/classify.py IMAGE_OR_FOLDER...            # the default export
    python examples/classify.py --model FILE.tflite digit.png

The command is `keras_bam.commands.classify` (importable and tested).
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
        from keras_bam.commands.classify import main
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
else:
    from keras_bam.commands.classify import main

if __name__ == "__main__":
    sys.exit(main())
