"""Walking a Functional model's graph, and the graph annotated with shapes.

Keras records a Functional model as calls (one per call of a layer or of a
bare `keras.ops` operation, as MobileNetV3's `x + 3.0`). Two functions walk
them, for Keras 3 and legacy `tf_keras` models alike, and are the only graph
walkers in keras_bam (insertion, cost, attention maps and the tf_keras twin
for quantization-aware training all use them):

- `calls(model)`: the calls in a topological order, nested models as one
  call;
- `replay(model, inputs, call_function)`: the graph run again on other
  values (shape specs, tensors of another model), `call_function` standing
  in for every call.

`ModelGraph` replays a Keras 3 model on shape specs and lists its calls,
nested Functional models expanded in place (named `outer/inner`), with:

- the output shape of each node at a probe size: the model's own input size
  where it is known, else 224 for an unknown height or width, so that
  resolutions can be compared even for a `(None, None, 3)` input;
- the nodes every input-to-output path passes through ("cut" nodes): BAM
  can only go where the whole feature map flows, never inside a block.

Shapes come from each operation's `compute_output_spec`, which creates no
node, so the analysed model is left exactly as it was.
"""

import dataclasses
import functools

import keras

from keras_bam.layers.bam import BAM
from keras_bam.rewrite import keras_internals
from keras_bam.rewrite.keras_internals import Call, is_functional

__all__ = [
    "Call",
    "GraphNode",
    "ModelGraph",
    "as_functional",
    "calls",
    "input_name",
    "is_functional",
    "leaf_layers",
    "replay",
]

PROBE_SIZE = 224  # stands in for an unknown height or width

_PADDING = (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)
_HEAD = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
)
_ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)


@dataclasses.dataclass
class GraphNode:
    """One call of an operation in the flattened graph."""

    index: int
    path: str  # layer name, prefixed by the nested models' names and "/"
    operation: object  # keras.layers.Layer or keras.Operation
    shape: tuple  # output shape at the probe size (first output)
    inputs: list = dataclasses.field(default_factory=list)  # producer indices
    consumers: list = dataclasses.field(default_factory=list)
    is_cut: bool = False

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_input(self):
        return isinstance(self.operation, keras.layers.InputLayer)

    @property
    def is_padding(self):
        return isinstance(self.operation, _PADDING)

    @property
    def is_head(self):
        """Global pooling, flatten or reshape: where a classifier begins."""
        return isinstance(self.operation, _HEAD) or len(self.shape) != 4

    @property
    def is_activation(self):
        return isinstance(self.operation, _ACTIVATIONS)

    @property
    def is_normalization(self):
        return isinstance(self.operation, keras.layers.BatchNormalization)

    @property
    def is_expansion(self):
        """A 1x1 convolution that widens the map (inverted-residual style)."""
        op = self.operation
        if type(op) is not keras.layers.Conv2D or tuple(op.kernel_size) != (1, 1):
            return False
        kernel = op.kernel.shape
        return kernel[-1] > kernel[-2]

    @property
    def is_merge(self):
        """An Add or Concatenate of two or more feature maps (the end of a
        residual or dense block); Multiply (squeeze-excitation, hard-swish)
        does not count."""
        kind = type(self.operation).__name__
        return kind in ("Add", "Concatenate") and len(set(self.inputs)) >= 2

    @property
    def is_bam(self):
        return isinstance(self.operation, BAM)


class ModelGraph:
    """The flattened graph of a Functional model; see the module docstring."""

    def __init__(self, model):
        self.model = model
        self.data_format = _data_format(model)
        self.nodes = []
        # id(spec) -> index of the node that made it; `_specs` keeps every
        # spec alive meanwhile, so that no id is reused for another object.
        self._producer, self._specs = {}, []
        specs = []
        for tensor in model.inputs:
            layer = keras_internals.input_layer(tensor)
            spec = keras.KerasTensor(_probe_shape(tensor.shape, self.data_format),
                                     dtype=tensor.dtype)
            self._producer[id(spec)] = self._add(layer.name, layer, spec.shape, [])
            specs.append(spec)
        self._specs += specs
        outputs = replay(model, specs, functools.partial(self._visit, prefix=""))
        self.output_indices = [self._producer[id(spec)] for spec in outputs]
        del self._producer, self._specs
        self._mark_cuts()

    # ------------------------------------------------------------- building

    def _add(self, path, operation, shape, inputs):
        node = GraphNode(len(self.nodes), path, operation, tuple(shape),
                         sorted(set(inputs)))
        for i in node.inputs:
            self.nodes[i].consumers.append(node.index)
        self.nodes.append(node)
        return node.index

    def _visit(self, call, args, kwargs, prefix):
        """`replay`'s call function: adds the call's node (a nested model's
        nodes) and returns its output specs."""
        operation = call.operation
        if is_functional(operation):
            return replay(operation, keras.tree.flatten(args),
                          functools.partial(self._visit,
                                            prefix=prefix + operation.name + "/"))
        producers = [self._producer[id(value)]
                     for value in keras.tree.flatten((args, kwargs))
                     if id(value) in self._producer]
        outputs = keras.tree.flatten(operation.compute_output_spec(*args, **kwargs))
        index = self._add(prefix + operation.name, operation, outputs[0].shape,
                          producers)
        for spec in outputs:
            self._producer[id(spec)] = index
        self._specs += outputs
        return outputs

    def _mark_cuts(self):
        """A node is a cut when no edge jumps over it in topological order,
        i.e. every path from the inputs to the outputs passes through it."""
        reach = 0  # furthest node that an edge from an earlier node reaches
        last = len(self.nodes) - 1
        for node in self.nodes:
            node.is_cut = reach <= node.index and (
                bool(node.consumers) or node.index in self.output_indices)
            ends = node.consumers + ([last] if node.index in self.output_indices
                                     and node.index != last else [])
            reach = max([reach, *ends])

    # ------------------------------------------------------------- queries

    def spatial(self, node):
        """(height, width) at the probe size, or None if not a 4-D map."""
        if len(node.shape) != 4:
            return None
        if self.data_format == "channels_first":
            return tuple(node.shape[2:])
        return tuple(node.shape[1:3])

    def channels(self, node):
        return node.shape[1 if self.data_format == "channels_first" else 3]

    def find(self, name):
        """Nodes whose path is `name` or, failing that, whose layer name is."""
        exact = [n for n in self.nodes if n.path == name]
        return exact or [n for n in self.nodes if n.name == name]

    def bam_nodes(self):
        return [n for n in self.nodes if n.is_bam]


