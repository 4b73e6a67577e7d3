"""Readers and writers for splat files. :func:`load` picks the reader by content, not by extension alone.

Formats (name -> reader module):

=================== ========================================= ===============================
name                detected by                               module
=================== ========================================= ===============================
``ply``             ``ply`` magic, no ``element chunk``       :mod:`exgs_core.io.ply`
``compressed_ply``  ``ply`` magic + ``element chunk``         :mod:`exgs_core.io.compressed_ply`
``spz``             gzip stream whose payload starts ``NGSP``, :mod:`exgs_core.io.spz`
                    or raw ``NGSP`` header (v4)
``sog``             zip archive holding ``meta.json``, or a   :mod:`exgs_core.io.sog`
                    ``meta.json`` file / folder
``splat``           no magic: size a multiple of 32 and the   :mod:`exgs_core.io.splat`
                    records look like .splat (``.splat`` name
                    or plausible content)
``exgs``            ``EXGS`` magic (issue #3)                 :mod:`exgs_core.exgs_format`
``glb``             ``glTF`` magic (binary glTF 2.0 with      :mod:`exgs_core.io.glb`
                    ``KHR_gaussian_splatting``)
=================== ========================================= ===============================

Writers: :func:`save` / :func:`encode_as` (format from the file name, :func:`format_for_path`), each following
:mod:`exgs_core.io.writing`.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import ExgsError, FormatError, UnsupportedFormatError
from ..scene import GaussianScene

FORMATS = ("ply", "compressed_ply", "spz", "sog", "splat", "exgs", "glb")

_READERS = {
    "ply": ("exgs_core.io.ply", "read_ply"),
    "compressed_ply": ("exgs_core.io.compressed_ply", "read_compressed_ply"),
    "spz": ("exgs_core.io.spz", "read_spz"),
    "sog": ("exgs_core.io.sog", "read_sog"),
    "splat": ("exgs_core.io.splat", "read_splat"),
    "exgs": ("exgs_core.exgs_format", "read_exgs"),
    "glb": ("exgs_core.io.glb", "read_glb"),
}

SPZ_MAGIC = b"NGSP"
EXGS_MAGIC = b"EXGS"

_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_input_path(path: str | os.PathLike) -> None:
    """Refuse a path that exists but is neither a regular file nor a folder, **before** anything opens it.

    Opening a named pipe for reading blocks until a writer appears (``exgs info fifo`` hung), and ``/dev/zero`` or
    ``/dev/urandom`` never end, so every reader calls this first. The check uses ``os.stat`` (symlinks are
    followed), which never blocks. A path that does not exist or cannot be stat'ed passes: the caller's own
    open reports it ("no such file", "cannot read") as before.

    Raises:
        FormatError: naming the path and what it is (named pipe, character or block device, socket).
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable, or a name with a NUL byte: the caller's open says so
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "a special file")
    raise FormatError(
        f"not a regular file: it is {kind}; splat files are read only from regular files "
        f"(copy the data to a file first)",
        path,
    )


