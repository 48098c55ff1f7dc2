"""Child-process side of `keras_bam.export.clients`.

Run as a script, by path, under the Python that has the client library:

    python clients_worker.py mediapipe MODEL.tflite IMAGES.npy RESULT.npz
    python clients_worker.py compiled_model MODEL.tflite INPUTS.npy RESULT.npz

It imports nothing from keras_bam (so it runs in an environment that has
only mediapipe and numpy), writes arrays to RESULT.npz and prints one JSON
line: {"ok": true, ...} or {"ok": false, "error": "..."}. A client that
aborts the process takes only this child with it.
"""

import json
import sys
import time

import numpy as np


def classify_with_mediapipe(model_path, images_path, result_path):
    """MediaPipe Tasks' ImageClassifier, default options, on uint8 RGB images."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core import base_options

    images = np.load(images_path)
    options = vision.ImageClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=model_path),
    )
    try:
        classifier = vision.ImageClassifier.create_from_options(options)
    except Exception as error:  # MediaPipe reports a refused file as various types
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    names, scores, seconds = {}, [], []
    with classifier:
        for image in images:
            frame = mp.Image(image_format=mp.ImageFormat.SRGB,
                             data=np.ascontiguousarray(image))
            start = time.perf_counter()
            result = classifier.classify(frame)
            seconds.append(time.perf_counter() - start)
            categories = result.classifications[0].categories
            row = {}
            for category in categories:
                row[category.index] = category.score
                names[category.index] = category.category_name
            scores.append(row)
    num_classes = max(names) + 1 if names else 0
    probabilities = np.zeros((len(images), num_classes), np.float32)
    for i, row in enumerate(scores):
        for index, score in row.items():
            probabilities[i, index] = score
    np.savez(result_path, scores=probabilities, seconds=np.asarray(seconds))
    return {
        "ok": True,
        "error": None,
        "category_names": [names.get(i) for i in range(num_classes)],
        "categories_per_image": sorted({len(row) for row in scores}),
    }


def run_compiled_model(model_path, inputs_path, result_path):
    """LiteRT's CompiledModel (CPU), one sample at a time."""
    from ai_edge_litert.compiled_model import CompiledModel

    inputs = np.load(inputs_path)
    model = CompiledModel.from_file(model_path)
    signature = list(model.get_signature_list())[0]
    (input_detail,) = model.get_input_tensor_details(signature).values()
    (output_detail,) = model.get_output_tensor_details(signature).values()
    if np.dtype(input_detail["dtype"]) != inputs.dtype:
        return {
            "ok": False,
            "error": f"the file's input is {input_detail['dtype']}, the inputs "
                     f"given are {inputs.dtype}",
        }
    count = int(np.prod(output_detail["shape"]))
    input_buffers = model.create_input_buffers(0)
    output_buffers = model.create_output_buffers(0)
    outputs = []
    for sample in inputs:
        input_buffers[0].write(np.ascontiguousarray(sample[None]))
        model.run_by_index(0, input_buffers, output_buffers)
        values = output_buffers[0].read(count, np.dtype(output_detail["dtype"]))
        outputs.append(np.asarray(values).reshape(output_detail["shape"])[0])
    np.savez(result_path, outputs=np.stack(outputs))
    return {
        "ok": True,
        "error": None,
        "fully_accelerated": bool(model.is_fully_accelerated()),
    }


_CLIENTS = {"mediapipe": classify_with_mediapipe, "compiled_model": run_compiled_model}


def main(argv):
    client, model_path, data_path, result_path = argv
    try:
        report = _CLIENTS[client](model_path, data_path, result_path)
    except Exception as error:  # reported to the parent, which decides
        report = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
