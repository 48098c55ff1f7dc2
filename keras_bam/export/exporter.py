"""Convert, verify, report, and only then write: the export as one step.

`export_tflite` converts a Keras model and hands the file to
`verify_and_write`, which checks it (XNNPACK in a child process, int8
scales, float ops, agreement with the Keras model on held-out images) and
writes it only if it passes (atomically: next to `output` under a temporary
name, then renamed), so an interrupted or rejected export never leaves a
truncated or unverified `.tflite` there. A file converted elsewhere (e.g.
by quantization-aware training, `keras_bam.qat`) goes through
`verify_and_write` alone.

An image classifier's file is made app-ready on the way: a softmax appended
where the Keras model ends in logits (`app.with_probabilities`), TFLite
metadata with its class names (`app.write_metadata`), and the checks run it
through MediaPipe Tasks and LiteRT's CompiledModel too (`app.check_clients`).
"""

import dataclasses
import json
import logging
import os

import numpy as np

from keras_bam.atomic import write_atomically
from keras_bam.export import app, verify
from keras_bam.export.convert import to_tflite, trace
from keras_bam.export.litert import inspect_tflite, xnnpack_check

logger = logging.getLogger("keras_bam.export")

# Minimum top-1 agreement with the float model, by quantization.
DEFAULT_MIN_AGREEMENT = {"int8": 0.99, "float16": 0.999, "dynamic": 0.99,
                         "float32": 0.999}


class ExportError(ValueError):
    """A problem with the caller's input: the message names the argument
    (in backticks) and says what to do."""


