"""Writing a file so that readers see the old one or the whole new one."""

import os
import tempfile


def write_atomically(path, data):
    """Writes bytes (or text, as UTF-8) to a temporary file beside `path`,
    then renames it over `path`: an interrupted write leaves no partial file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".partial",
                                         dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
