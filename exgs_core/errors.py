"""The one public exception hierarchy of exgs.

Every failure that a user can cause (a bad file, a bad option, a missing optional backend)
raises a subclass of :class:`ExgsError`, whose message names the file and the problem.
"""

from __future__ import annotations

import os


class ExgsError(Exception):
    """Base class of every error exgs raises on purpose.

    Attributes:
        path: the file the error is about, or ``None``.
        detail: the problem, without the path.
    """

    def __init__(self, detail: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}" if self.path else detail)


class FormatError(ExgsError):
    """A file is truncated, corrupt, of an unknown layout or version, or not what it claims.

    Attributes:
        offset: byte offset of the problem when known.
        field: the header field, element, property or section at fault when known.
    """

    def __init__(self, detail: str, path=None, *, offset: int | None = None, field: str | None = None):
        self.offset = offset
        self.field = field
        where = []
        if field:
            where.append(f"field {field!r}")
        if offset is not None:
            where.append(f"byte {offset}")
        full = f"{detail} ({', '.join(where)})" if where else detail
        super().__init__(full, path)


class UnsupportedFormatError(FormatError):
    """The content matches no reader (wrong magic, unknown extension and header)."""


class SceneError(ExgsError):
    """A scene's arrays are inconsistent (shapes, dtypes, NaN/Inf where not allowed)."""


class OutputError(ExgsError):
    """An output file cannot be written (its folder is missing or read-only, the disk is full, ...).
    Nothing is left behind: writes go to a temporary file that is renamed only when complete."""


class RenderError(ExgsError):
    """A view cannot be rendered here (say, its Gaussians need more memory than the machine has)."""


class CameraError(ExgsError):
    """A camera or a cameras.json file is invalid."""


class BackendUnavailable(ExgsError):
    """An optional backend (gsplat/CUDA, torch, ...) was asked for but cannot be used here."""


class LimitError(FormatError):
    """A file is refused because decoding it would exceed a limit (see :mod:`exgs_core.limits`): it declares more
    Gaussians than allowed (``max_gaussians``), implausibly many per byte of file (``gaussians_per_byte``: a
    decompression bomb), or needs more memory than this process may use (``memory``).

    Attributes:
        limit: which limit: ``"max_gaussians"``, ``"gaussians_per_byte"`` or ``"memory"``.
        value: the declared count (or the bytes needed, for ``"memory"``).
        allowed: the most the limit allows.
    """

    def __init__(
        self,
        detail: str,
        path=None,
        *,
        offset: int | None = None,
        field: str | None = None,
        limit: str | None = None,
        value: int | None = None,
        allowed: int | None = None,
    ):
        self.limit = limit
        self.value = value
        self.allowed = allowed
        super().__init__(detail, path, offset=offset, field=field)
