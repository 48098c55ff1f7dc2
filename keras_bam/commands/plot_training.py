"""`python examples/plot_training.py`: loss and top-1 error per epoch of one
or more training runs, as a PNG.

Each argument is a folder written by `examples/train.py --output`; give a
baseline and its BAM run to see both on one chart. Exit code 2 with one
line for a folder that holds no run.
"""

import argparse
import sys

from keras_bam.commands import common


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python examples/plot_training.py",
        description="Loss and top-1 error per epoch of one or more training "
                    "runs, as a PNG.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="folders written by examples/train.py")
    parser.add_argument("--output", default=None, metavar="PATH.png",
                        help="default: RUN_DIR/training.png of the first run")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from keras_bam.commands import validate
    from keras_bam.training import history

    output = args.output or f"{args.runs[0].rstrip('/')}/training.png"
    try:
        validate.output_file(output, "--output")
        count = history.plot(args.runs, output)
    except (history.HistoryError, validate.InputError) as error:
        return common.bad_input(error)
    print(f"{output}: {count} run(s)")
    return common.OK


if __name__ == "__main__":
    sys.exit(main())
