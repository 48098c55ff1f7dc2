"""Inserting BAM into an existing Functional model."""

import difflib

import keras

from keras_bam.layers.bam import BAM
from keras_bam.rewrite import placement
from keras_bam.rewrite.graph import ModelGraph, as_functional, input_name, leaf_layers

__all__ = ["find_bottlenecks", "insert_bam"]

_BAM_SUFFIX = "_bam"


def find_bottlenecks(model):
    """Names of the layers after which `insert_bam` puts BAM by default.

    The paper's placement: at the end of every stage that the next stage
    downsamples, the stem and the last stage excepted (see
    `keras_bam.rewrite.placement` for the rule as applied to a graph). For
    `keras.applications.ResNet50()`:
    `["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"]`.

    Layers of a nested Functional model are named `outer/inner`, e.g.
    `"resnet50/conv2_block3_out"`.

    BAM layers already in the model are looked through: a model with BAM
    has the bottlenecks of its backbone (`find_bottlenecks(insert_bam(m)) ==
    find_bottlenecks(m)`), and a BAM layer is never returned. Those places
    are already served, so `insert_bam(m, after=find_bottlenecks(m))` on a
    model with BAM there is refused rather than stacking a second BAM.

    Args:
        model: a Functional (or built Sequential) Keras model.

    Returns:
        A list of layer names, in graph order; empty if the model never
        downsamples.
    """
    graph = ModelGraph(as_functional(model))
    return [node.path for node in placement.default_anchors(graph)]


def insert_bam(model, after=None, *, share_weights=False, name=None,
               **bam_kwargs):
    """A new model with a `keras_bam.BAM` after each bottleneck of `model`.

    The input model is not modified. By default every layer of the new model
    is a copy of the original one with the same weights, so that training
    the new model leaves the original as it was (pretrained weights,
    `weights="imagenet"` included, carry over). With `share_weights=True`
    the new model reuses the original layer objects instead: no memory is
    copied, and training either model changes both.

    Each BAM is named after the layer it follows (`conv2_block3_out_bam`).
    A model that already holds BAM layers is refused when `after` is None,
    so that calling `insert_bam` twice cannot stack a second set; name the
    layers in `after` to add more. A BAM never follows a BAM: `after`
    naming a BAM layer, or a layer that a BAM already follows, is refused
    with a ValueError.

    Args:
        model: a Functional Keras model, such as one of `keras.applications`,
            possibly with the backbone nested inside. A built Sequential
            model is converted to a Functional one first.
        after: None (the default) for `find_bottlenecks(model)`, or a layer
            name or list of names (as `find_bottlenecks` writes them).
        share_weights: see above. Default False.
        name: the new model's name. Default: the input model's name.
        **bam_kwargs: passed to every `BAM` (`reduction_ratio`,
            `variant`, ...). Unless given, `data_format` follows the model
            and `dtype` follows the layer BAM is inserted after.

    Returns:
        A Functional model.

    Example:

    >>> backbone = keras.applications.MobileNet(weights=None, alpha=0.25)
    >>> model = keras_bam.insert_bam(backbone)
    >>> [layer.name for layer in model.layers if isinstance(layer, keras_bam.BAM)]
    ['conv_pw_3_relu_bam', 'conv_pw_5_relu_bam', 'conv_pw_11_relu_bam']
    """
    return rewrite(as_functional(model), after, share_weights, name,
                   input_tensors=None, bam_kwargs=bam_kwargs)


def rewrite(model, after, share_weights, name, input_tensors, bam_kwargs):
    """insert_bam's work; `input_tensors` (optional) become the new model's
    inputs, as in `keras.models.clone_model`."""
    model = as_functional(model)
    graph = ModelGraph(model)
    anchors = choose_anchors(graph, after)

    bam_kwargs = dict(bam_kwargs)
    bam_kwargs.setdefault("data_format", graph.data_format)
    targets = {id(node.operation): node for node in anchors}
    originals = {}  # id(layer in the new model) -> layer in `model`

    def clone_function(layer):
        if share_weights:
            new = layer
        else:
            new = layer.__class__.from_config(layer.get_config())
        originals[id(new)] = layer
        return new

    def call_function(operation, *args, **kwargs):
        outputs = operation(*args, **kwargs)
        anchor = targets.get(id(originals.get(id(operation))))
        if anchor is None:
            return outputs
        kwargs = dict(bam_kwargs)
        policy = getattr(anchor.operation, "dtype_policy", None)
        if policy is not None:
            kwargs.setdefault("dtype", policy)
        return BAM(name=anchor.name + _BAM_SUFFIX, **kwargs)(outputs)

    if input_tensors is None:  # clone_model would name them "keras_tensor"
        input_tensors = [
            keras.Input(batch_shape=t.shape, dtype=t.dtype,
                        name=input_name(t))
            for t in model.inputs]
        if not isinstance(model.input, (list, tuple)):
            input_tensors = input_tensors[0]
    new_model = keras.models.clone_model(
        model, input_tensors=input_tensors, clone_function=clone_function,
        call_function=call_function, recursive=True)
    if not share_weights:
        _copy_weights(new_model, originals)
    if name is not None and name != new_model.name:
        # .input/.output keep the structure: one tensor stays one tensor.
        new_model = keras.Model(inputs=new_model.input, outputs=new_model.output,
                                name=name)
    return new_model


