"""The graph walker every part of keras_bam uses: `calls` and `replay`.

(tf_keras graphs go through the same functions in tests/qat/qat_legacy_checks.py,
in a legacy-Keras process.)
"""

import keras
import numpy as np
import pytest

from keras_bam.rewrite import graph


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1807)


def _nested_model():
    """x -> conv -> inner(conv, + skip) -> shared dense twice -> outputs."""
    inner_in = keras.Input((6, 6, 4), name="inner_in")
    y = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, keras.layers.Add(name="skip")([inner_in, y]),
                        name="inner")
    inputs = keras.Input((6, 6, 3), name="pixels")
    x = keras.layers.Conv2D(4, 1, name="stem")(inputs)
    x = inner(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    shared = keras.layers.Dense(4, name="shared")
    x = shared(shared(x))
    return keras.Model(inputs, keras.ops.tanh(x), name="outer")


def test_calls_in_topological_order_with_nested_models_as_one_call():
    model = _nested_model()
    calls = graph.calls(model)
    names = [call.operation.name for call in calls]
    assert names[:4] == ["stem", "inner", "pool", "shared"]
    assert names[4] == "shared"  # called twice: two calls
    assert len(names) == 6  # and the bare keras.ops.tanh
    made = set()
    for call in calls:  # producers before consumers
        assert all(id(t) in made or t is model.inputs[0] for t in call.inputs)
        made.update(id(t) for t in call.outputs)
    assert graph.is_functional(calls[1].operation)
    assert graph.input_name(model.inputs[0]) == "pixels"


def test_replay_on_real_tensors_computes_the_model(rng):
    model = _nested_model()
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")

    def call_function(call, args, kwargs):
        if graph.is_functional(call.operation):  # walk inside it too
            return graph.replay(call.operation, keras.tree.flatten(args),
                                call_function)
        return call.operation(*args, **kwargs)

    (replayed,) = graph.replay(model, [keras.ops.convert_to_tensor(x)],
                               call_function)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(replayed),
                               model.predict(x, verbose=0), rtol=1e-6,
                               atol=1e-6)


def test_replay_lets_the_call_function_stand_in_for_a_layer(rng):
    model = _nested_model()
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")

    def without_stem(call, args, kwargs):
        if call.operation.name == "stem":
            return keras.ops.zeros((2, 6, 6, 4))
        return call.operation(*args, **kwargs)

    (replayed,) = graph.replay(model, [x], without_stem)
    # A zero map through inner (conv + skip), pooling and the dense layers:
    # what the tail computes on zeros, independently of x.
    inner = model.get_layer("inner")
    tail = keras.ops.tanh(model.get_layer("shared")(model.get_layer("shared")(
        keras.ops.mean(inner(keras.ops.zeros((2, 6, 6, 4))), axis=(1, 2)))))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(replayed),
                               keras.ops.convert_to_numpy(tail), rtol=1e-6,
                               atol=1e-6)
    assert not np.allclose(keras.ops.convert_to_numpy(replayed),
                           model.predict(x, verbose=0))


def test_calls_leave_out_what_the_inputs_do_not_reach():
    a = keras.Input((3,), name="a")
    b = keras.Input((3,), name="b")
    added = keras.layers.Add(name="add")([a, b])
    both = keras.Model([a, b], keras.layers.Dense(2, name="d")(added))
    assert [c.operation.name for c in graph.calls(both)] == ["add", "d"]
    # A model over part of that graph: from `added` on.
    tail = keras.Model(added, keras.layers.Dense(2, name="e")(added))
    assert [c.operation.name for c in graph.calls(tail)] == ["e"]
