"""One training run: configuration, output folder, and what it leaves there.

`run(config)` is what `python examples/train.py` does: it builds a model
(`config.model`, with BAM) or starts from one in a file (`config.init_from`:
a `.keras` model or the BAM authors' checkpoint, fine-tuned with a new
classifier when the classes differ), and trains it. In `config.output`:

- `config.json`: the resolved configuration (every option, the strategy
  and replica count, the learning rate after scaling, the precision).
  A second run with the same identity (model, data, batch, learning rate,
  seed, the `init_from` file and its SHA-256, ...) resumes the first; a
  different one is refused.
- `checkpoints/`: model, optimizer and epoch after every epoch.
- `history.csv`: one row per epoch (loss, accuracy, evaluation loss and
  top-1/top-5 error, learning rate, images per second).
- `logs/`: the same scalars for TensorBoard (`tensorboard --logdir`).
- `model.keras`: the trained model in float32 (under mixed precision the
  model trained is a copy of it computing in float16 or bfloat16), ready for
  `export/to_tflite.py --model`.
- `metrics.json`: final top-1 and top-5 error, training images per second,
  parameters and MACs (with BAM's share).

Under MultiWorkerMirroredStrategy only the chief writes into `output`.
Progress goes to the `keras_bam.training.run` logger (INFO); errors that the
caller can fix raise `RunError`, naming the `RunConfig` field in backticks.
"""

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import statistics

import keras

from keras_bam.atomic import save_model_atomically, write_atomically
from keras_bam.layers import BAM
from keras_bam.rewrite.keras_internals import all_sublayers
from keras_bam.training import history as histories
from keras_bam.training import models
from keras_bam.training import strategy as strategies

# Options that define a run. Two invocations that agree on these are the
# same run (the second resumes the first); `epochs` may change with `resume`.
IDENTITY = ("model", "bam", "bam_options", "weights", "init_from", "dataset",
            "image_size", "batch_size", "learning_rate", "steps_per_epoch", "seed")


logger = logging.getLogger(__name__)


class RunError(ValueError):
    """A run that cannot start as asked; the message says what to change."""


@dataclasses.dataclass
class RunConfig:
    """What `run` does; see the module doc and `docs/training.md`.

    The model is either built: `model` (default "small_cnn", a key of
    `keras_bam.training.models.MODELS`), with BAM unless `bam` is False,
    `bam_options` for every BAM, `weights` None or "imagenet"; or loaded:
    `init_from`, the path of a `.keras` model or of the BAM authors'
    checkpoint (`.pth`, `.pth.tar`, `.npz`), trained as it is, with a new
    classifier when the dataset's class count differs and its input size as
    `image_size`. The two are exclusive: with `init_from`, `model`, `bam`,
    `bam_options` and `weights` stay unset (None).
    """

    output: str
    model: str | None = None  # None: "small_cnn", unless init_from
    bam: bool | None = None  # None: True, unless init_from
    bam_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    init_from: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    image_size: int | None = None
    epochs: int | None = None  # None: the recipe's
    steps_per_epoch: int | None = None
    batch_size: int = 128
    learning_rate: float | None = None
    strategy: str = "auto"
    mixed_precision: str = "auto"
    jit_compile: str = "auto"
    sync_batch_norm: bool = True
    resume: bool = False
    seed: int = 0
    progress: bool = True

    def identity(self):
        return {key: getattr(self, key) for key in IDENTITY}


def resolve_start(config):
    """`config` with the model's fields resolved: built ("small_cnn" and BAM
    by default) or loaded from `init_from` (made absolute, the build fields
    left None). Refuses build fields set together with `init_from`: they
    would describe another model than the file's."""
    if config.init_from is None:
        return dataclasses.replace(
            config, model="small_cnn" if config.model is None else config.model,
            bam=True if config.bam is None else config.bam)
    if not isinstance(config.init_from, (str, os.PathLike)):
        raise RunError("`init_from` must be the path of a model file. Received: "
                       f"{config.init_from!r}.")
    given = [f"`{name}`" for name in ("model", "bam", "bam_options", "weights")
             if getattr(config, name) not in (None, {})]
    if given:
        raise RunError(
            f"`init_from` trains the model in {config.init_from} as it is; "
            f"{' and '.join(given)} would describe another model. Leave "
            f"{'it' if len(given) == 1 else 'them'} out, or leave out `init_from`.")
    return dataclasses.replace(config, init_from=os.path.abspath(config.init_from))


