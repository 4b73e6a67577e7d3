"""Reader (versions 1-4) and writer (versions 3 and 4) for Niantic SPZ files, numpy-vectorised.

Layouts (all integers little-endian)
------------------------------------
Versions 1-3 ("legacy"): the whole file is one gzip stream (a raw, un-gzipped payload is also accepted, as
PlayCanvas splat-transform does) holding a 16-byte header

    u32 magic 0x5053474e ("NGSP")  u32 version  u32 numPoints
    u8 shDegree  u8 fractionalBits  u8 flags  u8 reserved

followed by the attribute blocks, one after the other (structure of arrays):

    positions  N x 3 x 24-bit signed fixed point (v1: N x 3 x float16)
    alphas     N x u8            sigmoid(opacity) * 255
    colors     N x 3 x u8        f_dc * (0.15 * 255) + 127.5   (SPZ's own colour scale, not SH_C0)
    scales     N x 3 x u8        (log scale + 10) * 16
    rotations  v1/v2: N x 3 x u8 (x, y, z of the unit quaternion with w >= 0, (q + 1) * 127.5)
               v3+:   N x u32    smallest three: bits 30-31 index of the largest component (in x, y, z, w
                                 order), then three 10-bit fields (9-bit magnitude / (1/sqrt 2) * 511 and a sign
                                 bit), the field of the highest remaining component in the lowest bits
    sh         N x (K - 1) x 3 x u8   (v - 128) / 128; coefficient-major with RGB inner (sh1n1_r, sh1n1_g,
                                 sh1n1_b, sh10_r, ...), i.e. already our ``sh[:, 1:, :]`` layout
    [extension records when flags & 0x2; kept as bytes, not interpreted]

Version 4: a plaintext 32-byte header

    u32 magic  u32 version(4)  u32 numPoints  u8 shDegree  u8 fractionalBits  u8 flags  u8 numStreams
    u32 tocByteOffset  u8 reserved[12]

then optional extension records (flags & 0x2) up to ``tocByteOffset``, a table of contents of
``numStreams`` x (u64 compressedSize, u64 uncompressedSize), then one zstd frame per attribute stream in the
order above (positions, alphas, colors, scales, rotations[, sh]); the SH stream is absent when shDegree = 0.

Flags: 0x1 = trained with antialiasing (mip-splatting) -> ``scene.antialiased = True``;
0x2 = extension records present (skipped, noted in ``scene.meta["notes"]``).

Coordinate system
-----------------
By default values are returned exactly as stored, with **no axis conversion**, because that is what the
oracle does: PlayCanvas splat-transform 3.7.0, which made the reference decodes in
``../shared/data/reference-ply`` (``*.from-spz.ply``), decodes SPZ raw (CoordinateSystem UNSPECIFIED) and writes
the stored values to PLY unchanged (our positions equal its x, y, z bit for bit).

The SPZ specification, however, says a file is in RUB (OpenGL: x right, y up, z back) unless the
``SPZ_ADOBE_coordinate_system`` extension says otherwise, while 3DGS PLY is RDF (y down, z forward), and the
data agree with the spec: the biker scene shipped both as ``playcanvas_biker.spz`` and as
``playcanvas_biker.compressed.ply`` matches point for point (every centre within 0.2 mm, quaternions
|dot| > 0.999) only after y -> -y, z -> -z. So a raw SPZ decode is upside down relative to PLY scenes.
``read_spz(path, axes="rdf")`` (or :func:`flip_yz` on a decoded scene) converts RUB -> RDF: a 180 degree rotation
about x, so positions (x, -y, -z), quaternions (w, x, -y, -z) and the SH sign pattern of the Niantic
coordinate converter (odd functions of y or z change sign). ``scene.meta["coordinate_system"]`` says which.

Decoding (same arithmetic as the Niantic reference and splat-transform; float64, then float32):
``means = fixed24 / 2**fractionalBits``; ``log_scales = b / 16 - 10``; ``opacity_logits =
logit(clip(a / 255, 1e-6, 1 - 1e-6))``; ``dc = (c / 255 - 0.5) / 0.15``; ``sh_rest = (b - 128) / 128``;
quaternions are reordered from SPZ's x, y, z, w to our w, x, y, z.

Errors: every problem (truncation, wrong magic, unknown version, shDegree > 3, a point count the payload
cannot hold, corrupt gzip/zstd, a TOC that disagrees with the header) raises
:class:`~exgs_core.errors.FormatError` naming the file and the field. Sizes are checked before anything
proportional to numPoints is allocated, and decompression is bounded by the size the header implies.

Limits: besides what the payload can physically hold (deflate ~1032:1, a zstd RLE block 32768:1), numPoints must
pass the limits of :mod:`exgs_core.limits`, checked right after the header and before decompressing: at most
50,000,000 points (``EXGS_MAX_GAUSSIANS``, ``read_spz(max_gaussians=...)``), at most max(1,048,576, 16 per byte
of the file) (``EXGS_MAX_GAUSSIANS_PER_BYTE``; real SPZ files hold 14-25 bytes per point), and a decode that fits in
the memory this process may use (:func:`decode_memory_estimate` against :func:`exgs_core._machine.memory_limit`:
half the RAM, RLIMIT_AS and cgroup limits). A refusal is a :class:`~exgs_core.errors.LimitError` (field
``numPoints``).

Writing
-------
:func:`encode_spz` / :func:`write_spz` produce what the Niantic library's ``saveSpz`` produces (nianticlabs/spz
``load-spz.cc``, ``packGaussians``; checked byte for byte against its WebAssembly build inside splat-transform 3.10.2,
v4 and v3): the same header (version, numPoints, shDegree, fractionalBits, flags 0x1 = ``scene.antialiased``,
numStreams, tocByteOffset 32, reserved zero), the same float32 arithmetic and round-half-away-from-zero, the same
compression settings (v4: one zstd frame per stream at level 12, content size recorded, no checksum; v3: deflate
level 6, memLevel 9, zlib's gzip header with mtime 0). Bytes are deterministic. No extension records are written.
Two deliberate differences: values outside a field's range are clamped and counted in
:attr:`WriteReport.clamped <exgs_core.io.writing.WriteReport>` (the reference wraps far positions around the
24-bit range), and a quaternion component's sign is its sign bit (-0.0 counts as negative; the reference tests
``< 0``; both decode to the same value), which makes decode -> encode reproduce the stored rotation bits.

Quantisation (decoded value minus scene value, up to float32 rounding of ~1e-6; the bound holds for every value not
counted as clamped):

================  ================================  ==================  ====================================
field             stored as                         range               max error
================  ================================  ==================  ====================================
means             24-bit signed fixed point,        +-2**(23 - f)       2**-(f + 1) (1.2e-4 at f = 12)
                  f = fractionalBits (default 12)   (+-2048 at f = 12)
opacity           u8 round(sigmoid(logit) * 255)    any logit           1/510 in opacity (the reader keeps
                                                                        it in [1e-6, 1 - 1e-6])
sh_dc             u8 round(dc * 38.25 + 127.5)      +-3.333             1/76.5 = 0.0131
log_scales        u8 round((s + 10) * 16)           [-10, 5.9375]       1/32 = 0.03125
quats             index of the largest abs(q) and   unit (normalised    components 3 * sqrt(1/2) / 1022 =
                  3 x (sign + 9-bit magnitude)      first)              0.0021 (up to sign); angle 0.28 deg
sh_rest, deg 1    code round(128 x) + 128 to the    [-1, 1]             (4 + 0.5) / 128 = 0.0352
                  nearest multiple of 8 (5 bits)
sh_rest, deg 2+   ... of 16 (4 bits)                [-1, 1]             (8 + 0.5) / 128 = 0.0664
================  ================================  ==================  ====================================

``sh1_bits`` / ``sh_rest_bits`` (1..8) change the SH steps: error (2**(7 - bits) + 0.5) / 128. A value is counted as
clamped when its rounded code falls outside the field's codes (so a value beyond the range by less than half a step
is not counted, and is within the bound). ``fractional_bits=None`` (default) writes 12 bits when every centre fits
and otherwise the largest number that holds the farthest centre (a report note says so); an explicit value is used
as given and far centres are clamped.

Axes when writing: SPZ files are RUB (the specification; the Niantic files, PlayCanvas's ``biker.spz``, whose engine
example says "unlike ply files, the spz file stores the splat data in the RUB coordinate system (y-up)"). A scene
whose ``meta["coordinate_system"]`` says it is an SPZ decoded as stored is written as it is (read -> write keeps
the stored values); any other scene is taken to be in 3DGS PLY's RDF axes and turned with :func:`flip_yz` (y, z
of positions, quaternions and the odd SH functions change sign), which is what the Niantic library does when told
``PackOptions.from = RDF``. PlayCanvas splat-transform 3.10.2 does not do this: it writes an SPZ with
``from: UNSPECIFIED``, i.e. the PLY's RDF values as they are, and reads SPZ without conversion, so its SPZ files
of a PLY scene are ours turned 180 degrees about x (and ``splat-transform ours.spz out.ply`` gives RUB values).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .. import limits
from ..conventions import logit, sh_coeff_count
from ..errors import FormatError
from ..scene import GaussianScene
from .atomic import read_bytes
from .writing import WriteReport, prepare

__all__ = [
    "read_spz",
    "encode_spz",
    "write_spz",
    "decode_spz",
    "unpack_spz",
    "pack_spz",
    "flip_yz",
    "to_ply_axes",
    "SpzRaw",
    "SPZ_MAGIC",
    "SPZ_COLOR_SCALE",
    "decode_memory_estimate",
]

SPZ_MAGIC = 0x5053474E  # b"NGSP" little-endian
SPZ_COLOR_SCALE = 0.15  # SPZ quantises f_dc with this scale instead of SH_C0
LEGACY_HEADER_SIZE = 16
NGSP_HEADER_SIZE = 32
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
MAX_SPZ_VERSION = 4
MAX_SH_DEGREE = 3  # SPZ allows 4; our scene model stops at 3

# Bounds on compression ratios, to reject impossible point counts before allocating: deflate cannot exceed
# about 1032:1; a zstd RLE block stores 128 KiB in 4 bytes (32768:1).
_GZIP_MAX_RATIO = 1032
_ZSTD_MAX_RATIO = 32768
# How much data after the last attribute block (legacy extension records) we accept while verifying the CRC.
_MAX_TRAILER = 16 << 20

_CS_STORED = "as stored (SPZ default RUB; not converted, as splat-transform does)"
_CS_RDF = "RDF (converted from the SPZ's RUB by flip_yz)"

_STREAM_NAMES = ("positions", "alphas", "colors", "scales", "rotations", "sh")
_ROWS = 4096  # rows per block when filling the SH array


@dataclass
class SpzRaw:
    """The still-quantised content of an SPZ file (header + per-attribute byte arrays), N = ``num_points``.

    Attributes:
        version: 1..4.
        num_points: N.
        sh_degree: 0..3.
        fractional_bits: fixed-point fraction bits of the positions.
        flags: header flag byte (0x1 antialiased, 0x2 extensions).
        positions: uint8 [N, 9] (three little-endian signed 24-bit ints); v1: uint8 [N, 6] (three float16).
        alphas: uint8 [N].
        colors: uint8 [N, 3].
        scales: uint8 [N, 3].
        rotations: uint8 [N, 3] (v1/v2) or [N, 4] (v3+, one little-endian u32 each).
        sh: uint8 [N, 3 * (K - 1)], K = (sh_degree + 1)^2.
        extensions: the extension records, verbatim (empty when none).
    """

    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    flags: int
    positions: np.ndarray
    alphas: np.ndarray
    colors: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    sh: np.ndarray
    extensions: bytes = b""
    notes: list = field(default_factory=list)

    def __post_init__(self):
        self.alphas = self.alphas.reshape(-1)

    def streams(self) -> list[np.ndarray]:
        """The attribute blocks in file order (SH omitted when empty)."""
        out = [self.positions, self.alphas, self.colors, self.scales, self.rotations]
        if self.sh.size:
            out.append(self.sh)
        return out

    def head(self, m: int) -> SpzRaw:
        """The first ``m`` points (same header otherwise): used to cut small fixtures from real files."""
        m = int(min(max(m, 0), self.num_points))
        return SpzRaw(
            self.version,
            m,
            self.sh_degree,
            self.fractional_bits,
            self.flags,
            self.positions[:m].copy(),
            self.alphas[:m].copy(),
            self.colors[:m].copy(),
            self.scales[:m].copy(),
            self.rotations[:m].copy(),
            self.sh[:m].copy(),
            self.extensions,
            list(self.notes),
        )


def _per_point_sizes(version: int, sh_degree: int) -> list[int]:
    """Bytes per point of each attribute stream, in file order (positions .. sh)."""
    return [6 if version == 1 else 9, 1, 3, 3, 3 if version <= 2 else 4, 3 * (sh_coeff_count(sh_degree) - 1)]


def _err(msg: str, path, field: str | None = None, offset: int | None = None) -> FormatError:
    return FormatError(msg, path, field=field, offset=offset)


def _check_common(version: int, sh_degree: int, path) -> None:
    if not 1 <= version <= MAX_SPZ_VERSION:
        raise _err(f"unsupported SPZ version {version} (this reader knows 1..{MAX_SPZ_VERSION})", path, "version", 4)
    if sh_degree > MAX_SH_DEGREE:
        raise _err(f"unsupported SH degree {sh_degree} (0..{MAX_SH_DEGREE})", path, "shDegree", 12)


def decode_memory_estimate(version: int, n: int, sh_degree: int) -> int:
    """Bytes :func:`read_spz` needs at its peak for ``n`` points, an upper bound of what was measured (1 M points
    of SH degree 0 peak at ~230 MB above the interpreter, degree 3 at ~430 MB): twice the raw payload (decompressed,
    then joined), the float64 temporaries of the dequantisers and the float32 scene."""
    k = sh_coeff_count(sh_degree)
    raw = sum(_per_point_sizes(version, sh_degree))
    return int(n * (2 * raw + 200 + 16 * k))


def _check_count(version: int, n: int, sh_degree: int, file_bytes: int, path, max_gaussians) -> None:
    """The limits of :mod:`exgs_core.limits` on ``numPoints``, before anything of that size is allocated."""
    limits.check_count(
        n,
        file_bytes=file_bytes,
        need_bytes=decode_memory_estimate(version, n, sh_degree),
        path=path,
        field="numPoints",
        offset=8,
        max_gaussians=max_gaussians,
    )


def _split_legacy(payload: bytes | memoryview, version: int, n: int, sh_degree: int, path) -> list[np.ndarray]:
    """Cut the (already decompressed) legacy payload after the 16-byte header into attribute arrays."""
    sizes = _per_point_sizes(version, sh_degree)
    out, off = [], LEGACY_HEADER_SIZE
    need = LEGACY_HEADER_SIZE + n * sum(sizes)
    if len(payload) < need:
        raise _err(
            f"truncated: numPoints={n} needs {need} payload bytes, the file holds {len(payload)}", path, "numPoints"
        )
    for size in sizes:
        a = np.frombuffer(payload, dtype=np.uint8, count=n * size, offset=off).reshape(n, size)
        out.append(a)
        off += n * size
    return out


def _inflate(d, limit: int) -> bytes:
    """Up to ``limit`` more bytes from a zlib decompressobj whose whole input was already given."""
    parts, got = [], 0
    while got < limit and not d.eof:
        chunk = d.decompress(d.unconsumed_tail, min(limit - got, 1 << 26))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _gunzip_legacy(data: bytes, path, max_gaussians=None) -> tuple[bytes, bytes]:
    """Decompress a legacy gzip SPZ, bounded by the size its header implies, after checking numPoints against
    deflate's ratio and the limits (:mod:`exgs_core.limits`). Returns (payload, trailer)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, LEGACY_HEADER_SIZE)
        head += _inflate(d, LEGACY_HEADER_SIZE - len(head))
    except zlib.error as e:
        raise _err(f"corrupt gzip stream: {e}", path, "gzip") from None
    if len(head) < LEGACY_HEADER_SIZE:
        raise _err(
            f"truncated: the gzip stream holds only {len(head)} bytes, less than the 16-byte header", path, "header"
        )
    magic, version, n, sh_degree = struct.unpack_from("<IIIB", head)
    if magic != SPZ_MAGIC:
        raise _err(f"wrong magic {head[:4]!r} inside the gzip stream (expected b'NGSP')", path, "magic", 0)
    _check_common(version, sh_degree, path)
    if version >= 4:
        raise _err(
            "SPZ version 4 must not be gzip-wrapped (v4 is a plaintext header + zstd streams)", path, "version", 4
        )
    need = n * sum(_per_point_sizes(version, sh_degree))
    if need > len(data) * _GZIP_MAX_RATIO + 65536:
        raise _err(
            f"numPoints={n} needs {need} bytes, more than a {len(data)}-byte gzip file can hold", path, "numPoints", 8
        )
    _check_count(version, n, sh_degree, len(data), path, max_gaussians)
    try:
        body = _inflate(d, need)
        if len(body) < need:
            raise _err(
                f"truncated: numPoints={n} needs {need} payload bytes after the header, the gzip stream "
                f"holds {len(body)}",
                path,
                "numPoints",
            )
        # Finish the stream (extension records, then the CRC and length check), bounded.
        trailer = _inflate(d, _MAX_TRAILER + 1)
        if len(trailer) > _MAX_TRAILER:
            raise _err(f"more than {_MAX_TRAILER} bytes after the attribute blocks", path, "extensions")
        if not d.eof:
            raise _err("truncated gzip stream (no end-of-stream marker / CRC)", path, "gzip")
    except zlib.error as e:
        raise _err(f"corrupt gzip stream: {e}", path, "gzip") from None
    return head + body, trailer


