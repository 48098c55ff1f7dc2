"""The legacy-Keras half of tests/qat/test_qat.py, run as its own process.

    TF_USE_LEGACY_KERAS=1 python tests/qat/qat_legacy_checks.py OUT.json

It checks the BAM block against the NumPy reference, the twin and the
weights back, the input quantizer's fixed range, and keras.applications
models with BAM carried to tf_keras (the placement, the blocks' parameters,
the tf_keras graph read by keras_bam's walker, tfmot taking the blocks), in
one process: TensorFlow, tf_keras and tfmot start once.

tests/qat/test_qat.py starts it (importing tf_keras or tfmot would switch the
pytest process to legacy Keras), reads the measurements it writes, and
makes the assertions. Nothing is imported at module level, because pytest's
doctest collection imports every module under tests/.
"""

import json
import pathlib
import sys
import types

# tests/ holds the NumPy reference this script imports.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# (backbone constructor, keyword arguments): small widths, same placement.
# The checks are structural (the placement, the channels at the anchors, the
# blocks' parameters, tfmot's wrapping), so the models take 64 x 64 images:
# 64 halves five times like 224, to a 2 x 2 last stage, and ResNet50's
# 359,302 added parameters depend on the channels only.
INPUT_SHAPE = (64, 64, 3)
APPLICATIONS = {
    "MobileNet": {"alpha": 0.25},
    "MobileNetV2": {"alpha": 0.35},
    "ResNet50": {},
}
VARIANTS = [
    {},
    {"variant": "official", "gate_activation": "tanh"},
    {"combine": "max", "num_dilated_convs": 1, "dilation_rate": 2},
    {"use_channel_gate": False},
]


def _randomize_batch_norms(layers, rng):
    """Moving statistics and affine weights away from their initial values,
    so that a wrong or missing batch norm shows in the outputs."""
    for layer in layers:
        if type(layer).__name__ == "BatchNormalization":
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights([
                rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.2, shapes[1]),
                rng.normal(0, 0.2, shapes[2]), rng.uniform(0.5, 2.0, shapes[3])])


def block_against_reference(rng):
    """bam_block against the NumPy reference, with the block's own weights."""
    import numpy as np
    import reference
    import tf_keras

    from keras_bam.layers import BAM
    from keras_bam.qat import legacy

    errors = []
    for kwargs in VARIANTS:
        config = BAM(**kwargs).get_config()
        inputs = tf_keras.Input((9, 11, 32))
        output, made = legacy.bam_block(inputs, config, "bam")
        model = tf_keras.Model(inputs, output)
        _randomize_batch_norms(model.layers, rng)
        for layer in model.layers:  # nonzero biases too
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
        get = made.get
        gates = {
            "channel_gate": types.SimpleNamespace(
                fc_0=get("channel_gate/fc_0"), bn_0=get("channel_gate/bn_0"),
                fc_final=get("channel_gate/fc_final"),
                bn_final=get("channel_gate/bn_final")),
            "spatial_gate": types.SimpleNamespace(
                hidden_convs=[made[p] for p in made
                              if p.startswith("spatial_gate/conv_")
                              and p != "spatial_gate/conv_final"],
                hidden_bns=[made[p] for p in made
                            if p.startswith("spatial_gate/bn_")
                            and p != "spatial_gate/bn_final"],
                conv_final=get("spatial_gate/conv_final"),
                bn_final=get("spatial_gate/bn_final")),
        }
        layer = types.SimpleNamespace(
            use_channel_gate=config["use_channel_gate"],
            channel_gate=gates["channel_gate"] if config["use_channel_gate"]
            else None,
            spatial_gate=gates["spatial_gate"] if config["use_spatial_gate"]
            else None)
        x = rng.normal(size=(2, 9, 11, 32)).astype("float32")
        expected = reference.bam(x, reference.weights_of(layer), **kwargs)
        # An eager call in inference mode: the formula, without tracing a
        # predict function per variant.
        actual = model(x, training=False).numpy()
        errors.append(float(np.max(np.abs(actual - expected))))
    return errors


