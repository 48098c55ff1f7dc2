"""BAM and Keras 3 models rebuilt in legacy Keras (`tf_keras`), for QAT.

tensorflow-model-optimization (tfmot) 0.8 quantizes only `tf_keras` models,
and its 8-bit registry knows standard layers only: a `keras_bam.BAM` kept as
one composite layer would stay float inside. So under legacy Keras BAM is
not a layer but a block of standard layers in the model's own graph (see
`bam_block`); tfmot then sees every convolution, batch norm and merge of
BAM and quantizes them like the rest of the network.

Import this module only in a process started with TF_USE_LEGACY_KERAS=1
(`keras_bam.qat` starts one): importing tfmot switches `tensorflow.keras` to legacy
Keras for the whole process. Keras 3 (`import keras`) stays usable beside
it, which is how a `.keras` model is read and its twin built here.
`check_bam_config` alone needs neither: `keras_bam.qat` calls it in the
user's process, to refuse a BAM the block cannot give before the child starts.
"""

import inspect
import os

from keras_bam.layers import options
from keras_bam.rewrite import graph

__all__ = [
    "bam_block",
    "check_bam_config",
    "copy_back",
    "legacy_layer",
    "legacy_object",
    "legacy_twin",
    "tf_keras",
]


def tf_keras():
    """The `tf_keras` module, or a RuntimeError that says how to get it."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError(
            "keras_bam.qat.legacy needs legacy Keras: start the process with "
            "TF_USE_LEGACY_KERAS=1 (keras_bam.qat.run_legacy does), so that "
            "tensorflow-model-optimization and tensorflow.keras agree on tf_keras.")
    import tf_keras as module

    return module


# ------------------------------------------------------------------ BAM


def check_bam_config(config, name):
    """Raises a ValueError for the BAM options the legacy block cannot give."""
    if config["data_format"] != "channels_last":
        raise ValueError(
            f"BAM '{name}' uses data_format='channels_first'; quantization-aware "
            "training (like TFLite) works on channels_last models. Rebuild the "
            "model with keras.config.set_image_data_format('channels_last').")
    if config["gate_activation"] == "hard_sigmoid":
        raise ValueError(
            f"BAM '{name}' uses gate_activation='hard_sigmoid', which tf_keras "
            "defines as a different curve (0.2 x + 0.5), so its legacy twin "
            "would not compute the same function. Use gate_activation='sigmoid' "
            "or 'tanh' for quantization-aware training, or quantize after "
            "training (quantization='int8').")


def bam_block(x, config, name):
    """The BAM with `config` (a `keras_bam.BAM.get_config()`) applied to the
    tf_keras tensor `x`, as standard tf_keras layers.

    The same formula as `keras_bam.BAM`: M = act(Mc(F) (+|*|max) Ms(F)),
    output F + F * M (Keras 3 computes F * (1 + M), equal up to float
    rounding; here both terms are layers tfmot can quantize). Each sublayer
    is named `{name}_{gate}_{sublayer}`.

    Returns:
        (output tensor, {sublayer path: legacy layer}), the paths those of
        `keras_bam.BAM.named_sublayers()`, so that weights move between a BAM
        and its block path by path.
    """
    layers = tf_keras().layers
    check_bam_config(config, name)
    channels = int(x.shape[-1])
    hidden = options.hidden_channels(
        channels, config["reduction_ratio"],
        options.min_hidden_channels(config.get("min_hidden_channels"),
                                    config["variant"]))
    official = config["variant"] == "official"
    made = {}

    def sub(path, layer_class, *args, **kwargs):
        layer = layer_class(*args, name=f"{name}_{path.replace('/', '_')}",
                            **kwargs)
        made[path] = layer
        return layer

    def conv(path, filters, kernel_size, use_bias, dilation_rate=1):
        return sub(path, layers.Conv2D, filters, kernel_size, padding="same",
                   dilation_rate=dilation_rate, use_bias=use_bias,
                   **_legacy_conv_options(config))

    def batch_norm(path):
        return sub(path, layers.BatchNormalization,
                   momentum=config["batch_norm_momentum"],
                   epsilon=config["batch_norm_epsilon"])

    logits = None
    if config["use_channel_gate"]:
        c = layers.GlobalAveragePooling2D(keepdims=True,
                                          name=f"{name}_channel_gate_pool")(x)
        c = conv("channel_gate/fc_0", hidden, 1, True)(c)
        if official:
            c = batch_norm("channel_gate/bn_0")(c)
        c = layers.ReLU(name=f"{name}_channel_gate_relu")(c)
        c = conv("channel_gate/fc_final", channels, 1, official)(c)
        if not official:
            c = batch_norm("channel_gate/bn_final")(c)
        logits = c
    if config["use_spatial_gate"]:
        s = x
        stages = [("reduce", 1, 1)] + [
            (f"dilated_{i}", 3, config["dilation_rate"])
            for i in range(config["num_dilated_convs"])]
        for suffix, kernel_size, dilation in stages:
            s = conv(f"spatial_gate/conv_{suffix}", hidden, kernel_size,
                     official, dilation)(s)
            s = batch_norm(f"spatial_gate/bn_{suffix}")(s)
            s = layers.ReLU(name=f"{name}_spatial_gate_relu_{suffix}")(s)
        s = conv("spatial_gate/conv_final", 1, 1, official)(s)
        if not official:
            s = batch_norm("spatial_gate/bn_final")(s)
        logits = s if logits is None else _combine(
            layers, config["combine"], logits, s, name)
    attention = layers.Activation(config["gate_activation"],
                                  name=f"{name}_attention")(logits)
    refined = layers.Multiply(name=f"{name}_refine")([x, attention])
    return layers.Add(name=name)([x, refined]), made


def _combine(layers, how, a, b, name):
    if how == "sum":
        return layers.Add(name=f"{name}_combine")([a, b])
    if how == "product":
        return layers.Multiply(name=f"{name}_combine")([a, b])
    # max(a, b) as a + relu(b - a), as keras_bam.BAM computes it.
    difference = layers.Subtract(name=f"{name}_combine_diff")([b, a])
    difference = layers.ReLU(name=f"{name}_combine_relu")(difference)
    return layers.Add(name=f"{name}_combine")([a, difference])


def _legacy_conv_options(config):
    tk = tf_keras()
    return {
        "kernel_initializer": legacy_object(tk.initializers,
                                            config["kernel_initializer"]),
        "bias_initializer": legacy_object(tk.initializers,
                                          config["bias_initializer"]),
        "kernel_regularizer": legacy_object(tk.regularizers,
                                            config["kernel_regularizer"]),
        "bias_regularizer": legacy_object(tk.regularizers,
                                          config["bias_regularizer"]),
    }


def legacy_object(module, value):
    """A Keras 3 serialized initializer, regularizer or constraint as the
    tf_keras object of the same class (arguments tf_keras does not know,
    such as GlorotUniform's `input_axes`, are left out)."""
    if value is None or isinstance(value, str):
        return module.get(value) if value is not None else None
    cls = type(module.get(value["class_name"]))
    accepted = inspect.signature(cls.__init__).parameters
    arguments = {k: v for k, v in (value.get("config") or {}).items()
                 if k in accepted}
    return cls(**arguments)


# ------------------------------------------------------- Keras 3 -> tf_keras


def legacy_layer(layer, name=None):
    """A tf_keras layer of the same class and configuration as the Keras 3
    `layer`, not built (its weights are copied once it is), named `name`
    (default: the layer's own name)."""
    tk = tf_keras()
    kind = type(layer).__name__
    cls = getattr(tk.layers, kind, None)
    if cls is None or not type(layer).__module__.startswith("keras."):
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__module__}.{kind}) has no "
            "tf_keras counterpart, so its model cannot be carried to legacy "
            "Keras for quantization-aware training. Export it with "
            "post-training quantization (quantization='int8') instead.")
    accepted = set(inspect.signature(cls.__init__).parameters) | {
        "name", "trainable"}
    config = {}
    for key, value in layer.get_config().items():
        if key not in accepted or key.endswith("_initializer"):
            continue  # initializers: the weights are copied over them
        if key.endswith(("_regularizer", "_constraint")):
            value = legacy_object(
                tk.regularizers if key.endswith("_regularizer")
                else tk.constraints, value)
        config[key] = value
    if name is not None:
        config["name"] = name
    # QAT trains in float32 whatever the Keras 3 policy was.
    return cls(dtype="float32", **config)


