"""Writing a file so that readers see the old one or the whole new one."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def replacing(path, suffix=".partial"):
    """Yields a temporary path beside `path`; when the block ends without an
    error, renames it over `path`, otherwise deletes it.

    For writers that want a file name rather than bytes (e.g.
    `keras.Model.save`, which needs the `.keras` suffix: pass it as `suffix`).
    An interrupted or failed write leaves neither a partial `path` nor the
    temporary file.
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_atomically(path, data):
    """Writes bytes (or text, as UTF-8) to a temporary file beside `path`,
    then renames it over `path`: an interrupted write leaves no partial file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with replacing(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def save_model_atomically(model, path):
    """`model.save(path)` (a `.keras` file) through a temporary file."""
    with replacing(path, suffix=".keras") as temporary:
        model.save(temporary)
