"""The BAM authors' trained networks from their PyTorch checkpoints.

Their training script (github.com/Jongchan/attention-module, `train_imagenet.py`)
saves `torch.save({"epoch", "arch", "state_dict", "best_prec1",
"optimizer"}, ...)` of a `DataParallel` model, so every parameter name starts
with `module.`; the released files were written by PyTorch 0.4 in its legacy
(non-zip) format, and are not tar archives despite their `.pth.tar` name.
`from_torch_checkpoint` reads such a file, or a state dict, works out which
`ResidualNet` it holds from the tensors, and returns that Keras model with the
weights loaded (`keras_bam.applications.residual_net`).

Reading a file needs torch (`pip install "keras-bam[torch]"`); a state dict
of NumPy arrays, or a `.npz` file of one, does not. Files are read with
`torch.load(weights_only=True)`, which restores tensors and plain containers
but runs no other code from the file.
"""

import dataclasses
import logging
import os
import re

import numpy as np

from keras_bam.applications import residual_net
from keras_bam.torch_weights import load_torch_weights, name_problems, torch_entries

__all__ = [
    "CheckpointSpec",
    "convert_checkpoint",
    "from_torch_checkpoint",
    "inspect_state_dict",
    "load_pretrained",
    "load_torch_checkpoint",
    "read_torch_checkpoint",
    "to_torch_state_dict",
]

logger = logging.getLogger("keras_bam.torch_checkpoint")

_DATA_PARALLEL = "module."
_METADATA = ("epoch", "arch", "best_prec1")
_BN_FIELDS = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)
_STEMS = {(64, 3, 7, 7): "ImageNet", (64, 3, 3, 3): "CIFAR"}
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.")


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
    """Which of the authors' networks a state dict holds.

    `ResidualNet(depth, network_type, attention, classes=classes)` builds
    the Keras model it loads into; `classes` is None without a classifier.
    """

    depth: int
    network_type: str
    attention: str | None
    classes: int | None


# ---------------------------------------------------------------- reading


def _to_numpy(name, value):
    if hasattr(value, "detach"):  # a torch tensor: no torch import needed
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - whatever numpy cannot take
        array = None
    if array is None or array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(
            f"State dict entry {name!r} is a {type(value).__name__}, not a "
            "tensor or a numeric array. Pass the model's state dict (names "
            "to torch tensors or NumPy arrays), or the whole checkpoint."
        )
    return array


def _read_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Checkpoint {path!r} does not exist. Pass the path of the authors' "
            "checkpoint (e.g. RESNET50_IMAGENET_BAM_best.pth.tar), of a .npz "
            "state dict, or a state dict itself."
        )
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"Reading the PyTorch checkpoint {path!r} needs torch, which is "
            "not installed. Install it with pip install \"keras-bam[torch]\" "
            "(or pip install torch), or, where torch is installed, save the "
            "state dict as NumPy arrays (numpy.savez(\"sd.npz\", **{k: "
            "v.numpy() for k, v in state_dict.items()})) and pass sd.npz."
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reason torch cannot read it
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if "weights only load failed" in str(error).lower():
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
            raise ValueError(
                f"{path!r} holds Python objects besides tensors"
                + (f" ({found.group(1)})" if found else "")
                + ", which torch.load(weights_only=True) does not restore. If "
                "you trust the file, load it yourself with torch.load(path, "
                "map_location=\"cpu\", weights_only=False) and pass the "
                "result to from_torch_checkpoint."
            ) from None
        raise ValueError(
            f"{path!r} cannot be read as a PyTorch checkpoint: {first}. Pass "
            "a file written by torch.save (the authors' .pth.tar files are "
            "such files, not tar archives) or a .npz state dict."
        ) from None


def read_torch_checkpoint(path_or_state_dict):
    """The state dict of a checkpoint, as NumPy arrays, and its metadata.

    Args:
        path_or_state_dict: the path of a file written by `torch.save` (the
            authors' `.pth.tar`, legacy or zip format; needs torch) or of a
            `.npz` file, or an already loaded checkpoint or state dict (a
            mapping of names to torch tensors or NumPy arrays).

    Returns:
        `(state_dict, metadata)`: parameter names (DataParallel's `module.`
        prefix removed) to NumPy arrays, and the checkpoint's `epoch`,
        `arch` and `best_prec1` where it has them.
    """
    source = path_or_state_dict
    if isinstance(source, (str, bytes, os.PathLike)):
        source = _read_file(os.fsdecode(source))
    if not hasattr(source, "items"):
        raise TypeError(
            "from_torch_checkpoint takes a path or a state dict (a mapping "
            "of parameter names to tensors or arrays). Received: "
            f"{type(path_or_state_dict).__name__}."
        )
    metadata = {}
    if "state_dict" in source and hasattr(source["state_dict"], "items"):
        for key in _METADATA:
            if key in source:
                value = source[key]
                metadata[key] = value.item() if hasattr(value, "item") else value
        source = source["state_dict"]
    names = [key for key in source if isinstance(key, str)]
    if len(names) != len(source):
        raise TypeError(
            "A state dict's keys are parameter names (strings). Received keys "
            f"of types {sorted({type(k).__name__ for k in source})}."
        )
    strip = bool(names) and all(k.startswith(_DATA_PARALLEL) for k in names)
    state_dict = {
        (k[len(_DATA_PARALLEL):] if strip else k): _to_numpy(k, v)
        for k, v in source.items()
    }
    return state_dict, metadata


