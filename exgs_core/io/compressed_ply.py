"""Reader for PlayCanvas / SuperSplat compressed PLY (``.compressed.ply``), numpy-vectorised.

Layout (binary little-endian PLY)
---------------------------------
``element chunk C``: one row per run of 256 Gaussians (C = ceil(N / 256)), float32 properties

    min_x min_y min_z max_x max_y max_z                       position range of the chunk
    min_scale_x .. min_scale_z max_scale_x .. max_scale_z     log-scale range (the writer clamps to +-20)
    [min_r min_g min_b max_r max_g max_b]                     colour range; absent in the old 12-property layout

``element vertex N``: four uint32 per Gaussian

    packed_position  x 11 bits (31..21), y 10 bits (20..11), z 11 bits (10..0), unorm in the chunk range
    packed_rotation  bits 31..30: index (0..3 = rot_0..rot_3, i.e. w, x, y, z) of the largest component,
                     then three 10-bit unorms (29..20, 19..10, 9..0) for the other components in order,
                     each = q / sqrt(2) + 0.5 (quaternion normalised with the largest component >= 0)
    packed_scale     log-scales, 11/10/11 bits like the position, in the chunk log-scale range
    packed_color     r, g, b, a 8 bits each (31..24, .., 7..0): rgb = f_dc * SH_C0 + 0.5 as a unorm in the
                     chunk colour range (old layout: the unorm is the colour itself), a = sigmoid(opacity)

optional ``element sh N``: uint8 ``f_rest_0 .. f_rest_{M-1}``, M = 9, 24 or 45, in the 3DGS PLY order
(channel-major: K-1 red coefficients, then green, then blue); value = (t - 0.5) * 8 with t = 0 for byte 0,
1 for byte 255 and (byte + 0.5) / 256 otherwise.

Decoding follows PlayCanvas splat-transform ``decompress-ply.ts`` (the oracle that made
``../shared/data/reference-ply/*.from-compressed-ply.ply``): ``lerp(min, max, t) = min (1 - t) + max t`` in
float64, then float32. Axes are as stored (the PLY frame), no conversion. Opacity: logit of a / 255, clipped to
[1e-6, 1 - 1e-6] so bytes 0 and 255 stay finite (splat-transform writes -inf / +inf there).

Errors: :class:`~exgs_core.errors.FormatError` naming file and element/property for a missing or malformed
header, ASCII/big-endian data, missing or mistyped properties, a chunk count that is not ceil(N / 256), an
``sh`` element whose size does not match, or a body shorter than the header says (checked before reading it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..conventions import SH_C0, logit, sh_degree_from_count
from ..errors import FormatError
from ..scene import GaussianScene
from .atomic import read_bytes
from .ply import MAX_HEADER_BYTES

__all__ = ["read_compressed_ply", "decode_compressed_ply", "parse_ply_header", "PlyElement", "PlyHeader", "CHUNK_SIZE"]

CHUNK_SIZE = 256
_MAX_HEADER = MAX_HEADER_BYTES  # 1 MiB, shared with the standard PLY reader (see its docstring for the choice)

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "<i2",
    "int16": "<i2",
    "ushort": "<u2",
    "uint16": "<u2",
    "int": "<i4",
    "int32": "<i4",
    "uint": "<u4",
    "uint32": "<u4",
    "float": "<f4",
    "float32": "<f4",
    "double": "<f8",
    "float64": "<f8",
}

CHUNK_REQUIRED = (
    "min_x",
    "min_y",
    "min_z",
    "max_x",
    "max_y",
    "max_z",
    "min_scale_x",
    "min_scale_y",
    "min_scale_z",
    "max_scale_x",
    "max_scale_y",
    "max_scale_z",
)
CHUNK_COLOR = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_REQUIRED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")


@dataclass
class PlyElement:
    """One ``element`` of a binary PLY header: name, row count and (property name, numpy dtype) list."""

    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)

    @property
    def dtype(self) -> np.dtype:
        """Structured dtype of one row (packed, little-endian)."""
        return np.dtype([(n, t) for n, t in self.properties])

    @property
    def nbytes(self) -> int:
        """Size of the element's data in bytes."""
        return self.count * self.dtype.itemsize

    def prop_names(self) -> list[str]:
        return [n for n, _ in self.properties]


