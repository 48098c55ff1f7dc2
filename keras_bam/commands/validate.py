"""What the commands refuse before any work starts.

Every numeric flag has a valid range (`number`, `numbers`: a value outside
it is refused naming the flag); a model file, an output path and an image
source are checked for what a user can get wrong with them before anything
is loaded, trained, converted or written (`model_file`, `load_model`,
`output_file`). `export_inputs` runs all of the
export command's checks at once.

Each check raises `InputError` with the message the command prints; a
command turns it into its one line and exit code 2.
"""

import math
import os
import signal
import sys
import threading
import zipfile

# NumPy's and Keras' seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1
# The export's agreement is measured on the held-out images; on fewer than
# this a 0.99 minimum says next to nothing about the file.
MIN_HELD_OUT_IMAGES = 8


class InputError(ValueError):
    """Input a command refuses; the message says what to give instead."""


# ------------------------------------------------------------ numbers

def number(flag, value, minimum, maximum=None, above_minimum=False):
    """Refuses a numeric flag's `value` outside [minimum, maximum] (above
    `minimum` with `above_minimum`; no upper bound when `maximum` is None),
    NaN and infinities included. None (a flag not given) passes."""
    if value is None:
        return None
    inside = math.isfinite(value) and (
        value > minimum if above_minimum else value >= minimum) and (
        maximum is None or value <= maximum)
    if not inside:
        kind = "an integer" if isinstance(value, int) else "a finite number"
        if above_minimum:
            expected = f"{kind} above {minimum}"
        elif maximum is None:
            expected = f"{kind} of at least {minimum}"
        else:
            expected = f"{kind} from {minimum} to {maximum}"
        raise InputError(f"{flag} must be {expected}. Received: {value}.")
    return value


def numbers(args, ranges):
    """`number` for each {flag: (minimum, maximum[, above_minimum])} of the
    parsed `args`."""
    for flag, limits in ranges.items():
        number(flag, getattr(args, flag[2:].replace("-", "_")), *limits)


# ------------------------------------------------------------ files

def model_file(path, flag="--model"):
    """Refuses a `.keras` path that is missing, a folder, or not a whole zip
    archive, saying which."""
    path = os.fspath(path)
    advice = "Give a model saved with model.save('NAME.keras') from Keras 3."
    if os.path.isdir(path):
        raise InputError(f"{flag} {path} is a folder, not a .keras file. {advice}")
    if not os.path.exists(path):
        raise InputError(f"{flag} {path} does not exist. {advice}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{flag} {path} cannot be read (permission denied).")
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{flag} {path} cannot be loaded as a Keras model: it is not a .keras "
            f"archive (not a zip file: truncated, corrupt or another kind of "
            f"file). {advice}")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(f"{flag} {path} cannot be loaded as a Keras model: it is "
                         f"a corrupt zip archive ({error}). {advice}") from None
    if broken is not None:
        raise InputError(f"{flag} {path} cannot be loaded as a Keras model: it is "
                         f"corrupt (its member {broken} fails its checksum). {advice}")
    if "config.json" not in names:
        raise InputError(f"{flag} {path} cannot be loaded as a Keras model: it is a "
                         f"zip archive without a config.json. {advice}")
    return path


def innermost_cause(error):
    """The first line of the deepest exception in `error`'s chain: where
    Keras wraps a layer's own complaint ("Unrecognized keyword arguments
    passed to BAM: ...") in generic deserialization errors."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        deeper = error.__cause__ or error.__context__
        if deeper is None:
            break
        error = deeper
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def load_model(path, flag="--model"):
    """The Keras model in a checked `.keras` file; `InputError` with Keras'
    own reason when it cannot be loaded."""
    import keras

    import keras_bam.layers  # noqa: F401 - registers BAM for loading

    model_file(path, flag)
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - any reason it cannot load
        raise InputError(
            f"{flag} {path} cannot be loaded as a Keras model: "
            f"{innermost_cause(error)}. "
            "Save it with model.save('NAME.keras') with the layer's current "
            "options, or fix its config.json.") from None


def _nearest_existing(folder):
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder or "."


def output_file(path, flag, create_folder=True):
    """Refuses an output `path` that is a folder, whose folder is missing
    (unless `create_folder`: then the nearest existing one must be a
    writable folder), or whose folder cannot be written."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{flag} {path} is a folder; give a file name in it.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        if not create_folder:
            raise InputError(f"{flag} {path}: the folder {folder} does not exist; "
                             "create it first or give another path.")
        existing = _nearest_existing(folder)
        if not os.path.isdir(existing):
            raise InputError(f"Cannot create the output folder {folder}: {existing} "
                             f"is a file. Choose another {flag}.")
        folder = existing
    if not _writable(folder):
        raise InputError(f"{flag} {path}: cannot write into {folder} (permission "
                         "denied or read-only); give another path.")
    return path