# ---------------------------------------------------------------- what it holds


def _preview(keys, limit=6):
    keys = sorted(keys)
    if not keys:
        return "none, the state dict is empty"
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def inspect_state_dict(state_dict):
    """Depth, network type, attention and classes of a state dict.

    Works them out from the tensors of the authors' `ResidualNet`: the first
    convolution's kernel (7x7: ImageNet, 3x3: CIFAR), the number of blocks
    in each stage and whether they are bottlenecks (the depth), `bam1.*`
    entries, and the classifier's rows.

    Raises:
        ValueError: the state dict is not one of the authors' ResNets, or
            holds their CBAM modules.
    """
    keys = set(state_dict)
    cbam = sorted(k for k in keys if ".cbam." in k or k.startswith("cbam."))
    if cbam:
        raise ValueError(
            f"The checkpoint holds CBAM modules ({len(cbam)} tensors, e.g. "
            f"{cbam[0]}): it is the authors' ResNet + CBAM, which keras_bam "
            "does not load yet (CBAM is not implemented). Only their BAM and "
            "plain ResNet checkpoints load."
        )
    stem = state_dict.get("conv1.weight")
    stem_shape = None if stem is None else tuple(np.shape(stem))
    if stem_shape not in _STEMS:
        found = "no conv1.weight" if stem is None else f"conv1.weight of shape {stem_shape}"
        raise ValueError(
            "Not a checkpoint of the authors' ResidualNet: its first "
            "convolution conv1.weight should have shape (64, 3, 7, 7) "
            f"(ImageNet) or (64, 3, 3, 3) (CIFAR); found {found}. Keys: "
            f"{_preview(keys)}."
        )
    network_type = _STEMS[stem_shape]
    blocks = [set() for _ in range(4)]
    for key in keys:
        match = _BLOCK_KEY.match(key)
        if match:
            blocks[int(match.group(1)) - 1].add(int(match.group(2)))
    counts = tuple(max(indices) + 1 if indices else 0 for indices in blocks)
    kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
    depth = next(
        (d for d, spec in residual_net.DEPTHS.items() if spec == (kind, counts)),
        None,
    )
    if depth is None:
        known = "; ".join(
            f"{d}: {k} blocks {b}" for d, (k, b) in residual_net.DEPTHS.items()
        )
        raise ValueError(
            f"The checkpoint's stages hold {counts} {kind} blocks, which is "
            f"none of the authors' ResidualNet depths ({known})."
        )
    attention = "bam" if any(k.startswith("bam1.") for k in keys) else None
    fc = state_dict.get("fc.weight")
    classes = int(np.shape(fc)[0]) if fc is not None and np.ndim(fc) == 2 else None
    return CheckpointSpec(depth, network_type, attention, classes)


# ---------------------------------------------------------------- loading


def _entries(layer):
    """(PyTorch name, Keras variable, layout change, shape in PyTorch's layout)."""
    import keras

    torch_name = layer.name.replace("_", ".")
    if isinstance(layer, keras.layers.Conv2D):
        kernel = layer.kernel
        return [(f"{torch_name}.weight", kernel, lambda w: w.transpose(2, 3, 1, 0),
                 tuple(kernel.shape[i] for i in (3, 2, 0, 1)))]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(f"{torch_name}.{field}", getattr(layer, attribute), None,
                 tuple(getattr(layer, attribute).shape))
                for field, attribute in _BN_FIELDS]
    if isinstance(layer, keras.layers.Dense):
        kernel, bias = layer.kernel, layer.bias
        return [(f"{torch_name}.weight", kernel, lambda w: w.T,
                 (kernel.shape[1], kernel.shape[0])),
                (f"{torch_name}.bias", bias, None, tuple(bias.shape))]
    return []


def _weighted_layers(model):
    from keras_bam.layers.bam import BAM

    trunk, bams = [], []
    for layer in model.layers:
        if isinstance(layer, BAM):
            bams.append(layer)
        elif _entries(layer):
            trunk.append(layer)
    return trunk, bams