def file_digest(path):
    """SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_saved_run(config, init_digest=None):
    """The configuration saved in `config.output` (a dict), None for a new
    folder; refuses a folder that holds something else or a different run.
    `init_digest`: the SHA-256 of `config.init_from`, which must be the
    saved run's (the same path holding another model is another run).

    Runs before anything is built. The epoch count is checked later, by
    `check_epochs`, once the recipe has given its default.
    """
    path = pathlib.Path(config.output)
    if path.exists() and not path.is_dir():
        raise RunError(f"`output` {path} is a file; give a folder.")
    saved_path = path / "config.json"
    if not saved_path.exists():
        if path.exists() and any(path.iterdir()):
            raise RunError(f"`output` {path} is not empty and holds no training "
                           "run; choose a new folder.")
        return None
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RunError(f"{saved_path} cannot be read ({error}); choose a new "
                       "`output` or delete the folder.") from None
    mine = json.loads(json.dumps(config.identity()))
    differing = sorted(k for k in IDENTITY if saved.get("run", {}).get(k) != mine[k])
    if differing:
        raise RunError(
            f"`output` {path} holds a different run (it differs in "
            f"{', '.join(differing)}); choose a new `output`, or repeat that "
            "run's options to resume it.")
    if init_digest is not None and saved.get("init_from_sha256") != init_digest:
        raise RunError(
            f"`output` {path} holds a run that started from another "
            f"{config.init_from} (the file changed since); choose a new `output`.")
    return saved


def check_epochs(config, saved):
    """Refuses to continue a saved run to another epoch count unless
    `config.resume` says so."""
    if saved is not None and saved["run"].get("epochs") != config.epochs and not (
            config.resume):
        raise RunError(
            f"`output` {config.output} holds this run with `epochs` "
            f"{saved['run'].get('epochs')}; set `resume` to continue it to "
            f"`epochs` {config.epochs}.")


def default_image_size(config):
    """The training resolution when `image_size` is not given: 32 for the
    digits and CIFAR-like data, 224 for ImageNet-like data."""
    from keras_bam.data.sources import resolve_source

    known = resolve_source(config.dataset).known
    return 32 if known is not None and known.images != "photos" else 224


def resolve_precision(config, strategy_name, num_gpus):
    """(dtype policy name or None, jit_compile) for this hardware."""
    accelerator = strategy_name == "tpu" or num_gpus > 0
    policies = {"off": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    if config.mixed_precision == "auto":
        policy = ("mixed_bfloat16" if strategy_name == "tpu" else
                  "mixed_float16" if num_gpus else None)
    elif config.mixed_precision in policies:
        policy = policies[config.mixed_precision]
    else:
        raise RunError(f"`mixed_precision` must be one of auto, "
                       f"{', '.join(policies)}. Received: {config.mixed_precision!r}.")
    if config.jit_compile not in ("auto", "on", "off"):
        raise RunError(f"`jit_compile` must be auto, on or off. Received: "
                       f"{config.jit_compile!r}.")
    jit = accelerator if config.jit_compile == "auto" else config.jit_compile == "on"
    return policy, jit


def synchronize_batch_norm(model, synchronized=True):
    """Makes every BatchNormalization, BAM's included, compute its batch
    statistics over all replicas (`synchronized=True`)."""
    count = 0
    for layer in all_sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized
            count += 1
    return count


def weights_digest(model):
    """A short fingerprint of every weight: equal on workers that agree."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(keras.ops.convert_to_numpy(weight).tobytes())
    return digest.hexdigest()[:16]