def _zstd_bounded(blob: memoryview, expected: int, path, name: str) -> bytes:
    """Decompress one zstd frame that must yield exactly ``expected`` bytes (never more is allocated)."""
    import zstandard

    if expected == 0:
        return b""
    try:
        fcs = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as e:
        raise _err(f"corrupt zstd stream: {e}", path, name) from None
    if fcs >= 0 and fcs != expected:
        raise _err(f"zstd frame declares {fcs} bytes, the TOC/header imply {expected}", path, name)
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=False)
        parts, got = [], 0
        while got <= expected:
            chunk = reader.read(min(expected + 1 - got, 1 << 24))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    except zstandard.ZstdError as e:
        raise _err(f"corrupt zstd stream: {e}", path, name) from None
    if got != expected:
        raise _err(
            f"zstd stream decompresses to {'more than ' if got > expected else ''}{got} bytes, expected {expected}",
            path,
            name,
        )
    return b"".join(parts)


def _unpack_ngsp(data: bytes, path, max_gaussians=None) -> SpzRaw:
    if len(data) < NGSP_HEADER_SIZE:
        raise _err(f"truncated: {len(data)} bytes, less than the 32-byte header", path, "header")
    magic, version, n, sh_degree, frac, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", data)
    notes = []
    mv = memoryview(data)
    _check_common(version, sh_degree, path)
    sizes = _per_point_sizes(version, sh_degree)
    expected = [n * s for s in sizes if s]
    if nstreams != len(expected):
        raise _err(f"numStreams={nstreams}, expected {len(expected)} for shDegree {sh_degree}", path, "numStreams", 15)
    if toc < NGSP_HEADER_SIZE or toc + 16 * nstreams > len(data):
        raise _err(
            f"tocByteOffset={toc}: the {nstreams}-entry TOC must start at or after byte 32 and end within "
            f"the {len(data)}-byte file",
            path,
            "tocByteOffset",
            16,
        )
    extensions = bytes(mv[NGSP_HEADER_SIZE:toc]) if flags & FLAG_EXTENSIONS else b""
    entries = [struct.unpack_from("<QQ", data, toc + 16 * i) for i in range(nstreams)]
    start = toc + 16 * nstreams
    total_c = sum(c for c, _ in entries)
    if start + total_c > len(data):
        raise _err(
            f"truncated: the TOC lists {total_c} compressed bytes, the file holds {len(data) - start}", path, "toc", toc
        )
    for i, ((csize, usize), want) in enumerate(zip(entries, expected, strict=False)):
        name = _STREAM_NAMES[i]
        if usize != want:
            raise _err(
                f"TOC says stream {name!r} is {usize} bytes, numPoints={n} implies {want}",
                path,
                "numPoints" if i == 0 else f"toc.{name}",
                toc + 16 * i,
            )
        if want > csize * _ZSTD_MAX_RATIO + 4096:
            raise _err(
                f"numPoints={n} implies {want} bytes for {name!r}, more than {csize} zstd bytes can hold",
                path,
                "numPoints",
                8,
            )
    _check_count(version, n, sh_degree, len(data), path, max_gaussians)
    arrays, off = [], start
    per = [s for s in sizes if s]
    for i, ((csize, usize), p) in enumerate(zip(entries, per, strict=False)):
        raw = _zstd_bounded(mv[off : off + csize], usize, path, _STREAM_NAMES[i])
        arrays.append(np.frombuffer(raw, dtype=np.uint8).reshape(n, p))
        off += csize
    if off < len(data):
        notes.append(f"spz: ignored {len(data) - off} trailing bytes after the last stream")
    if sh_degree == 0:
        arrays.append(np.zeros((n, 0), np.uint8))
    positions, alphas, colors, scales, rotations, sh = arrays
    return SpzRaw(
        version, n, sh_degree, frac, flags, positions, alphas, colors, scales, rotations, sh, extensions, notes
    )