def detect_format(path: str | os.PathLike) -> str:
    """Name of the format of ``path`` (one of :data:`FORMATS`), decided from its content.

    Raises:
        FormatError: the file cannot be read, or is not a regular file (a named pipe, a device:
            :func:`check_input_path`).
        UnsupportedFormatError: no reader recognises the content.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "meta.json").is_file():
            return "sog"
        raise UnsupportedFormatError("a folder is readable only as an unbundled SOG (it has no meta.json)", p)
    check_input_path(p)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        raise FormatError("no such file", p) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", p) from None
    if not head:
        raise FormatError("the file is empty", p)
    if head.startswith((b"ply\n", b"ply\r")):  # LF, CRLF or CR line ends, as the PLY readers accept
        header = head.split(b"end_header", 1)[0]
        return "compressed_ply" if b"element chunk" in header else "ply"
    if head.startswith(EXGS_MAGIC):
        return "exgs"
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(SPZ_MAGIC):
        return "spz"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(p, "rb") as g:
                inner = g.read(4)
        except (OSError, EOFError, zlib.error) as e:
            raise FormatError(f"gzip stream is corrupt: {e}", p) from None
        if inner == SPZ_MAGIC:
            return "spz"
        raise UnsupportedFormatError(f"gzip file whose payload starts {inner!r}, not an SPZ header", p)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            # NotImplementedError: a (corrupt) "needs zip version N" field or an unsupported compression method
            raise FormatError(f"zip archive is corrupt or unsupported: {e}", p) from None
        if any(n == "meta.json" or n.endswith("/meta.json") for n in names):
            return "sog"
        raise UnsupportedFormatError("zip archive without meta.json (not a SOG bundle)", p)
    if head.lstrip().startswith(b"{") and p.name.endswith("meta.json"):
        return "sog"
    if size % 32 == 0 and (p.suffix.lower() == ".splat" or _looks_like_splat(head)):
        return "splat"
    if p.suffix.lower() == ".splat" or (size > 32 * 4 and _looks_like_splat(head)):
        # .splat has no header: a size that is not a whole number of 32-byte records is a cut-off file. (A cut
        # on a record boundary leaves a valid, smaller file that no reader can tell from a complete one.)
        raise FormatError(
            f"truncated .splat: {size:,} bytes is {size // 32:,} whole 32-byte records and "
            f"{size % 32} stray bytes (the file was cut off)",
            p,
        )
    raise UnsupportedFormatError(
        f"unrecognised content (starts {head[:8]!r}); expected PLY, SPZ, SOG, .splat or .exgs", p
    )


def _looks_like_splat(head: bytes) -> bool:
    """Heuristic for extension-less .splat files: finite positions/scales, positive scales and unit-ish
    quaternions (bytes around 128 with norm near 128) in the first records."""
    n = len(head) // 32
    if n < 4:
        return False
    rec = np.frombuffer(head[: n * 32], dtype=np.uint8).reshape(n, 32)
    f = rec[:, :24].copy().view(np.float32)  # [n, 6] pos + linear scale
    if not np.isfinite(f).all() or (f[:, 3:] <= 0).any() or (np.abs(f) > 1e7).any():
        return False
    q = (rec[:, 28:32].astype(np.float32) - 128) / 128
    return bool((np.abs(np.linalg.norm(q, axis=1) - 1) < 0.1).all())


def load(path: str | os.PathLike, *, format: str | None = None, max_gaussians: int | None = None) -> GaussianScene:
    """Read any supported splat file into a :class:`GaussianScene`.

    Args:
        path: file (or unbundled SOG folder) to read.
        format: force a reader (one of :data:`FORMATS`); by default it is detected from the content.
        max_gaussians: the most Gaussians a compressed file (.exgs, .spz, .sog) may declare (0 = no limit);
            default ``EXGS_MAX_GAUSSIANS`` or 50,000,000 (:mod:`exgs_core.limits`).

    Returns:
        The scene; ``scene.meta["format"]`` names the reader, ``scene.meta["path"]`` the file,
        ``scene.meta["notes"]`` lists anything the reader ignored or kept (extra properties, flags).

    Raises:
        ExgsError: (a :class:`FormatError` subclass) naming the file and the problem; a named pipe or a device
            is refused before it is opened (:func:`check_input_path`), whatever ``format`` says.
    """
    check_input_path(path)
    fmt = format or detect_format(path)
    if fmt not in _READERS:
        raise UnsupportedFormatError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", path)
    mod_name, fn_name = _READERS[fmt]
    reader = getattr(importlib.import_module(mod_name), fn_name)
    try:
        # corrupt values decode to inf/NaN, which scene.validate() reports: no RuntimeWarning noise on the way
        from .. import limits

        lim = limits.override(max_gaussians=max_gaussians) if max_gaussians is not None else contextlib.nullcontext()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), lim:
            scene = reader(path)
    except ExgsError:
        raise
    except (
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        EOFError,
        OSError,
        MemoryError,
        zlib.error,
        NotImplementedError,
    ) as e:
        # A reader bug or an unforeseen corruption: still a typed error naming the file.
        raise FormatError(f"cannot decode as {fmt}: {type(e).__name__}: {e}", path) from e
    scene.meta.setdefault("format", fmt)
    scene.meta.setdefault("path", os.fspath(path))
    return scene


def save_ply(scene: GaussianScene, path: str | os.PathLike, *, ascii: bool = False) -> None:
    """Write ``scene`` as a standard 3DGS PLY (atomically: temp file, then rename)."""
    from .ply import write_ply

    write_ply(scene, path, ascii=ascii)


# ============================================================================================ writing
#: Formats :func:`save` writes, and the file name endings that pick them (longest ending first).
WRITE_FORMATS = ("ply", "compressed_ply", "spz", "sog", "splat", "glb", "exgs")
_ENDINGS = (
    (".compressed.ply", "compressed_ply"),
    (".ply", "ply"),
    (".spz", "spz"),
    (".sog", "sog"),
    (".splat", "splat"),
    (".glb", "glb"),
    (".exgs", "exgs"),
)
#: format -> (module, bytes encoder ``f(scene, **options) -> (bytes, WriteReport)``)
_ENCODERS = {
    "compressed_ply": ("exgs_core.io.compressed_ply_write", "encode_compressed_ply"),
    "spz": ("exgs_core.io.spz", "encode_spz"),
    "sog": ("exgs_core.io.sog_write", "encode_sog"),
    "splat": ("exgs_core.io.splat", "encode_splat_bytes"),
    "glb": ("exgs_core.io.glb", "encode_glb"),
}


def format_for_path(path: str | os.PathLike) -> str:
    """The format :func:`save` writes for ``path``, from its name ending (``.compressed.ply`` before ``.ply``).

    Raises:
        UnsupportedFormatError: the ending is none of :data:`WRITE_FORMATS`' (the message lists them).
    """
    name = os.fspath(path).lower()
    for ending, fmt in _ENDINGS:
        if name.endswith(ending):
            return fmt
    raise UnsupportedFormatError(
        f"cannot tell the output format from the name; use one of {', '.join(e for e, _ in _ENDINGS)}", path
    )


def encode_as(scene: GaussianScene, fmt: str, *, sanitize: bool = False, path=None, **options):
    """``scene`` encoded as format ``fmt`` (one of :data:`WRITE_FORMATS`) in memory.

    Scenes in SPZ's stored axes (right-up-back) are turned into 3DGS PLY axes first for every format but
    ``spz`` (whose writer converts to its own axes) and ``exgs`` (which records the axes it was given).
    ``options`` go to the format's encoder (e.g. ``version=3`` for SPZ), except ``sh_degree``, which cuts the SH
    (never raises it) for every format; ``path`` only names the file in errors.

    Returns:
        (bytes, :class:`exgs_core.io.writing.WriteReport` with ``bytes`` and ``gaussians`` filled).

    Raises:
        SceneError: NaN/Inf or zero rotations and not ``sanitize`` (see :func:`exgs_core.io.writing.prepare`).
        UnsupportedFormatError: ``fmt`` is not writable.
    """
    from .spz import to_ply_axes
    from .writing import WriteReport, prepare

    if fmt not in WRITE_FORMATS:
        raise UnsupportedFormatError(f"cannot write format {fmt!r}; writable: {', '.join(WRITE_FORMATS)}", path)
    sh_degree = options.pop("sh_degree", None)
    if sh_degree is not None and int(sh_degree) < scene.sh_degree:
        scene = scene.with_sh_degree(int(sh_degree))
    if fmt not in ("spz", "exgs"):
        converted = to_ply_axes(scene)
        axes_note = converted is not scene
        scene = converted
    else:
        axes_note = False
    if fmt in _ENCODERS:
        mod_name, fn_name = _ENCODERS[fmt]
        clean, rep = prepare(scene, path, fmt, sanitize=sanitize)
        encoder = getattr(importlib.import_module(mod_name), fn_name, None)
        if encoder is None:
            raise UnsupportedFormatError(f"this build of exgs has no {fmt} writer", path)
        data, enc_rep = encoder(clean, **options)
        enc_rep.notes = rep.notes + enc_rep.notes
        rep = enc_rep
    elif fmt == "ply":
        clean, rep = prepare(scene, path, fmt, sanitize=sanitize)
        data = _ply_bytes(clean, **options)
    else:  # exgs: the codec with its default options (compress() chooses them per scene)
        from ..exgs_format import encode

        clean, rep = prepare(scene, path, fmt, sanitize=sanitize)
        data = encode(clean, **options)
    if axes_note:
        rep.notes.append("converted from SPZ's right-up-back axes to 3DGS PLY's right-down-forward axes")
    rep.format, rep.bytes, rep.gaussians = fmt, len(data), clean.n
    rep.path = None if path is None else os.fspath(path)
    assert isinstance(rep, WriteReport)
    return data, rep


def _ply_bytes(scene: GaussianScene, *, ascii: bool = False) -> bytes:
    import tempfile

    from .ply import write_ply

    with tempfile.TemporaryDirectory(prefix="exgs-ply-") as d:
        p = os.path.join(d, "scene.ply")
        write_ply(scene, p, ascii=ascii)
        with open(p, "rb") as f:
            return f.read()


def save(
    scene: GaussianScene, path: str | os.PathLike, *, format: str | None = None, sanitize: bool = False, **options
):
    """Write ``scene`` to ``path`` in ``format`` (default: from the name, :func:`format_for_path`), atomically
    (temp file + rename: a failure leaves no partial file and an existing file untouched).

    Returns:
        :class:`exgs_core.io.writing.WriteReport`: bytes, Gaussians, clamped values per field, notes.

    Raises:
        SceneError, UnsupportedFormatError: see :func:`encode_as`; OutputError: the path cannot be written.
    """
    from .atomic import atomic_write, check_output_path

    fmt = format or format_for_path(path)
    check_output_path(path)
    data, rep = encode_as(scene, fmt, sanitize=sanitize, path=path, **options)
    with atomic_write(path) as f:
        f.write(data)
    return rep
