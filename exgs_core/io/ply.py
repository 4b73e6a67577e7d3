"""Standard 3DGS PLY (graphdeco layout): read any variant, write the official one.

Layout (one ``vertex`` element, one row per Gaussian; every property float32 in files we write):

=========================== ======================================================================
property                    meaning
=========================== ======================================================================
``x y z``                   centre (world units)
``nx ny nz``                unused normals (zeros); optional on read, ignored with a note
``f_dc_0..2``               SH DC coefficient per channel (R, G, B)
``f_rest_0..3(K-1)-1``      higher SH, **channel-major**: K-1 red coefficients 1..K-1, then green,
                            then blue; 0, 9, 24 or 45 of them (SH degree 0..3)
``opacity``                 opacity logit
``scale_0..2``              natural-log scales
``rot_0..3``                rotation quaternion w, x, y, z, unnormalised as stored
anything else               kept as ``scene.extras[name]`` (float32 [N]) with a note
=========================== ======================================================================

Reading is defensive: the header is parsed here (bounded to :data:`MAX_HEADER_BYTES`) and the body size the header
declares is checked against the bytes the file holds **before** anything is allocated, so a truncated file or an
absurd vertex count (10^12) fails fast with a :class:`~exgs_core.errors.FormatError` naming the file. Binary bodies
are then decoded with NumPy through the structured dtype the header describes (what plyfile's memory-mapped path
does, without keeping a map open); ASCII bodies are parsed by plyfile, which is handed a canonical copy of the
header this module parsed (so blank header lines, CR line ends, comments never reach plyfile's own header parser,
and both agree on the layout). Every failure, including plyfile's own exceptions, comes out as ``FormatError``;
a named pipe or a device is refused before it is opened.

Header comments ``SplatRenderMode: default|mip|2dgs`` (Brush, splat-transform) and ``antialiased 0|1`` (Postshot)
set ``scene.antialiased`` (and ``meta["splat_model"]``); :func:`write_ply` writes
``SplatRenderMode: mip`` back for antialiased scenes so the flag travels with the file.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..conventions import sh_coeff_count
from ..errors import FormatError, SceneError
from ..scene import GaussianScene
from .atomic import atomic_write

__all__ = [
    "read_ply",
    "write_ply",
    "read_ply_header",
    "ply_property_names",
    "PlyHeader",
    "REQUIRED_PROPERTIES",
    "MAX_HEADER_BYTES",
]

#: The header must end (``end_header``) within this many bytes (1 MiB), in this reader and the compressed PLY one.
#: Real 3DGS headers are 1-4 KB (62 properties at SH degree 3, plus a few comments); 1 MiB is 250x that, enough for
#: any plausible comment block, while a hostile header is refused after parsing at most 1 MiB, which takes well
#: under a second because the parse is linear (per-element sets, no per-line list rebuilds).
MAX_HEADER_BYTES = 1 << 20

#: Vertex properties a 3DGS PLY must have (f_rest_* are optional, normals too).
REQUIRED_PROPERTIES = (
    "x",
    "y",
    "z",
    "f_dc_0",
    "f_dc_1",
    "f_dc_2",
    "opacity",
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
)
_NORMALS = ("nx", "ny", "nz")
_F_REST = re.compile(r"f_rest_(0|[1-9][0-9]*)$")
_F_REST_COUNTS = (0, 9, 24, 45)

#: PLY scalar type name -> NumPy type code (the names plyfile accepts).
_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_BYTE_ORDER = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}


# ---------------------------------------------------------------------------------------------------------- header
@dataclass
class PlyElementInfo:
    """One ``element`` of a PLY header.

    Attributes:
        name: element name.
        count: declared number of rows (>= 0).
        properties: ``(name, numpy type code)`` for scalar properties, ``(name, (len code, value code))`` for lists.
    """

    name: str
    count: int
    properties: list = field(default_factory=list)

    @property
    def has_lists(self) -> bool:
        return any(isinstance(t, tuple) for _, t in self.properties)

    @property
    def prop_names(self) -> list[str]:
        return [n for n, _ in self.properties]

    def dtype(self, byte_order: str) -> np.dtype:
        """Structured dtype of one binary row (scalar properties only)."""
        return np.dtype([(n, byte_order + t) for n, t in self.properties])

    def min_row_bytes(self, ascii: bool) -> int:
        """Fewest bytes one row can take: exact for binary rows without lists, a lower bound otherwise (ASCII:
        one character and one separator or newline per value, one newline for a row without properties; list: its
        length prefix only)."""
        if ascii:
            return 2 * len(self.properties) if self.properties else 1
        return sum(np.dtype(t[0] if isinstance(t, tuple) else t).itemsize for _, t in self.properties)


@dataclass
class PlyHeader:
    """A parsed PLY header.

    Attributes:
        format: ``ascii``, ``binary_little_endian`` or ``binary_big_endian``.
        elements: the elements in file order.
        comments: ``comment`` lines (without the keyword).
        obj_info: ``obj_info`` lines.
        size: header length in bytes, including the newline after ``end_header`` (the body starts here).
    """

    format: str
    elements: list[PlyElementInfo]
    comments: list[str]
    obj_info: list[str]
    size: int

    @property
    def ascii(self) -> bool:
        return self.format == "ascii"

    @property
    def byte_order(self) -> str:
        return _BYTE_ORDER[self.format]

    def element(self, name: str) -> PlyElementInfo | None:
        for e in self.elements:
            if e.name == name:
                return e
        return None


def read_ply_header(path: str | os.PathLike, head: bytes | None = None) -> PlyHeader:
    """Parse the header of the PLY file ``path`` (or of the bytes ``head``, its first bytes).

    Accepts LF, CRLF and CR line ends (as plyfile does) and skips blank (or whitespace-only) lines; reads at most
    :data:`MAX_HEADER_BYTES`. Linear in the header size.

    Raises:
        FormatError: not a PLY file, no ``end_header`` in the first :data:`MAX_HEADER_BYTES`, a malformed line
            (with its line number), an unknown type or format, a duplicate element or property.
    """
    if head is None:
        from . import check_input_path

        check_input_path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(MAX_HEADER_BYTES)
        except OSError as e:
            raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    if not head.startswith(b"ply"):
        raise FormatError(f"not a PLY file (starts {head[:8]!r}, expected b'ply')", path, offset=0)
    rest = head[3:]
    if rest.startswith(b"\r\n"):
        nl = b"\r\n"
    elif rest[:1] in (b"\n", b"\r"):
        nl = rest[:1]
    else:
        raise FormatError("not a PLY file: unexpected characters after 'ply'", path, offset=3)
    pos = 3 + len(nl)
    fmt = None
    elements: list[PlyElementInfo] = []
    element_names: set[str] = set()
    prop_names: set[str] = set()  # of the last element
    comments: list[str] = []
    obj_info: list[str] = []
    line_no = 1
    while True:
        end = head.find(nl, pos)
        if end < 0:
            if len(head) >= MAX_HEADER_BYTES:
                raise FormatError(
                    f"no 'end_header' line within the first {MAX_HEADER_BYTES:,} bytes (the PLY header "
                    f"size limit; real 3DGS headers are a few KB)",
                    path,
                    field="header",
                    offset=MAX_HEADER_BYTES,
                )
            raise FormatError(
                "header ends early (no 'end_header' line): file truncated or not a PLY", path, offset=len(head)
            )
        raw = head[pos:end]
        pos = end + len(nl)
        line_no += 1
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise FormatError(f"header line {line_no} is not ASCII", path, offset=pos - len(nl) - len(raw)) from None
        if not line:
            continue
        keyword, _, data = line.partition(" ")
        data = data.strip()
        words = data.split()

        def bad(msg: str, _n=line_no, _l=line):
            return FormatError(f"header line {_n} ({_l[:60]!r}): {msg}", path)

        if keyword == "end_header":
            if data:
                raise bad("unexpected data after 'end_header'")
            break
        if keyword == "comment":
            comments.append(data)
        elif keyword == "obj_info":
            obj_info.append(data)
        elif keyword == "format":
            if fmt is not None or elements:
                raise bad("'format' must come once, before the elements")
            if len(words) != 2 or words[0] not in _BYTE_ORDER:
                raise bad("expected 'format ascii|binary_little_endian|binary_big_endian 1.0'")
            if words[1] != "1.0":
                raise bad(f"unsupported PLY version {words[1]!r} (expected 1.0)")
            fmt = words[0]
        elif keyword == "element":
            if fmt is None:
                raise bad("'element' before 'format'")
            if len(words) != 2:
                raise bad("expected 'element <name> <count>'")
            try:
                count = int(words[1])
            except ValueError:
                raise bad(f"element count {words[1]!r} is not an integer") from None
            if count < 0:
                raise bad(f"negative element count {count}")
            if words[0] in element_names:
                raise bad(f"duplicate element {words[0]!r}")
            element_names.add(words[0])
            prop_names = set()
            elements.append(PlyElementInfo(words[0], count))
        elif keyword == "property":
            if not elements:
                raise bad("'property' before any 'element'")
            el = elements[-1]
            if words and words[0] == "list":
                if len(words) != 4 or words[1] not in _PLY_TYPES or words[2] not in _PLY_TYPES:
                    raise bad("expected 'property list <len type> <value type> <name>'")
                if _PLY_TYPES[words[1]][0] == "f":
                    raise bad("list length type must be an integer type")
                name, typ = words[3], (_PLY_TYPES[words[1]], _PLY_TYPES[words[2]])
            else:
                if len(words) != 2:
                    raise bad("expected 'property <type> <name>'")
                if words[0] not in _PLY_TYPES:
                    raise bad(f"unknown property type {words[0]!r}")
                name, typ = words[1], _PLY_TYPES[words[0]]  # type: ignore[assignment]
            if name in prop_names:
                raise bad(f"duplicate property {name!r} in element {el.name!r}")
            prop_names.add(name)
            el.properties.append((name, typ))
        else:
            raise bad(f"unknown header keyword {keyword!r}")
    if fmt is None:
        raise FormatError("header has no 'format' line", path)
    return PlyHeader(fmt, elements, comments, obj_info, pos)


# ------------------------------------------------------------------------------------------------------------ read
def read_ply(path: str | os.PathLike) -> GaussianScene:
    """Read a standard 3DGS PLY (binary little/big endian or ASCII) into a :class:`GaussianScene`.

    Args:
        path: the ``.ply`` file.

    Returns:
        A scene with ``means`` float32 [N, 3], ``quats`` float32 [N, 4] (w, x, y, z, unnormalised as stored),
        ``log_scales`` float32 [N, 3], ``opacity_logits`` float32 [N], ``sh`` float32 [N, K, 3] (``sh[:, 0]`` =
        f_dc, ``sh[:, 1:, c]`` = the channel-major block c of f_rest), extra vertex properties in ``extras``
        (float32 [N] each). ``meta``: ``format="ply"``, ``path``, ``ply_format``, ``comments``, ``notes``
        (ignored normals, kept extras, ignored elements), ``splat_model`` when the header says so (and ``scene.antialiased``).
        Values are kept as stored (NaN/Inf included): use :meth:`GaussianScene.validate`.

    Raises:
        FormatError: naming the file and the problem: not a PLY, bad header, compressed PLY (``element chunk``),
            missing required property, f_rest count not 0/9/24/45, body shorter than the header declares, ASCII
            rows that do not parse.
    """
    from . import check_input_path

    path = os.fspath(path)
    check_input_path(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER_BYTES)
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    hdr = read_ply_header(path, head)
    if hdr.element("chunk") is not None:
        raise FormatError(
            "compressed PLY (it has 'element chunk'): not a standard 3DGS PLY; read it with the compressed_ply reader",
            path,
            field="chunk",
        )
    vertex = hdr.element("vertex")
    if vertex is None:
        raise FormatError("unknown PLY layout: no 'vertex' element", path, field="vertex")
    names = vertex.prop_names
    missing = [p for p in REQUIRED_PROPERTIES if p not in names]
    if missing:
        raise FormatError("unknown PLY layout: missing " + ", ".join(repr(m) for m in missing), path, field=missing[0])
    rest_idx = sorted(int(m.group(1)) for n in names if (m := _F_REST.match(n)))
    n_rest = len(rest_idx)
    if n_rest not in _F_REST_COUNTS:
        raise FormatError(
            f"unknown PLY layout: {n_rest} f_rest_* properties (expected 0, 9, 24 or 45 for SH degree 0..3)",
            path,
            field="f_rest",
        )
    if rest_idx != list(range(n_rest)):
        gap = next(i for i in range(n_rest) if f"f_rest_{i}" not in names)
        raise FormatError(
            f"unknown PLY layout: f_rest_* are not numbered 0..{n_rest - 1}: missing 'f_rest_{gap}'",
            path,
            field=f"f_rest_{gap}",
        )
    list_props = [n for n, t in vertex.properties if isinstance(t, tuple)]
    if list_props and not hdr.ascii:
        raise FormatError(
            f"unsupported list propert{'y' if len(list_props) == 1 else 'ies'} "
            f"{', '.join(map(repr, list_props))} in element 'vertex'",
            path,
            field=list_props[0],
        )

    # Size check before anything is allocated: the body must hold what the header declares.
    body = size - hdr.size
    need = 0
    vertex_offset = hdr.size
    for el in hdr.elements:
        row = el.min_row_bytes(hdr.ascii)
        if el is vertex:
            vertex_offset = hdr.size + need
        need += el.count * row
        if need > body:
            exact = not hdr.ascii and not el.has_lists
            what = "needs" if exact else "needs at least"
            raise FormatError(
                f"file truncated or element count too large: element {el.name!r} declares {el.count} rows of "
                f"{row} B; the header {what} {need} B of data but the file holds {body} B after the header",
                path,
                field=el.name,
                offset=hdr.size + body,
            )
    if not hdr.ascii:
        for el in hdr.elements:
            if el is vertex:
                break
            if el.has_lists:
                raise FormatError(
                    f"element {el.name!r} before 'vertex' has list properties (unsupported in binary 3DGS PLY)",
                    path,
                    field=el.name,
                )

    if hdr.ascii:
        data = _read_ascii_vertex(path, vertex, hdr)
    else:
        dt = vertex.dtype(hdr.byte_order)
        try:
            with open(path, "rb") as f:
                f.seek(vertex_offset)
                data = np.fromfile(f, dtype=dt, count=vertex.count) if vertex.count else np.zeros(0, dt)
        except (OSError, ValueError, MemoryError) as e:
            raise FormatError(f"cannot read the vertex data: {e}", path, field="vertex") from None
        if data.shape[0] != vertex.count:
            raise FormatError(
                f"file truncated: element 'vertex' declares {vertex.count} rows, got {data.shape[0]}",
                path,
                field="vertex",
            )
    return _scene_from_rows(data, vertex, hdr, path, n_rest, size - hdr.size - need)


_PLY_TYPE_NAMES = {
    "i1": "int8",
    "u1": "uint8",
    "i2": "int16",
    "u2": "uint16",
    "i4": "int32",
    "u4": "uint32",
    "f4": "float32",
    "f8": "float64",
}


def _canonical_header(hdr: PlyHeader) -> bytes:
    """The elements and properties of ``hdr`` as a plain LF ASCII header (no comments, no blank lines): what
    plyfile is given instead of the file's own header, so that it parses exactly the layout this module's parser
    accepted (plyfile stops at an empty header line, for one)."""
    lines = ["ply", "format ascii 1.0"]
    for el in hdr.elements:
        lines.append(f"element {el.name} {el.count}")
        for name, t in el.properties:
            if isinstance(t, tuple):
                lines.append(f"property list {_PLY_TYPE_NAMES[t[0]]} {_PLY_TYPE_NAMES[t[1]]} {name}")
            else:
                lines.append(f"property {_PLY_TYPE_NAMES[t]} {name}")
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


class _PrefixedReader(io.RawIOBase):
    """A read-only stream: ``prefix``, then the rest of the open binary file ``f`` from its current position."""

    def __init__(self, prefix: bytes, f):
        self._prefix = memoryview(prefix)
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if len(self._prefix):
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._f.readinto(b)


def _read_ascii_vertex(path: str, vertex: PlyElementInfo, hdr: PlyHeader) -> np.ndarray:
    """Parse an ASCII PLY body with plyfile (after the size check) and return the vertex rows. plyfile reads the
    body from ``hdr.size`` on, behind a canonical copy of the header (:func:`_canonical_header`)."""
    import plyfile

    try:
        with open(path, "rb") as f:
            f.seek(hdr.size)
            stream = io.BufferedReader(_PrefixedReader(_canonical_header(hdr), f), 1 << 16)
            ply = plyfile.PlyData.read(stream, mmap=False)
        el = ply["vertex"]
        data = el.data
    except plyfile.PlyElementParseError as e:
        where = f"row {e.row}" + (f", property {e.prop.name!r}" if e.prop is not None else "")
        elname = e.element.name if e.element is not None else "?"
        raise FormatError(f"ASCII body: element {elname!r}: {where}: {e.message}", path, field=elname) from None
    except plyfile.PlyHeaderParseError as e:
        # plyfile parses a canonical copy of the header this module already accepted: should not happen
        raise FormatError(
            f"plyfile rejects the header: {e.message} (line {e.line} of its canonical form)", path, field="header"
        ) from None
    except UnicodeDecodeError as e:
        raise FormatError(
            f"ASCII body: non-ASCII byte {e.object[e.start : e.start + 1]!r} (binary data in an ASCII PLY?)", path
        ) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    except (
        plyfile.PlyParseError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        OverflowError,
        EOFError,
        MemoryError,
        StopIteration,
        RuntimeError,
    ) as e:
        raise FormatError(f"ASCII body: cannot parse: {type(e).__name__}: {e}", path) from None
    if [p.name for p in el.properties] != vertex.prop_names or len(data) != vertex.count:
        raise FormatError("plyfile read a different vertex layout than the header declares", path, field="vertex")
    return data


def _f32(data: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(data[name], dtype=np.float32)


def _scene_from_rows(
    data: np.ndarray, vertex: PlyElementInfo, hdr: PlyHeader, path: str, n_rest: int, trailing: int
) -> GaussianScene:
    n = vertex.count
    k = n_rest // 3 + 1
    means = np.stack([_f32(data, c) for c in ("x", "y", "z")], axis=1)
    quats = np.stack([_f32(data, f"rot_{i}") for i in range(4)], axis=1)
    log_scales = np.stack([_f32(data, f"scale_{i}") for i in range(3)], axis=1)
    opacity = _f32(data, "opacity")
    sh = np.empty((n, k, 3), np.float32)
    for c in range(3):
        sh[:, 0, c] = _f32(data, f"f_dc_{c}")
        for j in range(1, k):
            sh[:, j, c] = _f32(data, f"f_rest_{c * (k - 1) + j - 1}")

    notes: list[str] = []
    used = set(REQUIRED_PROPERTIES) | {f"f_rest_{i}" for i in range(n_rest)}
    normals = [p for p in _NORMALS if p in vertex.prop_names]
    if normals:
        notes.append(f"ignored normals {', '.join(normals)} (unused by 3DGS)")
    extras = {}
    for name, typ in vertex.properties:
        if name in used or name in _NORMALS:
            continue
        if isinstance(typ, tuple):
            notes.append(f"ignored list property {name!r} of element 'vertex'")
            continue
        extras[name] = _f32(data, name)
    if extras:
        notes.append("kept extra vertex properties in scene.extras: " + ", ".join(extras))
    others = [e for e in hdr.elements if e is not vertex]
    if others:
        notes.append("ignored element(s) " + ", ".join(f"{e.name!r} ({e.count} rows)" for e in others))
    if trailing > 0 and not hdr.ascii and not any(e.has_lists for e in hdr.elements):
        notes.append(f"ignored {trailing} trailing bytes after the last element")

    meta = {"format": "ply", "path": path, "ply_format": hdr.format, "comments": list(hdr.comments), "notes": notes}
    model = _splat_model_from_comments(hdr.comments)
    if model is not None:
        meta["splat_model"] = model
        notes.append(f"header comment says splat model {model!r}")
    return GaussianScene(means, quats, log_scales, opacity, sh, extras, meta, antialiased=model == "antialiased")


def _splat_model_from_comments(comments: list[str]) -> str | None:
    """``SplatRenderMode: default|mip|2dgs`` (Brush) or ``antialiased 0|1`` (Postshot); last match wins."""
    model = None
    for c in comments:
        low = c.strip().lower()
        if low.startswith("splatrendermode:"):
            mode = low.split(":", 1)[1].strip()
            model = {"default": "default", "mip": "antialiased", "2dgs": "2dgs"}.get(mode, model)
        elif low.startswith("antialiased "):
            v = low.split(None, 1)[1].strip()
            model = {"1": "antialiased", "0": "default"}.get(v, model)
    return model


# ----------------------------------------------------------------------------------------------------------- write
def ply_property_names(sh_degree: int, extras: tuple[str, ...] = ()) -> list[str]:
    """Property names of the official 3DGS layout for ``sh_degree`` (62 at SH3), then ``extras``."""
    k = sh_coeff_count(sh_degree)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * (k - 1))]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
        + list(extras)
    )


def write_ply(scene: GaussianScene, path: str | os.PathLike, *, ascii: bool = False) -> None:
    """Write ``scene`` as a standard 3DGS PLY in the official layout, atomically (temp file, then rename).

    Layout: ``x y z nx ny nz`` (normals zero) ``f_dc_0..2 f_rest_0..`` (channel-major) ``opacity scale_0..2
    rot_0..3``, all float32, then each ``scene.extras`` entry as another float property, in one ``vertex``
    element; binary little endian unless ``ascii`` (ASCII values are written with 9 significant digits, which
    round-trips float32 exactly). Header comment ``generated by exgs`` (plus ``SplatRenderMode: mip`` when
    ``scene.antialiased``). Non-finite values are written as they are.

    Raises:
        SceneError: an extras name that clashes with a standard property, is not a valid PLY name, or whose
            length is not N.
    """
    import plyfile

    names = ply_property_names(scene.sh_degree)
    for name, v in scene.extras.items():
        if name in names or _F_REST.match(name) or name in REQUIRED_PROPERTIES:
            raise SceneError(f"extras name {name!r} clashes with a standard 3DGS PLY property")
        if not name or any(ch.isspace() for ch in name) or not name.isascii():
            raise SceneError(f"extras name {name!r} is not a valid PLY property name")
        if np.shape(v) != (scene.n,):
            raise SceneError(f"extras[{name!r}]: expected float32 [{scene.n}], got shape {np.shape(v)}")
    names = names + list(scene.extras)
    n, k = scene.n, scene.sh.shape[1]
    cols = np.empty((n, len(names)), "<f4")
    cols[:, 0:3] = scene.means
    cols[:, 3:6] = 0.0
    cols[:, 6:9] = scene.sh[:, 0, :]
    o = 9
    for c in range(3):
        cols[:, o : o + k - 1] = scene.sh[:, 1:, c]
        o += k - 1
    cols[:, o] = scene.opacity_logits
    cols[:, o + 1 : o + 4] = scene.log_scales
    cols[:, o + 4 : o + 8] = scene.quats
    for j, v in enumerate(scene.extras.values()):
        cols[:, o + 8 + j] = v

    comments = ["generated by exgs"]
    if scene.antialiased:
        comments.append("SplatRenderMode: mip")
    rows = cols.view(np.dtype([(nm, "<f4") for nm in names])).reshape(n)  # [N] structured view, no copy
    ply = plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")], text=ascii, byte_order="<", comments=comments)
    with atomic_write(path) as f:
        if ascii:
            # plyfile's text writer formats row by row; one savetxt call is much faster and %.9g round-trips float32.
            f.write(ply.header.encode("ascii") + b"\n")
            buf = io.StringIO()
            np.savetxt(buf, cols, fmt="%.9g", delimiter=" ")
            f.write(buf.getvalue().encode("ascii"))
        else:
            ply.write(f)