def unpack_spz(data: bytes, path: str | os.PathLike | None = None, *, max_gaussians: int | None = None) -> SpzRaw:
    """Parse SPZ bytes (any version) into the still-quantised attribute arrays, validating every size.

    ``numPoints`` is checked against what the payload can hold (deflate at most ~1032:1, zstd 32768:1) and the
    limits of :mod:`exgs_core.limits` (``max_gaussians``: None = ``EXGS_MAX_GAUSSIANS`` or 50,000,000; at most
    max(1,048,576, 16 per byte of file); the decode must fit in memory) before anything of that size is
    decompressed or allocated.

    Raises:
        LimitError: (a FormatError, field ``numPoints``) numPoints above those limits.
        FormatError: wrong magic, unknown version, shDegree > 3, truncation, corrupt gzip/zstd, sizes that
            disagree with numPoints.
    """
    data = bytes(data)
    if len(data) < 4:
        raise _err(f"truncated: {len(data)} bytes", path, "header")
    if data[:2] == b"\x1f\x8b":
        payload, trailer = _gunzip_legacy(data, path, max_gaussians)
    else:
        if struct.unpack_from("<I", data)[0] != SPZ_MAGIC:
            raise _err(f"wrong magic {data[:4]!r} (expected b'NGSP' or a gzip stream)", path, "magic", 0)
        if len(data) < 8:
            raise _err("truncated header", path, "header")
        version = struct.unpack_from("<I", data, 4)[0]
        if len(data) >= 13:
            _check_common(version, data[12], path)
        else:
            _check_common(version, 0, path)
        if version >= 4:
            return _unpack_ngsp(data, path, max_gaussians)
        payload, trailer = data, None
    if len(payload) < LEGACY_HEADER_SIZE:
        raise _err(f"truncated: {len(payload)} bytes, less than the 16-byte header", path, "header")
    magic, version, n, sh_degree, frac, flags = struct.unpack_from("<IIIBBB", payload)
    _check_common(version, sh_degree, path)
    if trailer is None:  # raw legacy payload: the file holds every byte, so its size bounds N; check the limits
        need = LEGACY_HEADER_SIZE + n * sum(_per_point_sizes(version, sh_degree))
        if len(payload) >= need:
            _check_count(version, n, sh_degree, len(data), path, max_gaussians)
    arrays = _split_legacy(payload, version, n, sh_degree, path)
    end = LEGACY_HEADER_SIZE + sum(a.size for a in arrays)
    rest = payload[end:] if trailer is None else trailer
    notes = []
    extensions = b""
    if flags & FLAG_EXTENSIONS:
        extensions = bytes(rest)
    elif rest:
        notes.append(f"spz: ignored {len(rest)} bytes after the attribute blocks")
    positions, alphas, colors, scales, rotations, sh = arrays
    return SpzRaw(
        version, n, sh_degree, frac, flags, positions, alphas, colors, scales, rotations, sh, extensions, notes
    )


