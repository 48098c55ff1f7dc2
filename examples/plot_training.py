"""Loss and top-1 error per epoch of one or more training runs, as a PNG.

    python examples/plot_training.py runs/baseline runs/bam --output curves.png

Each argument is a folder written by `examples/train.py --output`; give a
baseline and its BAM run to see both on one chart. Exit code 2 with one
line for a folder that holds no run.
"""

import argparse
import sys

from keras_bam.training import history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="folders written by examples/train.py")
    parser.add_argument("--output", default=None, metavar="PATH.png",
                        help="default: RUN_DIR/training.png of the first run")
    args = parser.parse_args(argv)
    output = args.output or f"{args.runs[0].rstrip('/')}/training.png"
    try:
        count = history.plot(args.runs, output)
    except history.HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{output}: {count} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
