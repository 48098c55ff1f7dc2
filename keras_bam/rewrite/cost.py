"""What BAM costs in a model: parameters and multiply-accumulates (MACs).

MACs are computed from each layer's kernel and output shapes at the model's
input size (224 for an unknown height or width), one image: for a
convolution, output positions x kernel size (kh * kw * in / groups * out);
for Dense, the same with one position per output row; BAM as the sum of its
convolutions and Dense layers. Batch norm (folded into the preceding
convolution at inference), activations, pooling and element-wise products
are not counted, as in the paper's FLOP figures. Layer types without a
formula here (attention, recurrent layers, custom layers) count 0 MACs and
are listed in `CostReport.uncounted`.
"""

import dataclasses
import math

import keras

from keras_bam.rewrite.graph import ModelGraph, as_functional

__all__ = ["BAMCost", "CostReport", "bam_macs", "cost_report", "layer_macs"]


@dataclasses.dataclass
class BAMCost:
    """One BAM layer: where it is and what it adds."""

    name: str
    anchor: str  # the layer it follows
    feature_shape: tuple  # (height, width, channels) at the probe size
    params: int  # trainable parameters
    non_trainable_params: int  # batch-norm statistics
    macs: int


@dataclasses.dataclass
class CostReport:
    """Per-BAM costs and the totals against the rest of the model."""

    model_name: str
    input_shape: tuple  # the probe input shape the MACs are counted at
    bams: list
    backbone_params: int  # trainable, everything but BAM
    backbone_macs: int
    uncounted: list  # layer classes that count 0 MACs

    @property
    def bam_params(self):
        return sum(b.params for b in self.bams)

    @property
    def bam_macs(self):
        return sum(b.macs for b in self.bams)

    @property
    def param_ratio(self):
        return (self.backbone_params + self.bam_params) / self.backbone_params

    @property
    def mac_ratio(self):
        return (self.backbone_macs + self.bam_macs) / self.backbone_macs

    def to_dict(self):
        return {
            "model": self.model_name,
            "input_shape": list(self.input_shape),
            "bams": [dataclasses.asdict(b) for b in self.bams],
            "backbone_params": self.backbone_params,
            "backbone_macs": self.backbone_macs,
            "bam_params": self.bam_params,
            "bam_macs": self.bam_macs,
            "param_ratio": self.param_ratio,
            "mac_ratio": self.mac_ratio,
            "uncounted": self.uncounted,
        }

    def __str__(self):
        header = (f"{'BAM layer':<28} {'after':<24} {'H x W x C':>16} "
                  f"{'params':>10} {'MACs':>14}")
        lines = [f"Cost of BAM in '{self.model_name}' at input "
                 f"{'x'.join(str(s) for s in self.input_shape[1:])}",
                 header, "-" * len(header)]
        for b in self.bams:
            shape = " x ".join(str(s) for s in b.feature_shape)
            lines.append(f"{b.name:<28} {b.anchor:<24} {shape:>16} "
                         f"{b.params:>10,} {b.macs:>14,}")
        lines.append("-" * len(header))
        lines.append(
            f"backbone {self.backbone_params:,} params, {self.backbone_macs:,} "
            f"MACs; with BAM {self.backbone_params + self.bam_params:,} params "
            f"(x{self.param_ratio:.4f}), "
            f"{self.backbone_macs + self.bam_macs:,} MACs (x{self.mac_ratio:.4f})")
        if self.uncounted:
            lines.append("0 MACs counted for: " + ", ".join(self.uncounted))
        return "\n".join(lines)


def cost_report(model):
    """Parameters and MACs of every BAM in `model` against the rest of it.

    Args:
        model: a Functional model, e.g. the result of `keras_bam.insert_bam`.

    Returns:
        A `CostReport`; `print()` it for a table, `.to_dict()` for JSON.
    """
    graph = ModelGraph(as_functional(model))
    bams, backbone_macs, uncounted = [], 0, set()
    for node in graph.nodes:
        op = node.operation
        if node.is_bam:
            height, width = graph.spatial(node)
            anchor = graph.nodes[node.inputs[0]].path if node.inputs else ""
            bams.append(BAMCost(
                name=node.path, anchor=anchor,
                feature_shape=(height, width, graph.channels(node)),
                params=_count(op.trainable_weights),
                non_trainable_params=_count(op.non_trainable_weights),
                macs=bam_macs(op, height * width)))
            continue
        macs = layer_macs(op, node.shape)
        if macs is None:
            if getattr(op, "weights", None) and not isinstance(
                    op, (keras.layers.BatchNormalization,
                         keras.layers.LayerNormalization)):
                uncounted.add(type(op).__name__)
            macs = 0
        backbone_macs += macs
    bam_params = sum(b.params for b in bams)
    return CostReport(
        model_name=model.name,
        input_shape=tuple(graph.nodes[0].shape),
        bams=bams,
        backbone_params=_count(model.trainable_weights) - bam_params,
        backbone_macs=backbone_macs,
        uncounted=sorted(uncounted))


def layer_macs(layer, output_shape):
    """MACs of one call of a convolution or Dense layer producing
    `output_shape` (batch first), or None for other layers."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        positions = _positions(layer, output_shape)
        depthwise = math.prod(layer.depthwise_kernel.shape)
        return positions * (depthwise + math.prod(layer.pointwise_kernel.shape))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _positions(layer, output_shape) * math.prod(layer.kernel.shape)
    if isinstance(layer, (keras.layers.Conv1DTranspose,
                          keras.layers.Conv2DTranspose,
                          keras.layers.Conv3DTranspose)):
        # Every input position meets the whole kernel once.
        strides = math.prod(layer.strides)
        return (_positions(layer, output_shape) // strides
                * math.prod(layer.kernel.shape))
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D,
                          keras.layers.Conv3D)):
        return _positions(layer, output_shape) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        rows = math.prod(output_shape[1:-1])
        return rows * math.prod(layer.kernel.shape)
    return None


def bam_macs(layer, positions):
    """MACs of a BAM on a map with `positions` = height * width: every
    convolution of `layer.named_sublayers()`, those of the channel gate at
    one position (the pooled map), those of the spatial gate at every one."""
    total = 0
    for path, sublayer in layer.named_sublayers().items():
        kernel = getattr(sublayer, "kernel", None)
        if kernel is None:
            continue  # batch norm
        at = 1 if path.startswith("channel_gate/") else positions
        total += at * math.prod(kernel.shape)
    return total


def _positions(layer, output_shape):
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return math.prod(output_shape[2:])
    return math.prod(output_shape[1:-1])


def _count(weights):
    return int(sum(math.prod(w.shape) for w in weights))