class VerificationError(Exception):
    """The converted file failed a check; it was not written."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class ExportReport:
    output: str
    quantization: str
    input_type: str
    input_shape: list
    size_bytes: int
    float32_size_bytes: int
    op_counts: dict
    float_ops: list
    xnnpack_partitions: int
    undelegated_ops: list
    xnnpack_error: str | None
    tiny_scale_tensors: list
    agreement: verify.Agreement | None
    min_agreement: float
    latency: list  # of verify.Latency
    bam_layers: list  # (name, feature shape, MACs)
    bam_mac_share: float | None
    calibration: dict
    # Held-out accuracies by name: other versions of the model as the
    # caller gave them, then "model" (the Keras model) and "file" (this
    # file), on the same images.
    accuracy_comparison: dict | None = None
    softmax_appended: bool = False
    metadata: str | None = None  # "written (...)" or why not
    mediapipe: dict | None = None  # app.check_clients' summary
    mediapipe_note: str | None = None  # why MediaPipe did not run
    compiled_model: dict | None = None
    warnings: list = dataclasses.field(default_factory=list)
    status: str = "ok"
    problems: list = dataclasses.field(default_factory=list)

    @property
    def size_ratio(self):
        return self.size_bytes / self.float32_size_bytes

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["size_ratio"] = self.size_ratio
        return data

    def __str__(self):
        kib = lambda n: f"{n / 1024:,.1f} KiB"  # noqa: E731
        lines = [
            f"{'file':<22}{self.output}",
            f"{'status':<22}{self.status}" + (
                "" if not self.problems else ": " + "; ".join(self.problems)),
            f"{'quantization':<22}{self.quantization}, input {self.input_type} "
            f"{self.input_shape}",
            f"{'size':<22}{kib(self.size_bytes)} ({self.size_ratio:.3f} x the "
            f"float32 file, {kib(self.float32_size_bytes)})",
            f"{'ops':<22}" + ", ".join(f"{k} {v}" for k, v in self.op_counts.items()),
            f"{'float ops':<22}" + (", ".join(self.float_ops) or "none"),
            f"{'XNNPACK':<22}{self.xnnpack_partitions} partition(s); outside: "
            + (", ".join(self.undelegated_ops) or "none")
            + (f"; error: {self.xnnpack_error}" if self.xnnpack_error else ""),
        ]
        for lat in self.latency:
            lines.append(f"{'latency, ' + str(lat.threads) + ' thread(s)':<22}"
                         f"median {lat.median_ms:.2f} ms, p90 {lat.p90_ms:.2f} ms "
                         f"({lat.runs} runs, batch 1)")
        a = self.agreement
        if a is not None:
            lines.append(f"{'top-1 agreement':<22}{a.top1_agreement:.4f} on "
                         f"{a.samples} held-out images (minimum "
                         f"{self.min_agreement})")
            if a.keras_accuracy is not None:
                lines.append(f"{'accuracy':<22}Keras float {a.keras_accuracy:.4f}, "
                             f"TFLite {a.tflite_accuracy:.4f}")
            lines.append(f"{'output difference':<22}max {a.max_abs_diff:.3g}, "
                         f"mean {a.mean_abs_diff:.3g}")
        if self.accuracy_comparison:
            lines.append(f"{'accuracy compared':<22}" + ", ".join(
                f"{k.replace('_', ' ')} {v:.4f}"
                for k, v in self.accuracy_comparison.items()))
        if self.softmax_appended:
            lines.append(f"{'output':<22}probabilities (softmax appended to the "
                         "model's logits)")
        if self.metadata:
            lines.append(f"{'metadata':<22}{self.metadata}")
        m = self.mediapipe
        if m is not None:
            accuracy = ("" if m["top1_accuracy"] is None
                        else f"top-1 accuracy {m['top1_accuracy']:.4f}, ")
            lines.append(
                f"{'MediaPipe Tasks':<22}{accuracy}agrees with LiteRT on "
                f"{m['top1_agreement_with_litert']:.4f} of {m['samples']} images; "
                f"categories {'named' if m['named_categories'] else 'unnamed'}; "
                f"scores sum to {m['score_sum_min']:.3f}..{m['score_sum_max']:.3f}")
        elif self.mediapipe_note:
            lines.append(f"{'MediaPipe Tasks':<22}{self.mediapipe_note}")
        c = self.compiled_model
        if c is not None:
            lines.append(f"{'LiteRT CompiledModel':<22}ran {c['samples']} images, "
                         f"outputs within {c['max_abs_diff']:.3g} of the Interpreter's")
        for warning in self.warnings:
            lines.append(f"{'warning':<22}{warning}")
        if self.bam_layers:
            names = ", ".join(f"{n} {tuple(s)}" for n, s, _ in self.bam_layers)
            lines.append(f"{'BAM layers':<22}{names}")
            lines.append(f"{'BAM share of MACs':<22}{100 * self.bam_mac_share:.2f} %")
        else:
            lines.append(f"{'BAM layers':<22}none")
        return "\n".join(lines)


def export_tflite(model, output, quantization="int8", calibration=None,
                  held_out=None, input_type=None, batch_size=1,
                  min_agreement=None, latency_runs=50, report_path=None,
                  num_calibration_samples=500, labels=None, name=None,
                  description=None, version=None, author=None, license=None):
    """Converts `model`, verifies the file, and writes it to `output`.

    Args:
        model: a Keras image model taking float32 pixels in [0, 255]. If it
            ends in logits, the file ends in a softmax (probabilities out).
        output: path of the .tflite file.
        quantization: "int8" (full integer), "float16", "dynamic" or
            "float32".
        calibration: `keras_bam.data.ImageSet` for int8 calibration.
        num_calibration_samples: how many of its images calibrate (default
            500). If some activation is then constant (a near-zero int8
            scale, which XNNPACK may refuse), calibration is redone once on
            all of them.
        held_out: `keras_bam.data.ImageSet` to compare the file with the
            model on.
        input_type: for int8, "uint8" (default: camera pixels 0..255 as
            they are), "int8" or "float32"; the output has the same type.
        batch_size: the signature's batch, 1 (default) or None.
        min_agreement: top-1 agreement below which the file is rejected
            (default: 0.99 for int8 and dynamic, 0.999 for float16/float32).
        latency_runs: timed runs per thread count (0: no latency).
        report_path: also write the report as JSON there.
        labels: the class names in output order; default those of
            `calibration`. With them (and an RGB, batch-1 input) the file
            carries TFLite metadata.
        name, description, version, author, license: the metadata's fields
            (name defaults to the model's name).

    Returns:
        The `ExportReport`. Raises `VerificationError` (file not written,
        report attached) when a check fails, `ExportError` for bad arguments.
    """
    if quantization not in DEFAULT_MIN_AGREEMENT:
        raise ExportError(f"`quantization` must be one of "
                          f"{', '.join(DEFAULT_MIN_AGREEMENT)}. Received: "
                          f"{quantization!r}.")
    if not isinstance(num_calibration_samples, int) or num_calibration_samples < 1:
        raise ExportError("`num_calibration_samples` must be a positive integer. "
                          f"Received: {num_calibration_samples!r}.")
    output = check_output_path(output)
    integer = quantization == "int8"
    if integer:
        input_type = input_type or "uint8"
    elif input_type not in (None, "float32"):
        raise ExportError(f"`input_type` {input_type} needs `quantization` int8; "
                          f"{quantization} files take float32.")
    calibration_info = {}
    samples = None
    if integer:
        if calibration is None or len(calibration) == 0:
            raise ExportError("int8 needs calibration images: pass `calibration`.")
        samples = calibration.images[:num_calibration_samples]
        calibration_info = {"source": calibration.source, "samples": len(samples)}
    probe = next((s.images for s in (calibration, held_out)
                  if s is not None and len(s)), None)
    source_model = model
    appended = False
    if probe is not None:
        model, appended = app.with_probabilities(model, probe)
    # One trace for every conversion of this model (a retry, the float32 file).
    traced = trace(model, batch_size)
    content = _convert(model, quantization, samples, batch_size, input_type, traced)
    if integer and verify.tiny_scales(content) and len(calibration) > len(samples):
        # Ours to fix first: a range that was constant on too few images.
        samples = calibration.images
        content = _convert(model, quantization, samples, batch_size, input_type,
                           traced)
        calibration_info["recalibrated_with"] = len(samples)
    if labels is None and calibration is not None:
        labels = calibration.class_names
    return verify_and_write(
        model, content, output, quantization=quantization, held_out=held_out,
        batch_size=batch_size, min_agreement=min_agreement, latency_runs=latency_runs,
        report_path=report_path, calibration_info=calibration_info,
        labels=labels, probabilities=probe is not None,
        metadata_fields=dict(name=name or source_model.name, description=description,
                             version=version, author=author, license=license),
        softmax_appended=appended, source_model=source_model, traced=traced)


def verify_and_write(model, content, output, quantization="int8", held_out=None,
                     batch_size=1, min_agreement=None, latency_runs=50,
                     report_path=None, calibration_info=None,
                     accuracy_comparison=None, labels=None, probabilities=False,
                     metadata_fields=None, softmax_appended=False,
                     source_model=None, traced=None):
    """Checks a converted file against `model` and writes it if it passes.

    The checks: XNNPACK loads and runs it (in a child process), no float op
    in an int8 file, top-1 agreement with `model` on `held_out` of at least
    `min_agreement`, and, for an image classifier, MediaPipe Tasks'
    `ImageClassifier` and LiteRT's `CompiledModel` run it (child processes).
    An int8 scale below 1e-6 (a tensor constant on the calibration data) is
    a warning when XNNPACK runs the file, a problem when it does not.

    Args:
        model: the Keras model the file was converted from.
        content: the .tflite file's bytes.
        output: where it goes (its folder is created).
        quantization: what the file is ("int8": full integer, "float16",
            "dynamic", "float32"), for the checks and the default
            `min_agreement`.
        held_out, batch_size, min_agreement, latency_runs, report_path: as
            for `export_tflite`; `batch_size` is that of the float32 file
            the size is compared with.
        calibration_info: what set the file's int8 ranges, for the report.
        accuracy_comparison: {name: held-out accuracy} of other versions of
            the model on `held_out`, shown beside the model's ("model") and
            the file's ("file").
        labels: class names in output order: with them, and `probabilities`
            (the file's output is a softmax), metadata is written into the
            file before it is checked.
        metadata_fields: name, description, version, author, license.
        softmax_appended: for the report: the softmax is the exporter's.
        source_model: the model as the caller gave it (before the softmax),
            for the BAM costs and the location of degenerate tensors.
        traced: `keras_bam.export.convert.trace(model, batch_size)`, where
            the caller has it: the float32 file is converted from it.

    Returns:
        The `ExportReport`; raises `VerificationError` (nothing written,
        report attached) when a check fails.
    """
    if quantization not in DEFAULT_MIN_AGREEMENT:
        raise ExportError(f"`quantization` must be one of "
                          f"{', '.join(DEFAULT_MIN_AGREEMENT)}. Received: "
                          f"{quantization!r}.")
    if min_agreement is None:
        min_agreement = DEFAULT_MIN_AGREEMENT[quantization]
    elif not 0 <= min_agreement <= 1:
        raise ExportError(f"`min_agreement` must be between 0 and 1. Received: "
                          f"{min_agreement!r}.")
    output = check_output_path(output)
    source_model = source_model if source_model is not None else model
    integer = quantization == "int8"
    problems = []
    graph = inspect_tflite(content)
    metadata_note = app.metadata_applies(graph, labels)
    if metadata_note is None and not probabilities:
        metadata_note = ("not written: the output is not known to be a softmax "
                         "(probabilities)")
    if metadata_note is None:
        fields = dict(metadata_fields or {})
        fields.setdefault("name", source_model.name)
        fields["description"] = fields.get("description") or (
            f"{source_model.name}: an image classifier with BAM (Bottleneck "
            f"Attention Module), {quantization} TFLite, exported by keras_bam; "
            "takes RGB pixels 0..255, returns class probabilities.")
        try:
            content, metadata_note = app.write_metadata(
                content, labels, input_type=graph.input_dtypes[0], **fields)
        except ValueError as error:
            problems.append(f"the file's metadata cannot be written: {error}")
            metadata_note = "not written (see the problems)"
        else:
            metadata_note = metadata_note or (
                f"written: name, description, {len(labels)} labels, RGB input "
                "normalization, probability output")
    logger.info("checking the file: XNNPACK, float ops, int8 scales ...")
    tiny = verify.tiny_scales(content) if integer else []
    check = xnnpack_check(content)
    warnings = []
    if tiny:
        located = app.locate_tensors(tiny, source_model)
        in_bam = sum(where != "backbone" for _, where in located)
        named = ", ".join(f"{t} ({where})" for t, where in located[:6])
        text = (f"{len(tiny)} tensor(s) got an int8 scale below 1e-6, i.e. were "
                f"constant on the calibration data ({in_bam} in a BAM, "
                f"{len(tiny) - in_bam} in the backbone): {named}"
                f"{', ...' if len(tiny) > 6 else ''}")
        if check["ok"]:
            warnings.append(text + ". LiteRT and XNNPACK run the file; a trained "
                            "model or more varied calibration images "
                            "(`num_calibration_samples`) give these tensors a range")
            logger.warning("warning: %s", warnings[-1])
        else:
            cause = ("a BAM branch too narrow to quantize: keep BAM's "
                     "min_hidden_channels at 8 or more" if in_bam else
                     "an untrained or dead backbone layer: train the model")
            problems.append(text + f". Likely cause: {cause}; or calibrate on "
                            "more, varied images (`num_calibration_samples`)")
    if not check["ok"]:
        problems.append("XNNPACK did not take the file: "
                        f"{check['error'] or 'no partition was delegated'}")
    if integer and graph.float_ops:
        problems.append("ops left in float in a full-integer file: "
                        + ", ".join(sorted(set(graph.float_ops))))

    agreement = None
    latencies = []
    clients = None
    if check["ok"]:  # only a file that ran in the child runs in this process
        if held_out is not None and len(held_out):
            logger.info(f"comparing with the Keras model on {len(held_out)} "
                         "held-out images ...")
            agreement = verify.compare(model, content, held_out.images,
                                       held_out.labels)
            if (accuracy_comparison is not None
                    and agreement.keras_accuracy is not None):
                accuracy_comparison = {**accuracy_comparison,
                                       "model": agreement.keras_accuracy,
                                       "file": agreement.tflite_accuracy}
            if agreement.top1_agreement < min_agreement:
                problems.append(
                    f"top-1 agreement {agreement.top1_agreement:.4f} is below "
                    f"the minimum {min_agreement} (`min_agreement`)")
            if labels:
                logger.info("running the file in MediaPipe Tasks and LiteRT's "
                             "CompiledModel ...")
                clients = app.check_clients(content, held_out, graph, labels)
                problems.extend(clients.problems)
        if latency_runs:
            logger.info("timing it ...")
            for threads in sorted({1, verify.cpu_count()}):
                latencies.append(verify.latency(content, threads, latency_runs))

    # After the checks: an export interrupted during them has done less work.
    float32 = to_tflite(model, "float32", batch_size=batch_size, traced=traced)
    bam_layers, share = _bam_costs(source_model)
    report = ExportReport(
        output=output, quantization=quantization,
        input_type=(graph.input_dtypes or ["?"])[0],
        input_shape=graph.input_shapes[0] if graph.input_shapes else [],
        size_bytes=len(content), float32_size_bytes=len(float32),
        op_counts=graph.op_counts, float_ops=sorted(set(graph.float_ops)),
        xnnpack_partitions=check["partitions"],
        undelegated_ops=check["undelegated_ops"], xnnpack_error=check["error"],
        tiny_scale_tensors=tiny, agreement=agreement,
        min_agreement=min_agreement, latency=latencies,
        bam_layers=bam_layers, bam_mac_share=share,
        calibration=dict(calibration_info or {}),
        accuracy_comparison=accuracy_comparison,
        softmax_appended=softmax_appended, metadata=metadata_note,
        mediapipe=clients.mediapipe if clients else None,
        mediapipe_note=clients.mediapipe_note if clients else None,
        compiled_model=clients.compiled_model if clients else None,
        warnings=warnings,
    )
    if problems:
        report.status = "rejected, not written"
        report.problems = problems
    if report_path:
        write_atomically(report_path, json.dumps(report.to_dict(), indent=1,
                                                 default=_json_default).encode())
    if problems:
        raise VerificationError("; ".join(problems), report)
    write_atomically(output, content)
    return report


def _convert(model, quantization, samples, batch_size, input_type, traced):
    if quantization != "int8":
        return to_tflite(model, quantization, batch_size=batch_size, traced=traced)
    return to_tflite(model, "int8", representative_data=samples,
                     batch_size=batch_size, input_type=input_type, traced=traced)


def _bam_costs(model):
    from keras_bam.rewrite.cost import cost_report

    try:
        report = cost_report(model)
    except (TypeError, ValueError):  # not Functional: no per-layer costs
        return [], None
    total = report.backbone_macs + report.bam_macs
    return ([(b.name, list(b.feature_shape), b.macs) for b in report.bams],
            report.bam_macs / total if total else None)


def check_output_path(path):
    """`path` as a string, its folder created; `ExportError` when it cannot
    be written there."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise ExportError(f"`output` {path} is a folder; give a file name, "
                          "e.g. model.tflite.")
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise ExportError(f"Cannot create the output folder {folder}: "
                              f"{error.strerror}. Choose another `output`.") from None
    if not os.access(folder, os.W_OK):
        raise ExportError(f"Cannot write to {folder}. Choose another `output` "
                          "or fix the folder's permissions.")
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)