def block_refusals():
    """What `legacy.bam_block` (the child's own check, behind the one
    `keras_bam.qat.run_qat` makes before starting it) says to the BAM
    options it cannot give; None where it built a block."""
    import tf_keras

    from keras_bam.layers import BAM
    from keras_bam.qat import legacy

    refusals = {}
    for option, value in (("data_format", "channels_first"),
                          ("gate_activation", "hard_sigmoid")):
        config = {**BAM().get_config(), option: value}
        try:
            legacy.bam_block(tf_keras.Input((9, 11, 32)), config, "bam")
            refusals[value] = None
        except ValueError as error:
            refusals[value] = str(error)
    return refusals


def twin_and_back(rng):
    """Keras 3 model -> twin (outputs compared), a training step on the
    twin, then its weights back into the Keras 3 model (compared again)."""
    import keras
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from keras_bam.applications.small_cnn import SmallCNN
    from keras_bam.qat import legacy
    from keras_bam.rewrite.insert import insert_bam
    from keras_bam.rewrite.keras_internals import all_sublayers

    results = []
    for kwargs in VARIANTS[:2]:  # the block test covers the other options
        keras.utils.set_random_seed(0)
        inputs = keras.Input((32, 32, 3), name="pixels")
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        # 8 channels: the official variant's C // 16 would be 0 without a
        # floor; 8 is the paper variant's default floor.
        net = insert_bam(SmallCNN(input_shape=(32, 32, 3), widths=(8, 16, 16),
                                  blocks_per_stage=1), min_hidden_channels=8, **kwargs)
        model = keras.Model(inputs, net(x))  # nested, as the default model
        _randomize_batch_norms(all_sublayers(model), rng)
        images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
        twin, pairs = legacy.legacy_twin(model)
        # Eager calls and one eager SGD step (what `fit` on these 16 images
        # did, batch norm in training mode included), so that no predict or
        # train function is traced; tracing `fit` on a quantized twin is
        # covered by input_quantizer() and by the QAT worker end to end.
        before = np.asarray(model(images, training=False))
        twin_diff = float(np.max(np.abs(
            twin(images, training=False).numpy() - before)))
        loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        with tf.GradientTape() as tape:
            value = loss(np.arange(16) % 10, twin(images, training=True))
        gradients = tape.gradient(value, twin.trainable_variables)
        tf_keras.optimizers.SGD(0.1).apply_gradients(
            zip(gradients, twin.trainable_variables))
        trained = twin(images, training=False).numpy()
        copied = legacy.copy_back(pairs, twin)
        after = np.asarray(model(images, training=False))
        results.append({
            "twin_diff": twin_diff, "scale": float(np.max(np.abs(before))),
            "training_moved": float(np.max(np.abs(trained - before))),
            "back_diff": float(np.max(np.abs(after - trained))),
            "copied": copied,
            "weighted_layers": sum(1 for k, _ in pairs if k.weights),
            "bam_sublayers_in_twin": sum(
                1 for _, t in pairs if "_bam_" in t.name or
                t.name.startswith(("stage1_bam", "stage2_bam")))})
    return results


# Values around and beyond the pixels' range, none halfway between two
# integers: a fake quantization with the range 0..255 rounds and clips them.
INPUT_PROBE = [-20.3, -0.4, 0.3, 7.7, 100.2, 128.49, 254.6, 255.4, 300.0]


