"""Loss and top-1 error per epoch of one or more training runs, as a PNG.

    python examples/plot_training.py runs/baseline runs/bam --output curves.png

The command is `keras_bam.commands.plot_training`.
"""

import sys

from keras_bam.commands.plot_training import main

if __name__ == "__main__":
    sys.exit(main())
