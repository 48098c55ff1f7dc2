"""The custom tf.distribute loop: loss scaling across replicas, resuming."""

import keras
import numpy as np
import tensorflow as tf

from keras_bam.applications.small_cnn import SmallCNN
from keras_bam.rewrite.insert import insert_bam
from keras_bam.training.loop import train


def dataset(rng, batch=16):
    x = rng.uniform(0, 1, (64, 16, 16, 1)).astype("float32")
    y = rng.integers(0, 10, 64).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch)


def small_model():
    """With BAM, whose hidden convolutions Keras keeps in a list: the
    checkpoint must restore them too."""
    keras.utils.set_random_seed(0)
    return insert_bam(SmallCNN(input_shape=(16, 16, 1), widths=(4, 8, 8),
                               blocks_per_stage=1))


def test_resume_continues_after_the_last_saved_epoch(tmp_path, rng):
    data = dataset(rng)
    optimizer = lambda: keras.optimizers.SGD(0.05, momentum=0.9)  # noqa: E731
    strategy = tf.distribute.get_strategy()
    model, logs = train(strategy, small_model, optimizer, data, 2, 3, 16, tmp_path)
    assert [log.epoch for log in logs] == [1, 2]
    assert all(np.isfinite(log.loss) for log in logs)
    saved = [w.numpy().copy() for w in model.weights]
    # Same command again: nothing left to do, the weights come back as saved.
    again, logs = train(strategy, small_model, optimizer, data, 2, 3, 16, tmp_path)
    assert logs == []
    for old, new in zip(saved, again.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    # One more epoch: only epoch 3 runs.
    _, logs = train(strategy, small_model, optimizer, data, 3, 3, 16, tmp_path)
    assert [log.epoch for log in logs] == [3]


def _no_batch_norm_model():
    """No batch norm: the replicas then compute exactly the whole batch."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


def test_two_replicas_follow_the_global_mean(tmp_path):
    """Two steps on 2 logical CPU devices (MirroredStrategy; tests/conftest.py
    splits the CPU) give the same weights as on one device: each replica's
    loss is scaled by the global batch size."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 5, 32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(32)
    weights = []
    for index, strategy in enumerate((tf.distribute.get_strategy(),
                                      tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        model, logs = train(strategy, _no_batch_norm_model,
                            lambda: keras.optimizers.SGD(0.5), data, 1, 2, 32,
                            tmp_path / str(index))
        assert strategy.num_replicas_in_sync == index + 1 and len(logs) == 1
        weights.append([w.numpy() for w in model.weights])
    # The two steps moved the weights (else equal weights prove nothing).
    initial = [w.numpy() for w in _no_batch_norm_model().weights]
    assert max(float(np.abs(a - b).max()) for a, b in zip(initial, weights[0])) > 1e-3
    for one, two in zip(*weights, strict=True):
        np.testing.assert_allclose(two, one, atol=1e-5)