def _decode_quats_smallest_three(rot: np.ndarray) -> np.ndarray:
    """uint8 [N, 4] (little-endian u32 each) -> float64 [N, 4] in SPZ order x, y, z, w."""
    b = rot.astype(np.uint32)
    comp = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((rot.shape[0], 4), np.float64)
    for i in range(4):
        # Fields are filled from component 3 down to 0 (skipping the largest), 10 bits each from the low end.
        shift = (10 * ((3 - i) - (largest > i))).astype(np.uint32)
        val = (comp >> shift) & np.uint32(1023)
        mag = (val & np.uint32(511)).astype(np.float64)
        v = np.sqrt(0.5) * mag / 511.0
        v = np.where((val >> 9) & np.uint32(1), -v, v)
        q[:, i] = np.where(largest == i, 0.0, v)
    rest = (q * q).sum(axis=1)
    q[np.arange(len(q)), largest] = np.sqrt(np.maximum(0.0, 1.0 - rest))
    return q


def decode_spz(raw: SpzRaw, path: str | os.PathLike | None = None) -> GaussianScene:
    """Dequantise :class:`SpzRaw` into a :class:`GaussianScene` (float32; see the module docstring)."""
    n = raw.num_points
    if raw.version == 1:
        means = np.frombuffer(raw.positions.tobytes(), dtype="<f2").reshape(n, 3).astype(np.float32)
    else:
        p = raw.positions.reshape(n, 3, 3).astype(np.int32)
        fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
        fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 -> 32 bits
        means = (fixed.astype(np.float64) * (2.0**-raw.fractional_bits)).astype(np.float32)
    log_scales = (raw.scales.astype(np.float64) / 16.0 - 10.0).astype(np.float32)
    opacity = logit(raw.alphas.astype(np.float64) / 255.0, eps=1e-6)
    dc = ((raw.colors.astype(np.float64) / 255.0 - 0.5) / SPZ_COLOR_SCALE).astype(np.float32)
    if raw.version <= 2:
        xyz = raw.rotations.astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(axis=1)))
        quats = np.concatenate([w[:, None], xyz], axis=1)
    else:
        q = _decode_quats_smallest_three(raw.rotations)
        quats = q[:, [3, 0, 1, 2]]  # x, y, z, w -> w, x, y, z
    k = sh_coeff_count(raw.sh_degree)
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = dc
    if k > 1:
        # in blocks of rows that stay in cache: no [N, 3 (K - 1)] float temporaries beside the output, and faster
        flat = sh.reshape(n, 3 * k)
        for a in range(0, n, _ROWS):
            flat[a : a + _ROWS, 3:] = (raw.sh[a : a + _ROWS].astype(np.float32) - 128.0) / 128.0
    meta: dict = {
        "format": "spz",
        "spz_version": raw.version,
        "fractional_bits": raw.fractional_bits,
        "coordinate_system": _CS_STORED,
        "notes": list(raw.notes),
    }
    if path is not None:
        meta["path"] = os.fspath(path)
    if raw.flags & FLAG_ANTIALIASED:
        meta["notes"].append("spz: antialiased flag set (trained with mip-splatting antialiasing)")
    if raw.flags & FLAG_EXTENSIONS:
        meta["spz_extensions"] = raw.extensions
        meta["notes"].append(
            f"spz: {len(raw.extensions)} bytes of extension records kept, not interpreted "
            "(a coordinate-system extension would not be applied)"
        )
    return GaussianScene(
        means,
        quats.astype(np.float32),
        log_scales,
        opacity,
        sh,
        meta=meta,
        antialiased=bool(raw.flags & FLAG_ANTIALIASED),
        up=(0.0, 1.0, 0.0),  # RUB as stored: automatic views put +y up (see exgs_core.views.scene_up)
    )


