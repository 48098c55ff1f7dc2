"""`insert_bam` for legacy Keras (`tf_keras`) Functional models.

The placement is `keras_bam.rewrite`'s own: `LegacyModelGraph` lists a
tf_keras model's layer calls as the same `GraphNode`s (shapes at the same
probe size), so `placement.default_anchors`, the name resolution and the
anchor checks run on it unchanged. Only reading the graph and rebuilding
it differ: `tf_keras.models.clone_model` has no `call_function`, so
`replay` walks the graph itself and lets a callback add BAM after a layer.
Nested models are called whole, as one node; `tf_keras.applications`
models are flat.

Import only under legacy Keras (TF_USE_LEGACY_KERAS=1), as `legacy`.
"""

from keras_bam.qat.legacy import bam_block, ready_nodes, tf_keras
from keras_bam.rewrite import insert as keras3_insert
from keras_bam.rewrite import placement
from keras_bam.rewrite.graph import GraphNode, ModelGraph, _probe_shape

_KINDS = {
    "is_input": ("InputLayer",),
    "is_padding": ("ZeroPadding2D", "Cropping2D"),
    "is_activation": ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU"),
    "is_normalization": ("BatchNormalization",),
}
_HEAD = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Reshape")


class LegacyGraphNode(GraphNode):
    """A `GraphNode` whose operation is a tf_keras layer: the same
    questions, answered from the layer's class name (tf_keras and Keras 3
    name their layer classes alike)."""

    def _kind(self, names):
        return type(self.operation).__name__ in names

    is_input = property(lambda self: self._kind(_KINDS["is_input"]))
    is_padding = property(lambda self: self._kind(_KINDS["is_padding"]))
    is_activation = property(lambda self: self._kind(_KINDS["is_activation"]))
    is_normalization = property(
        lambda self: self._kind(_KINDS["is_normalization"]))

    @property
    def is_head(self):
        return self._kind(_HEAD) or len(self.shape) != 4

    @property
    def is_expansion(self):
        op = self.operation
        if type(op).__name__ != "Conv2D" or tuple(op.kernel_size) != (1, 1):
            return False
        return op.filters > int(self._input_channels)

    @property
    def is_bam(self):
        # bam_block's output: an Add named after the BAM, fed by its refine.
        return self._kind(("Add",)) and self.name.endswith(
            keras3_insert._BAM_SUFFIX)


class LegacyModelGraph(ModelGraph):
    """`ModelGraph` of a tf_keras Functional model (same nodes, same cuts)."""

    def __init__(self, model):
        self.model = model
        self.data_format = next(
            (layer.data_format for layer in model.layers
             if getattr(layer, "data_format", None)), "channels_last")
        self.nodes = []
        probes = []
        for tensor in model.inputs:
            shape = _probe_shape(tuple(tensor.shape), self.data_format)
            layer = tensor._keras_history.layer
            probes.append(_Probe(shape, self._add(layer.name, layer, shape, [])))

        def record(layer, args, kwargs):
            found = [p for p in _flatten((args, kwargs)) if isinstance(p, _Probe)]
            shapes = [p.shape for p in found]
            out = layer.compute_output_shape(shapes if len(shapes) > 1
                                             else shapes[0])
            shape = tuple(out.as_list() if hasattr(out, "as_list") else out)
            index = self._add(layer.name, layer, shape,
                              [p.index for p in found])
            self.nodes[index]._input_channels = shapes[0][-1]
            return _Probe(shape, index)

        outputs = replay(model, probes, record)
        self.output_indices = [p.index for p in outputs]
        self._mark_cuts()

    def _add(self, path, operation, shape, inputs):
        index = super()._add(path, operation, shape, inputs)
        self.nodes[index].__class__ = LegacyGraphNode  # same fields
        return index


class _Probe:
    """Stands for a tensor while the graph is read: its probe shape and the
    node that made it."""

    def __init__(self, shape, index):
        self.shape, self.index = tuple(shape), index


def _flatten(structure):
    import tensorflow as tf

    return tf.nest.flatten(structure)


def replay(model, inputs, call):
    """Re-runs a tf_keras Functional model's graph on `inputs`.

    `call(layer, args, kwargs)` replaces each layer call (and returns its
    outputs); the graph's own tensors in args and kwargs are replaced by
    what `call` returned for them. Returns the outputs as a list.
    """
    import tensorflow as tf

    known = {id(t): x for t, x in zip(model.inputs, inputs)}
    swap = lambda v: known.get(id(v), v)  # noqa: E731
    for node in ready_nodes(model, known, lambda n: n.keras_inputs):
        args = tf.nest.map_structure(swap, node.call_args)
        kwargs = tf.nest.map_structure(swap, node.call_kwargs)
        outputs = call(node.layer, args, kwargs)
        for tensor, value in zip(tf.nest.flatten(node.outputs),
                                 tf.nest.flatten(outputs)):
            known[id(tensor)] = value
    return [known[id(t)] for t in model.outputs]


def find_bottlenecks(model):
    """`keras_bam.find_bottlenecks` for a tf_keras Functional model."""
    graph = LegacyModelGraph(model)
    return [node.path for node in placement.default_anchors(graph)]


def insert_bam(model, after=None, name=None, **bam_kwargs):
    """`keras_bam.insert_bam` for a tf_keras Functional model.

    The same placement, names (`{layer}_bam`) and refusals; BAM is the
    block of standard layers of `keras_bam.qat.legacy.bam_block`, so
    tfmot can quantize it. Every other layer is a copy with the original's
    weights: the input model is left as it was.

    Args:
        model: a tf_keras Functional model, e.g. from
            `tf_keras.applications`.
        after: None (the bottlenecks) or layer names, as for `insert_bam`.
        name: the new model's name (default: the input model's).
        **bam_kwargs: `keras_bam.BAM` arguments (validated by it).

    Returns:
        A tf_keras Functional model.
    """
    from keras_bam.layers import BAM

    tk = tf_keras()
    graph = LegacyModelGraph(model)
    anchors = keras3_insert.choose_anchors(graph, after)
    config = BAM(**bam_kwargs).get_config()  # validates, fills defaults
    targets = {id(node.operation): node.name + keras3_insert._BAM_SUFFIX
               for node in anchors}

    def copy_and_insert(layer, args, kwargs):
        copy = layer.__class__.from_config(layer.get_config())
        outputs = copy(*args, **kwargs)
        copy.set_weights(layer.get_weights())
        if id(layer) in targets:
            outputs, _ = bam_block(outputs, config, targets[id(layer)])
        return outputs

    inputs = [tk.Input(shape=tuple(t.shape[1:]), batch_size=t.shape[0],
                       dtype=t.dtype, name=t._keras_history.layer.name)
              for t in model.inputs]
    outputs = replay(model, inputs, copy_and_insert)
    return tk.Model(inputs if len(inputs) > 1 else inputs[0],
                    outputs if len(outputs) > 1 else outputs[0],
                    name=name or model.name)