def legacy_twin(model):
    """The legacy-Keras twin of a Keras 3 Functional model, same weights.

    Every layer becomes the tf_keras layer of the same class and config;
    every `keras_bam.BAM` becomes `bam_block`; nested Functional models are
    flattened into one graph (tfmot quantizes flat models only). Layers
    without a tf_keras counterpart, and bare `keras.ops` calls in the graph,
    are refused with a ValueError.

    Returns:
        (twin, pairs): the tf_keras Functional model and a list of
        (Keras 3 layer, tf_keras layer) that hold the same weights, the
        order `copy_weights` and its reverse use.
    """
    tk = tf_keras()
    model = graph.as_functional(model)
    inputs = [tk.Input(shape=tuple(t.shape[1:]), batch_size=t.shape[0],
                       name=graph.input_name(t))
              for t in model.inputs]
    state = {"pairs": [], "made": {}, "names": {x.name for x in inputs}}
    outputs = graph.replay(model, inputs,
                           lambda call, args, kwargs: _twin_call(call, args, kwargs,
                                                                 state))
    twin = tk.Model(inputs if len(inputs) > 1 else inputs[0],
                    outputs if len(outputs) > 1 else outputs[0],
                    name=model.name)
    for keras3_layer, twin_layer in state["pairs"]:
        twin_layer.set_weights(keras3_layer.get_weights())
    return twin, state["pairs"]


