"""keras_bam in one minute: BAM in a small CNN, trained, saved, exported.

Trains the same small CNN with and without BAM on scikit-learn's handwritten
digits (real images, shipped with the package, so it runs offline), saves the
BAM model as .keras and reloads it, converts it to a full-integer int8 TFLite
file and checks that file against the float model with XNNPACK.

    python examples/demo.py [--epochs 6] [--output out/demo]
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_bam.applications import SmallCNN  # noqa: E402
from keras_bam.data import load_digits  # noqa: E402
from keras_bam.export import inspect_tflite, predict, to_tflite, xnnpack_check  # noqa: E402


def train(model, data, epochs, seed):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6,
                        help="training epochs per model (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--output", default="out/demo",
                        help="folder for the .keras and .tflite files")
    args = parser.parse_args(argv)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = load_digits(image_size=32)
    (x_train, _), (x_test, y_test) = data
    print(f"digits: {len(x_train)} train / {len(x_test)} test images, 32x32")
    rows = []
    for use_bam in (False, True):
        keras.utils.set_random_seed(args.seed)
        model = SmallCNN(use_bam=use_bam)
        accuracy = train(model, data, args.epochs, args.seed)
        rows.append((model.name, model.count_params(), accuracy))
    print(f"{'model':<16}{'params':>10}{'test accuracy':>16}")
    for name, params, accuracy in rows:
        print(f"{name:<16}{params:>10,}{accuracy:>16.2%}")

    path = output / "small_cnn_bam.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    same = np.array_equal(
        reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )
    print(f"saved {path}; reloaded outputs identical: {same}")

    content = to_tflite(model, "int8", [x_train[:256]])
    tflite_path = output / "small_cnn_bam_int8.tflite"
    tflite_path.write_bytes(content)
    float_size = len(to_tflite(model, "float32"))
    graph = inspect_tflite(content)
    delegate = xnnpack_check(content)
    logits = predict(content, x_test)
    agreement = np.mean(
        logits.argmax(-1) == model.predict(x_test, verbose=0).argmax(-1)
    )
    print(
        f"int8 TFLite {tflite_path}: {len(content) / 1024:.1f} KiB "
        f"({len(content) / float_size:.2f}x float32), ops "
        + ", ".join(f"{k} {v}" for k, v in graph.op_counts.items())
    )
    print(
        f"  float ops: {len(graph.float_ops)}; XNNPACK: "
        f"{delegate['partitions']} partition(s), ops outside: "
        f"{delegate['undelegated_ops'] or 'none'}; top-1 agreement with "
        f"Keras: {agreement:.2%}; int8 accuracy "
        f"{np.mean(logits.argmax(-1) == y_test):.2%}"
    )
    print(f"done in {time.perf_counter() - start:.0f} s")
    ok = same and delegate["ok"] and not graph.float_ops
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