@dataclass
class PlyHeader:
    """A parsed binary-little-endian PLY header; ``size`` is the byte offset of the body."""

    size: int
    elements: list[PlyElement]
    comments: list[str]
    lines: list[str]

    def element(self, name: str) -> PlyElement | None:
        for e in self.elements:
            if e.name == name:
                return e
        return None


def parse_ply_header(data: bytes, path=None) -> PlyHeader:
    """Parse the header of a binary little-endian PLY held in ``data`` (bytes).

    Line ends are LF, CRLF or CR (the one after ``ply`` holds for the whole header); blank lines are skipped.
    Linear in the header size.

    Raises:
        FormatError: not a PLY, no ``end_header`` line within :data:`~exgs_core.io.ply.MAX_HEADER_BYTES` (1 MiB),
            ASCII or big-endian format, list properties, unknown property types, bad element lines, a repeated
            element or property.
    """
    if data.startswith(b"ply\r\n"):
        nl = b"\r\n"
    elif data.startswith((b"ply\n", b"ply\r")):
        nl = data[3:4]
    else:
        raise FormatError(f"not a PLY file (starts {data[:8]!r})", path, field="magic", offset=0)
    # 'end_header' alone on its line (a comment mentioning it does not end the header); an LF header may end CRLF
    end_nl = rb"\r?\n" if nl == b"\n" else re.escape(nl)
    m = re.search(re.escape(nl) + rb"[ \t]*end_header[ \t]*" + end_nl, data[:_MAX_HEADER])
    if not m:
        if len(data) > _MAX_HEADER:
            raise FormatError(
                f"no 'end_header' line within the first {_MAX_HEADER:,} bytes (the PLY header size "
                f"limit; real 3DGS headers are a few KB)",
                path,
                field="header",
                offset=_MAX_HEADER,
            )
        raise FormatError("no 'end_header' line (truncated or not a PLY header)", path, field="header")
    try:
        text = data[: m.start()].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("PLY header is not ASCII", path, field="header") from None
    lines = [ln.strip() for ln in text.split(nl.decode("ascii"))]
    elements: list[PlyElement] = []
    element_names: set[str] = set()
    prop_names: set[str] = set()  # of the last element
    comments: list[str] = []
    fmt = None
    for ln in lines[1:]:
        if not ln:
            continue
        parts = ln.split()
        key = parts[0]
        if key in ("comment", "obj_info"):
            comments.append(ln[len(key) :].strip())
        elif key == "format":
            fmt = parts[1] if len(parts) > 1 else ""
            if fmt != "binary_little_endian":
                raise FormatError(
                    f"PLY format {fmt!r} is not supported for compressed PLY (expected binary_little_endian)",
                    path,
                    field="format",
                )
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit() or len(parts[2]) > 20:
                raise FormatError(f"bad element line {ln[:80]!r}", path, field="element")
            if parts[1] in element_names:
                raise FormatError(f"duplicate element {parts[1]!r}", path, field=parts[1])
            element_names.add(parts[1])
            prop_names = set()
            elements.append(PlyElement(parts[1], int(parts[2])))
        elif key == "property":
            if not elements:
                raise FormatError(f"property before any element: {ln[:80]!r}", path, field="property")
            if len(parts) >= 2 and parts[1] == "list":
                raise FormatError(
                    f"list property in element {elements[-1].name!r} is not supported here",
                    path,
                    field=f"{elements[-1].name}.{parts[-1]}",
                )
            if len(parts) != 3 or parts[1] not in _PLY_TYPES:
                raise FormatError(f"bad property line {ln[:80]!r}", path, field=f"{elements[-1].name}.property")
            if parts[2] in prop_names:
                raise FormatError(f"duplicate property {parts[2]!r}", path, field=f"{elements[-1].name}.{parts[2]}")
            prop_names.add(parts[2])
            elements[-1].properties.append((parts[2], _PLY_TYPES[parts[1]]))
        else:
            raise FormatError(f"unknown PLY header line {ln[:80]!r}", path, field="header")
    if fmt is None:
        raise FormatError("PLY header has no format line", path, field="format")
    return PlyHeader(m.end(), elements, comments, lines)


def _few(names: list[str], k: int = 20) -> str:
    """``names`` for a note: all of them up to ``k``, else the first ``k`` and how many more."""
    return str(names) if len(names) <= k else f"{names[:k]} and {len(names) - k:,} more"


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """Bits ``[shift, shift + bits)`` of uint32 ``v`` as a float64 unorm in [0, 1]."""
    t = (1 << bits) - 1
    return ((v >> np.uint32(shift)) & np.uint32(t)).astype(np.float64) / t


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1.0 - t) + hi * t