def _writable(folder):
    """Whether a file can be created in `folder`, found by creating (and
    removing) one: permission bits do not tell for root or a read-only
    mount."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True


# ------------------------------------------------------------ the export

def export_inputs(args):
    """Every check of `python export/to_tflite.py` that needs no conversion,
    run before anything is loaded for real or written: flag ranges, output
    paths (--output's folder may be created; --labels' and --report's must
    exist), the --model file, and --representative-data (every image decoded,
    its class count against the model's outputs, enough held-out images to
    verify on).

    Returns the loaded --model (None without one), for the export to use.
    Raises `keras_bam.export.exporter.ExportError` (the export's bad-input
    error, which the command prints as its one line with exit code 2) or a
    `DataError` of the source. Once the input passes, makes SIGTERM end the
    command as Ctrl-C does, so that the export's cleanup (`finally` blocks,
    temporary files) runs when it is terminated.
    """
    from keras_bam.export.exporter import ExportError

    try:
        model = _check_export(args)
    except InputError as error:
        raise ExportError(str(error)) from None
    _MISSING_FOLDERS[os.path.abspath(args.output)] = _missing_folders(args.output)
    exit_on_sigterm()
    return model


# The folders above an export's output that did not exist when its input
# was checked (deepest first), by the output's absolute path.
_MISSING_FOLDERS = {}


def _missing_folders(path):
    missing = []
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def remove_created_folders(output):
    """Removes the folders above `output` that `export_inputs` found missing
    and that are still empty: what a rejected, failed or interrupted export
    created and left with nothing in it. A folder holding anything (the
    written .tflite) stops the removal there."""
    for folder in _MISSING_FOLDERS.pop(os.path.abspath(output), []):
        try:
            os.rmdir(folder)
        except OSError:
            break


def _check_export(args):
    numbers(args, {"--num-calibration-samples": (1,), "--epochs": (1,),
                   "--qat-epochs": (1,), "--latency-runs": (0,),
                   "--seed": (0, MAX_SEED), "--min-agreement": (0, 1)})
    output_file(args.output, "--output")
    output_folder = os.path.dirname(os.path.abspath(args.output))
    for flag in ("--labels", "--report"):
        path = getattr(args, flag[2:])
        if path is not None:
            # Beside the .tflite is fine: that folder is created with it.
            same = os.path.dirname(os.path.abspath(path)) == output_folder
            output_file(path, flag, create_folder=same)
    if args.save_model is not None:
        if args.model:
            raise InputError(
                "--save-model saves the default model that the command trains; "
                f"with --model {args.model} there is none: drop --save-model.")
        if not args.save_model.endswith(".keras"):
            raise InputError(f"--save-model {args.save_model} must end in .keras "
                             "(Keras saves models in that format).")
        same = os.path.dirname(os.path.abspath(args.save_model)) == output_folder
        output_file(args.save_model, "--save-model", create_folder=same)
    model = None
    if args.model:
        model_file(args.model)
    classes, held_out = _source_counts(args.representative_data, args.data_dir)
    if args.model:
        model = load_model(args.model)
        if len(model.inputs) != 1:
            raise InputError(
                f"--model {args.model} has {len(model.inputs)} inputs, one expected: "
                "the export feeds a single image tensor. Export a model with one "
                "image input.")
        # Class scores (batch, classes) from images (batch, H, W, C); any
        # other model is refused by the command with its own message.
        image_model = len(model.inputs[0].shape) == 4
        width = (model.outputs[0].shape[-1] if len(model.outputs) == 1
                 and len(model.outputs[0].shape) == 2 else None)
        if classes is not None and image_model and width is not None and (
                width != classes):
            raise InputError(
                f"--representative-data {args.representative_data} has {classes} "
                f"class{'es' if classes != 1 else ''} but --model {args.model} has "
                f"{width} outputs: the labels file would not match. Give images "
                f"of the model's {width} classes, one sub-folder each.")
    if held_out is not None and held_out < MIN_HELD_OUT_IMAGES:
        raise InputError(
            f"--representative-data {args.representative_data} leaves {held_out} "
            f"held-out image(s) to verify the export on (a quarter of each class, "
            f"rounded down); at least {MIN_HELD_OUT_IMAGES} images are needed: add "
            f"images so that every class has 4 or more and the folder at least "
            f"{4 * MIN_HELD_OUT_IMAGES}.")
    return model


def _source_counts(source, data_dir):
    """(class count, held-out image count) of a source, each None where it
    is not known without reading the data; a folder's images are decoded
    (`list_image_folder`), so a broken one is named here."""
    from keras_bam.data.sources import (
        holdout_mask,
        list_image_folder,
        open_tfds_builder,
        resolve_source,
    )

    resolved = resolve_source(source)
    if resolved.kind == "digits":
        return 10, None
    if resolved.kind == "folder":
        _, labels, names = list_image_folder(resolved.name)
        return len(names), int(holdout_mask(labels).sum())
    builder = open_tfds_builder(resolved.name, data_dir)
    return builder.info.features["label"].num_classes, None


def exit_on_sigterm():
    """Makes SIGTERM raise `SystemExit(143)` in the main thread, as the
    shell reports a terminated process, so that `finally` blocks and
    context managers clean up (a default SIGTERM ends the process at once)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends it
        print("error: terminated (SIGTERM).", file=sys.stderr)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
