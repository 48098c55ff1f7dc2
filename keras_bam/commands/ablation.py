"""`python examples/ablation.py`: the paper's ablation (Table 1).

The baseline and BAM variants with the same data, seed and budget
(`keras_bam.training.ablation`), then a table of parameters, MACs and
top-1 error. Each variant is a training run in OUTPUT/<variant>; running
the same command again resumes where it stopped. Exit codes: 0 done,
2 bad input.
"""

import argparse
import sys

from keras_bam.commands import common, validate


def build_parser():
    from keras_bam.training.ablation import VARIANTS

    parser = argparse.ArgumentParser(
        prog="python examples/ablation.py",
        description="The paper's ablation (Table 1): baseline and BAM variants, "
                    "same data, seed and budget, then a table of parameters, "
                    "MACs and top-1 error.")
    parser.add_argument("--model", default="small_cnn",
                        help="as examples/train.py --model (default small_cnn)")
    parser.add_argument("--dataset", default=None,
                        help="as examples/train.py --dataset (default: the "
                             "embedded digits)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=6,
                        help="epochs per variant (default 6)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: 16 for the embedded digits (8x8 scans; "
                             "keeps the ablation to minutes on a CPU), else "
                             "the dataset's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                        metavar="NAME", help=f"default all: {', '.join(VARIANTS)}")
    parser.add_argument("--output", default="runs/ablation")
    parser.add_argument("--verbose", action="store_true",
                        help="show every run's per-epoch lines too")
    return parser


def main(argv=None):
    common.quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    from keras_bam.training import ablation
    from keras_bam.training.run import RunError

    flags = common.flag_names(parser)
    try:
        validate.numbers(args, {"--epochs": (1,), "--batch-size": (1,),
                                "--image-size": (1,), "--seed": (0, validate.MAX_SEED)})
    except validate.InputError as error:
        return common.bad_input(error)
    # The digits are 8x8 scans: 16 pixels keep the ablation to minutes on a CPU.
    image_size = args.image_size
    if image_size is None and args.dataset is None:
        image_size = 16
    try:
        # One line per variant; the runs' own progress only with --verbose.
        with common.console(show=("keras_bam.training.ablation",), verbose=args.verbose):
            rows = ablation.run_ablation(
                args.output, args.variants, model=args.model, dataset=args.dataset,
                data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
                image_size=image_size,
                seed=args.seed, progress=False)
    except (RunError, ValueError) as error:
        return common.bad_input(error, flags)
    print(ablation.format_table(rows))
    return common.OK


if __name__ == "__main__":
    sys.exit(main())
