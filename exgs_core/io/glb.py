"""glTF 2.0 binary (``.glb``) with ``KHR_gaussian_splatting``: writer and reader.

Specification followed: ``KHR_gaussian_splatting``, status **Release Candidate**, as in KhronosGroup/glTF
``extensions/2.0/Khronos/KHR_gaussian_splatting/README.md`` at commit 63770cc (2026-04-15, "Editorial review
(#2567)"; the extension was added in ad9422a, 2026-01-27), with the schema
``mesh.primitive.KHR_gaussian_splatting.schema.json`` of the same tree.

What is written
---------------
One node, one mesh, one primitive of ``mode`` 0 (POINTS) whose ``extensions.KHR_gaussian_splatting`` is
``{"kernel": "ellipse", "colorSpace": "srgb_rec709_display", "sortingMethod": "cameraDistance", "projection":
"perspective"}`` (3DGS captures are display-referred sRGB, :mod:`exgs_core.conventions`); the extension is in
``extensionsUsed`` but not ``extensionsRequired`` (a viewer without it shows a point cloud). One buffer (the GLB
``BIN`` chunk), one tightly packed buffer view per attribute, in this order (N Gaussians):

=============================================== ====== ================ =========================================
attribute                                       type   component        content and error bound
=============================================== ====== ================ =========================================
``POSITION``                                    VEC3   float            centre, exact (float32); with min / max
``COLOR_0``                                     VEC4   ubyte normalized fallback colour for viewers without the
                                                                        extension: sRGB-decoded (linear, as glTF
                                                                        requires) clamp(f_dc SH_C0 + 0.5, 0, 1)
                                                                        and opacity; not read back
``KHR_gaussian_splatting:ROTATION``             VEC4   float            unit quaternion x, y, z, w (glTF order),
                                                                        error ~1e-7 (float32 of the normalised q)
``KHR_gaussian_splatting:SCALE``                VEC3   float            linear scale exp(log-scale), relative
                                                                        error 6e-8; log-scales outside [-87, 88]
                                                                        are clamped (counted as ``log_scales``)
``KHR_gaussian_splatting:OPACITY``              SCALAR float            sigmoid(logit) in [0, 1] (float64, then
                                                                        float32), error 6e-8 in opacity; the
                                                                        logit's error grows as 6e-8 / (p (1 - p))
                                                                        and logits beyond +-13.8 read back as
                                                                        +-13.8
``KHR_gaussian_splatting:SH_DEGREE_0_COEF_0``   VEC3   float            f_dc r, g, b, exact
``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n``   VEC3   float            rest coefficient n (m = n - l) of degree
                                                                        l = 1..3, r, g, b, exact up to the sign
                                                                        flip of the axis conversion
=============================================== ====== ================ =========================================

Size: 60 bytes per Gaussian at SH degree 0 (12 + 4 + 16 + 12 + 4 + 12, as splat-transform 3.10.2 writes), plus
36 / 96 / 180 at degree 1 / 2 / 3 (240 B in all at degree 3), plus 1-5 KB of JSON. The SH coefficient order and
signs of the spec (real SH with the Condon-Shortley phase, ``SH_DEGREE_1_COEF_0`` = m = -1, ...) are those of
3DGS / gsplat, so coefficients map one to one.

Axes
----
glTF is right-handed with +Y up and the front of an asset facing +Z, so +X points to the asset's left (LUF);
3DGS PLY is right-down-forward (RDF). The conversion is a 180 degree rotation about Z: ``(x, y, z) -> (-x, -y,
z)``, the quaternion ``q -> k q`` (``(w, x, y, z) -> (-z, -y, x, w)``) and SH rest coefficients times ``(-1)^m``
(the functions odd in x and y together change sign). This is what PlayCanvas splat-transform 3.10.2 writes
(``convertToSpace(..., Transform.IDENTITY)`` from PLY space, a 180 degree rotation about Z) and the frame Niantic's
SPZ library names "LUF, GLB" (its RDF is "PLY"). A scene in SPZ's stored axes (RUB) is first turned into PLY
axes (:func:`exgs_core.io.spz.to_ply_axes`). The spec leaves the source frame to the exporter ("positions,
quaternions and spherical harmonics will have to be rotated on load").

Reading
-------
:func:`read_glb` reads GLB files (not ``.gltf`` JSON with external buffers) whose default scene holds primitives
with ``KHR_gaussian_splatting`` (all of them, concatenated in node order; node transforms are applied, SH
included, with :func:`exgs_core.sh_rotation.transform_scene`), decodes every component type the spec allows
(float, normalized and plain integer), and returns the scene in PLY axes (``axes="rdf"``, default) or as stored
(``axes="stored"``). Sizes are checked before anything is allocated: the GLB header and chunk lengths against
the file, every accessor against its buffer view and every view against the ``BIN`` chunk, and the Gaussian count
against :mod:`exgs_core.limits`. Errors are :class:`~exgs_core.errors.FormatError` naming the file and the JSON
field (``accessors[3].count``, ...). Sparse accessors, external or data-URI buffers and compression extensions
(``EXT_meshopt_compression``, ``KHR_draco_mesh_compression``, ``KHR_gaussian_splatting_compression_*``) are refused
with a FormatError that says so.

What other tools do
-------------------
PlayCanvas splat-transform 3.10.2 writes ``.glb`` in the layout above (same attributes, order, views, axes and SH
signs; SCALE, OPACITY and SH bytes are identical to ours) except that it puts the sRGB, not linear, colour into
``COLOR_0`` and copies ROTATION without normalising it (the spec says unit quaternions); it cannot read ``.glb``.
three.js's ``GLTFGaussianSplatLoaderExtension`` requires ``mode`` 0, ``kernel`` ``"ellipse"``, a ``colorSpace``,
the five required attributes and SH degrees without gaps, and applies no axis change (glTF and three.js are both
+Y up); the PlayCanvas engine loads such ``.glb`` files as splats in the same +Y-up frame as splat-transform
writes them.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from .. import limits
from ..conventions import SH_C0, logit, sh_coeff_count
from ..errors import FormatError
from ..scene import GaussianScene
from .atomic import atomic_write, read_bytes
from .writing import WriteReport, prepare

__all__ = [
    "encode_glb",
    "write_glb",
    "read_glb",
    "decode_glb",
    "ply_to_gltf_axes",
    "gltf_to_ply_axes",
    "EXTENSION",
    "SPEC_REVISION",
]

EXTENSION = "KHR_gaussian_splatting"
SPEC_REVISION = "KHR_gaussian_splatting Release Candidate, KhronosGroup/glTF commit 63770cc (2026-04-15)"

GLB_MAGIC = 0x46546C67  # b"glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A  # b"JSON"
CHUNK_BIN = 0x004E4942  # b"BIN\0"
MAX_JSON_BYTES = 64 << 20  # a splat glTF's JSON is a few KB; refuse absurd ones before parsing
MAX_NODES_DEPTH = 64

FLOAT, BYTE, UBYTE, SHORT, USHORT, UINT = 5126, 5120, 5121, 5122, 5123, 5125
_COMPONENT = {BYTE: "i1", UBYTE: "u1", SHORT: "<i2", USHORT: "<u2", UINT: "<u4", FLOAT: "<f4"}
_NORM_DIV = {BYTE: 127.0, UBYTE: 255.0, SHORT: 32767.0, USHORT: 65535.0}
_TYPE_SIZE = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
ARRAY_BUFFER = 34962

LOG_SCALE_MIN, LOG_SCALE_MAX = -87.0, 88.0  # linear float32 scale stays a normal positive number

#: SH rest coefficient signs (3DGS order, degrees 1..3) under the 180-degree rotation about z: (-1)^m
_SH_SIGN_Z180 = np.array([(-1.0) ** (n - lv) for lv in (1, 2, 3) for n in range(2 * lv + 1)], np.float32)

_PREFIX = EXTENSION + ":"
_UNSUPPORTED_EXT = ("EXT_meshopt_compression", "KHR_meshopt_compression", "KHR_draco_mesh_compression")
_SUPPORTED_REQUIRED = {EXTENSION, "KHR_mesh_quantization"}

# (semantic, accessor type, allowed component types (normalized?)) from the spec's attribute table
_ATTRS = {
    "POSITION": ("VEC3", None),  # "inherited from the glTF specification" (float; KHR_mesh_quantization ints)
    _PREFIX + "ROTATION": ("VEC4", {(FLOAT, False), (BYTE, True), (SHORT, True)}),
    _PREFIX + "SCALE": ("VEC3", {(FLOAT, False), (UBYTE, False), (UBYTE, True), (USHORT, False), (USHORT, True)}),
    _PREFIX + "OPACITY": ("SCALAR", {(FLOAT, False), (UBYTE, True), (USHORT, True)}),
}


# --------------------------------------------------------------------------- axes


def ply_to_gltf_axes(scene: GaussianScene) -> GaussianScene:
    """A copy of ``scene`` (3DGS PLY axes, right-down-forward) in glTF axes (left-up-forward): rotated 180 degrees
    about z (see the module docstring). Its own inverse up to the quaternions' sign (:func:`gltf_to_ply_axes`
    undoes it exactly)."""
    out = scene.copy()
    out.means *= np.array([-1, -1, 1], np.float32)
    w, x, y, z = scene.quats.T
    out.quats = np.stack([-z, -y, x, w], axis=1)  # k * q
    k = out.sh.shape[1]
    if k > 1:
        out.sh[:, 1:] *= _SH_SIGN_Z180[: k - 1, None]
    if out.up is not None:
        out.up = (-out.up[0], -out.up[1], out.up[2])
    return out


def gltf_to_ply_axes(scene: GaussianScene) -> GaussianScene:
    """A copy of ``scene`` (glTF axes) in 3DGS PLY axes: the inverse of :func:`ply_to_gltf_axes` (quaternion
    ``-k q``, so a round trip gives back the same quaternion, not its negative)."""
    out = scene.copy()
    out.means *= np.array([-1, -1, 1], np.float32)
    w, x, y, z = scene.quats.T
    out.quats = np.stack([z, y, -x, -w], axis=1)  # -k * q
    k = out.sh.shape[1]
    if k > 1:
        out.sh[:, 1:] *= _SH_SIGN_Z180[: k - 1, None]
    if out.up is not None:
        out.up = (-out.up[0], -out.up[1], out.up[2])
    return out


# --------------------------------------------------------------------------- writing


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def encode_glb(scene: GaussianScene, *, sh_degree: int | None = None) -> tuple[bytes, WriteReport]:
    """Encode ``scene`` as a GLB with ``KHR_gaussian_splatting`` in memory (see the module docstring).

    Args:
        scene: the Gaussians, in 3DGS PLY axes (a scene in SPZ's stored axes is converted first, with a note);
            they are written in glTF axes.
        sh_degree: cut the SH to this degree (0..3; never raised). Default: the scene's degree.

    Returns:
        (file bytes, :class:`WriteReport` with ``bytes``, ``gaussians``, clamp counts and notes).

    Raises:
        SceneError: NaN/Inf values or zero-norm rotations (:func:`exgs_core.io.writing.prepare`; sanitize first).
        ValueError: ``sh_degree`` outside 0..3.
    """
    from .spz import to_ply_axes

    clean, report = prepare(scene, None, "glb")
    s = to_ply_axes(clean)
    if s is not clean:
        report.notes.append("converted from SPZ's right-up-back axes to 3DGS PLY's right-down-forward axes")
    degree = s.sh_degree if sh_degree is None else min(int(sh_degree), s.sh_degree)
    sh_coeff_count(degree)  # ValueError outside 0..3
    if degree < s.sh_degree:
        report.notes.append(f"SH cut from degree {s.sh_degree} to {degree}")
        s = s.with_sh_degree(degree)
    if s.extras:
        report.notes.append(f"dropped per-Gaussian extras {sorted(s.extras)} (no KHR_gaussian_splatting attribute)")
    report.notes.append("axes: 3DGS PLY right-down-forward -> glTF left-up-forward (180 degrees about z)")
    g = ply_to_gltf_axes(s)
    n = g.n

    asset = {"version": "2.0", "generator": "exgs"}
    if n == 0:  # glTF accessors need count >= 1: an empty scene is a glTF without meshes
        gltf: dict = {"asset": asset, "scene": 0, "scenes": [{}]}
        return _finish(_pack_glb(gltf, b""), report, n)

    segments: list[tuple[str, np.ndarray, int, str, dict]] = []  # name, data, componentType, type, extra
    pos = g.means.astype("<f4")
    bounds = {
        "min": [float(v) for v in pos.min(axis=0)],
        "max": [float(v) for v in pos.max(axis=0)],
    }
    segments.append(("POSITION", pos, FLOAT, "VEC3", bounds))
    rgb = np.clip(g.sh[:, 0, :].astype(np.float64) * SH_C0 + 0.5, 0.0, 1.0)
    alpha = 1.0 / (1.0 + np.exp(-g.opacity_logits.astype(np.float64)))  # float64, then float32 (as splat-transform)
    col = np.concatenate([_srgb_to_linear(rgb), alpha[:, None]], axis=1)
    segments.append(("COLOR_0", np.rint(col * 255.0).astype(np.uint8), UBYTE, "VEC4", {"normalized": True}))
    q = g.quats.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)  # prepare() refused zero norms
    segments.append((_PREFIX + "ROTATION", q[:, [1, 2, 3, 0]].astype("<f4"), FLOAT, "VEC4", {}))
    ls = report.clamp("log_scales", g.log_scales.astype(np.float64), LOG_SCALE_MIN, LOG_SCALE_MAX)
    segments.append((_PREFIX + "SCALE", np.exp(ls).astype("<f4"), FLOAT, "VEC3", {}))
    segments.append((_PREFIX + "OPACITY", alpha.astype("<f4"), FLOAT, "SCALAR", {}))
    segments.append((_PREFIX + "SH_DEGREE_0_COEF_0", g.sh[:, 0, :].astype("<f4"), FLOAT, "VEC3", {}))
    for lv in range(1, degree + 1):
        for c in range(2 * lv + 1):
            k = lv * lv + c  # index into sh[:, k, :]
            segments.append((f"{_PREFIX}SH_DEGREE_{lv}_COEF_{c}", g.sh[:, k, :].astype("<f4"), FLOAT, "VEC3", {}))

    buffer_views, accessors, attributes, blobs = [], [], {}, []
    offset = 0
    for i, (name, arr, ctype, atype, extra) in enumerate(segments):
        raw = np.ascontiguousarray(arr).tobytes()
        buffer_views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw), "target": ARRAY_BUFFER})
        acc = {"bufferView": i, "byteOffset": 0, "componentType": ctype, "count": n, "type": atype}
        acc.update(extra)
        accessors.append(acc)
        attributes[name] = i
        blobs.append(raw + b"\0" * (_align4(len(raw)) - len(raw)))
        offset += _align4(len(raw))
    primitive: dict = {
        "attributes": attributes,
        "mode": 0,
        "extensions": {
            EXTENSION: {
                "kernel": "ellipse",
                "colorSpace": "srgb_rec709_display",
                "sortingMethod": "cameraDistance",
                "projection": "perspective",
            }
        },
    }
    if g.antialiased:  # no field in the spec; kept for exgs (and ignored by others)
        primitive["extras"] = {"exgs": {"antialiased": True}}
    gltf = {
        "asset": asset,
        "extensionsUsed": [EXTENSION],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "buffers": [{"byteLength": offset}],
        "bufferViews": buffer_views,
        "accessors": accessors,
        "meshes": [{"primitives": [primitive]}],
    }
    return _finish(_pack_glb(gltf, b"".join(blobs)), report, n)


def _finish(data: bytes, report: WriteReport, n: int) -> tuple[bytes, WriteReport]:
    report.bytes, report.gaussians = len(data), n
    return data, report


def _pack_glb(gltf: dict, binary: bytes) -> bytes:
    js = json.dumps(gltf, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    js += b" " * (_align4(len(js)) - len(js))
    parts = [struct.pack("<II", len(js), CHUNK_JSON), js]
    if binary:
        binary += b"\0" * (_align4(len(binary)) - len(binary))
        parts += [struct.pack("<II", len(binary), CHUNK_BIN), binary]
    body = b"".join(parts)
    return struct.pack("<III", GLB_MAGIC, GLB_VERSION, 12 + len(body)) + body


def write_glb(
    scene: GaussianScene, path: str | os.PathLike, *, sanitize: bool = False, sh_degree: int | None = None
) -> WriteReport:
    """Write ``scene`` as a glTF 2.0 binary with ``KHR_gaussian_splatting``, atomically (temp file, then rename).

    Args:
        scene: the Gaussians (3DGS PLY axes; written in glTF axes, see the module docstring).
        path: the output file (``.glb``).
        sanitize: write the scene with NaN/Inf Gaussians dropped and zero rotations set to identity (listed in
            the report's notes) instead of refusing it.
        sh_degree: cut the SH to this degree (never raised).

    Returns:
        :class:`WriteReport` (format ``"glb"``).

    Raises:
        SceneError: NaN/Inf or zero rotations and not ``sanitize``. OutputError: ``path`` cannot be written.
    """
    clean, report = prepare(scene, path, "glb", sanitize=sanitize)
    data, enc = encode_glb(clean, sh_degree=sh_degree)
    with atomic_write(path) as f:
        f.write(data)
    enc.path = os.fspath(path)
    enc.notes = report.notes + enc.notes
    return enc


# --------------------------------------------------------------------------- reading


class _Doc:
    """The parsed glTF JSON and BIN chunk of one file, with checked accessors."""

    def __init__(self, gltf: dict, binary: memoryview | None, path, file_bytes: int, max_gaussians):
        self.gltf, self.bin, self.path = gltf, binary, path
        self.file_bytes, self.max_gaussians = file_bytes, max_gaussians

    def err(self, msg: str, field: str | None = None, offset: int | None = None) -> FormatError:
        return FormatError(msg, self.path, field=field, offset=offset)

    def array(self, key: str) -> list:
        v = self.gltf.get(key, [])
        if not isinstance(v, list):
            raise self.err(f"expected a JSON array, got {type(v).__name__}", key)
        return v

    def item(self, key: str, i, what: str) -> dict:
        arr = self.array(key)
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(arr):
            raise self.err(f"{what} index {i!r} is not one of the {len(arr)} {key}", what)
        v = arr[i]
        if not isinstance(v, dict):
            raise self.err(f"expected a JSON object, got {type(v).__name__}", f"{key}[{i}]")
        return v

    def uint(self, obj: dict, name: str, field: str, default=None, lo: int = 0) -> int:
        v = obj.get(name, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise self.err(f"expected an integer >= {lo}, got {v!r}", f"{field}.{name}")
        return v

    def accessor(self, index, semantic: str, atype: str, allowed, count: int | None) -> np.ndarray:
        """float64 [count, size] values of accessor ``index`` (normalized integers scaled as glTF says)."""
        field = f"accessors[{index}]"
        acc = self.item("accessors", index, f"attributes.{semantic}")
        if acc.get("type") != atype:
            raise self.err(f"{semantic} needs type {atype}, the accessor has {acc.get('type')!r}", f"{field}.type")
        ctype = acc.get("componentType")
        normalized = acc.get("normalized", False) is True
        if isinstance(ctype, bool) or not isinstance(ctype, int) or ctype not in _COMPONENT:
            raise self.err(f"unknown componentType {ctype!r}", f"{field}.componentType")
        if allowed is not None and (ctype, normalized and ctype != FLOAT) not in allowed:
            raise self.err(
                f"{semantic} does not allow componentType {ctype}{' normalized' if normalized else ''} "
                f"({EXTENSION} allows {sorted(allowed)})",
                f"{field}.componentType",
            )
        n = self.uint(acc, "count", field, lo=1)
        if count is not None and n != count:
            raise self.err(f"{semantic} has {n} values, POSITION has {count}", f"{field}.count")
        if "sparse" in acc:
            raise self.err("sparse accessors are not supported", f"{field}.sparse")
        width = _TYPE_SIZE[atype]
        limits.check_count(
            n,
            file_bytes=self.file_bytes,
            need_bytes=n * width * 8 * 2,
            path=self.path,
            field=f"{field}.count",
            max_gaussians=self.max_gaussians,
        )
        dt = np.dtype(_COMPONENT[ctype])
        if "bufferView" not in acc:  # glTF: an accessor without a buffer view is all zeros
            return np.zeros((n, width), np.float64)
        view_i = acc["bufferView"]
        view = self.item("bufferViews", view_i, f"{field}.bufferView")
        vfield = f"bufferViews[{view_i}]"
        buf_i = view.get("buffer")
        buf = self.item("buffers", buf_i, f"{vfield}.buffer")
        if "uri" in buf or buf_i != 0 or self.bin is None:
            raise self.err(
                "only the GLB's own BIN chunk is supported as a buffer (no external or data: URIs)",
                f"buffers[{buf_i}]",
            )
        v_off = self.uint(view, "byteOffset", vfield, default=0)
        v_len = self.uint(view, "byteLength", vfield, lo=1)
        if v_off + v_len > len(self.bin):
            raise self.err(
                f"buffer view ends at byte {v_off + v_len} of the BIN chunk, which has {len(self.bin)} bytes",
                vfield,
            )
        elem = dt.itemsize * width
        stride = self.uint(view, "byteStride", vfield, default=elem, lo=elem)
        a_off = self.uint(acc, "byteOffset", field, default=0)
        end = a_off + stride * (n - 1) + elem
        if end > v_len:
            raise self.err(f"accessor needs {end} bytes of its buffer view, which has {v_len}", field)
        raw = np.ndarray(
            (n, width), dtype=dt, buffer=self.bin, offset=v_off + a_off, strides=(stride, dt.itemsize)
        ).astype(np.float64)
        if normalized and ctype in _NORM_DIV:
            raw = np.maximum(raw / _NORM_DIV[ctype], -1.0)
        return raw


def _parse_glb(data: bytes, path) -> tuple[dict, memoryview | None, list[str]]:
    notes = []
    if len(data) < 12:
        raise FormatError(f"too short for a GLB header ({len(data)} bytes, need 12)", path, field="header")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC:
        raise FormatError(f"not a GLB file (starts {data[:4]!r}, expected b'glTF')", path, field="magic", offset=0)
    if version != GLB_VERSION:
        raise FormatError(f"GLB version {version} is not supported (expected 2)", path, field="version", offset=4)
    if length > len(data):
        raise FormatError(
            f"truncated: the header declares {length} bytes, the file has {len(data)}", path, field="length", offset=8
        )
    if length < len(data):
        notes.append(f"glb: ignored {len(data) - length} bytes after the declared length")
    off, chunks = 12, []
    while off < length:
        if off + 8 > length:
            raise FormatError("truncated chunk header", path, field="chunk", offset=off)
        clen, ctype = struct.unpack_from("<II", data, off)
        if off + 8 + clen > length:
            raise FormatError(
                f"chunk of {clen} bytes at byte {off} runs past the end ({length} bytes)",
                path,
                field="chunk",
                offset=off,
            )
        chunks.append((ctype, off + 8, clen))
        off += 8 + clen
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise FormatError("the first chunk is not the JSON chunk", path, field="chunk", offset=12)
    _, jstart, jlen = chunks[0]
    if jlen > MAX_JSON_BYTES:
        raise FormatError(f"JSON chunk of {jlen:,} bytes exceeds {MAX_JSON_BYTES:,}", path, field="JSON", offset=12)
    try:
        gltf = json.loads(data[jstart : jstart + jlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"JSON chunk is not valid JSON: {e}", path, field="JSON", offset=jstart) from None
    if not isinstance(gltf, dict):
        raise FormatError("JSON chunk is not a JSON object", path, field="JSON", offset=jstart)
    binary = None
    if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN:
        binary = memoryview(data)[chunks[1][1] : chunks[1][1] + chunks[1][2]]
    return gltf, binary, notes


def _node_matrix(doc: _Doc, node: dict, field: str) -> np.ndarray:
    """4x4 float64 local matrix of a node (``matrix`` column-major, or translation / rotation xyzw / scale)."""

    def nums(name: str, k: int, default) -> np.ndarray:
        v = node.get(name, default)
        if not (isinstance(v, list) and len(v) == k and all(isinstance(x, (int, float)) for x in v)):
            raise doc.err(f"expected {k} numbers", f"{field}.{name}")
        a = np.asarray(v, np.float64)
        if not np.isfinite(a).all():
            raise doc.err("non-finite value", f"{field}.{name}")
        return a

    if "matrix" in node:
        return nums("matrix", 16, None).reshape(4, 4).T
    t = nums("translation", 3, [0, 0, 0])
    x, y, z, w = nums("rotation", 4, [0, 0, 0, 1])
    s = nums("scale", 3, [1, 1, 1])
    from ..sh_rotation import quat_to_matrix

    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(np.array([[w, x, y, z]]))[0] * s[None, :]
    m[:3, 3] = t
    return m


def _splat_primitives(doc: _Doc) -> list[tuple[np.ndarray, int, int, dict]]:
    """(global matrix, mesh index, primitive index, primitive) of every splat primitive in the default scene."""
    scenes = doc.array("scenes")
    if scenes:
        si = doc.gltf.get("scene", 0)
        roots = doc.item("scenes", si, "scene").get("nodes", [])
        if not isinstance(roots, list):
            raise doc.err("expected a JSON array", f"scenes[{si}].nodes")
    else:  # no scenes: every node that is nobody's child
        nodes = doc.array("nodes")
        children = {c for nd in nodes if isinstance(nd, dict) for c in nd.get("children", []) if isinstance(c, int)}
        roots = [i for i in range(len(nodes)) if i not in children]
    out: list[tuple[np.ndarray, int, int, dict]] = []
    visited: set[int] = set()
    stack = [(r, np.eye(4), 0) for r in reversed(roots)]
    while stack:
        ni, parent, depth = stack.pop()
        node = doc.item("nodes", ni, "node")
        if ni in visited:
            raise doc.err("node reached twice (a cycle or a node shared by two parents)", f"nodes[{ni}]")
        if depth > MAX_NODES_DEPTH:
            raise doc.err(f"node hierarchy deeper than {MAX_NODES_DEPTH}", f"nodes[{ni}]")
        visited.add(ni)
        m = parent @ _node_matrix(doc, node, f"nodes[{ni}]")
        if "mesh" in node:
            mi = node["mesh"]
            mesh = doc.item("meshes", mi, f"nodes[{ni}].mesh")
            prims = mesh.get("primitives", [])
            if not isinstance(prims, list):
                raise doc.err("expected a JSON array", f"meshes[{mi}].primitives")
            for pi, prim in enumerate(prims):
                if isinstance(prim, dict) and isinstance(prim.get("extensions"), dict):
                    if EXTENSION in prim["extensions"]:
                        out.append((m, mi, pi, prim))
        kids = node.get("children", [])
        if not isinstance(kids, list):
            raise doc.err("expected a JSON array", f"nodes[{ni}].children")
        stack.extend((c, m, depth + 1) for c in reversed(kids))
    return out


def _decode_primitive(doc: _Doc, prim: dict, field: str, notes: list[str]) -> GaussianScene:
    attrs = prim.get("attributes")
    if not isinstance(attrs, dict):
        raise doc.err("primitive has no attributes object", f"{field}.attributes")
    for name in (*_ATTRS, _PREFIX + "SH_DEGREE_0_COEF_0"):
        if name not in attrs:
            raise doc.err(f"required attribute {name} is missing", f"{field}.attributes.{name}")
    ext = prim["extensions"][EXTENSION]
    if not isinstance(ext, dict):
        raise doc.err("expected a JSON object", f"{field}.extensions.{EXTENSION}")
    kernel, cs = ext.get("kernel"), ext.get("colorSpace")
    if kernel != "ellipse":
        notes.append(f"glb: {field}: kernel {kernel!r} is not 'ellipse'; read as ellipse, as the spec says to")
    if cs not in ("srgb_rec709_display", None):
        notes.append(f"glb: {field}: colorSpace {cs!r} kept as is (exgs renders SH colour as display sRGB)")
    if prim.get("mode", 4) != 0:
        notes.append(f"glb: {field}: mode {prim.get('mode', 4)!r} is not POINTS (0); read as points")
    pos = doc.accessor(attrs["POSITION"], "POSITION", "VEC3", None, None)
    n = pos.shape[0]
    rot = doc.accessor(attrs[_PREFIX + "ROTATION"], "ROTATION", "VEC4", _ATTRS[_PREFIX + "ROTATION"][1], n)
    scale = doc.accessor(attrs[_PREFIX + "SCALE"], "SCALE", "VEC3", _ATTRS[_PREFIX + "SCALE"][1], n)
    opa = doc.accessor(attrs[_PREFIX + "OPACITY"], "OPACITY", "SCALAR", _ATTRS[_PREFIX + "OPACITY"][1], n)[:, 0]
    flt = {(FLOAT, False)}
    degree = 0
    for lv in (1, 2, 3):
        present = [f"{_PREFIX}SH_DEGREE_{lv}_COEF_{c}" in attrs for c in range(2 * lv + 1)]
        if all(present) and degree == lv - 1:
            degree = lv
        elif any(present):
            raise doc.err(
                f"SH degree {lv} is only partly defined or a lower degree is missing (the spec forbids it)",
                f"{field}.attributes.{_PREFIX}SH_DEGREE_{lv}_COEF_*",
            )
    sh = np.zeros((n, sh_coeff_count(degree), 3), np.float32)
    for lv in range(degree + 1):
        for c in range(2 * lv + 1):
            name = f"{_PREFIX}SH_DEGREE_{lv}_COEF_{c}"
            sh[:, lv * lv + c] = doc.accessor(attrs[name], name, "VEC3", flt, n)
    bad = ~(scale > 0)
    if bad.any():
        notes.append(
            f"glb: {int(bad.any(axis=1).sum())} Gaussian(s) with a scale <= 0: log gives -inf/NaN, kept as is "
            "(see scene.validate())"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_scales = np.log(scale).astype(np.float32)
    outside = int(((opa < 0) | (opa > 1)).sum())
    if outside:
        notes.append(f"glb: {outside} opacity value(s) outside [0, 1] (invalid per the spec) clipped")
    extras = prim.get("extras")
    aa = isinstance(extras, dict) and isinstance(extras.get("exgs"), dict) and extras["exgs"].get("antialiased") is True
    return GaussianScene(
        pos.astype(np.float32),
        rot[:, [3, 0, 1, 2]].astype(np.float32),  # glTF x, y, z, w -> w, x, y, z
        log_scales,
        logit(opa),
        sh,
        antialiased=aa,
    )


def decode_glb(
    data: bytes, path: str | os.PathLike | None = None, *, axes: str = "rdf", max_gaussians: int | None = None
) -> GaussianScene:
    """Decode the bytes of a GLB holding ``KHR_gaussian_splatting`` primitives (see :func:`read_glb`).

    Raises:
        FormatError: naming the file and the GLB / JSON field at fault; LimitError (a FormatError) for counts
            beyond :mod:`exgs_core.limits`.
        ValueError: ``axes`` is neither ``"rdf"`` nor ``"stored"``.
    """
    if axes not in ("rdf", "stored"):
        raise ValueError(f"axes must be 'rdf' or 'stored', got {axes!r}")
    limits.check_argument(max_gaussians)
    gltf, binary, notes = _parse_glb(data, path)
    doc = _Doc(gltf, binary, path, len(data), max_gaussians)
    required, used_list = doc.array("extensionsRequired"), doc.array("extensionsUsed")
    for key, names in (("extensionsRequired", required), ("extensionsUsed", used_list)):
        if not all(isinstance(e, str) for e in names):
            raise doc.err("expected an array of extension names (strings)", key)
    used = set(used_list) | set(required)
    for e in required:
        if e not in _SUPPORTED_REQUIRED:
            raise doc.err(
                f"the file requires extension {e!r}, which this reader does not support", "extensionsRequired"
            )
    for e in sorted(used):
        if e in _UNSUPPORTED_EXT or e.startswith(EXTENSION + "_compression"):
            raise doc.err(f"extension {e!r} (compressed data) is not supported", "extensionsUsed")
    prims = _splat_primitives(doc)
    if not prims and doc.array("meshes"):
        raise doc.err(f"no mesh primitive in the default scene has the {EXTENSION} extension", "meshes")
    if not prims:
        notes.append("glb: no meshes; 0 Gaussians")
    parts = []
    for m, mi, pi, prim in prims:
        field = f"meshes[{mi}].primitives[{pi}]"
        part = _decode_primitive(doc, prim, field, notes)
        if not np.allclose(m, np.eye(4), atol=1e-12, rtol=0):
            from ..sh_rotation import transform_scene

            try:
                part = transform_scene(part, m)
            except ValueError as e:
                raise doc.err(f"node transform cannot be applied: {e}", field) from None
            notes.append(f"glb: applied the node transform of {field}")
        parts.append(part)
    scene = _concat(parts)
    asset = gltf.get("asset")
    if not isinstance(asset, dict):
        asset = {}
    meta = {
        "format": "glb",
        "notes": notes,
        "gltf_generator": asset.get("generator"),
        "coordinate_system": "glTF (left-up-forward: +Y up, +Z forward), as stored",
    }
    if path is not None:
        meta["path"] = os.fspath(path)
    scene.meta = meta
    scene.up = (0.0, 1.0, 0.0)
    if axes == "rdf":
        scene = gltf_to_ply_axes(scene)
        scene.meta["coordinate_system"] = "RDF (converted from glTF's left-up-forward, 180 degrees about z)"
    return scene


def _concat(parts: list[GaussianScene]) -> GaussianScene:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return GaussianScene.empty(0)
    k = max(p.sh.shape[1] for p in parts)
    sh = np.zeros((sum(p.n for p in parts), k, 3), np.float32)
    o = 0
    for p in parts:
        sh[o : o + p.n, : p.sh.shape[1]] = p.sh
        o += p.n
    return GaussianScene(
        np.concatenate([p.means for p in parts]),
        np.concatenate([p.quats for p in parts]),
        np.concatenate([p.log_scales for p in parts]),
        np.concatenate([p.opacity_logits for p in parts]),
        sh,
        antialiased=all(p.antialiased for p in parts),
    )


def read_glb(path: str | os.PathLike, *, axes: str = "rdf", max_gaussians: int | None = None) -> GaussianScene:
    """Read a glTF 2.0 binary holding ``KHR_gaussian_splatting`` primitives into a :class:`GaussianScene`.

    Args:
        path: a ``.glb`` file.
        axes: ``"rdf"`` (default) converts glTF's left-up-forward axes to 3DGS PLY's right-down-forward (the
            inverse of the writer's conversion); ``"stored"`` keeps glTF axes.
        max_gaussians: overrides the :mod:`exgs_core.limits` count limit.

    Returns:
        Scene with means float32 [N, 3], quats float32 [N, 4] (w, x, y, z), log_scales float32 [N, 3] = log of
        the linear SCALE (a scale of 0 gives -inf, kept with a note), opacity_logits float32 [N] = logit of
        OPACITY clipped to [1e-6, 1 - 1e-6], sh float32 [N, K, 3] (K from the SH degrees present). Several splat
        primitives are concatenated (their node transforms applied). ``meta["format"] = "glb"``,
        ``meta["coordinate_system"]`` says which axes; ``up`` is glTF's +Y in the returned axes.

    Raises:
        FormatError: naming the file and the field at fault (see the module docstring).
    """
    from . import check_input_path

    check_input_path(path)
    data = read_bytes(path)
    try:
        return decode_glb(data, path, axes=axes, max_gaussians=max_gaussians)
    except FormatError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, OverflowError, MemoryError) as e:
        if isinstance(e, ValueError) and str(e).startswith("axes must be"):
            raise
        raise FormatError(f"cannot decode GLB: {type(e).__name__}: {e}", path) from e
