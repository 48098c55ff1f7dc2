"""What every BAM in a model attends to: M(F) on the user's images.

The paper's Figure 1 shows these maps stage by stage: early BAMs damp
background texture, later ones focus on the object. `attention_maps` gives
them for any model with BAM layers (nested models included) without
rebuilding it: for each BAM it evaluates the sub-graph from the model's
input to the BAM's input F, then `BAM.attention(F)` in inference mode.
"""

import dataclasses

import keras
import numpy as np

from keras_bam.layers.bam import BAM
from keras_bam.rewrite import graph

__all__ = ["AttentionMap", "attention_maps"]


@dataclasses.dataclass
class AttentionMap:
    """M(F) of one BAM layer for a batch of images.

    Attributes:
        name: the BAM's path, `outer/inner` inside a nested model.
        spatial: (N, H, W), M averaged over channels: where the module looks.
        channel: (N, C), M averaged over positions: which channels it keeps.
        attention: M itself, (N, H, W, C) channels last; a dimension is 1
            where a branch is off (channel-only: (N, 1, 1, C)).
    """

    name: str
    spatial: np.ndarray
    channel: np.ndarray
    attention: np.ndarray

    @property
    def resolution(self):
        return self.spatial.shape[1:3]


def attention_maps(model, images, batch_size=32):
    """M(F) of every BAM in `model` for `images`, in graph order.

    Args:
        model: a Functional Keras model with `keras_bam.BAM` layers, as saved
            by the training pipeline or built with `insert_bam`.
        images: an array the model takes, (N, H, W, C).
        batch_size: images per forward pass.

    Returns:
        A list of `AttentionMap`, one per BAM.

    Example:

    >>> model = keras_bam.applications.BAMMobileNetV2(
    ...     weights=None, alpha=0.35, input_shape=(64, 64, 3))
    >>> maps = keras_bam.attention_maps(model, np.zeros((2, 64, 64, 3)))
    >>> [(m.name, m.spatial.shape, m.channel.shape) for m in maps]
    [('block_2_add_bam', (2, 16, 16), (2, 8)),
     ('block_5_add_bam', (2, 8, 8), (2, 16)),
     ('block_12_add_bam', (2, 4, 4), (2, 32))]
    """
    probes = _probes(model, prefix="")
    if not probes:
        raise ValueError(
            f"Model '{model.name}' has no BAM layer. Insert some with "
            "keras_bam.insert_bam(model) or pass the model with BAM.")
    images = np.asarray(images)
    results = {name: [] for name, _, _ in probes}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        for name, layer, features in probes:
            f = features(batch)
            m = keras.ops.convert_to_numpy(layer.attention(f, training=False))
            if layer.data_format == "channels_first":
                m = np.moveaxis(m, 1, -1)
            results[name].append(m.astype(np.float32))
    maps = []
    for name, _layer, _ in probes:
        m = np.concatenate(results[name])
        maps.append(AttentionMap(
            name=name,
            spatial=m.mean(axis=-1),
            channel=m.mean(axis=(1, 2)),
            attention=m))
    return maps


def _probes(model, prefix):
    """(path, BAM layer, images -> F) for every BAM call in `model`."""
    if isinstance(model, keras.Sequential):
        model = graph.as_functional(model)
    if not graph.is_functional(model):
        raise TypeError(
            "attention_maps needs a Functional Keras model (or a built "
            f"Sequential one). Received: {type(model).__name__}")
    probes = []
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    for call in graph.calls(model):
        operation = call.operation
        if isinstance(operation, BAM):
            sub = keras.Model(inputs, call.inputs[0])
            probes.append((prefix + operation.name, operation,
                           lambda x, sub=sub: sub(x, training=False)))
        elif graph.is_functional(operation):
            called_on = list(call.inputs)
            to_input = keras.Model(
                inputs, called_on[0] if len(called_on) == 1 else called_on)
            for name, bam, inner in _probes(operation, prefix + operation.name + "/"):
                probes.append((name, bam, lambda x, a=to_input, b=inner:
                               b(a(x, training=False))))
    return probes