def choose_anchors(graph, after):
    """The GraphNodes BAM goes after: the default bottlenecks when `after`
    is None, else the named layers; checked, or a ValueError that says why.
    """
    if after is None:
        existing = graph.bam_nodes()
        if existing:
            raise ValueError(
                f"Model '{graph.model.name}' already has BAM layers "
                f"({', '.join(n.path for n in existing)}). insert_bam refuses "
                "to add a second set at the default places; pass the original "
                "backbone, or name the layers to add BAM after with "
                "`after=[...]`.")
        anchors = placement.default_anchors(graph)
        if not anchors:
            raise ValueError(
                f"Model '{graph.model.name}' never downsamples its feature "
                "maps, so it has no bottleneck for BAM. Name the layers to put "
                "BAM after with `after=[...]`.")
    else:
        anchors = _resolve(graph, after)
    _check_anchors(graph, anchors)
    return anchors


def _copy_weights(new_model, originals):
    for layer in leaf_layers(new_model):
        original = originals.get(id(layer))
        if original is not None and original is not layer and layer.weights:
            layer.set_weights(original.get_weights())


def _resolve(graph, after):
    """GraphNodes for the names in `after`, or a ValueError listing close
    matches and the default candidates."""
    names = [after] if isinstance(after, str) else list(after)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(
            "`after` must be a layer name or a non-empty list of layer names. "
            f"Received: after={after!r}")
    nodes = []
    for name in names:
        found = graph.find(name)
        if len({id(n.operation) for n in found}) == 1:
            nodes.append(found[0])  # a layer called twice is refused later
            continue
        if found:
            raise ValueError(
                f"Layer name '{name}' is ambiguous in model "
                f"'{graph.model.name}': {', '.join(n.path for n in found)}. "
                "Pass the full path.")
        known = [n.path for n in graph.nodes if not n.is_input]
        close = difflib.get_close_matches(
            name, known + [n.name for n in graph.nodes], n=5)
        candidates = [n.path for n in placement.default_anchors(graph)]
        raise ValueError(
            f"No layer named '{name}' in model '{graph.model.name}'. "
            f"Close matches: {', '.join(dict.fromkeys(close)) or 'none'}. "
            "Default bottlenecks (keras_bam.find_bottlenecks): "
            f"{', '.join(candidates) or 'none'}.")
    return sorted({n.index: n for n in nodes}.values(), key=lambda n: n.index)


def _check_anchors(graph, anchors):
    existing_names = {n.name for n in graph.nodes}
    for node in anchors:
        if graph.spatial(node) is None:
            raise ValueError(
                f"Layer '{node.path}' outputs shape {node.shape} (at the probe "
                "size), not a 4-D feature map, so BAM cannot follow it. Choose "
                "a convolutional layer before the classifier head.")
        if node.is_input:
            raise ValueError(
                f"'{node.path}' is the model's input; BAM goes after a layer "
                "that computes features.")
        if node.is_bam:
            served = ", ".join(graph.nodes[i].path for i in node.inputs)
            raise ValueError(
                f"Layer '{node.path}' is a BAM layer; insert_bam does not put a "
                f"BAM right after a BAM. It already serves '{served}'. Name "
                "the layers of the backbone in `after` (keras_bam.find_bottlenecks "
                "lists them, BAM layers looked through), or leave this place out.")
        calls = sum(1 for n in graph.nodes if n.operation is node.operation)
        if calls > 1:
            raise ValueError(
                f"Layer '{node.path}' is called {calls} times in the model; "
                "BAM can only follow a layer that is called once. Name a layer "
                "of one of its calls' neighbourhood instead.")
        followers = [graph.nodes[i] for i in node.consumers]
        served_by = [f.path for f in followers if f.is_bam]
        if served_by:
            raise ValueError(
                f"Layer '{node.path}' is already followed by the BAM layer "
                f"'{served_by[0]}'; insert_bam would stack a second one there. "
                f"Leave '{node.path}' out of `after`.")
        if node.name + _BAM_SUFFIX in existing_names:
            raise ValueError(
                f"The model already has a layer named "
                f"'{node.name + _BAM_SUFFIX}', the name the BAM after "
                f"'{node.path}' would get. Rename that layer first.")