# Sign of each SH rest coefficient (3DGS/gsplat basis order, degrees 1..3) under y -> -y, z -> -z.
_SH_FLIP_YZ = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float32)


def flip_yz(scene: GaussianScene) -> GaussianScene:
    """A copy of ``scene`` rotated 180 degrees about x (y -> -y, z -> -z): converts SPZ's RUB axes to the RDF
    axes of 3DGS PLY, and back (it is its own inverse). Positions, quaternions (w, x, -y, -z) and the SH rest
    coefficients (sign flips of the functions odd in y or z) all change; scales and opacity do not."""
    out = scene.copy()
    out.means *= np.array([1, -1, -1], np.float32)
    out.quats *= np.array([1, 1, -1, -1], np.float32)
    k = out.sh.shape[1]
    if k > 1:
        out.sh[:, 1:] *= _SH_FLIP_YZ[: k - 1, None]
    cs = str(out.meta.get("coordinate_system"))
    out.meta["coordinate_system"] = {_CS_STORED: _CS_RDF, _CS_RDF: _CS_STORED}.get(cs, f"{cs} + flip_yz")
    if out.up is not None:
        out.up = (out.up[0], -out.up[1], -out.up[2])
    return out


def to_ply_axes(scene: GaussianScene) -> GaussianScene:
    """``scene`` in the RDF axes of 3DGS PLY (what every PLY viewer and the .exgs default assume): an SPZ decoded as
    stored (RUB, ``meta["coordinate_system"]`` says so) is turned with :func:`flip_yz`; any other scene is returned
    unchanged (the same object)."""
    return flip_yz(scene) if scene.meta.get("coordinate_system") == _CS_STORED else scene


def read_spz(path: str | os.PathLike, *, axes: str = "stored", max_gaussians: int | None = None) -> GaussianScene:
    """Read an SPZ file (v1-v3 gzip or raw, v4 zstd) into a :class:`GaussianScene`.

    Args:
        path: the file.
        axes: ``"stored"`` (default; as splat-transform and the reference decodes) or ``"rdf"`` (convert the
            spec's RUB to the RDF axes of 3DGS PLY with :func:`flip_yz`).
        max_gaussians: the most points accepted (0 = no limit); default ``EXGS_MAX_GAUSSIANS`` or 50,000,000.
            The other limits of :mod:`exgs_core.limits` apply too: at most max(1,048,576, 16 per byte of file)
            points, and the decode must fit in the memory this process may use (checked before decompressing).

    Returns:
        Scene with means float32 [N, 3] (file units, axes as stored), quats float32 [N, 4] w, x, y, z (unit
        length up to quantisation), log_scales float32 [N, 3], opacity_logits float32 [N] (finite: alpha is
        clipped to [1e-6, 1 - 1e-6]), sh float32 [N, K, 3]. ``meta``: ``spz_version``, ``fractional_bits``,
        ``antialiased`` (when flagged), ``notes``.

    Raises:
        LimitError: (a FormatError, field ``numPoints``) more points than those limits allow.
        FormatError: naming the file and the field at fault.
    """
    if axes not in ("stored", "rdf"):
        raise ValueError(f"axes must be 'stored' or 'rdf', got {axes!r}")
    limits.check_argument(max_gaussians)
    data = read_bytes(path)
    try:
        scene = decode_spz(unpack_spz(data, path, max_gaussians=max_gaussians), path)
        return flip_yz(scene) if axes == "rdf" else scene
    except FormatError:
        raise
    except (ValueError, IndexError, TypeError, struct.error, OverflowError, MemoryError, zlib.error) as e:
        raise FormatError(f"cannot decode SPZ: {type(e).__name__}: {e}", path) from e


