"""One training run: configuration, output folder, and what it leaves there.

`run(config)` is what `python examples/train.py` does. In `config.output`:

- `config.json`: the resolved configuration (every option, the strategy
  and replica count, the learning rate after scaling, the precision).
  A second run with the same identity (model, data, batch, learning rate,
  seed, ...) resumes the first; a different one is refused.
- `checkpoints/`: model, optimizer and epoch after every epoch.
- `history.csv`: one row per epoch (loss, accuracy, evaluation loss and
  top-1/top-5 error, learning rate, images per second).
- `logs/`: the same scalars for TensorBoard (`tensorboard --logdir`).
- `model.keras`: the trained model in float32, ready for
  `export/to_tflite.py --model`.
- `metrics.json`: final top-1 and top-5 error, training images per second,
  parameters and MACs (with BAM's share).

Under MultiWorkerMirroredStrategy only the chief writes into `output`.
"""

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import statistics

import keras

from keras_bam.atomic import write_atomically
from keras_bam.layers import BAM
from keras_bam.training import history as histories
from keras_bam.training import models
from keras_bam.training import strategy as strategies

# Options that define a run. Two invocations that agree on these are the
# same run (the second resumes the first); `epochs` may change with --resume.
IDENTITY = ("model", "bam", "bam_options", "weights", "dataset", "image_size",
            "batch_size", "learning_rate", "steps_per_epoch", "seed")


class RunError(ValueError):
    """A run that cannot start as asked; the message says what to change."""


@dataclasses.dataclass
class RunConfig:
    output: str
    model: str = "small_cnn"
    bam: bool = True
    bam_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
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


def check_output(config):
    """Refuses an output folder that holds a different run.

    Returns the saved configuration (a dict) when the folder holds this
    run, None when it is new.
    """
    path = pathlib.Path(config.output)
    if path.exists() and not path.is_dir():
        raise RunError(f"--output {path} is a file; give a folder.")
    saved_path = path / "config.json"
    if not saved_path.exists():
        if path.exists() and any(path.iterdir()):
            raise RunError(f"--output {path} is not empty and holds no run of "
                           "this script; choose a new folder.")
        return None
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RunError(f"{saved_path} cannot be read ({error}); choose a new "
                       "--output or delete the folder.") from None
    mine = json.loads(json.dumps(config.identity()))
    differing = sorted(k for k in IDENTITY if saved.get("run", {}).get(k) != mine[k])
    if differing:
        raise RunError(
            f"--output {path} holds a different run (it differs in "
            f"{', '.join(differing)}); choose a new --output, or repeat that "
            "run's options to resume it.")
    if saved["run"].get("epochs") != config.epochs and not config.resume:
        raise RunError(
            f"--output {path} holds this run with --epochs "
            f"{saved['run'].get('epochs')}; pass --resume to continue it to "
            f"--epochs {config.epochs}.")
    return saved


def default_image_size(config):
    """The training resolution when --image-size is not given: 32 for the
    digits and CIFAR-like data, 224 for ImageNet-like data."""
    from keras_bam.training import data

    kind, name = data.resolve_source(config.dataset)
    known = data.DATASETS.get(name) if kind == "tfds" else None
    if kind == "digits" or (known is not None and known.recipe != "imagenet"):
        return 32
    return 224


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
        raise RunError(f"--mixed-precision must be one of auto, "
                       f"{', '.join(policies)}; got {config.mixed_precision!r}.")
    if config.jit_compile not in ("auto", "on", "off"):
        raise RunError(f"--jit-compile must be auto, on or off; got "
                       f"{config.jit_compile!r}.")
    jit = accelerator if config.jit_compile == "auto" else config.jit_compile == "on"
    return policy, jit


