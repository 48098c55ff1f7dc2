"""Writing a file so that readers see the old one or the whole new one.

The temporary file is created the way `open(path, "w")` creates a file
(permissions 0o666 less the process's umask, e.g. 0644 under umask 022), so
the renamed file is readable by whoever could read an ordinary one; a
`tempfile.mkstemp` file would keep its private 0600.
"""

import contextlib
import os
import secrets


def _create_beside(path, suffix):
    """Creates an empty, new file next to `path` with the mode an ordinary
    `open()` gives, and returns its name."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    for _ in range(100):
        temporary = os.path.join(folder, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return temporary
    raise FileExistsError(f"Could not create a temporary file in {folder}.")


@contextlib.contextmanager
def replacing(path, suffix=".partial"):
    """Yields a temporary path beside `path`; when the block ends without an
    error, renames it over `path`, otherwise deletes it.

    For writers that want a file name rather than bytes (e.g.
    `keras.Model.save`, which needs the `.keras` suffix: pass it as `suffix`).
    An interrupted or failed write leaves neither a partial `path` nor the
    temporary file. The file gets the mode an ordinary `open()` would give
    under the caller's umask.
    """
    temporary = _create_beside(path, suffix)
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