def decode_compressed_ply(data: bytes, path=None) -> GaussianScene:
    """Decode the bytes of a compressed PLY into a :class:`GaussianScene` (see the module docstring).

    Raises:
        FormatError: naming the file and the element/property at fault.
    """
    hdr = parse_ply_header(data, path)
    chunk, vertex, sh_el = hdr.element("chunk"), hdr.element("vertex"), hdr.element("sh")
    if chunk is None:
        raise FormatError("no 'element chunk' (not a compressed PLY)", path, field="chunk")
    if vertex is None:
        raise FormatError("no 'element vertex'", path, field="vertex")
    notes = []
    # --- schema checks (all before touching the body)
    cprops = dict(chunk.properties)
    for name in CHUNK_REQUIRED:
        if cprops.get(name) != "<f4":
            raise FormatError(f"chunk property {name!r} missing or not float", path, field=f"chunk.{name}")
    has_color = any(n in cprops for n in CHUNK_COLOR)
    if has_color:
        for name in CHUNK_COLOR:
            if cprops.get(name) != "<f4":
                raise FormatError(
                    f"chunk colour property {name!r} missing or not float (a chunk colour range "
                    "needs all six of min_r..max_b)",
                    path,
                    field=f"chunk.{name}",
                )
    extra = [n for n in cprops if n not in CHUNK_REQUIRED + CHUNK_COLOR]
    if extra:
        notes.append(f"compressed_ply: ignored chunk properties {_few(extra)}")
    vprops = dict(vertex.properties)
    for name in VERTEX_REQUIRED:
        if vprops.get(name) != "<u4":
            raise FormatError(f"vertex property {name!r} missing or not uint32", path, field=f"vertex.{name}")
    extra = [n for n in vprops if n not in VERTEX_REQUIRED]
    if extra:
        notes.append(f"compressed_ply: ignored vertex properties {_few(extra)}")
    n = vertex.count
    if chunk.count != -(-n // CHUNK_SIZE):
        raise FormatError(
            f"{chunk.count} chunks for {n} vertices; expected ceil({n} / {CHUNK_SIZE}) = {-(-n // CHUNK_SIZE)}",
            path,
            field="chunk",
        )
    n_rest = 0
    if sh_el is not None:
        names = sh_el.prop_names()
        n_rest = len(names)
        if n_rest not in (9, 24, 45):
            raise FormatError(f"element sh has {n_rest} properties; expected 9, 24 or 45", path, field="sh")
        for i, (name, typ) in enumerate(sh_el.properties):
            if name != f"f_rest_{i}" or typ != "u1":
                raise FormatError(
                    f"sh property {i} is {name!r} ({typ}); expected uchar f_rest_{i}", path, field=f"sh.{name}"
                )
        if sh_el.count != n:
            raise FormatError(f"element sh has {sh_el.count} rows for {n} vertices", path, field="sh")
    # --- body size check, then views of each element
    offsets, off = {}, hdr.size
    skipped = []
    for e in hdr.elements:
        offsets[e.name] = off
        off += e.nbytes
        if off > len(data):
            raise FormatError(
                f"truncated: element {e.name!r} ({e.count} rows) ends at byte {off}, the file has {len(data)} bytes",
                path,
                field=e.name,
                offset=len(data),
            )
        if e.name not in ("chunk", "vertex", "sh"):
            skipped.append(f"{e.name!r} ({e.count} rows)")
    if len(skipped) <= 20:
        notes.extend(f"compressed_ply: skipped element {x}" for x in skipped)
    else:
        notes.append(f"compressed_ply: skipped {len(skipped):,} elements: {', '.join(skipped[:20])}, ...")
    if off < len(data):
        notes.append(f"compressed_ply: ignored {len(data) - off} trailing bytes")

    def rows(e: PlyElement) -> np.ndarray:
        return np.frombuffer(data, dtype=e.dtype, count=e.count, offset=offsets[e.name])

    c = rows(chunk)
    v = rows(vertex)
    ci = np.arange(n) // CHUNK_SIZE

    def col(name: str) -> np.ndarray:
        return c[name].astype(np.float64)[ci]

    pp = v["packed_position"].astype(np.uint32)
    means = np.stack(
        [
            _lerp(col("min_x"), col("max_x"), _unorm(pp, 21, 11)),
            _lerp(col("min_y"), col("max_y"), _unorm(pp, 11, 10)),
            _lerp(col("min_z"), col("max_z"), _unorm(pp, 0, 11)),
        ],
        axis=1,
    ).astype(np.float32)
    ps = v["packed_scale"].astype(np.uint32)
    log_scales = np.stack(
        [
            _lerp(col("min_scale_x"), col("max_scale_x"), _unorm(ps, 21, 11)),
            _lerp(col("min_scale_y"), col("max_scale_y"), _unorm(ps, 11, 10)),
            _lerp(col("min_scale_z"), col("max_scale_z"), _unorm(ps, 0, 11)),
        ],
        axis=1,
    ).astype(np.float32)
    pr = v["packed_rotation"].astype(np.uint32)
    norm = 1.0 / (np.sqrt(2.0) * 0.5)
    abc = np.stack([(_unorm(pr, s, 10) - 0.5) * norm for s in (20, 10, 0)], axis=1)
    m = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(axis=1)))
    which = (pr >> np.uint32(30)).astype(np.int64)
    quats = np.empty((n, 4), np.float64)
    rr = np.arange(n)
    # component j of the output takes abc[j - (j > which)] unless j == which
    for j in range(4):
        src = np.clip(j - (j > which), 0, 2)
        quats[:, j] = abc[rr, src]
    quats[rr, which] = m
    pc = v["packed_color"].astype(np.uint32)
    rgb = np.stack([_unorm(pc, 24, 8), _unorm(pc, 16, 8), _unorm(pc, 8, 8)], axis=1)
    if has_color:
        lo = np.stack([col("min_r"), col("min_g"), col("min_b")], axis=1)
        hi = np.stack([col("max_r"), col("max_g"), col("max_b")], axis=1)
        rgb = _lerp(lo, hi, rgb)
    dc = ((rgb - 0.5) / SH_C0).astype(np.float32)
    opacity = logit(_unorm(pc, 0, 8), eps=1e-6)
    k = 1 + n_rest // 3
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = dc
    if n_rest:
        assert sh_el is not None  # n_rest > 0 only when the sh element exists
        b = np.stack([rows(sh_el)[f"f_rest_{i}"] for i in range(n_rest)], axis=1)  # [N, 3*(K-1)] channel-major
        t = (b.astype(np.float64) + 0.5) / 256.0
        t = np.where(b == 0, 0.0, np.where(b == 255, 1.0, t))
        sh[:, 1:] = ((t - 0.5) * 8.0).reshape(n, 3, k - 1).transpose(0, 2, 1)
    sh_degree_from_count(k)
    meta = {
        "format": "compressed_ply",
        "compressed_ply_layout": "18-property chunks (with colour range)"
        if has_color
        else "12-property chunks (old layout, no colour range)",
        "comments": hdr.comments,
        "notes": notes,
    }
    if path is not None:
        meta["path"] = os.fspath(path)
    from .ply import _splat_model_from_comments  # the same header comments as a plain 3DGS PLY

    model = _splat_model_from_comments(hdr.comments)
    if model is not None:
        meta["splat_model"] = model
        notes.append(f"header comment says splat model {model!r}")
    return GaussianScene(
        means, quats.astype(np.float32), log_scales, opacity, sh, meta=meta, antialiased=model == "antialiased"
    )


def read_compressed_ply(path: str | os.PathLike) -> GaussianScene:
    """Read a PlayCanvas compressed PLY into a :class:`GaussianScene`.

    Returns:
        Scene with means float32 [N, 3] (as stored), quats float32 [N, 4] w, x, y, z (unit up to
        quantisation), log_scales float32 [N, 3], opacity_logits float32 [N] (finite), sh float32 [N, K, 3]
        (K = 1 without an ``sh`` element). ``meta["compressed_ply_layout"]`` names the chunk layout.

    Raises:
        FormatError: naming the file and the element/property at fault.
    """
    from . import check_input_path

    check_input_path(path)  # a named pipe would block read_bytes, /dev/zero never end
    data = read_bytes(path)
    try:
        return decode_compressed_ply(data, path)
    except FormatError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, OverflowError, MemoryError) as e:
        raise FormatError(f"cannot decode compressed PLY: {type(e).__name__}: {e}", path) from e
