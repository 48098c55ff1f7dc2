"""`python examples/train.py`: train a BAM model (or its baseline).

Exit codes: 0 trained (or already finished); 2 bad input, one line on
stderr. See `keras_bam.training.run` for what the output folder holds.
"""

import argparse
import sys

from keras_bam.commands import common, validate
from keras_bam.data.sources import describe_sources
from keras_bam.training import models

BAM_FLAGS = {
    # flag -> (BAM argument, type, help)
    "--reduction-ratio": ("reduction_ratio", int, "r, hidden width C/r (default 16)"),
    "--dilation-rate": ("dilation_rate", int, "d of the spatial gate (default 4)"),
    "--num-dilated-convs": ("num_dilated_convs", int,
                            "dilated 3x3 convolutions (default 2)"),
    "--combine": ("combine", str, "sum (the paper's default), product (the "
                  "authors' code) or max"),
    "--gate-activation": ("gate_activation", str,
                          "sigmoid (default), tanh or hard_sigmoid"),
    "--variant": ("variant", str, "paper (default) or official (the authors' "
                  "released code)"),
    "--min-hidden-channels": ("min_hidden_channels", int,
                              "lower bound on the hidden width C/r (default 8; "
                              "1 gives C/r exactly)"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python examples/train.py",
        description="Train a keras.applications model with BAM at its "
                    "bottlenecks (or, with --no-bam, the baseline) on "
                    "tf.distribute. The result, OUTPUT/model.keras, goes to "
                    "export/to_tflite.py --model. Run the same command again "
                    "to resume an interrupted run.",
        epilog="Recipes (chosen by dataset): cifar* and small images: 4-pixel "
               "pad, random crop, flip, SGD momentum 0.9, weight decay 1e-4, "
               "lr 0.1 at batch 128 divided by 10 at 50%% and 75%% of "
               "training; imagenet*/imagenette: random-resized crop 224 + "
               "flip, evaluation resize 256 and center crop 224, lr 0.1 at "
               "batch 256 divided by 10 every 30 epochs; the embedded digits: "
               "pad and crop, no flip. The learning rate scales linearly with "
               "the global batch size. Exit codes: 0 done, 2 bad input.")
    parser.add_argument(
        "--model", default=None, metavar="NAME",
        help="small_cnn (default, CIFAR-style, quick) or a keras.applications "
             f"model in snake case: {', '.join(m for m in models.MODELS if m != 'small_cnn')}")
    parser.add_argument(
        "--init-from", metavar="PATH",
        help="start from this model instead of building --model: a .keras "
             "file, or the BAM authors' checkpoint (.pth, .pth.tar; reading "
             "it needs pip install 'keras-bam[torch]') or a .npz state dict "
             "of it. The model is trained as it is (its layers, BAM and "
             "weights, its input size; rebuilt under the --mixed-precision "
             "policy), with a new, untrained classifier when the dataset's "
             "class count differs; "
             "--model, --no-bam, --weights and the BAM options do not combine "
             "with it")
    parser.add_argument("--no-bam", dest="bam", action="store_const", const=False,
                        default=None, help="train the baseline without BAM")
    parser.add_argument("--weights", choices=("imagenet",), default=None,
                        help="start the backbone from ImageNet weights "
                             "(downloaded by Keras; default: random)")
    group = parser.add_argument_group("BAM options (passed to every BAM)")
    for flag, (_, kind, text) in BAM_FLAGS.items():
        group.add_argument(flag, type=kind, default=None, help=text)
    group.add_argument("--attention", choices=("both", "channel", "spatial"),
                       default=None,
                       help="both gates (default), or one alone (the paper's "
                            "ablation)")
    parser.add_argument(
        "--dataset", default=None, metavar="SOURCE",
        help=f"the images: {describe_sources()}. Default: the embedded "
             "digits (offline, the export command's dataset)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="tensorflow-datasets data directory (and "
                             "manual_dir for imagenet2012 under "
                             "DIR/downloads/manual)")
    parser.add_argument("--image-size", type=int, default=None, metavar="PX",
                        help="training resolution (default: the dataset's, "
                             "224 for ImageNet-like data; with --init-from the "
                             "model's input size)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: the recipe's: 200 CIFAR, 90 "
                             "ImageNet, 30 digits)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        metavar="N",
                        help="default: training images // batch size")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="global batch size, split across replicas "
                             "(default 128)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        metavar="LR",
                        help="base learning rate (default: the recipe's, "
                             "scaled linearly by batch size / reference batch)")
    parser.add_argument("--strategy", default="auto",
                        choices=("auto", "default", "mirrored", "multi_worker",
                                 "tpu"),
                        help="tf.distribute strategy; auto: TPU if attached, "
                             "multi-worker if TF_CONFIG names several workers, "
                             "mirrored for several GPUs, else default")
    parser.add_argument("--mixed-precision", default="auto",
                        choices=("auto", "off", "float16", "bfloat16"),
                        help="auto: mixed_float16 on GPU, mixed_bfloat16 on "
                             "TPU, off on CPU")
    parser.add_argument("--jit-compile", default="auto",
                        choices=("auto", "on", "off"),
                        help="XLA; auto: on with a GPU or TPU")
    parser.add_argument("--no-sync-batch-norm", dest="sync_batch_norm",
                        action="store_false",
                        help="with several replicas, keep batch-norm "
                             "statistics per replica (default: synchronized)")
    parser.add_argument("--output", default="runs/default", metavar="DIR",
                        help="the run's folder (default runs/default)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output with a different "
                             "--epochs (the same command resumes without it)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"random seed, 0 to {validate.MAX_SEED} (default 0)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="show every library log line")
    return parser


def config_from_args(args):
    from keras_bam.training.run import RunConfig

    bam_options = {name: getattr(args, flag[2:].replace("-", "_"))
                   for flag, (name, _, _) in BAM_FLAGS.items()
                   if getattr(args, flag[2:].replace("-", "_")) is not None}
    if args.attention not in (None, "both"):
        bam_options["use_" + ("spatial" if args.attention == "channel"
                              else "channel") + "_gate"] = False
    return RunConfig(
        output=args.output, model=args.model, bam=args.bam,
        bam_options=bam_options, weights=args.weights, init_from=args.init_from,
        dataset=args.dataset,
        data_dir=args.data_dir, image_size=args.image_size, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        learning_rate=args.learning_rate, strategy=args.strategy,
        mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
        sync_batch_norm=args.sync_batch_norm, resume=args.resume,
        seed=args.seed, progress=args.progress)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    common.quiet_tensorflow()
    from keras_bam.training.run import RunError, run

    flags = common.flag_names(parser)
    flags.update({"bam_options": "BAM option", "bam": "--no-bam"})
    if args.init_from is not None:
        given = [flag for flag, value in (("--model", args.model), ("--no-bam", args.bam),
                                          ("--weights", args.weights),
                                          ("--attention", args.attention))
                 if value is not None]
        given += [flag for flag in BAM_FLAGS
                  if getattr(args, flag[2:].replace("-", "_")) is not None]
        if given:
            return common.bad_input(
                f"--init-from trains the model in {args.init_from} as it is; "
                f"{' and '.join(given)} would describe another model. Leave "
                f"{'it' if len(given) == 1 else 'them'} out, or leave out --init-from.")
    try:
        # BAM's own options are checked by BAM, the data by its reader.
        validate.numbers(args, {"--epochs": (1,), "--steps-per-epoch": (1,),
                                "--batch-size": (1,), "--image-size": (1,),
                                "--learning-rate": (0, None, True),
                                "--seed": (0, validate.MAX_SEED)})
    except validate.InputError as error:
        return common.bad_input(error)
    try:
        with common.console(verbose=args.verbose):
            run(config_from_args(args))
    except (RunError, models.ModelError) as error:
        return common.bad_input(error, flags)
    return common.OK


if __name__ == "__main__":
    sys.exit(main())
