"""The paper's ablation (Table 1): baseline and BAM variants, same data,
seed and budget, then a table of parameters, MACs and top-1 error.

    python examples/ablation.py                      # embedded digits, minutes on a CPU
    python examples/ablation.py --model resnet50 --dataset cifar100 \
        --epochs 200 --output runs/ablation_cifar100   # the real experiment, on a GPU

Every variant is a run of examples/train.py in OUTPUT/<variant>; running
the same command again resumes where it stopped.
"""

import argparse
import os
import sys


def main(argv=None):
    from keras_bam.training.ablation import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_bam.training import ablation
    from keras_bam.training.run import RunError

    quiet = lambda line: print(line, flush=True) if line.startswith(  # noqa: E731
        ("---", "top-1", "resuming")) else None
    try:
        rows = ablation.run_ablation(
            args.output, args.variants, log=quiet, model=args.model,
            dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
            batch_size=args.batch_size,
            image_size=args.image_size or (16 if args.dataset is None else None),
            seed=args.seed, progress=False)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(ablation.format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
