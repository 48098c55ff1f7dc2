"""The legacy-Keras half of quantization-aware training, as a child process.

    TF_USE_LEGACY_KERAS=1 python -m keras_bam.qat.worker MODEL.keras \
        DATA.npz FOLDER [--epochs N] [--learning-rate F] [--input-type T]

`keras_bam.qat.run_qat` starts it; nobody needs to by hand. It reads the
Keras 3 model, builds its legacy twin and checks that the twin computes the
same outputs, applies tfmot's quantization, fine-tunes on the images in
DATA.npz (`images`, `labels`), converts to a full-integer int8 TFLite file
with the ranges learnt in training, and copies the fine-tuned float weights
back into the Keras 3 model. It writes to FOLDER: `qat.tflite`,
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
    parser.add_argument("--input-type", default="int8")
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
    from keras_bam.export.convert import to_tflite
    from keras_bam.qat import legacy, quantize

    model = keras.saving.load_model(args.model)
    data = np.load(args.data)
    images, labels = data["images"], data["labels"]

    twin, pairs = legacy.legacy_twin(model)
    probe = images[:64]
    expected = np.asarray(model.predict(probe, verbose=0))
    difference = float(np.max(np.abs(
        np.asarray(twin.predict(probe, verbose=0)) - expected)))
    scale = max(1.0, float(np.max(np.abs(expected))))
    if difference > TWIN_TOLERANCE * scale:
        raise RuntimeError(
            f"the legacy twin differs from the model by {difference:.3g} "
            f"(allowed {TWIN_TOLERANCE * scale:.3g}); please report this "
            "model's architecture")

    qat_model = quantize.quantize_model(twin)
    from_logits = not quantize.outputs_are_probabilities(model, images)
    loss = quantize.fine_tune(qat_model, images, labels, args.epochs,
                              learning_rate=args.learning_rate,
                              from_logits=from_logits, seed=args.seed)
    # The ranges come from the fake-quantization nodes learnt in training;
    # the converter asks for a representative dataset for full-integer
    # files all the same, and leaves those ranges as they are.
    content = to_tflite(qat_model, "int8", representative_data=images[:8],
                        input_type=args.input_type)
    with open(os.path.join(args.folder, "qat.tflite"), "wb") as f:
        f.write(content)
    copied = legacy.copy_back(pairs, qat_model)
    model.save(os.path.join(args.folder, "finetuned.keras"))
    return {"twin_max_abs_diff": difference, "layers_carried": len(pairs),
            "layers_copied_back": copied, "epochs": args.epochs,
            "learning_rate": args.learning_rate, "final_loss": loss,
            "samples": int(len(images)), "from_logits": from_logits}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # noqa: BLE001 - one line for the parent
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