def pack_spz(raw: SpzRaw, *, zstd_level: int = 12, gzip_level: int = 9) -> bytes:
    """Serialise :class:`SpzRaw` again (no re-quantisation): v4 as header + TOC + zstd streams, v1-v3 as one
    gzip stream (deterministic: mtime 0). Used to cut fixtures from real files and by tests."""
    n = raw.num_points
    streams = [np.ascontiguousarray(a, dtype=np.uint8).tobytes() for a in raw.streams()]
    if raw.version >= 4:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=zstd_level, write_content_size=True)
        comp = [cctx.compress(s) for s in streams]
        ext = raw.extensions if raw.flags & FLAG_EXTENSIONS else b""
        toc = NGSP_HEADER_SIZE + len(ext)
        header = struct.pack(
            "<IIIBBBBI12x", SPZ_MAGIC, raw.version, n, raw.sh_degree, raw.fractional_bits, raw.flags, len(comp), toc
        )
        tocb = b"".join(struct.pack("<QQ", len(c), len(s)) for c, s in zip(comp, streams, strict=False))
        return header + ext + tocb + b"".join(comp)
    header = struct.pack("<IIIBBBB", SPZ_MAGIC, raw.version, n, raw.sh_degree, raw.fractional_bits, raw.flags, 0)
    payload = header + b"".join(streams) + (raw.extensions if raw.flags & FLAG_EXTENSIONS else b"")
    co = zlib.compressobj(gzip_level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return co.compress(payload) + co.flush()


# ============================================================================================ writing
_FIXED_MIN, _FIXED_MAX = -(1 << 23), (1 << 23) - 1  # signed 24-bit range of a position
_DEFAULT_FRACTIONAL_BITS = 12  # what the Niantic encoder always writes (~0.24 mm if the unit is the metre)
_MAX_FRACTIONAL_BITS = 23
_ZSTD_LEVEL = 12  # the Niantic encoder's compressZstd default
_GZIP_LEVEL = 6  # Z_DEFAULT_COMPRESSION, as the Niantic encoder's compressGzipped
_GZIP_MEMLEVEL = 9  # ... with memLevel 9 (deflateInit2)
_SQRT1_2 = np.float32(0.707106781186547524401)
_WRITE_ROWS = 1 << 16  # rows per block while quantising: bounded float temporaries


def _round_away(x: np.ndarray | np.floating) -> np.ndarray:
    """C's ``std::round`` (half away from zero) of float32 values, exactly, as float64."""
    x = np.asarray(x, np.float64)  # float32 -> float64 is exact, and so is |x| + 0.5 below 2**52
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def _largest_fitting_bits(means: np.ndarray, limit: int) -> int:
    """The most fractional bits (<= ``limit``, >= 0) at which every centre's 24-bit code is in range, whichever the
    signs (the axis conversion negates y and z, and the code range is -2**23 .. 2**23 - 1)."""
    if means.size == 0:
        return limit
    m = np.float32(max(abs(float(means.min())), abs(float(means.max()))))
    f = limit
    while f > 0 and _round_away(m * np.float32(2.0**f)) > _FIXED_MAX:
        f -= 1
    return f


def _encode_quats(q_wxyz: np.ndarray, flip: bool) -> np.ndarray:
    """float32 [M, 4] w, x, y, z (non-zero norm) -> uint8 [M, 4]: SPZ v3+ "smallest three", one little-endian u32
    each, with the arithmetic of the Niantic ``packQuaternionSmallestThree`` (float32 normalisation, the first
    largest |component| in x, y, z, w order, 9-bit magnitudes ``(u32)(511 * |q| / sqrt(1/2) + 0.5)``), except that
    a component's sign is its sign bit (``-0.0`` keeps its sign), so that decoding and re-encoding gives the same
    bits."""
    q = np.ascontiguousarray(q_wxyz[:, [1, 2, 3, 0]], dtype=np.float32)  # -> x, y, z, w
    if flip:
        q[:, 1] = -q[:, 1]
        q[:, 2] = -q[:, 2]
    norm = np.sqrt(((q[:, 0] * q[:, 0] + q[:, 1] * q[:, 1]) + q[:, 2] * q[:, 2]) + q[:, 3] * q[:, 3])
    q = q / norm[:, None]
    a = np.abs(q)
    largest = np.argmax(a, axis=1)  # first maximum, as the reference's strict ">" scan
    negate = np.signbit(q[np.arange(len(q)), largest])
    comp = largest.astype(np.uint32)
    for i in range(4):
        mag = (np.float32(511.0) * (a[:, i] / _SQRT1_2) + np.float32(0.5)).astype(np.uint32)
        np.minimum(mag, 511, out=mag)  # cannot exceed 511 for a normalised quaternion; never spill into the sign
        neg = (np.signbit(q[:, i]) ^ negate).astype(np.uint32)
        comp = np.where(largest == i, comp, (comp << np.uint32(10)) | (neg << np.uint32(9)) | mag)
    return comp.astype("<u4").view(np.uint8).reshape(-1, 4)


def _bucket_sh(q: np.ndarray, bits: int) -> np.ndarray:
    """SH codes ``q = round(128 x) + 128`` (already clamped to [0, 256]) -> uint8 as the Niantic ``quantizeSH``: to
    the nearest multiple of ``2**(8 - bits)`` (halves up), at most 255."""
    bucket = 1 << (8 - bits)
    q = (q.astype(np.int32) + bucket // 2) // bucket * bucket
    return np.minimum(q, 255).astype(np.uint8)


def _quantise(
    scene: GaussianScene,
    report: WriteReport,
    *,
    version: int,
    sh_degree: int,
    fractional_bits: int,
    flip: bool,
    sh1_bits: int,
    sh_rest_bits: int,
    flags: int,
) -> SpzRaw:
    """The quantised attribute streams of ``scene`` (see the module docstring), block by block."""
    n = scene.n
    k_out = sh_coeff_count(sh_degree)
    k_in = scene.sh.shape[1]
    positions = np.empty((n, 9), np.uint8)
    alphas = np.empty(n, np.uint8)
    colors = np.empty((n, 3), np.uint8)
    scales = np.empty((n, 3), np.uint8)
    rotations = np.empty((n, 4), np.uint8)
    sh = np.zeros((n, 3 * (k_out - 1)), np.uint8)
    pos_sign = np.array([1, -1, -1] if flip else [1, 1, 1], np.float32)
    sh_sign = _SH_FLIP_YZ[: k_out - 1, None] if flip else None
    step = np.float32(2.0**fractional_bits)
    color_scale = np.float32(np.float32(SPZ_COLOR_SCALE) * np.float32(255.0))
    k_copy = min(k_out, k_in)
    for a in range(0, n, _WRITE_ROWS):
        b = min(n, a + _WRITE_ROWS)
        m = b - a
        # positions: 24-bit signed fixed point, little-endian
        fixed = _round_away(scene.means[a:b] * pos_sign * step)
        fixed = report.clamp("means", fixed, _FIXED_MIN, _FIXED_MAX).astype("<i4")
        positions[a:b] = fixed.view(np.uint8).reshape(m, 3, 4)[:, :, :3].reshape(m, 9)
        # opacity: sigmoid * 255 (float32, as the reference)
        with np.errstate(over="ignore"):
            alpha = np.float32(1.0) / (np.float32(1.0) + np.exp(-scene.opacity_logits[a:b]))
        alphas[a:b] = np.clip(_round_away(alpha * np.float32(255.0)), 0, 255).astype(np.uint8)
        # DC colour: SPZ's own scale
        c = _round_away(scene.sh[a:b, 0] * color_scale + np.float32(127.5))
        colors[a:b] = report.clamp("sh_dc", c, 0, 255).astype(np.uint8)
        # log scales
        s = _round_away((scene.log_scales[a:b] + np.float32(10.0)) * np.float32(16.0))
        scales[a:b] = report.clamp("log_scales", s, 0, 255).astype(np.uint8)
        rotations[a:b] = _encode_quats(scene.quats[a:b], flip)
        if k_out > 1 and k_copy > 1:
            rest = scene.sh[a:b, 1:k_copy]
            if sh_sign is not None:
                rest = rest * sh_sign[: k_copy - 1]
            q = _round_away(rest * np.float32(128.0)) + 128.0
            q = report.clamp("sh_rest", q, 0.0, 256.0)
            out = sh[a:b].reshape(m, k_out - 1, 3)
            n1 = min(3, k_copy - 1)
            out[:, :n1] = _bucket_sh(q[:, :n1], sh1_bits)
            if k_copy - 1 > 3:
                out[:, 3 : k_copy - 1] = _bucket_sh(q[:, 3:], sh_rest_bits)
    if k_out > k_copy:  # zero padding: code 128 means 0.0
        sh.reshape(n, k_out - 1, 3)[:, max(k_copy - 1, 0) :] = 128
    return SpzRaw(version, n, sh_degree, fractional_bits, flags, positions, alphas, colors, scales, rotations, sh)


def _serialise(raw: SpzRaw) -> bytes:
    """SPZ bytes of quantised streams, with the Niantic encoder's compression settings: v4 = 32-byte header, TOC,
    one zstd frame (level 12, content size recorded, no checksum) per stream; v3 = one gzip stream (deflate level
    6, memLevel 9; the gzip header zlib writes on Unix: mtime 0, OS 3). Deterministic on every platform."""
    arrays = [raw.positions, raw.alphas, raw.colors, raw.scales, raw.rotations]
    if raw.sh_degree > 0:  # by degree, not size: an empty scene of degree > 0 still lists its (empty) SH stream
        arrays.append(raw.sh)
    streams = [np.ascontiguousarray(a, dtype=np.uint8).tobytes() for a in arrays]
    if raw.version >= 4:
        import zstandard

        def compress(data: bytes) -> bytes:  # one compressor per stream: they are not thread-safe
            return zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True).compress(data)

        workers = min(len(streams), os.cpu_count() or 1)
        if workers > 1 and sum(map(len, streams)) > (1 << 20):  # in parallel, as the reference (zstd frees the GIL)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:
                comp = list(pool.map(compress, streams))
        else:
            comp = [compress(s) for s in streams]
        header = struct.pack(
            "<IIIBBBBI12x",
            SPZ_MAGIC,
            raw.version,
            raw.num_points,
            raw.sh_degree,
            raw.fractional_bits,
            raw.flags,
            len(comp),
            NGSP_HEADER_SIZE,
        )
        toc = b"".join(struct.pack("<QQ", len(c), len(s)) for c, s in zip(comp, streams, strict=True))
        return header + toc + b"".join(comp)
    header = struct.pack(
        "<IIIBBBB", SPZ_MAGIC, raw.version, raw.num_points, raw.sh_degree, raw.fractional_bits, raw.flags, 0
    )
    # The gzip wrapper is written here rather than by zlib, whose header's OS byte depends on the platform: the
    # header zlib writes on Unix (no name, mtime 0, XFL 0 at level 6, OS 3), raw deflate, CRC-32 and length.
    co = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, _GZIP_MEMLEVEL)
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", co.compress(header)]
    crc, size = zlib.crc32(header), len(header)
    for block in streams:
        parts.append(co.compress(block))
        crc, size = zlib.crc32(block, crc), size + len(block)
    parts += [co.flush(), struct.pack("<II", crc, size & 0xFFFFFFFF)]
    return b"".join(parts)


