"""The legacy-Keras half of quantization-aware training, as a child process.

    TF_USE_LEGACY_KERAS=1 python -m keras_bam.qat.worker MODEL.keras \
        DATA.npz FOLDER [--epochs N] [--learning-rate F] [--input-type T]
        [--input-range MIN MAX]

`keras_bam.qat.run_qat` starts it; nobody needs to by hand. It reads the
Keras 3 model, builds its legacy twin and checks that the twin computes the
same outputs, applies tfmot's quantization (the input's range fixed to
MIN..MAX when given, else learnt), fine-tunes on the images in DATA.npz
(`images`, `labels`), converts to a full-integer int8 TFLite file with the
ranges learnt in training, a softmax appended where the model ends in
logits (`keras_bam.export.app.with_probabilities` decides, as for every
export), and copies the fine-tuned float weights back into the Keras 3
model. It writes to FOLDER: `qat.tflite`,
`finetuned.keras` and `result.json`. On failure: one line on stderr, exit
code 2 for a model it cannot carry over, 1 otherwise.
"""

import argparse
import json
import os
import sys

# Largest difference allowed between the Keras 3 model and its twin, relative
# to the largest output: both compute the same float32 formula, differently
# ordered (BAM's F * (1 + M) is F + F * M there).
TWIN_TOLERANCE = 1e-5


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_bam.qat.worker")
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--input-type", default="uint8")
    parser.add_argument("--input-range", type=float, nargs=2, default=None,
                        metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        print("error: run with TF_USE_LEGACY_KERAS=1 (keras_bam.qat.run_qat "
              "does)", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except ValueError as error:  # the model cannot be carried over
        print(f"error: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(args.folder, "result.json"), "w") as f:
        json.dump(result, f)
    return 0


def run(args):
    import keras
    import numpy as np

    import keras_bam.layers  # noqa: F401 - registers BAM for loading
    from keras_bam.export import app
    from keras_bam.export.convert import to_tflite
    from keras_bam.qat import legacy, quantize

    model = keras.saving.load_model(args.model)
    data = np.load(args.data)
    images, labels = data["images"], data["labels"]

    twin, pairs = legacy.legacy_twin(model)
    probe = images[:64]
    # Called, not predict(): nothing to trace for 64 images.
    expected = np.asarray(model(probe, training=False))
    difference = float(np.max(np.abs(np.asarray(twin(probe, training=False)) - expected)))
    scale = max(1.0, float(np.max(np.abs(expected))))
    if difference > TWIN_TOLERANCE * scale:
        raise RuntimeError(
            f"the legacy twin differs from the model by {difference:.3g} "
            f"(allowed {TWIN_TOLERANCE * scale:.3g}); please report this "
            "model's architecture")

    qat_model = quantize.quantize_model(twin)
    if args.input_range is not None:
        qat_model = quantize.fix_input_range(qat_model, *args.input_range)
    # The same test as the exporter's: the file ends in a softmax where the
    # model ends in logits. Fine-tuning stays on the logits.
    _, softmax_appended = app.with_probabilities(model, images[:8])
    from_logits = not app.is_probability_output(model, images[:16])
    loss = quantize.fine_tune(qat_model, images, labels, args.epochs,
                              learning_rate=args.learning_rate,
                              from_logits=from_logits, seed=args.seed)
    converted = qat_model
    if softmax_appended:
        tk = legacy.tf_keras()
        converted = tk.Model(qat_model.inputs, tk.layers.Softmax(
            name="probabilities")(qat_model.outputs[0]), name=qat_model.name)
    # The ranges come from the fake-quantization nodes learnt in training;
    # the converter asks for a representative dataset for full-integer
    # files all the same, and leaves those ranges as they are (the
    # appended SOFTMAX has TFLite's fixed output range, 1/256).
    content = to_tflite(converted, "int8", representative_data=images[:8],
                        input_type=args.input_type)
    with open(os.path.join(args.folder, "qat.tflite"), "wb") as f:
        f.write(content)
    copied = legacy.copy_back(pairs, qat_model)
    model.save(os.path.join(args.folder, "finetuned.keras"))
    return {"twin_max_abs_diff": difference, "layers_carried": len(pairs),
            "layers_copied_back": copied, "epochs": args.epochs,
            "learning_rate": args.learning_rate, "final_loss": loss,
            "samples": int(len(images)), "from_logits": from_logits,
            "softmax_appended": softmax_appended,
            "input_range": args.input_range}


if __name__ == "__main__":
    import atexit
    import gc

    # Python's shutdown skips its full collections over what TensorFlow and
    # both Kerases keep (seconds on 2 cores), as the commands' processes do.
    atexit.register(gc.freeze)
    try:
        sys.exit(main())
    except Exception as error:  # noqa: BLE001 - one line for the parent
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
