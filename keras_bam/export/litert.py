"""What is inside a .tflite file, and whether XNNPACK takes it.

The XNNPACK check runs in a child process: on files with degenerate
quantization parameters the LiteRT interpreter has been seen to abort the
whole process ("double free detected"), and an exporter must survive that to
report it.
"""

import collections
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_FLOAT_TYPES = ("float32", "float16", "float64", "bfloat16")
_NO_SCRIPT_PATH = ("-P",) if sys.version_info >= (3, 11) else ()


@dataclasses.dataclass
class TFLiteGraph:
    """Ops and tensor types of a .tflite file (before any delegate).

    Attributes:
        op_counts: {op name: count}, in order of first appearance.
        float_ops: names of ops with a float input or output that is not a
            constant (ops that compute in float).
        input_dtypes, output_dtypes: of the model's signature.
        input_shapes: signature input shapes; -1 marks an unknown dimension.
    """

    op_counts: dict
    float_ops: list
    input_dtypes: list
    output_dtypes: list
    input_shapes: list


def make_interpreter(content=None, path=None, delegates=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.AUTO
        if delegates
        else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return Interpreter(
        model_content=content,
        model_path=path,
        experimental_op_resolver_type=resolver,
    )


def inspect_tflite(content):
    """Returns the `TFLiteGraph` of a .tflite file given as bytes."""
    interpreter = make_interpreter(content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the public API has no op listing
    counts = collections.Counter(op["op_name"] for op in ops)
    constant = _constant_tensors(interpreter, tensors)
    float_ops = []
    for op in ops:
        used = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(
            i not in constant and np.dtype(tensors[i]["dtype"]).name in _FLOAT_TYPES
            for i in used
        ):
            float_ops.append(op["op_name"])
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    return TFLiteGraph(
        op_counts=dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        float_ops=float_ops,
        input_dtypes=[np.dtype(d["dtype"]).name for d in inputs],
        output_dtypes=[np.dtype(d["dtype"]).name for d in outputs],
        input_shapes=[[int(s) for s in d["shape_signature"]] for d in inputs],
    )


def predict(content, x, batch_size=32):
    """Runs a .tflite file on float inputs `x` and returns float outputs.

    Quantizes the input and dequantizes the output where the file's
    signature is integer, so results compare directly with the Keras model.
    Files with a batch-1 signature are run one sample at a time.
    """
    interpreter = make_interpreter(content, delegates=True)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    if inp["shape_signature"][0] != -1:
        batch_size = int(inp["shape"][0])
    results = []
    for start in range(0, len(x), batch_size):
        chunk = np.asarray(x[start:start + batch_size], dtype=np.float32)
        if tuple(interpreter.get_input_details()[0]["shape"]) != chunk.shape:
            interpreter.resize_tensor_input(inp["index"], chunk.shape)
            interpreter.allocate_tensors()
        elif not results:
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], quantize_input(chunk, inp))
        interpreter.invoke()
        results.append(dequantize_output(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(results)


def quantize_input(x, detail):
    scale, zero_point = detail["quantization"]
    if not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    q = np.round(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def dequantize_output(y, detail):
    scale, zero_point = detail["quantization"]
    y = y.astype(np.float32)
    return (y - zero_point) * scale if scale else y


def _constant_tensors(interpreter, tensors):
    """Indices of tensors that hold data in the file (weights, biases)."""
    produced = set()
    for op in interpreter._get_ops_details():
        produced.update(int(i) for i in op["outputs"])
    inputs = {d["index"] for d in interpreter.get_input_details()}
    return {i for i in tensors if i not in produced and i not in inputs}


def _delegated_nodes(ops):
    """Indices of the original ops that DELEGATE nodes replaced.

    The interpreter lists the original nodes and, after them, one DELEGATE
    node per partition; a partition is every op between that node's input
    and output tensors.
    """
    producer = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            for t in op["outputs"]:
                producer[int(t)] = op["index"]
    by_index = {op["index"]: op for op in ops}
    delegated = set()
    for node in ops:
        if node["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            owner = producer.get(stack.pop())
            if owner is None or owner in delegated:
                continue
            delegated.add(owner)
            stack.extend(
                int(t) for t in by_index[owner]["inputs"]
                if t >= 0 and int(t) not in boundary
            )
    return delegated


def _xnnpack_report(path):
    """Runs in the child process: load with XNNPACK, allocate, invoke."""
    interpreter = make_interpreter(path=path, delegates=True)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(
            detail["index"], np.zeros(detail["shape"], detail["dtype"])
        )
    interpreter.invoke()
    ops = interpreter._get_ops_details()
    delegated = _delegated_nodes(ops)
    return {
        "partitions": sum(op["op_name"] == "DELEGATE" for op in ops),
        "undelegated_ops": [
            op["op_name"]
            for op in ops
            if op["op_name"] != "DELEGATE" and op["index"] not in delegated
        ],
    }


def xnnpack_check(content, timeout=300):
    """Loads and runs a .tflite file with the XNNPACK delegate, isolated.

    Returns a dict: `ok` (loaded, ran, and XNNPACK took at least one
    partition without error), `partitions`, `undelegated_ops` (op names that
    stay on the reference kernels), and `error` (the child's failure, or
    None). A crash of the interpreter is reported, not propagated.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as f:
            f.write(content)
        try:
            # This file as a script, not `-m keras_bam.export.litert`: the
            # child then imports LiteRT and NumPy alone, not the package
            # (TensorFlow, Keras), which saves seconds per check. -P: its
            # folder does not go on sys.path.
            child = subprocess.run(
                [sys.executable, *_NO_SCRIPT_PATH, os.path.abspath(__file__), path],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        except subprocess.TimeoutExpired:
            return _failed(f"the interpreter did not finish in {timeout} s")
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = " | ".join(child.stderr.strip().splitlines()[-3:])
        return _failed(f"the interpreter exited with code {child.returncode}: {tail}")
    report = json.loads(lines[-1])
    failures = [
        line for line in child.stderr.splitlines()
        if "failed" in line.lower() and "xnnpack" in line.lower()
    ]
    report["error"] = " | ".join(failures) or None
    report["ok"] = report["error"] is None and report["partitions"] > 0
    return report


def _failed(error):
    return {"ok": False, "partitions": 0, "undelegated_ops": [], "error": error}


if __name__ == "__main__":
    print(json.dumps(_xnnpack_report(sys.argv[1])))
