"""Training on images held in memory, with `model.fit`, in seconds.

For small models on small data, where the tf.distribute pipeline of
`keras_bam.training.run` would be more machinery than the job: the default
model of the export command (`training.models.build_model("small_cnn")` on
the embedded digits) and quick experiments.
"""

import keras


def fit_in_memory(model, images, labels, epochs=6, batch_size=64,
                  learning_rate=3e-3, seed=0):
    """Trains `model` (logits out) on arrays with Adam; returns the model.

    The learning rate decays to zero (cosine), so that the weights, and
    with them the batch-norm moving statistics, have settled when training
    stops: inference-mode accuracy then matches training accuracy.

    Args:
        model: a Keras model that outputs logits.
        images, labels: training arrays; labels are class indices.
        epochs, batch_size, learning_rate: the schedule's length and start.
        seed: the shuffling order.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: "
                             f"{name}={value!r}.")
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"`images` and `labels` must be non-empty and of one "
                         f"length. Received: {len(images)} images and "
                         f"{len(labels)} labels.")
    keras.utils.set_random_seed(seed)
    steps = epochs * -(-len(images) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    # No variable may be made inside the first trace of the training step,
    # or TensorFlow traces it a second time (seconds for nothing): the
    # optimizer's are made now, and no metric is compiled (Keras would make
    # its variables there; nobody reads it).
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build(model.trainable_variables)
    model.compile(optimizer,
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=batch_size, epochs=epochs, shuffle=True,
              verbose=0)
    return model