def calls(model):
    """The operation calls of a Functional `model` (Keras 3 or tf_keras) in a
    topological order: `keras_internals.Call`s with `operation`, `args`,
    `kwargs`, `inputs` and `outputs`. A nested model is one call; calls
    that the model's inputs do not reach are left out."""
    reached = {id(tensor) for tensor in model.inputs}
    found = []
    for call in keras_internals.graph_calls(model):
        if all(id(tensor) in reached for tensor in call.inputs):
            found.append(call)
            reached.update(id(tensor) for tensor in call.outputs)
    return found


def replay(model, inputs, call_function):
    """Runs a Functional model's graph again on other values.

    Args:
        model: a Functional model, Keras 3 or tf_keras.
        inputs: one value per `model.inputs` (a shape spec, a tensor of a
            model being built, ...).
        call_function: `call_function(call, args, kwargs)` stands in for
            every call of `calls(model)` and returns its outputs; `args` and
            `kwargs` are the recorded ones with each graph tensor replaced by
            the value computed for it. A nested model is one call: replay it
            from `call_function` to walk inside.

    Returns:
        The values computed for `model.outputs`, as a list.
    """
    known = {id(tensor): value for tensor, value in zip(model.inputs, inputs)}

    def substitute(value):
        return known.get(id(value), value)

    for call in calls(model):
        args = keras.tree.map_structure(substitute, call.args)
        kwargs = keras.tree.map_structure(substitute, call.kwargs)
        outputs = keras.tree.flatten(call_function(call, args, kwargs))
        for tensor, value in zip(call.outputs, outputs):
            known[id(tensor)] = value
    return [known[id(tensor)] for tensor in model.outputs]


def input_name(tensor):
    """The name of the input layer behind one of a model's input tensors."""
    return keras_internals.input_layer(tensor).name


def _probe_shape(shape, data_format):
    shape = list(shape)
    shape[0] = 1 if shape[0] is None else shape[0]
    if len(shape) == 4:
        axes = (2, 3) if data_format == "channels_first" else (1, 2)
        for axis in axes:
            if shape[axis] is None:
                shape[axis] = PROBE_SIZE
    return tuple(shape)


def _data_format(model):
    """The data format of the model's first layer that has one."""
    for layer in leaf_layers(model):
        value = getattr(layer, "data_format", None)
        if value in ("channels_last", "channels_first"):
            return value
    return keras.config.image_data_format()


def leaf_layers(model):
    """Every layer of `model`, nested models' layers in their place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def as_functional(model):
    """`model` as a Functional model, or a ValueError that says how to get one."""
    if isinstance(model, keras.Sequential):
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(
                f"Sequential model '{model.name}' has no input shape yet, so its "
                "graph is unknown. Start it with `keras.Input(shape=(height, "
                "width, channels))` or call `model.build((None, height, width, "
                "channels))` first; keras_bam then reads it as a "
                "Functional model.")
        return keras.Model(inputs=inputs, outputs=outputs, name=model.name)
    if is_functional(model):
        return model
    if isinstance(model, keras.Model):
        raise ValueError(
            f"keras_bam rewrites Functional models; '{model.name}' is a "
            f"subclassed model ({type(model).__name__}), whose graph Keras "
            "does not record. Add `keras_bam.BAM()` in its `call()` after the "
            "layers that end a stage, or build it with the Functional API "
            "(`keras.Model(inputs, outputs)`).")
    raise TypeError(
        "keras_bam expects a Keras Functional model, such as one from "
        f"keras.applications. Received: {type(model).__name__}")
