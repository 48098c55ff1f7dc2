"""Where each BAM looks: M(F) of every BAM as a heatmap over the image.

    python examples/visualize_attention.py [--model PATH.keras] [--image PATH ...]
                                           [--output attention.png]

The command is `keras_bam.commands.attention`.
"""

import sys

from keras_bam.commands.attention import main

if __name__ == "__main__":
    sys.exit(main())