def load_torch_checkpoint(model, path_or_state_dict):
    """Loads the authors' checkpoint into a `ResidualNet` model, all or nothing.

    Args:
        model: a model built by `keras_bam.applications.ResidualNet*` with
            the checkpoint's depth, network type and attention. Without a
            classifier (`include_top=False`) the checkpoint's `fc.*` entries
            are skipped.
        path_or_state_dict: as for `read_torch_checkpoint`.

    Returns:
        The model, whose eval-mode logits then match the PyTorch network's.

    Raises:
        ValueError: some entries are missing, unexpected or mis-shaped; all
            are named in the one message, and no variable was changed.
    """
    state_dict, _ = read_torch_checkpoint(path_or_state_dict)
    _load(model, state_dict)
    return model


def _load(model, state_dict):
    trunk, bams = _weighted_layers(model)
    has_top = any(layer.name == "fc" for layer in trunk)
    ignored = lambda key: key.endswith(".num_batches_tracked") or (  # noqa: E731
        not has_top and key.startswith("fc."))
    bam_prefixes = tuple(f"{layer.name}." for layer in bams)
    expected = [entry for layer in trunk for entry in _entries(layer)]
    given = {k for k in state_dict if not ignored(k) and not k.startswith(bam_prefixes)}
    problems = name_problems({name for name, _, _, _ in expected}, given)
    values = []
    for name, variable, convert, torch_shape in expected:
        if name not in state_dict:
            continue
        value = np.asarray(state_dict[name], dtype=np.float32)
        if value.shape != torch_shape:
            problems.append(
                f"{name}: shape {value.shape}, expected {torch_shape} (PyTorch's "
                f"layout) for {variable.path}"
            )
            continue
        values.append((variable, value if convert is None else convert(value)))

    # Each BAM checks its own entries (all or nothing for that module); if
    # anything else fails, the ones that loaded are put back.
    before = [[np.array(v.numpy()) for v in layer.weights] for layer in bams]
    for layer in bams:
        try:
            load_torch_weights(layer, state_dict, prefix=f"{layer.name}.")
        except ValueError as error:
            problems.append(f"{layer.name}: {error}")
    if problems:
        for layer, saved in zip(bams, before):
            for variable, value in zip(layer.weights, saved):
                variable.assign(value)
        raise ValueError(
            f"The checkpoint does not fit {model.name}: " + "; ".join(problems)
            + ". keras_bam.from_torch_checkpoint builds the model that fits "
            "the checkpoint; keras_bam.inspect_state_dict says which that is."
        )
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))


def from_torch_checkpoint(path_or_state_dict, include_top=True, input_shape=None,
                          pooling=None, classes=None, classifier_activation=None,
                          include_preprocessing=True, name=None):
    """The Keras model of the authors' checkpoint, with its weights.

    Reads the checkpoint (`read_torch_checkpoint`), works out which of their
    networks it holds (`inspect_state_dict`: depth 18, 34, 50 or 101,
    ImageNet or CIFAR, with BAM or without, number of classes), builds it
    with `keras_bam.applications.ResidualNet` and loads every tensor
    (`load_torch_checkpoint`): either everything fits or a `ValueError`
    names every missing, unexpected and mis-shaped entry at once.

    The model takes float32 RGB pixels in [0, 255] (normalized inside as
    their evaluation does; feed ImageNet models the central 224 x 224 crop
    of the image resized to 256) and returns logits.

    Args:
        path_or_state_dict: their checkpoint file (e.g.
            `RESNET50_IMAGENET_BAM_best.pth.tar`; reading it needs torch),
            a `.npz` state dict, or a state dict or whole checkpoint already
            in memory (torch tensors or NumPy arrays).
        include_top: keep the classifier `fc`. False returns the features
            (see `pooling`), for feature extraction.
        input_shape: (height, width, 3). Default: (224, 224, 3) for
            ImageNet networks, (32, 32, 3) for CIFAR ones.
        pooling: with `include_top=False`: None (the last feature map),
            "avg" or "max".
        classes: None keeps the checkpoint's classifier. A different number
            replaces it by a new, untrained `Dense(classes)` (see
            `keras_bam.applications.replace_classifier`), for fine-tuning on
            other classes.
        classifier_activation: activation of the classifier. Default None:
            logits, as their network returns.
        include_preprocessing: normalize [0, 255] pixels inside the model
            (default True).
        name: model name. Default as `ResidualNet`'s.

    Returns:
        A Functional `keras.Model`.

    Raises:
        ValueError: the checkpoint is not one of their ResNets (their CBAM
            networks are refused by name), or it does not fit.
        ImportError: the path is a PyTorch file and torch is not installed.
    """
    state_dict, metadata = read_torch_checkpoint(path_or_state_dict)
    spec = inspect_state_dict(state_dict)
    if include_top and spec.classes is None:
        raise ValueError(
            "The checkpoint has no classifier (no 2-D fc.weight). Pass "
            "include_top=False to load its features only."
        )
    logger.info(
        "Checkpoint: ResidualNet-%d %s, attention %s, %s classes%s.",
        spec.depth, spec.network_type, spec.attention, spec.classes,
        "".join(f", {k} {v}" for k, v in metadata.items()),
    )
    model = residual_net.ResidualNet(
        spec.depth, spec.network_type, spec.attention, include_top=include_top,
        input_shape=input_shape, pooling=pooling,
        classes=spec.classes if include_top else 1000,
        classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, name=name,
    )
    _load(model, state_dict)
    if include_top and classes is not None and classes != spec.classes:
        logger.info("New classifier: %s classes instead of the checkpoint's %d.",
                    classes, spec.classes)
        model = residual_net.replace_classifier(
            model, classes, classifier_activation=classifier_activation)
    return model