def _check_options(version, sh_degree, fractional_bits, sh1_bits, sh_rest_bits) -> None:
    if version not in (3, 4):
        raise ValueError(f"SPZ version must be 3 or 4, got {version!r}")
    if sh_degree is not None and not (isinstance(sh_degree, (int, np.integer)) and 0 <= sh_degree <= MAX_SH_DEGREE):
        raise ValueError(f"sh_degree must be 0..{MAX_SH_DEGREE} or None, got {sh_degree!r}")
    if fractional_bits is not None and not (
        isinstance(fractional_bits, (int, np.integer)) and 0 <= fractional_bits <= _MAX_FRACTIONAL_BITS
    ):
        raise ValueError(
            f"fractional_bits must be 0..{_MAX_FRACTIONAL_BITS} or None (automatic), got {fractional_bits!r}"
        )
    for name, v in (("sh1_bits", sh1_bits), ("sh_rest_bits", sh_rest_bits)):
        if not (isinstance(v, (int, np.integer)) and 1 <= v <= 8):
            raise ValueError(f"{name} must be 1..8, got {v!r}")


def _encode(
    scene: GaussianScene,
    report: WriteReport,
    *,
    version: int,
    sh_degree: int | None,
    fractional_bits: int | None,
    antialiased: bool | None,
    sh1_bits: int,
    sh_rest_bits: int,
) -> bytes:
    """Quantise and serialise a scene that :func:`exgs_core.io.writing.prepare` accepted; notes go to ``report``."""
    _check_options(version, sh_degree, fractional_bits, sh1_bits, sh_rest_bits)
    flip = scene.meta.get("coordinate_system") != _CS_STORED
    if flip:
        report.notes.append("converted from 3DGS PLY's right-down-forward axes to SPZ's right-up-back axes (flip_yz)")
    degree = scene.sh_degree if sh_degree is None else int(sh_degree)
    if degree < scene.sh_degree:
        report.notes.append(f"SH cut from degree {scene.sh_degree} to {degree}")
    elif degree > scene.sh_degree:
        report.notes.append(f"SH padded with zeros from degree {scene.sh_degree} to {degree}")
    if fractional_bits is None:
        frac = _largest_fitting_bits(scene.means, _DEFAULT_FRACTIONAL_BITS)  # sign flips do not change the extent
        if frac < _DEFAULT_FRACTIONAL_BITS:
            extent = float(np.abs(scene.means).max())
            report.notes.append(
                f"positions reach |{extent:.6g}|, beyond the +-{2.0 ** (23 - _DEFAULT_FRACTIONAL_BITS):g} that "
                f"{_DEFAULT_FRACTIONAL_BITS} fractional bits hold: wrote {frac} fractional bits (step "
                f"{2.0**-frac:g}); pass fractional_bits={_DEFAULT_FRACTIONAL_BITS} to keep the finer step and clamp "
                "the far centres instead"
            )
    else:
        frac = int(fractional_bits)
    aa = scene.antialiased if antialiased is None else bool(antialiased)
    if scene.meta.get("spz_extensions"):
        report.notes.append(
            f"{len(scene.meta['spz_extensions'])} bytes of SPZ extension records from the source were not written"
        )
    if scene.n == 0:
        report.notes.append("the scene is empty: the Niantic library refuses to load SPZ files with 0 points")
    raw = _quantise(
        scene,
        report,
        version=version,
        sh_degree=degree,
        fractional_bits=frac,
        flip=flip,
        sh1_bits=int(sh1_bits),
        sh_rest_bits=int(sh_rest_bits),
        flags=FLAG_ANTIALIASED if aa else 0,
    )
    if report.clamped.get("means"):
        report.notes.append(
            f"{report.clamped['means']} centre coordinate(s) beyond +-{2.0 ** (23 - frac):g} (the 24-bit range at "
            f"{frac} fractional bits) were clamped; fractional_bits=None picks bits that fit"
        )
    return _serialise(raw)


