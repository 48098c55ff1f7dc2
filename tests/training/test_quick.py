"""fit_in_memory: the default model's training (export and figure commands)."""

import keras
import numpy as np
import pytest

from keras_bam.training.quick import fit_in_memory


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_trains_with_one_trace_and_a_rate_that_decays_to_zero(rng):
    images = rng.uniform(0, 255, (48, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, 48)
    model = tiny_model()
    before = [w.numpy().copy() for w in model.trainable_weights]
    traces = []
    step = model.train_step

    def counted_step(data):  # Python runs it once per trace of the step
        traces.append(1)
        return step(data)

    model.train_step = counted_step
    fit_in_memory(model, images, labels, epochs=2, batch_size=16)
    # The training step traced once: no variable (the optimizer's, a
    # metric's) is made inside the first trace, which would force a second.
    assert len(traces) == 1
    assert int(model.optimizer.iterations.numpy()) == 2 * 3  # 48 / 16 a epoch
    # Cosine decay to zero over exactly the steps taken.
    rate = model.optimizer.learning_rate
    assert float(keras.ops.convert_to_numpy(rate)) == pytest.approx(0.0, abs=1e-9)
    moved = [np.abs(w.numpy() - b).max() for w, b in zip(model.trainable_weights, before)]
    assert min(moved) > 0, moved


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, r"`epochs` must be a positive integer. Received: epochs=0"),
    ({"batch_size": 2.5}, r"`batch_size` must be a positive integer"),
    ({"labels": np.zeros(3)}, r"4 images and 3 labels"),
])
def test_bad_arguments_are_refused(kwargs, match):
    arguments = {"images": np.zeros((4, 8, 8, 3), "float32"), "labels": np.zeros(4),
                 **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_in_memory(tiny_model(), **arguments)
