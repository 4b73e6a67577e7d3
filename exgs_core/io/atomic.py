"""File helpers: atomic writing (temp file beside the target, then rename) and checked whole-file reading."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Context manager yielding a file object; on success the file replaces ``path`` in one rename,
    on any exception the temporary file is removed and ``path`` is left untouched."""
    path = Path(path)
    umask = os.umask(0)
    os.umask(umask)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, or a :class:`~exgs_core.errors.FormatError` naming it ("no such file", "cannot read")."""
    from ..errors import FormatError

    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError("no such file", path) from None
    except IsADirectoryError:
        raise FormatError("is a folder, not a file", path) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
