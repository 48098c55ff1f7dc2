"""tfmot's 8-bit QAT applied to a legacy twin, fine-tuning, and conversion.

Runs under legacy Keras only (see `keras_bam.qat.legacy`). tfmot's default
8-bit registry covers what the twin's BAM blocks are made of (Conv2D and
BatchNormalization folded together, ReLU, Add, GlobalAveragePooling2D,
Activation) except three layers: `Multiply` (F * M, and the product of the
authors' variant), `Subtract` (the "max" combination) and `Rescaling` (the
pixel scaling models take in front). For those `OutputQuantizeConfig` below
fake-quantizes the output, which is the int8 range the converter needs for
the TFLite MUL, SUB and the rescaling's MUL/ADD. Nothing else is special:
every layer is annotated and `quantize_apply` places the rest by the
registry, so BAM is quantized exactly like the network around it.

The input is the exception to learnt ranges: `quantize_apply` puts an
`AllValuesQuantizer` there, which learns the range the training images
happen to span (0..240 on dim images), so a uint8 file would map a camera
byte b to 240 b / 255. `fix_input_range` gives it tfmot's `FixedQuantizer`
instead, as `tfmot.quantization.keras.fix_input_output_range` does (that
function also fixes the output's range, which for logits must be learnt):
with [0, 255] the file's input is exactly the pixel bytes, scale 1.
"""

from keras_bam.qat.legacy import tf_keras

# Layers that tfmot's default registry does not quantize and the twin has.
_OUTPUT_ONLY = ("Multiply", "Subtract", "Rescaling")


def _output_quantize_config_class():
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """Fake-quantizes a layer's output to 8 bits; no weights."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False,
                narrow_range=False)]

        def get_config(self):
            return {}

    return OutputQuantizeConfig


def quantize_model(twin):
    """The twin with tfmot's fake quantization, ready to fine-tune."""
    import tensorflow_model_optimization as tfmot

    qkeras = tfmot.quantization.keras
    config_class = _output_quantize_config_class()

    def annotate(layer):
        if type(layer).__name__ in _OUTPUT_ONLY:
            return qkeras.quantize_annotate_layer(layer, config_class())
        return qkeras.quantize_annotate_layer(layer)

    annotated = tf_keras().models.clone_model(twin, clone_function=annotate)
    with qkeras.quantize_scope({"OutputQuantizeConfig": config_class}):
        return qkeras.quantize_apply(annotated)


def fix_input_range(qat_model, minimum, maximum):
    """Gives the quantized `qat_model`'s input quantizers the fixed range
    [minimum, maximum], in place, before training; returns the model.

    tfmot's `QuantizeLayer` after each input gets a `FixedQuantizer` (8
    bits, wide range) in place of the `AllValuesQuantizer` that
    `quantize_apply` gave it, the same quantizer that tfmot's
    `fix_input_output_range` puts there; the converter then takes that
    range as the file's input quantization, scale (maximum - minimum) / 255.
    The layer calls its `quantizer` attribute, so setting it is enough;
    `fix_input_output_range` rebuilds the model from its config instead,
    which renames the wrapped layers' variables (`quant_conv/kernel`) that
    `legacy.copy_back` finds the fine-tuned weights by.
    """
    import tensorflow_model_optimization as tfmot

    inputs = {id(t) for t in qat_model.inputs}
    fixed = [layer for layer in qat_model.layers
             if type(layer).__name__ == "QuantizeLayer" and id(layer.input) in inputs]
    if len(fixed) != len(qat_model.inputs):
        raise RuntimeError(
            f"found {len(fixed)} input quantizer(s) for {len(qat_model.inputs)} "
            "input(s) in the quantized model; tensorflow-model-optimization's "
            "layout has changed")
    for layer in fixed:
        layer.quantizer = tfmot.quantization.keras.quantizers.FixedQuantizer(
            num_bits=8, init_min=float(minimum), init_max=float(maximum),
            narrow_range=False)
    return qat_model


def fine_tune(model, images, labels, epochs, learning_rate=1e-3,
              batch_size=64, from_logits=True, seed=0):
    """Fine-tunes the quantized model in place; returns the final loss.

    Adam with a cosine decay to zero, as the default model was trained, so
    that the weights and the batch-norm statistics settle before the
    quantization ranges are frozen into the file.
    """
    tk = tf_keras()
    tk.utils.set_random_seed(seed)
    steps = epochs * -(-len(images) // batch_size)
    schedule = tk.optimizers.schedules.CosineDecay(learning_rate, steps)
    optimizer = tk.optimizers.Adam(schedule)
    # Its slots made now, not in the first trace of the train function:
    # variables created there make TensorFlow trace it a second time
    # (seconds for a quantized model); the training is the same.
    optimizer.build(model.trainable_variables)
    model.compile(
        optimizer,
        tk.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    history = model.fit(images, labels, batch_size=batch_size, epochs=epochs,
                        shuffle=True, verbose=0)
    return float(history.history["loss"][-1])