def synchronize_batch_norm(model, synchronized=True):
    """Makes every BatchNormalization, BAM's included, compute its batch
    statistics over all replicas (`synchronized=True`)."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
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


def run(config, log=print):
    """Trains as `config` says; returns the metrics dict (see module doc)."""
    import tensorflow as tf

    from keras_bam.rewrite.cost import cost_report
    from keras_bam.training import data, recipes
    from keras_bam.training.loop import train

    if config.batch_size < 1 or (config.epochs is not None and config.epochs < 1):
        raise RunError("--batch-size and --epochs must be at least 1.")
    if config.model not in models.MODELS:
        raise RunError(f"Unknown --model '{config.model}'. Choose one of: "
                       f"{', '.join(models.MODELS)}.")
    try:
        strategy, why = strategies.resolve_strategy(config.strategy)
    except strategies.StrategyError as error:
        raise RunError(str(error)) from None
    tf_config = strategies.parse_tf_config()
    is_chief = tf_config is None or tf_config.is_chief
    replicas = strategy.num_replicas_in_sync
    strategy_name = type(strategy).__name__.lstrip("_")
    log(f"strategy: {strategy_name} ({why}), {replicas} replica(s)")
    if config.batch_size % replicas:
        raise RunError(f"--batch-size {config.batch_size} is not divisible by "
                       f"the {replicas} replicas; use a multiple of {replicas}.")
    try:  # after the strategy: a layer starts the TF runtime
        BAM(**config.bam_options)
    except (TypeError, ValueError) as error:
        raise RunError(f"BAM option: {error}") from None
    num_gpus = len(tf.config.list_logical_devices("GPU"))
    policy, jit = resolve_precision(config, "tpu" if "TPU" in strategy_name else "",
                                    num_gpus)
    try:
        train_data, eval_data, info = data.make_datasets(
            config.dataset, image_size=config.image_size or default_image_size(config),
            channels=3, global_batch_size=config.batch_size,
            data_dir=config.data_dir, seed=config.seed)
    except data.DataError as error:
        raise RunError(str(error)) from None
    recipe = recipes.get_recipe(info.recipe)
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=recipe.epochs)
    check_output(config)
    if config.steps_per_epoch is None and not info.num_train:
        raise RunError(f"'{info.source}' does not say how many training images "
                       "it has; give --steps-per-epoch.")
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
    log(f"data: {info.source}, {info.num_train} training / {info.num_eval} "
        f"evaluation images, {info.num_classes} classes, "
        f"{'x'.join(map(str, info.image_size))} px, recipe {info.recipe}")
    log(f"training: {config.epochs} epochs x {steps} steps, global batch "
        f"{config.batch_size}, learning rate {base_lr:g} "
        f"({resolved['learning_rate_rule']}), "
        f"precision {policy or 'float32'}, XLA {'on' if jit else 'off'}")
    keras.mixed_precision.set_global_policy(policy or "float32")

    def build_model():
        model = models.build_model(
            config.model, info.num_classes, info.image_size, bam=config.bam,
            weights=config.weights, bam_options=config.bam_options, seed=config.seed)
        if resolved["sync_batch_norm"]:
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
            log("TensorBoard logs off: pip install 'keras-bam[train]' "
                "(or tensorboard) to get them")

    def on_restore(epoch):
        log(f"resuming {output} after epoch {epoch}")
        if is_chief:
            histories.truncate(history, epoch)

    def on_epoch(entry, model):
        log(f"epoch {entry.epoch}/{config.epochs}: loss {entry.loss:.4f}, "
            f"accuracy {entry.accuracy:.4f}, eval top-1 error "
            f"{entry.eval_top1_error:.4f}, top-5 {entry.eval_top5_error:.4f}, "
            f"{entry.images_per_second:.0f} images/s")
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
    final = _float32_copy(model, build_model, resolved["sync_batch_norm"])
    digest = weights_digest(final)
    log(f"weights digest: {digest}")
    rows = histories.read(history) if is_chief else [dataclasses.asdict(e) for e in logs]
    metrics = _metrics(rows, final, info, resolved, digest, cost_report)
    if is_chief:
        _save_model(final, output / "model.keras")
        _write_json(output / "metrics.json", metrics)
        log(f"top-1 error {metrics['top1_error']:.4f}, top-5 error "
            f"{metrics['top5_error']:.4f}; wrote {output / 'model.keras'}")
    return metrics


def _float32_copy(model, build_model, synchronized):
    """The trained model as a float32 model with unsynchronized batch norm
    (what export and any single-device user wants)."""
    copy = build_model()
    copy.set_weights(model.get_weights())
    if synchronized:
        synchronize_batch_norm(copy, False)
    return copy


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


def _save_model(model, path):
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
