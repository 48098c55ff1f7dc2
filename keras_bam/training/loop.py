"""A custom training loop on tf.distribute, with per-epoch checkpoints.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy in TF 2.21
(keras-team/keras issue 20585); `strategy.run` over a distributed dataset
works under every strategy, so this loop is the one engine for all of them.

Each replica computes the loss of its share of the global batch, scaled by
the global batch size (`tf.nn.compute_average_loss`), so the gradients the
strategy sums are those of the global mean. A `tf.train.CheckpointManager`
saves model, optimizer (with its step count, which drives the learning-rate
schedule) and epoch after every epoch; `train` called again with the same
directory resumes after the last saved epoch, like Keras' BackupAndRestore:
a run killed mid-epoch loses at most that epoch. The input pipeline starts
again from its beginning on resume.

Under MultiWorkerMirroredStrategy every worker restores from
`checkpoint_dir` (a shared filesystem, or the chief's disk on one machine)
and every worker saves, as the strategy requires, but only the chief into
`checkpoint_dir`; the others write to a temporary directory they delete.
"""

import dataclasses
import math
import shutil
import tempfile
import time

import keras


@dataclasses.dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float
    images_per_second: float
    seconds: float = 0.0
    learning_rate: float = math.nan
    eval_loss: float = math.nan
    eval_top1_error: float = math.nan
    eval_top5_error: float = math.nan


def _summed(tf, name):
    return tf.Variable(0.0, trainable=False, name=name,
                       synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.SUM)


def _current_learning_rate(optimizer):
    rate = optimizer.learning_rate
    try:
        return float(keras.ops.convert_to_numpy(rate))
    except (TypeError, ValueError):
        return math.nan


def train(strategy, build_model, build_optimizer, dataset, epochs,
          steps_per_epoch, global_batch_size, checkpoint_dir, on_epoch=None,
          eval_dataset=None, jit_compile=False, progress=False, is_chief=True,
          on_restore=None):
    """Trains (or resumes training) and returns (model, [EpochLog]).

    Args:
        strategy: a tf.distribute strategy.
        build_model, build_optimizer: zero-argument callables, called inside
            the strategy's scope. A `keras.optimizers.LossScaleOptimizer`
            (mixed_float16) has its loss scaled and gradients unscaled.
        dataset: a `tf.data.Dataset` of (images, labels) batches of the
            global batch size, repeating.
        epochs, steps_per_epoch: the run's length.
        global_batch_size: images per step over all replicas.
        checkpoint_dir: where the per-epoch checkpoints go.
        on_epoch: optional callable(EpochLog, model) after each epoch,
            before its checkpoint.
        eval_dataset: optional finite dataset evaluated after every epoch
            (loss, top-1 and top-5 error, in inference mode).
        jit_compile: compile each replica's step with XLA.
        progress: show a progress bar over each epoch's steps.
        is_chief: whether this worker's checkpoints are the ones kept.
        on_restore: optional callable(epoch) before the first epoch, with
            the epoch restored from the checkpoint (0 when there is none),
            so that the caller can drop what it wrote after that epoch.
    """
    import tensorflow as tf

    with strategy.scope():
        model = build_model()
        optimizer = build_optimizer()
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        loss_sum, correct = _summed(tf, "loss_sum"), _summed(tf, "correct")
        eval_sums = [_summed(tf, n) for n in ("eval_loss", "top1", "top5", "count")]
    # Variables by position, not by object graph: tf.train.Checkpoint does
    # not see sublayers that Keras 3 layers keep in lists (SpatialGate's
    # hidden convolutions), and would silently skip them.
    checkpoint = tf.train.Checkpoint(
        model={str(i): v for i, v in enumerate(model.weights)},
        optimizer={str(i): v for i, v in enumerate(optimizer.variables)},
        epoch=epoch)
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest:
        checkpoint.restore(latest).assert_consumed()
    if on_restore is not None:
        on_restore(int(epoch.numpy()))
    save_dir = str(checkpoint_dir) if is_chief else tempfile.mkdtemp(prefix="worker_ckpt_")
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=2)
    losses = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)
    scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def forward_backward(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = losses(labels, logits)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if scales_loss else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        return per_example, logits, gradients

    if jit_compile:
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def replica_step(images, labels):
        labels = tf.cast(labels, tf.int32)
        per_example, logits, gradients = forward_backward(images, labels)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        loss_sum.assign_add(tf.reduce_sum(per_example))
        hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
        correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.float32)))

    @tf.function
    def run_steps(iterator, count):
        for _ in tf.range(count):
            strategy.run(replica_step, args=next(iterator))

    def replica_eval(images, labels):
        labels = tf.cast(labels, tf.int32)
        logits = tf.cast(model(images, training=False), tf.float32)
        eval_sums[0].assign_add(tf.reduce_sum(losses(labels, logits)))
        k = min(5, logits.shape[-1])
        for total, top in ((eval_sums[1], 1), (eval_sums[2], k)):
            total.assign_add(tf.reduce_sum(tf.cast(
                tf.math.in_top_k(labels, logits, top), tf.float32)))
        eval_sums[3].assign_add(tf.cast(tf.size(labels), tf.float32))

    @tf.function
    def run_eval(distributed):
        for images, labels in distributed:
            strategy.run(replica_eval, args=(images, labels))

    def reset(variables):
        for variable in variables:
            for value in strategy.experimental_local_results(variable):
                value.assign(0.0)

    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    distributed_eval = (strategy.experimental_distribute_dataset(eval_dataset)
                        if eval_dataset is not None else None)
    chunk = max(1, min(steps_per_epoch, 25))
    logs = []
    try:
        while int(epoch.numpy()) < epochs:
            reset([loss_sum, correct] + eval_sums)
            bar = (keras.utils.Progbar(steps_per_epoch, unit_name="step")
                   if progress else None)
            start = time.perf_counter()
            done = 0
            while done < steps_per_epoch:
                count = min(chunk, steps_per_epoch - done)
                run_steps(iterator, tf.constant(count))
                done += count
                if bar is not None:
                    seen = done * global_batch_size
                    bar.update(done, [("loss", float(loss_sum.read_value()) / seen),
                                      ("accuracy", float(correct.read_value()) / seen)])
            seconds = time.perf_counter() - start
            images = steps_per_epoch * global_batch_size
            log = EpochLog(int(epoch.numpy()) + 1,
                           float(loss_sum.read_value()) / images,
                           float(correct.read_value()) / images,
                           images / seconds, seconds,
                           _current_learning_rate(optimizer))
            if distributed_eval is not None:
                run_eval(distributed_eval)
                count = max(float(eval_sums[3].read_value()), 1.0)
                log.eval_loss = float(eval_sums[0].read_value()) / count
                log.eval_top1_error = 1 - float(eval_sums[1].read_value()) / count
                log.eval_top5_error = 1 - float(eval_sums[2].read_value()) / count
            # The callback (history, logs) runs before the checkpoint: a run
            # killed in between repeats this epoch, and `on_restore` at the
            # restart drops the row the checkpoint does not have.
            if on_epoch is not None:
                on_epoch(log, model)
            epoch.assign_add(1)
            manager.save(checkpoint_number=log.epoch)
            logs.append(log)
    finally:
        if not is_chief:
            shutil.rmtree(save_dir, ignore_errors=True)
    return model, logs