def input_quantizer(rng):
    """What the QAT model's input quantizer does to INPUT_PROBE, with
    `fix_input_range(0, 255)` and with tfmot's learnt range, after
    fine-tuning on images that span 10..240 only; and the fine-tuned
    weights still carried back."""
    import keras
    import numpy as np

    from keras_bam.qat import legacy, quantize

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    images = rng.uniform(10, 240, (32, 8, 8, 3)).astype("float32")
    labels = np.arange(32) % 3
    probe = np.asarray(INPUT_PROBE, np.float32)
    results = {}
    for fixed in (True, False):
        twin, pairs = legacy.legacy_twin(model)
        qat_model = quantize.quantize_model(twin)
        if fixed:
            qat_model = quantize.fix_input_range(qat_model, 0, 255)
        (layer,) = [layer for layer in qat_model.layers
                    if type(layer).__name__ == "QuantizeLayer"]
        before = layer(probe, training=False).numpy().tolist()
        quantize.fine_tune(qat_model, images, labels, epochs=1)
        results["fixed" if fixed else "learnt"] = {
            "quantizer": type(layer.quantizer).__name__,
            "before_training": before,
            "after_training": layer(probe, training=False).numpy().tolist(),
            "copied_back": legacy.copy_back(pairs, qat_model),
            # fine_tune builds the optimizer before fit: one trace, not a
            # second one for the slots created in the first.
            "train_traces":
                qat_model.train_function.experimental_get_tracing_count(),
            "weighted_layers": sum(1 for k, _ in pairs if k.weights)}
    return results


def applications():
    """keras.applications models with BAM at the paper's places, carried to
    tf_keras (the legacy twin that quantization-aware training trains):
    where each BAM block sits in the tf_keras graph, what it adds, and
    tfmot accepting the result."""
    import keras

    from keras_bam.qat import legacy, quantize
    from keras_bam.rewrite import graph
    from keras_bam.rewrite.insert import find_bottlenecks, insert_bam

    found = {}
    for name, kwargs in APPLICATIONS.items():
        keras.utils.set_random_seed(0)
        backbone = getattr(keras.applications, name)(
            weights=None, input_shape=INPUT_SHAPE, **kwargs)
        anchors = find_bottlenecks(backbone)
        twin, _ = legacy.legacy_twin(insert_bam(backbone, share_weights=True))
        # The tf_keras graph, read by the same walker as Keras 3 graphs: the
        # block named after each anchor takes the anchor's output.
        producer, fed_by = {}, {}
        for call in graph.calls(twin):
            for tensor in call.outputs:
                producer[id(tensor)] = call.operation.name
            if call.operation.name.endswith("_bam"):
                fed_by[call.operation.name] = producer[id(call.inputs[0])]
        if fed_by != {f"{a}_bam": a for a in anchors}:
            raise AssertionError(f"{name}: BAM blocks fed by {fed_by}, "
                                 f"anchors {anchors}")
        count = lambda m: sum(int(w.shape.num_elements())  # noqa: E731
                              for w in m.trainable_weights)
        entry = {
            "anchors": anchors,
            "channels": [int(twin.get_layer(a).output.shape[-1])
                         for a in anchors],
            "added_params": count(twin) - sum(
                int(w.numpy().size) for w in backbone.trainable_weights),
            "bam_outputs": [layer.name for layer in twin.layers
                            if layer.name.endswith("_bam")],
            "backbone_unchanged": len(backbone.layers),
        }
        if name == "MobileNet":  # tfmot takes the BAM blocks
            quantized = quantize.quantize_model(twin)
            wrapped = [getattr(layer, "layer", layer).name
                       for layer in quantized.layers
                       if type(layer).__name__ == "QuantizeWrapperV2"]
            entry["bam_layers_wrapped"] = sum(
                1 for n in wrapped if "_bam_" in n or n.endswith("_bam"))
            entry["bam_layers"] = sum(
                1 for layer in twin.layers if "_bam_" in layer.name
                or layer.name.endswith("_bam"))
        found[name] = entry
    return found


def main(path):
    """Every check, in one child process (TensorFlow, tf_keras and tfmot
    start once); the results as JSON in `path`."""
    import numpy as np

    rng = np.random.default_rng(1807_06514)
    results = {"block_errors": block_against_reference(rng),
               "block_refusals": block_refusals(),
               "twins": twin_and_back(rng),
               "input_quantizer": input_quantizer(rng),
               "input_quantizer_probe": INPUT_PROBE,
               "applications": applications()}
    with open(path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