def _twin_call(call, args, kwargs, state):
    """`graph.replay`'s call function for `legacy_twin`: the tf_keras
    counterpart of one call of the Keras 3 graph, applied to the twin's
    tensors `args` and `kwargs`."""
    import keras

    from keras_bam.layers.bam import BAM

    operation = call.operation
    if graph.is_functional(operation):  # flattened into the twin's graph
        return graph.replay(
            operation, keras.tree.flatten(args),
            lambda inner, a, k: _twin_call(inner, a, k, state))
    if isinstance(operation, BAM):
        outputs, made = bam_block(args[0], operation.get_config(),
                                  _unique(operation.name, state))
        own = operation.named_sublayers()
        state["pairs"] += [(own[path], made[path]) for path in made]
        return outputs
    if isinstance(operation, keras.layers.Layer):
        twin_layer = state["made"].get(id(operation))
        if twin_layer is None:  # a shared layer stays shared
            twin_layer = legacy_layer(operation,
                                      name=_unique(operation.name, state))
            state["made"][id(operation)] = twin_layer
            state["pairs"].append((operation, twin_layer))
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in ("training", "mask")}
        return twin_layer(*args, **kwargs)
    raise ValueError(
        f"The model calls the bare operation '{type(operation).__name__}' "
        f"({operation.name}) in its graph, which has no tf_keras layer to "
        "stand for it in quantization-aware training. Wrap it in a standard "
        "layer or quantize after training (quantization='int8').")


def _unique(name, state):
    """`name`, or `name_2`, ... when flattening nested models collides."""
    candidate, count = name, 1
    while candidate in state["names"]:
        count += 1
        candidate = f"{name}_{count}"
    state["names"].add(candidate)
    return candidate


def copy_back(pairs, qat_model):
    """Copies the float weights of the (fine-tuned) twin layers, found in
    `qat_model` by name (inside tfmot's wrappers), into their Keras 3
    layers. Returns the number of layers copied."""
    holders = {}  # twin layer name -> the layer of qat_model holding it
    for layer in qat_model.layers:
        holders[getattr(layer, "layer", layer).name] = layer
    copied = 0
    for keras3_layer, twin_layer in pairs:
        if not keras3_layer.weights:
            continue
        holder = holders.get(twin_layer.name)
        if holder is None:
            raise ValueError(
                f"Layer '{twin_layer.name}' is missing from the quantized "
                "model, so its fine-tuned weights cannot be carried back.")
        keras3_layer.set_weights(_weights_of(holder, twin_layer))
        copied += 1
    return copied


def _weights_of(holder, twin_layer):
    """`twin_layer`'s weights as `holder` has them now, in twin order.

    tfmot's wrapper takes over the kernels it fake-quantizes (they leave
    the inner layer's `weights`), so they are looked up by variable name,
    `{layer}/{weight}:0`, among the wrapper's.
    """
    prefix = twin_layer.name + "/"
    values = {w.name: v for w, v in zip(holder.weights, holder.get_weights())
              if w.name.startswith(prefix)}
    return [values[w.name] for w in twin_layer.weights]
