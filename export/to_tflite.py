"""Export a Keras BAM model to a verified TFLite file.

    python export/to_tflite.py            # the default model, int8, offline
    python export/to_tflite.py --help     # every option

The command is `keras_bam.commands.export` (importable and tested).
"""

import sys

from keras_bam.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
