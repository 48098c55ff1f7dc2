"""What every command shares: the console, flags in messages, the exit codes.

Exit codes of every command: 0 done (written); 1 a result was rejected by a
check (nothing written); 2 bad input (one line on stderr, nothing written).
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

OK, REJECTED, BAD_INPUT = 0, 1, 2
LIBRARY_LOGGER = "keras_bam"


# Loggers of the libraries below keras_bam that speak on the console.
_CHATTY_LOGGERS = ("absl", "tensorflow", "h5py")


def quiet_tensorflow():
    """Keeps TensorFlow's C++ log lines (cuInit errors included) off the
    console in this process and its children (a value set by the user wins).
    Effective for what TensorFlow logs after this call; `console` also
    hides what native code writes to the stderr file descriptor."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")


@contextlib.contextmanager
def native_stderr_hidden():
    """Sends what native code (TensorFlow's C++, the TFLite converter, LiteRT)
    writes to file descriptor 2 into a temporary file while the block runs;
    Python's `sys.stderr` keeps writing to the console. If the block fails,
    the hidden lines' tail is shown, as it may hold the reason."""
    try:
        sys.stderr.flush()
        fd = 2
        os.fstat(fd)
    except (OSError, ValueError):
        yield
        return
    real_stderr = sys.stderr
    try:
        python_writes_fd2 = sys.stderr.fileno() == fd
    except (AttributeError, OSError, ValueError):  # e.g. captured by pytest
        python_writes_fd2 = False
    saved = os.dup(fd)
    sink = tempfile.TemporaryFile()
    os.dup2(sink.fileno(), fd)
    if python_writes_fd2:
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding="utf-8",
                          errors="backslashreplace", closefd=True)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if python_writes_fd2:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = real_stderr
        os.dup2(saved, fd)
        os.close(saved)
        if failed:
            sink.seek(0)
            tail = sink.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            if tail:
                print("\n".join(["(native log, last lines)"] + tail), file=sys.stderr)
        sink.close()


@contextlib.contextmanager
def console(show=(LIBRARY_LOGGER,), verbose=False):
    """Shows the library's log records on stdout, as plain lines, while the
    block runs: records of the loggers in `show` from INFO up, of every
    other `keras_bam` logger from WARNING up (from INFO with `verbose`).
    Without `verbose`, TensorFlow's and absl's log lines, native code's
    stderr and other libraries' Python warnings are hidden.

    The command decides what the console shows; the libraries only log.
    """
    root = logging.getLogger(LIBRARY_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    shown = tuple(show)

    def wanted(record):
        if record.levelno >= logging.WARNING or verbose:
            return True
        return any(record.name == name or record.name.startswith(name + ".")
                   for name in shown)

    handler.addFilter(wanted)
    saved = root.level, root.propagate
    chatty = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    quiet = contextlib.ExitStack()
    if not verbose:
        # TensorFlow's, absl's and the converter's lines, and other
        # libraries' Python warnings, are not the command's to show.
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        quiet.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        quiet.enter_context(native_stderr_hidden())
    try:
        with quiet:
            yield
    finally:
        for name, level in chatty.items():
            logging.getLogger(name).setLevel(level)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        root.propagate = saved[1]
        handler.flush()


def flag_names(parser):
    """{argument name: its long flag} of an argparse parser."""
    names = {}
    for action in parser._actions:  # argparse lists its actions only here
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs:
            names.setdefault(action.dest, longs[0])
            names.setdefault(longs[0][2:].replace("-", "_"), longs[0])
    return names


def in_flags(message, flags):
    """A library message with each `argument` it names in backticks written
    as the command's flag (`output` -> --output); other names keep their
    backticks."""
    return re.sub(r"`(\w+)`", lambda m: flags.get(m.group(1), m.group(0)), str(message))


def bad_input(message, flags=None):
    """Prints the one line of a bad-input error and returns exit code 2."""
    text = in_flags(message, flags or {})
    print(f"error: {' '.join(text.split())}", file=sys.stderr)
    return BAD_INPUT


def train_default_model(training, epochs=6, seed=0):
    """The default model of the export and figure commands: BAM-SmallCNN
    (`keras_bam.training.models.build_model("small_cnn")`) trained in
    memory on `training`, a `keras_bam.data.ImageSet` of 32x32 RGB pixels.

    Why not BAM-MobileNetV2: on two CPU cores it needs about 50 s of
    training to reach 88 % on the digits (Keras runs its 150 small layers
    slowly at this size); this network reaches about 97 % in half that.
    """
    from keras_bam.training.models import build_model
    from keras_bam.training.quick import fit_in_memory

    height, width = training.images.shape[1:3]
    model = build_model("small_cnn", len(training.class_names), (height, width),
                        bam=True, seed=seed)
    return fit_in_memory(model, training.images, training.labels, epochs=epochs,
                         seed=seed)