# ---------------------------------------------------------------- the other way, and files


def _to_torch_layout(value, torch_shape):
    if value.ndim == 4 and len(torch_shape) == 4:  # conv (kh, kw, in, out)
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 4 and len(torch_shape) == 2:  # BAM's 1x1 conv for a Linear
        return value[0, 0].T
    if value.ndim == 2:  # Dense (in, out)
        return value.T
    return value


def to_torch_state_dict(model):
    """The state dict of the authors' PyTorch network for a `ResidualNet` model.

    The inverse of `load_torch_checkpoint`: parameter names as in their code
    (no `module.` prefix), NumPy arrays in PyTorch's layouts, batch-norm
    `num_batches_tracked` set to 0. After fine-tuning in Keras,
    `net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`
    puts the weights back into their `ResidualNet`.

    Args:
        model: a model built by `keras_bam.applications.ResidualNet*` or
            returned by `from_torch_checkpoint`.

    Returns:
        A dict of parameter names to float32 (and int64) NumPy arrays.
    """
    import keras

    trunk, bams = _weighted_layers(model)
    entries = [entry for layer in trunk for entry in _entries(layer)]
    for layer in bams:
        entries += [(f"{layer.name}.{name}", variable, convert, shape)
                    for name, variable, convert, shape in torch_entries(layer)]
    state_dict = {}
    for name, variable, _, torch_shape in entries:
        value = np.asarray(keras.ops.convert_to_numpy(variable), np.float32)
        state_dict[name] = np.ascontiguousarray(_to_torch_layout(value, torch_shape))
        if name.endswith(".running_var"):
            state_dict[name[: -len("running_var")] + "num_batches_tracked"] = np.array(
                0, np.int64)
    return state_dict


def convert_checkpoint(path_or_state_dict, output, **kwargs):
    """Converts the authors' checkpoint to a Keras `.keras` file.

    `from_torch_checkpoint(path_or_state_dict, **kwargs)`, saved to `output`
    atomically (written beside it under a temporary name, then renamed): a
    failed conversion leaves no file, and never a partial one.

    Returns:
        `(model, spec, metadata)`: the Keras model, the `CheckpointSpec`
        found, and the checkpoint's epoch, arch and best_prec1.
    """
    import tempfile

    output = os.fspath(output)
    if not output.endswith(".keras"):
        raise ValueError(
            f"The output must be a .keras file. Received: {output!r}. Add the "
            ".keras extension."
        )
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ValueError(
            f"The output folder {folder!r} does not exist. Create it or choose "
            "another output path."
        )
    state_dict, metadata = read_torch_checkpoint(path_or_state_dict)
    spec = inspect_state_dict(state_dict)
    model = from_torch_checkpoint(state_dict, **kwargs)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=folder)
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return model, spec, metadata


def load_pretrained(path, classes=None, classifier_activation=None):
    """A model to start training from: a `.keras` file or their checkpoint.

    Args:
        path: a model saved with `model.save("NAME.keras")`, or anything
            `from_torch_checkpoint` reads (their `.pth.tar`, a `.npz`).
        classes: None keeps the classifier. A number different from the
            model's output width replaces the last layer (a `Dense`) with a
            new `Dense(classes)` (`keras_bam.applications.replace_classifier`).
        classifier_activation: of a new classifier. Default None (logits).

    Returns:
        The Keras model.
    """
    import keras

    from keras_bam.applications.residual_net import replace_classifier

    path = os.fspath(path)
    if not path.endswith(".keras"):
        return from_torch_checkpoint(path, classes=classes,
                                     classifier_activation=classifier_activation)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model {path!r} does not exist.")
    model = keras.saving.load_model(path)
    if classes is not None and model.output_shape[-1] != classes:
        logger.info("New classifier: %s classes instead of %s.", classes,
                    model.output_shape[-1])
        model = replace_classifier(model, classes,
                                   classifier_activation=classifier_activation)
    return model