def run(config):
    """Trains as `config` says; returns the metrics dict (see module doc)."""
    import tensorflow as tf

    from keras_bam.rewrite.cost import cost_report
    from keras_bam.training import data, recipes
    from keras_bam.training.loop import train

    for name in ("batch_size", "epochs", "steps_per_epoch", "image_size"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise RunError(f"`{name}` must be an integer of at least 1. "
                           f"Received: {value!r}.")
    rate = config.learning_rate
    if rate is not None and not (isinstance(rate, (int, float)) and math.isfinite(rate)
                                 and rate > 0):
        raise RunError(f"`learning_rate` must be a finite number above 0. "
                       f"Received: {rate!r}.")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise RunError(f"`seed` must be an integer from 0 to {2**32 - 1}. "
                       f"Received: {config.seed!r}.")
    config = resolve_start(config)
    init_digest = None
    if config.init_from is None:
        if config.model not in models.MODELS:
            raise RunError(f"Unknown `model` '{config.model}'. Choose one of: "
                           f"{', '.join(models.MODELS)}.")
    elif os.path.isfile(config.init_from):
        init_digest = file_digest(config.init_from)
    else:
        raise RunError(f"`init_from` {config.init_from} does not exist. Give a "
                       ".keras model, or the BAM authors' checkpoint (.pth, "
                       ".pth.tar, .npz).")
    saved = read_saved_run(config, init_digest)
    try:
        strategy, why = strategies.resolve_strategy(config.strategy)
    except strategies.StrategyError as error:
        raise RunError(str(error)) from None
    tf_config = strategies.parse_tf_config()
    is_chief = tf_config is None or tf_config.is_chief
    replicas = strategy.num_replicas_in_sync
    strategy_name = type(strategy).__name__.lstrip("_")
    logger.info("strategy: %s (%s), %d replica(s)", strategy_name, why, replicas)
    if config.batch_size % replicas:
        raise RunError(f"`batch_size` {config.batch_size} is not divisible by "
                       f"the {replicas} replicas; use a multiple of {replicas}.")
    try:  # after the strategy: a layer starts the TF runtime
        BAM(**config.bam_options)
    except (TypeError, ValueError) as error:
        raise RunError(f"`bam_options`: {error}") from None
    image_size, channels, start = config.image_size, 3, None
    if config.init_from is not None:
        # Loaded once, outside the strategy: the template that every model
        # of the run (the one trained, the float32 one saved) is copied from.
        try:
            start = models.load_initial_model(config.init_from)
        except models.ModelError as error:
            raise RunError(str(error)) from None
        (height, width), channels = models.input_shape(start)
        if height is not None and width is not None:
            if image_size is not None and (image_size, image_size) != (height, width):
                raise RunError(
                    f"`image_size` {image_size} conflicts with the input of the model "
                    f"in `init_from` ({height} x {width}); leave `image_size` out: "
                    "the model's input size is the one trained.")
            image_size = (height, width)
    num_gpus = len(tf.config.list_logical_devices("GPU"))
    policy, jit = resolve_precision(config, "tpu" if "TPU" in strategy_name else "",
                                    num_gpus)
    try:
        train_data, eval_data, info = data.make_datasets(
            config.dataset, image_size=image_size or default_image_size(config),
            channels=channels, global_batch_size=config.batch_size,
            data_dir=config.data_dir, seed=config.seed)
    except data.DataError as error:
        raise RunError(str(error)) from None
    recipe = recipes.get_recipe(info.recipe)
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=recipe.epochs)
    check_epochs(config, saved)
    if config.steps_per_epoch is None and not info.num_train:
        raise RunError(f"'{info.source}' does not say how many training images "
                       "it has; give `steps_per_epoch`.")
    steps = config.steps_per_epoch or info.steps_per_epoch(config.batch_size)
    base_lr = config.learning_rate if config.learning_rate is not None else (
        recipe.learning_rate(config.batch_size))
    schedule = recipes.learning_rate_schedule(recipe, base_lr, steps, config.epochs)
    resolved = {
        "run": json.loads(json.dumps(dataclasses.asdict(config))),
        "strategy": strategy_name, "replicas": replicas,
        "per_replica_batch_size": config.batch_size // replicas,
        "steps_per_epoch": steps, "learning_rate": base_lr,
        "learning_rate_rule": (
            "as given" if config.learning_rate is not None else
            f"{recipe.base_learning_rate} x {config.batch_size} / "
            f"{recipe.reference_batch_size} (linear scaling)"),
        "recipe": dataclasses.asdict(recipe), "dtype_policy": policy or "float32",
        "init_from_sha256": init_digest,
        "jit_compile": jit, "sync_batch_norm": config.sync_batch_norm and replicas > 1,
        "dataset": {"source": info.source, "num_classes": info.num_classes,
                    "num_train": info.num_train, "num_eval": info.num_eval,
                    "image_size": list(info.image_size),
                    "class_names": list(info.class_names)},
    }
    output = pathlib.Path(config.output)
    if is_chief:
        output.mkdir(parents=True, exist_ok=True)
        _write_json(output / "config.json", resolved)
    logger.info("data: %s, %s training / %s evaluation images, %d classes, %s px, "
                "recipe %s", info.source, info.num_train, info.num_eval,
                info.num_classes, "x".join(map(str, info.image_size)), info.recipe)
    logger.info("training: %d epochs x %d steps, global batch %d, learning rate %g "
                "(%s), precision %s, XLA %s", config.epochs, steps, config.batch_size,
                base_lr, resolved["learning_rate_rule"], policy or "float32",
                "on" if jit else "off")
    if start is not None:
        try:
            start = models.with_classes(start, info.num_classes, seed=config.seed)
        except models.ModelError as error:
            raise RunError(str(error)) from None
        logger.info("model: %s from %s, %d classes%s", start.name, config.init_from,
                    info.num_classes, "" if policy is None else
                    f", rebuilt under {policy}")
    keras.mixed_precision.set_global_policy(policy or "float32")

    def build_model(synchronized=resolved["sync_batch_norm"]):
        if start is not None:  # in the strategy's scope, under the run's policy
            model = models.rebuild(start)
        else:
            model = models.build_model(
                config.model, info.num_classes, info.image_size, bam=config.bam,
                weights=config.weights, bam_options=config.bam_options,
                seed=config.seed)
        if synchronized:
            synchronize_batch_norm(model)
        return model

    def build_optimizer():
        optimizer = recipe.optimizer(schedule)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    history = output / histories.FILE_NAME
    writer = None
    if is_chief:
        try:
            import tensorboard  # noqa: F401  (tf.summary needs it)

            writer = tf.summary.create_file_writer(str(output / "logs"))
        except ImportError:
            logger.warning("TensorBoard logs off: pip install 'keras-bam[train]' "
                           "(or tensorboard) to get them")

    def on_restore(epoch):
        # Every start, fresh or resumed: a run killed between an epoch's
        # history row and its checkpoint left a row that the checkpoint
        # (epoch 0 when there is none yet) does not have.
        if epoch:
            logger.info("resuming %s after epoch %d", output, epoch)
        if is_chief and history.exists():
            histories.truncate(history, epoch)

    def on_epoch(entry, model):
        logger.info("epoch %d/%d: loss %.4f, accuracy %.4f, eval top-1 error %.4f, "
                    "top-5 %.4f, %.0f images/s", entry.epoch, config.epochs, entry.loss,
                    entry.accuracy, entry.eval_top1_error, entry.eval_top5_error,
                    entry.images_per_second)
        if not is_chief:
            return
        histories.append(history, entry)
        if writer is not None:
            with writer.as_default(step=entry.epoch):
                for field in histories.FIELDS[1:]:
                    tf.summary.scalar(field, getattr(entry, field))
            writer.flush()

    model, logs = train(
        strategy, build_model, build_optimizer, train_data, config.epochs, steps,
        config.batch_size, output / "checkpoints", on_epoch=on_epoch,
        eval_dataset=eval_data, jit_compile=jit, progress=config.progress,
        is_chief=is_chief, on_restore=on_restore)
    keras.mixed_precision.set_global_policy("float32")
    # A float32 copy with batch norm per device: what export and any
    # single-device user wants.
    final = build_model(synchronized=False)
    final.set_weights(model.get_weights())
    digest = weights_digest(final)
    logger.info("weights digest: %s", digest)
    rows = histories.read(history) if is_chief else [dataclasses.asdict(e) for e in logs]
    metrics = _metrics(rows, final, info, resolved, digest, cost_report)
    if is_chief:
        save_model_atomically(final, output / "model.keras")
        _write_json(output / "metrics.json", metrics)
        logger.info("top-1 error %.4f, top-5 error %.4f; wrote %s", metrics["top1_error"],
                    metrics["top5_error"], output / "model.keras")
    return metrics


def _metrics(rows, model, info, resolved, digest, cost_report):
    last = rows[-1] if rows else {}
    speeds = [float(r["images_per_second"]) for r in rows]
    # The first epoch of a fresh run includes tracing and compilation.
    steady = speeds[1:] if len(speeds) > 1 else speeds
    costs = cost_report(model)
    return {
        "model": model.name, "dataset": info.source,
        "epochs": len(rows),
        "top1_error": float(last.get("eval_top1_error", math.nan)),
        "top5_error": float(last.get("eval_top5_error", math.nan)),
        "eval_loss": float(last.get("eval_loss", math.nan)),
        "train_loss": float(last.get("loss", math.nan)),
        "images_per_second": statistics.median(steady) if steady else math.nan,
        "params": model.count_params(),
        "bam_params": costs.bam_params, "macs": costs.backbone_macs + costs.bam_macs,
        "bam_macs": costs.bam_macs, "strategy": resolved["strategy"],
        "replicas": resolved["replicas"], "dtype_policy": resolved["dtype_policy"],
        "weights_digest": digest,
    }


def _write_json(path, value):
    write_atomically(path, json.dumps(value, indent=2, default=str) + "\n")
