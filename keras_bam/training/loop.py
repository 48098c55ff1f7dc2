"""A custom training loop on tf.distribute, with per-epoch checkpoints.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy in TF 2.21
(keras-team/keras issue 20585); `strategy.run` over a distributed dataset
works under every strategy, so this loop is the one engine for all of them.

Each replica computes the loss of its share of the global batch, scaled by
the global batch size (`tf.nn.compute_average_loss`), so the gradients the
strategy sums are those of the global mean. A `tf.train.CheckpointManager`
saves model, optimizer and epoch after every epoch; `train` called again
with the same directory resumes after the last saved epoch.
"""

import dataclasses
import time

import keras


@dataclasses.dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float
    images_per_second: float


def train(strategy, build_model, build_optimizer, dataset, epochs,
          steps_per_epoch, global_batch_size, checkpoint_dir, on_epoch=None):
    """Trains (or resumes training) and returns (model, [EpochLog]).

    Args:
        strategy: a tf.distribute strategy.
        build_model, build_optimizer: zero-argument callables, called inside
            the strategy's scope.
        dataset: a `tf.data.Dataset` of (images, labels) batches of the
            global batch size, repeating.
        epochs, steps_per_epoch: the run's length.
        global_batch_size: images per step over all replicas.
        checkpoint_dir: where the per-epoch checkpoints go.
        on_epoch: optional callable(EpochLog) after each epoch.
    """
    import tensorflow as tf

    with strategy.scope():
        model = build_model()
        optimizer = build_optimizer()
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        loss_sum = tf.Variable(0.0, trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                               aggregation=tf.VariableAggregation.SUM)
        correct = tf.Variable(0.0, trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                              aggregation=tf.VariableAggregation.SUM)
    # Variables by position, not by object graph: tf.train.Checkpoint does
    # not see sublayers that Keras 3 layers keep in lists (SpatialGate's
    # hidden convolutions), and would silently skip them.
    checkpoint = tf.train.Checkpoint(
        model={str(i): v for i, v in enumerate(model.weights)},
        optimizer={str(i): v for i, v in enumerate(optimizer.variables)},
        epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    losses = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = losses(labels, logits)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        loss_sum.assign_add(tf.reduce_sum(per_example))
        hits = tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels)
        correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.float32)))

    @tf.function
    def run_epoch(iterator):
        for _ in tf.range(steps_per_epoch):
            strategy.run(replica_step, args=next(iterator))

    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    logs = []
    while int(epoch.numpy()) < epochs:
        for variable in (loss_sum, correct):
            for value in strategy.experimental_local_results(variable):
                value.assign(0.0)
        start = time.perf_counter()
        run_epoch(iterator)
        seconds = time.perf_counter() - start
        epoch.assign_add(1)
        images = steps_per_epoch * global_batch_size
        log = EpochLog(int(epoch.numpy()), float(loss_sum.read_value()) / images,
                       float(correct.read_value()) / images, images / seconds)
        manager.save(checkpoint_number=log.epoch)
        logs.append(log)
        if on_epoch is not None:
            on_epoch(log)
    return model, logs