def encode_spz(
    scene: GaussianScene,
    *,
    version: int = 4,
    sh_degree: int | None = None,
    fractional_bits: int | None = None,
    antialiased: bool | None = None,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
) -> tuple[bytes, WriteReport]:
    """``scene`` as the bytes of an SPZ file (see the module docstring for layout, axes and quantisation).

    Args:
        scene: N Gaussians; its axes are 3DGS PLY's (RDF) unless ``meta["coordinate_system"]`` says it is an SPZ
            decoded as stored (RUB, :func:`read_spz`'s default), in which case it is written as it is.
        version: 4 (32-byte header + zstd streams; the Niantic library's default) or 3 (one gzip stream).
        sh_degree: SH degree to write, 0..3 (None: the scene's); lower cuts, higher pads with zeros.
        fractional_bits: fixed-point fraction bits of the positions, 0..23; centres outside the 24-bit range are
            clamped and counted. None (default): 12 as the Niantic encoder, or the largest that holds every centre
            when 12 does not (noted in the report).
        antialiased: header flag 0x1 (None: ``scene.antialiased``).
        sh1_bits: quantisation bits of the degree-1 SH coefficients, 1..8 (Niantic default 5).
        sh_rest_bits: quantisation bits of the degree-2 and 3 SH coefficients, 1..8 (Niantic default 4).

    Returns:
        (bytes, :class:`~exgs_core.io.writing.WriteReport` with ``bytes``, ``gaussians``, ``clamped`` and notes).

    Raises:
        SceneError: NaN/Inf or zero-norm rotations (:func:`~exgs_core.io.writing.prepare`; :func:`write_spz`
            has ``sanitize``).
        ValueError: an option out of range.
    """
    clean, report = prepare(scene, None, "spz")
    data = _encode(
        clean,
        report,
        version=version,
        sh_degree=sh_degree,
        fractional_bits=fractional_bits,
        antialiased=antialiased,
        sh1_bits=sh1_bits,
        sh_rest_bits=sh_rest_bits,
    )
    report.bytes, report.gaussians = len(data), clean.n
    return data, report


def write_spz(
    scene: GaussianScene,
    path: str | os.PathLike,
    *,
    version: int = 4,
    sanitize: bool = False,
    sh_degree: int | None = None,
    fractional_bits: int | None = None,
    antialiased: bool | None = None,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
) -> WriteReport:
    """Write ``scene`` to ``path`` as SPZ (options as :func:`encode_spz`), atomically: a failure leaves no file and
    an existing ``path`` untouched.

    Args:
        sanitize: write a scene with NaN/Inf or zero-norm rotations after dropping those Gaussians / setting
            identity rotations (listed in the report) instead of refusing it.

    Returns:
        :class:`~exgs_core.io.writing.WriteReport` (``path``, ``bytes``, ``gaussians``, ``clamped``, ``notes``).

    Raises:
        SceneError: NaN/Inf or zero-norm rotations and not ``sanitize`` (the message counts them per field).
        OutputError: ``path`` cannot be written.
        ValueError: an option out of range.
    """
    from .atomic import atomic_write, check_output_path

    _check_options(version, sh_degree, fractional_bits, sh1_bits, sh_rest_bits)
    check_output_path(path)
    clean, report = prepare(scene, path, "spz", sanitize=sanitize)
    data = _encode(
        clean,
        report,
        version=version,
        sh_degree=sh_degree,
        fractional_bits=fractional_bits,
        antialiased=antialiased,
        sh1_bits=sh1_bits,
        sh_rest_bits=sh_rest_bits,
    )
    with atomic_write(path) as f:
        f.write(data)
    report.bytes, report.gaussians, report.path = len(data), clean.n, os.fspath(path)
    return report
