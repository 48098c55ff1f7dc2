"""Every use of Keras' private API in keras_bam, in one place.

Keras has no public way to read the graph a Functional model records (which
operation was called on which tensors, in which order), yet that is what
placing BAM, drawing its attention maps and rebuilding a model in legacy
Keras for quantization-aware training all need. This module reads it, for
Keras 3 models and for legacy `tf_keras` models alike, and hands the rest
of the package plain `Call` records; nothing else in keras_bam touches
`keras.src` or an underscore attribute of a Keras object.

Tested with Keras 3.15 and tf_keras 2.21; setup.cfg pins
`keras>=3.10,<3.16` (3.10 is the package's earlier floor). When a new Keras
release breaks keras_bam's graph code, this file is the one to read first.

Known to rely on undocumented (though not underscored) Keras behaviour
elsewhere: `keras_bam.layers.dilated_conv.DilatedConv2D` overrides
`Conv2D.convolution_op`, the hook every Keras 3 convolution calls.
"""

import dataclasses

from keras.src.models.functional import Functional

# The Keras versions this module is tested on; setup.cfg pins the same.
TESTED_KERAS_VERSIONS = ">=3.10,<3.16"


@dataclasses.dataclass(frozen=True)
class Call:
    """One recorded call of an operation in a Functional model's graph.

    Attributes:
        operation: the layer (or bare `keras.ops` operation) called; a
            nested model is one call.
        args, kwargs: the call's arguments as recorded, with the graph's
            tensors in place.
        inputs: the graph tensors the call consumed, flattened.
        outputs: the graph tensors it produced, flattened.
    """

    operation: object
    args: tuple
    kwargs: dict
    inputs: tuple
    outputs: tuple


def is_legacy(obj):
    """Whether `obj` is a legacy Keras (`tf_keras`) object."""
    return type(obj).__module__.startswith("tf_keras.")


def is_functional(obj):
    """Whether `obj` is a model with a recorded graph: a Keras 3 Functional
    model (not a Sequential one, which Keras 3 records differently) or a
    tf_keras graph network."""
    if isinstance(obj, Functional):
        return True
    return is_legacy(obj) and bool(getattr(obj, "_is_graph_network", False))


def graph_calls(model):
    """The calls recorded in a Functional `model`'s graph, as `Call`s, in a
    topological order (producers before consumers); input layers left out."""
    nodes_by_depth = model._nodes_by_depth
    calls = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if not node.is_input:
                calls.append(_as_call(node))
    return calls


def _as_call(node):
    if hasattr(node, "operation"):  # Keras 3: keras.src.ops.node.Node
        return Call(
            operation=node.operation,
            args=tuple(node.arguments.args),
            kwargs=dict(node.arguments.kwargs),
            inputs=tuple(node.input_tensors),
            outputs=tuple(node.outputs),
        )
    import tensorflow as tf  # tf_keras: tf_keras.src.engine.node.Node

    return Call(
        operation=node.layer,
        args=tuple(node.call_args),
        kwargs=dict(node.call_kwargs),
        inputs=tuple(node.keras_inputs),
        outputs=tuple(tf.nest.flatten(node.outputs)),
    )


def input_layer(tensor):
    """The `InputLayer` that produced one of a model's input tensors."""
    history = tensor._keras_history
    return history.layer if hasattr(history, "layer") else history.operation


def all_sublayers(layer):
    """Every layer inside `layer` (nested models and composite layers
    expanded, `layer` itself left out), in Keras' tracking order."""
    return list(layer._flatten_layers(include_self=False, recursive=True))


def call_count(layer):
    """How many times `layer` has been called on symbolic tensors (in any
    model): what tells a caller that a rewrite left a model's layers alone."""
    return len(layer._inbound_nodes)
