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
    from ..errors import OutputError

    path = Path(path)
    umask = os.umask(0)
    os.umask(umask)
    check_output_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", path) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise OutputError(f"cannot write: {e.strerror or e}", path) from None
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror or e}", path) from None
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):  # a write() inside the block: disk full, quota, I/O error
            raise OutputError(f"cannot write: {e.strerror or e}", path) from None
        raise


def check_output_path(path: str | os.PathLike) -> None:
    """Raise :class:`~exgs_core.errors.OutputError` unless ``path`` could be written: its folder exists, is a
    folder and is writable, and ``path`` itself is not a folder. Cheap; call it before long work."""
    from ..errors import OutputError

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError("is a folder; give a file name", path)
    if not parent.exists():
        raise OutputError(f"its folder {os.fspath(parent)!r} does not exist", path)
    if not parent.is_dir():
        raise OutputError(f"{os.fspath(parent)!r} is not a folder", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"its folder {os.fspath(parent)!r} is not writable", path)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, or a :class:`~exgs_core.errors.FormatError` naming it ("no such file", "cannot read")."""
    from ..errors import FormatError
    from . import check_input_path

    check_input_path(path)  # a named pipe or a device would block or never end
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError("no such file", path) from None
    except IsADirectoryError:
        raise FormatError("is a folder, not a file", path) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
