"""The ``.exgs`` container: encode a clean scene into bytes, decode bytes back, read and write files.

The byte layout is specified in ``docs/FORMAT.md``; this module owns the container: the fixed header, the JSON
header and its schema, the section table, checksums, versions, the reader limits and file I/O. What each
section holds and how it is quantised is the attribute table's business (:mod:`exgs_core.codec.attributes`);
the entropy stage is :mod:`exgs_core.codec.entropy`. :func:`encode` reads as quantise -> entropy -> container,
:func:`decode` as container -> limits -> entropy -> dequantise.

>>> import numpy as np
>>> from exgs_core.scene import GaussianScene
>>> s = GaussianScene.empty(3, sh_degree=1)
>>> s.means[:] = [[0, 0, 0], [1, 2, 3], [0.5, 0.5, 0.5]]
>>> data = encode(s)
>>> data[:4], decode(data).n
(b'EXGS', 3)

Decoded scenes come back in the stored (Morton) order, not the input order. Every failure to decode raises
:class:`~exgs_core.errors.FormatError` whose ``field`` names the section (``section:<name>``) or the header
field at fault.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .. import limits
from .._machine import memory_limit
from ..codec import attributes, entropy
from ..codec.attributes import ATTRIBUTES, SECTION_NAMES, SH_REST, Progress
from ..codec.options import CodecOptions
from ..errors import FormatError, SceneError
from ..scene import GaussianScene
from .atomic import read_bytes

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "READER_VERSION",
    "FEATURE_MIN_VERSION",
    "SECTION_NAMES",
    "encode",
    "decode",
    "read_exgs",
    "write_exgs",
    "read_header",
    "describe",
    "decode_memory_estimate",
    "with_head",
    "HEAD_TAG",
]

MAGIC = b"EXGS"
#: Highest version this writer produces (it writes the lowest version that holds every feature it uses).
FORMAT_VERSION = 2
#: Highest version this reader understands.
READER_VERSION = 2
#: Revision of the encoder's algorithms (recorded in the header; does not affect decoding).
CODEC_REVISION = 1

#: First format version having each feature (docs/FORMAT.md, "Versions and features").
FEATURE_MIN_VERSION = {
    "container": 1,
    "morton_positions": 1,
    "smallest_three_rotations": 1,
    "uniform_scales_dc_sigmoid_opacity": 1,
    "sh_palette": 1,
    "antialiased_flag": 1,
    "ancillary_sections": 1,
    "range_coder": 2,
}

#: Raw bytes above which decode() decodes the sections on threads.
PARALLEL_DECODE_BYTES = 1 << 20

FLAG_ANTIALIASED = 1
KNOWN_FLAGS = FLAG_ANTIALIASED
SECTION_REQUIRED = 1
#: The optional scene head (docs/FORMAT.md section 4.2; :mod:`exgs_core.codec.head`): an ancillary section, never
#: required, so readers that do not know it skip it and the file's version does not change.
HEAD_TAG = b"HEAD"
HEAD_NAME = "scene_head"
#: Most raw bytes a head payload may declare (the largest head the layout allows is about 9 kB).
MAX_HEAD_BYTES = 1 << 16

_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")
MAX_GAUSSIANS = 1 << 27
MAX_JSON = 1 << 20
MAX_SECTIONS = 64
MAX_PALETTE = attributes.MAX_PALETTE

_FIXED = struct.Struct("<4sHHIIIHHII")  # 32 bytes
_ENTRY = struct.Struct("<4sBBBBQQII")  # 32 bytes
assert _FIXED.size == 32 and _ENTRY.size == 32

_TAG_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


# ============================================================================================ encode


def _report(progress: Progress | None, fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(fraction), stage)


def _f32list(a) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def _check_scene(scene: GaussianScene) -> None:
    if not isinstance(scene, GaussianScene):
        raise TypeError(f"encode() needs a GaussianScene, got {type(scene).__name__}")
    lengths = {f: int(getattr(scene, f).shape[0]) for f in _FIELDS}
    if len(set(lengths.values())) > 1:
        raise SceneError(
            "the scene is not clean (field lengths disagree: "
            + ", ".join(f"{k}={v}" for k, v in lengths.items())
            + "): sanitize it first"
        )
    if scene.n == 0:
        return  # nothing else to check (and GaussianScene.validate cannot reshape empty SH arrays)
    # fast path: whole-array checks; scene.validate() (slower, per Gaussian) only to word the error
    q = scene.quats.astype(np.float64)
    clean = all(bool(np.isfinite(getattr(scene, f)).all()) for f in _FIELDS) and bool(
        ((q * q).sum(axis=1) >= 1e-24).all()
    )
    rep = None if clean else scene.validate()
    if rep is not None and not rep.ok:
        raise SceneError(
            "the scene is not clean (" + "; ".join(rep.problems()) + "): sanitize it first "
            "(scene.sanitize(), or the compress pipeline, which reports what it changed)"
        )
    if scene.n > MAX_GAUSSIANS:
        raise SceneError(f"{scene.n} Gaussians exceed the .exgs limit of {MAX_GAUSSIANS}")
    for name, arr in (("means", scene.means), ("log_scales", scene.log_scales), ("sh", scene.sh)):
        if arr.size:
            lo, hi = float(arr.min()), float(arr.max())  # global: stricter than per column, and fast
            top = abs(lo) + (hi - lo)
            if not top < 3.0e38:
                raise SceneError(
                    f"{name}: values up to {top:.3g} from the minimum, beyond what float32 steps can "
                    "cover; sanitize first"
                )


def _check_source_sha256(source_sha256: str | None) -> str | None:
    if source_sha256 is None:
        return None
    if not (
        isinstance(source_sha256, str)
        and len(source_sha256) == 64
        and all(c in "0123456789abcdef" for c in source_sha256.lower())
    ):
        raise ValueError("source_sha256 must be a 64-character hex string")
    return source_sha256.lower()


def _check_extra(extra_header: dict | None) -> dict:
    extra = {} if extra_header is None else extra_header
    if not isinstance(extra, dict):
        raise ValueError("extra_header must be a dict")
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra_header must be JSON-serialisable without NaN/Inf: {e}") from None
    return extra


def _sh_full_mask(scene: GaussianScene, sh_full: np.ndarray | None) -> np.ndarray:
    n = scene.n
    if scene.sh_degree == 0:
        return np.zeros(n, bool)
    if sh_full is None:
        return np.ones(n, bool)
    full = np.asarray(sh_full)
    if full.shape != (n,) or full.dtype != np.bool_:
        raise ValueError(f"sh_full: expected bool [N={n}], got {full.dtype} {full.shape}")
    return full


def encode(
    scene: GaussianScene,
    *,
    sh_full: np.ndarray | None = None,
    options: CodecOptions = CodecOptions(),
    source_sha256: str | None = None,
    extra_header: dict | None = None,
    progress: Progress | None = None,
    head=None,
) -> bytes:
    """Encode a clean scene as the bytes of an .exgs file (deterministic for the same input and options).

    Args:
        scene: N Gaussians; must pass ``scene.validate()`` (no NaN/Inf, no zero quaternions), else SceneError.
        sh_full: bool [N]: True = keep this Gaussian's higher SH (palette coded), False = DC only. None = all
            of them when the scene's SH degree is > 0. Ignored for degree 0.
        options: quantisation and coding knobs.
        source_sha256: hex SHA-256 of the source file, recorded in the header.
        extra_header: JSON-serialisable dict recorded under ``extra``.
        progress: ``progress(fraction, stage)`` callback; an exception raised by it aborts encoding (use it to
            cancel) and propagates.
        head: an :class:`exgs_core.codec.head.SceneHead` to store in the optional ``HEAD`` section (None: none).
            The other sections' bytes do not depend on it (:func:`with_head` adds one to existing bytes).

    Returns:
        The file's bytes. Gaussians are stored in Morton order of their quantised centres.

    Raises:
        SceneError: the scene is not clean or too large. ValueError: bad ``sh_full``/``extra_header``.
    """
    from .. import __version__

    if not isinstance(options, CodecOptions):
        raise TypeError(f"options must be CodecOptions, got {type(options).__name__}")
    _check_scene(scene)
    source_sha256 = _check_source_sha256(source_sha256)
    extra = _check_extra(extra_header)
    full = _sh_full_mask(scene, sh_full)

    # ---- quantise (order, attribute table, SH palette, measured errors)
    qs = attributes.quantise(scene, full, options, progress)

    # ---- entropy coding, streams in parallel
    _report(progress, 0.75, "entropy")
    models = attributes.models(qs.quant) if options.range_coder else {}
    encoded = entropy.encode_streams(qs.streams, level=options.zstd_level, threads=options.threads, models=models)

    # ---- container
    _report(progress, 0.97, "container")
    version = FEATURE_MIN_VERSION["range_coder"] if any(st.codec == entropy.CODEC_RANGE for _, st in encoded) else 1
    header = {
        "format": "exgs",
        "version": version,
        "n": scene.n,
        "sh_degree": scene.sh_degree,
        "n_sh_full": qs.n_sh_full,
        "order": "morton",
        "bounds": {"min": _f32list(qs.bounds[0]), "max": _f32list(qs.bounds[1])},
        "quant": qs.quant,
        "encoder": {"name": "exgs", "version": __version__, "codec": CODEC_REVISION},
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "threads"},
        "errors": qs.errors,
        "source_sha256": source_sha256,
        "extra": extra,
    }
    flags = FLAG_ANTIALIASED if scene.antialiased else 0
    if head is not None:
        encoded = [*encoded, (HEAD_TAG, _head_stream(head))]
    out = _assemble(header, flags, scene.n, encoded, version)
    _report(progress, 1.0, "done")
    return out


def _head_stream(head) -> entropy.Stream:
    """The ``HEAD`` section of ``head`` (a SceneHead): its payload stored as it is (codec 0, bytes)."""
    from ..codec.head import SceneHead

    if not isinstance(head, SceneHead):
        raise TypeError(f"head must be a SceneHead, got {type(head).__name__}")
    payload = head.to_bytes()
    return entropy.Stream(entropy.CODEC_STORED, entropy.FILTER_NONE, 1, len(payload), payload)


def _entry(tag: bytes, s: entropy.Stream) -> bytes:
    """A section-table entry; every section is required except the ancillary scene head."""
    req = 0 if tag == HEAD_TAG else SECTION_REQUIRED
    return _ENTRY.pack(tag, s.codec, s.filter, s.elem_size, req, len(s.stored), s.raw_length, zlib.crc32(s.stored), 0)


def _container(hjson: bytes, flags: int, n: int, table: bytes, count: int, payloads: list, version: int) -> bytes:
    head24 = _FIXED.pack(MAGIC, version, 0, flags, n, len(hjson), count, 0, 0, 0)[:24]
    crc = zlib.crc32(table, zlib.crc32(hjson, zlib.crc32(head24)))
    fixed = head24 + struct.pack("<II", crc, 0)
    return b"".join([fixed, hjson, table, *payloads])


def _assemble(header: dict, flags: int, n: int, encoded: list[tuple[bytes, entropy.Stream]], version: int) -> bytes:
    hjson = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    if len(hjson) > MAX_JSON:
        raise ValueError(f"JSON header of {len(hjson)} bytes exceeds the limit of {MAX_JSON} (extra_header too big?)")
    table = b"".join(_entry(tag, s) for tag, s in encoded)
    return _container(hjson, flags, n, table, len(encoded), [s.stored for _, s in encoded], version)


def with_head(data: bytes, head) -> bytes:
    """The .exgs bytes ``data`` with its ``HEAD`` section replaced by ``head`` (a SceneHead), or removed when
    ``head`` is None. Everything else (the fixed header's fields, the JSON header, every other section's entry
    and payload, their order) is kept byte for byte; only the section count and the header CRC change. The new
    section goes last. Raises FormatError when ``data`` is not a valid container."""
    data = bytes(data)
    version, flags, _, sections, plan = _parse_container(data, _Err(None))
    jlen = _FIXED.unpack_from(data, 0)[5]
    keep = [(i, s) for i, s in enumerate(sections) if s.tag != HEAD_TAG]
    table = [data[32 + jlen + 32 * i : 32 + jlen + 32 * (i + 1)] for i, _ in keep]
    payloads = [data[s.offset : s.offset + s.stored_length] for _, s in keep]
    if head is not None:
        st = _head_stream(head)
        table.append(_entry(HEAD_TAG, st))
        payloads.append(st.stored)
    return _container(data[32 : 32 + jlen], flags, plan.n, b"".join(table), len(table), payloads, version)


# ============================================================================================ parse


class _Err:
    """FormatError factory bound to a path."""

    def __init__(self, path):
        self.path = path

    def __call__(self, detail: str, field: str | None = None, offset: int | None = None) -> FormatError:
        return FormatError(detail, self.path, field=field, offset=offset)


@dataclass
class _Section:
    tag: bytes
    name: str
    codec: int
    filter: int
    elem_size: int
    flags: int
    stored_length: int
    raw_length: int
    crc32: int
    offset: int


def _parse_json(raw: bytes, err: _Err) -> dict:
    def no_const(name):
        raise ValueError(f"{name} is not allowed")

    try:
        text = raw.decode("utf-8")
        h = json.loads(text, parse_constant=no_const)
    except UnicodeDecodeError as e:
        raise err(f"JSON header is not UTF-8 ({e.reason} at byte {e.start})", "header", 32 + e.start) from None
    except (ValueError, RecursionError) as e:
        raise err(f"JSON header is not valid JSON ({str(e)[:200]})", "header", 32) from None
    if not isinstance(h, dict):
        raise err(f"JSON header is a {type(h).__name__}, expected an object", "header", 32)
    return h


_MISSING = object()


def _get(h: dict, key: str, err: _Err, kind, lo=None, hi=None, *, optional=False):
    """h[a][b]... for key "a.b"; type/range checked. kind: int, float, str, bool, dict, list, 'f32list:<n>',
    'null|str'."""
    cur = h
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            if optional:
                return _MISSING
            raise err(f"JSON header misses {key!r}", f"header:{key}")
        cur = cur[part]
    field = f"header:{key}"
    if kind is int:
        if isinstance(cur, bool) or not isinstance(cur, int):
            raise err(f"{key!r} must be an integer, got {type(cur).__name__}", field)
        if (lo is not None and cur < lo) or (hi is not None and cur > hi):
            raise err(f"{key!r} = {cur} is outside {lo}..{hi}", field)
    elif kind is str:
        if not isinstance(cur, str):
            raise err(f"{key!r} must be a string, got {type(cur).__name__}", field)
    elif kind is dict:
        if not isinstance(cur, dict):
            raise err(f"{key!r} must be an object, got {type(cur).__name__}", field)
    elif isinstance(kind, str) and kind.startswith("f32list:"):
        want = int(kind.split(":")[1])
        if (
            not isinstance(cur, list)
            or len(cur) != want
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cur)
        ):
            raise err(f"{key!r} must be a list of {want} numbers", field)
        try:
            with np.errstate(over="ignore"):
                arr = np.asarray(cur, dtype=np.float64).astype(np.float32)
        except (OverflowError, ValueError, TypeError):
            raise err(f"{key!r} holds values that are not finite float32", field) from None
        if not np.isfinite(arr).all():
            raise err(f"{key!r} holds values that are not finite float32", field)
        if lo is not None and (arr < lo).any():
            raise err(f"{key!r} holds values below {lo}", field)
        return arr
    elif kind == "null|str":
        if cur is not None and not isinstance(cur, str):
            raise err(f"{key!r} must be a string or null", field)
    return cur


@dataclass
class _Plan:
    """What the header says the sections must be."""

    n: int
    degree: int
    m: int
    expected: dict  # tag -> (raw_length, elem_size)
    models: dict  # tag -> (range-coder model, bits) for the sections codec 2 may code


def _check_quant(h: dict, spec, fields: list, err: _Err) -> None:
    """``quant.<spec.name>``: its scheme, then each (key, kind, lo, hi) of ``fields``."""
    if spec.scheme is not None and _get(h, f"quant.{spec.name}.scheme", err, str) != spec.scheme:
        raise err(f"unknown {spec.label} scheme", f"header:quant.{spec.name}.scheme")
    for key, kind, lo, hi in fields:
        _get(h, f"quant.{spec.name}.{key}", err, kind, lo, hi)


def _validate_header(h: dict, n_fixed: int, err: _Err) -> _Plan:
    fmt = _get(h, "format", err, str)
    if fmt != "exgs":
        raise err(f"JSON header 'format' is {fmt!r}, expected 'exgs'", "header:format")
    _get(h, "version", err, int, 1, READER_VERSION)
    n = _get(h, "n", err, int, 0, MAX_GAUSSIANS)
    if n != n_fixed:
        raise err(f"JSON header says n = {n} but the fixed header says {n_fixed}", "header:n")
    degree = _get(h, "sh_degree", err, int, 0, 3)
    m = _get(h, "n_sh_full", err, int, 0, n)
    if degree == 0 and m != 0:
        raise err(f"n_sh_full = {m} with SH degree 0", "header:n_sh_full")
    order = _get(h, "order", err, str)
    if order != "morton":
        raise err(f"unknown order {order!r}", "header:order")
    _get(h, "bounds.min", err, "f32list:3")
    _get(h, "bounds.max", err, "f32list:3")
    _get(h, "encoder", err, dict)
    _get(h, "options", err, dict)
    _get(h, "errors", err, dict)
    _get(h, "extra", err, dict)
    _get(h, "source_sha256", err, "null|str")
    _get(h, "quant", err, dict)
    # the attribute table: every row's scheme, bits and parameters, then the uniform ranges
    for a in ATTRIBUTES:
        _check_quant(h, a, a.header_fields(), err)
    for a in ATTRIBUTES:
        if a.dim:
            _check_range(h, a.name, err)
    q = h["quant"]
    expected = {a.tag: a.expected(n, q[a.name]["bits"]) for a in ATTRIBUTES}
    if m > 0:
        _check_quant(h, SH_REST, SH_REST.header_fields(degree), err)
        _check_range(h, SH_REST.name, err)
    expected.update(SH_REST.expected(n, degree, m, q))
    return _Plan(n, degree, m, expected, attributes.models(q))


def _check_range(h: dict, key: str, err: _Err) -> None:
    """min + step (2^bits - 1) must stay a finite float32, so every decoded value is finite."""
    q = h["quant"][key]
    top = np.abs(np.asarray(q["min"], np.float64)) + np.asarray(q["step"], np.float64) * ((1 << q["bits"]) - 1)
    if not (top < 3.0e38).all():
        raise err(f"quant.{key}: min + step x (2^bits - 1) leaves the float32 range", f"header:quant.{key}.step")


def _parse_container(data: bytes, err: _Err, size: int | None = None) -> tuple[int, int, dict, list[_Section], _Plan]:
    """Fixed header, JSON header, section table, with every check of FORMAT.md section 7 that does not need
    the payloads. ``data`` holds at least the header and table when the file is that long; ``size`` is the
    file's length (default ``len(data)``). Returns (version, flags, header dict, sections, plan)."""
    size = len(data) if size is None else size
    if size < 4 or data[:4] != MAGIC:
        got = bytes(data[:4])
        raise err(f"not an .exgs file (magic {got!r}, expected b'EXGS')", "fixed-header:magic", 0)
    if size < _FIXED.size or len(data) < _FIXED.size:
        raise err(f"truncated: {size} bytes, the fixed header alone needs 32", "fixed-header", size)
    magic, version, r0, flags, n, jlen, nsec, r1, crc, r2 = _FIXED.unpack_from(data, 0)
    if version == 0:
        raise err("format version 0 is not valid", "fixed-header:version", 4)
    if version > READER_VERSION:
        raise err(
            f"written by a newer exgs (format version {version}; this reader understands up to "
            f"{READER_VERSION}): upgrade exgs",
            "fixed-header:version",
            4,
        )
    if r0 or r1 or r2:
        raise err("reserved fixed-header bytes are not zero", "fixed-header:reserved")
    if flags & ~KNOWN_FLAGS:
        raise err(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:08x} (reserved, must be 0)", "fixed-header:flags", 8)
    if n > MAX_GAUSSIANS:
        raise err(f"{n} Gaussians exceed the limit of {MAX_GAUSSIANS}", "fixed-header:n_gaussians", 12)
    if not 2 <= jlen <= MAX_JSON:
        raise err(f"JSON header length {jlen} is outside 2..{MAX_JSON}", "fixed-header:json_length", 16)
    if nsec > MAX_SECTIONS:
        raise err(f"{nsec} sections exceed the limit of {MAX_SECTIONS}", "fixed-header:section_count", 20)
    data_start = 32 + jlen + 32 * nsec
    if data_start > size or data_start > len(data):
        raise err(
            f"truncated: the header and section table need {data_start} bytes, the file has {size}",
            "section-table",
            size,
        )
    mv = memoryview(data)
    got_crc = zlib.crc32(mv[32:data_start], zlib.crc32(mv[:24]))
    if got_crc != crc:
        raise err("the header is corrupt (checksum)", "fixed-header:header_crc32", 24)
    h = _parse_json(bytes(mv[32 : 32 + jlen]), err)
    plan = _validate_header(h, n, err)
    if h["version"] != version:
        raise err(f"JSON version {h['version']} differs from the fixed header's {version}", "header:version")

    sections: list[_Section] = []
    seen = set()
    pos = data_start
    for i in range(nsec):
        off = 32 + jlen + 32 * i
        tag, codec, filt, esz, sflags, slen, rlen, scrc, rr = _ENTRY.unpack_from(data, off)
        where = f"section-table[{i}]"
        if len(tag) != 4 or not set(tag) <= _TAG_CHARS:
            raise err(f"section tag {tag!r} has characters outside A-Z 0-9 _", where, off)
        name = HEAD_NAME if tag == HEAD_TAG else SECTION_NAMES.get(tag, tag.decode("ascii"))
        field = f"section:{name}"
        if tag in seen:
            raise err(f"section '{name}' appears twice", field, off)
        seen.add(tag)
        if rr or sflags & ~SECTION_REQUIRED:
            raise err(f"section '{name}': reserved table bits are not zero", field, off)
        if codec not in entropy.CODECS:
            raise err(f"section '{name}': unknown codec {codec}", field, off + 4)
        if filt not in entropy.FILTERS:
            raise err(f"section '{name}': unknown filter {filt}", field, off + 5)
        if codec == entropy.CODEC_RANGE:
            if version < FEATURE_MIN_VERSION["range_coder"]:
                raise err(
                    f"section '{name}': codec 2 (range coder) needs format version 2, the file says {version}",
                    field,
                    off + 4,
                )
            if (tag in SECTION_NAMES and tag not in plan.models) or tag == HEAD_TAG:  # unknown: see below
                raise err(f"section '{name}': codec 2 (range coder) is not defined for this section", field, off + 4)
            if filt != entropy.FILTER_NONE:
                raise err(f"section '{name}': codec 2 (range coder) takes no filter, got filter {filt}", field, off + 5)
        if esz not in entropy.ELEM_DTYPES:
            raise err(f"section '{name}': element size {esz} is not 1, 2, 4 or 8", field, off + 6)
        if slen > size - pos:
            raise err(
                f"truncated: section '{name}' needs {slen} bytes at offset {pos}, the file has {size - pos}", field, pos
            )
        if codec == entropy.CODEC_STORED and slen != rlen:
            raise err(f"section '{name}': stored length {slen} differs from raw length {rlen}", field, off + 8)
        if tag in SECTION_NAMES:
            if tag not in plan.expected:
                raise err(
                    f"section '{name}' is not expected for this header (SH degree {plan.degree}, "
                    f"{plan.m} full-SH Gaussians)",
                    field,
                    off,
                )
            want, want_e = plan.expected[tag]
            if rlen != want or esz != want_e:
                raise err(
                    f"section '{name}': raw length {rlen} / element size {esz}, expected {want} / {want_e} "
                    f"for N = {plan.n}",
                    field,
                    off + 16,
                )
            most = entropy.max_raw_length(codec, slen, esz, plan.models.get(tag))
            if rlen > most:
                raise err(
                    f"section '{name}': {slen} stored bytes cannot hold the {rlen} raw bytes N = {plan.n} needs "
                    f"({entropy.CODEC_NAMES[codec]} gives at most {most}): a decompression bomb or a cut file",
                    field,
                    off + 8,
                )
        elif tag == HEAD_TAG:
            if rlen > MAX_HEAD_BYTES:
                raise err(
                    f"section '{name}': raw length {rlen} exceeds the {MAX_HEAD_BYTES} bytes a head may have",
                    field,
                    off + 16,
                )
            most = entropy.max_raw_length(codec, slen, esz, None)
            if rlen > most:
                raise err(
                    f"section '{name}': {slen} stored bytes cannot hold {rlen} raw bytes "
                    f"({entropy.CODEC_NAMES[codec]} gives at most {most})",
                    field,
                    off + 8,
                )
        elif sflags & SECTION_REQUIRED:
            raise err(
                f"required section '{name}' is unknown to this reader: written by a newer exgs? upgrade exgs",
                field,
                off,
            )
        sections.append(_Section(tag, name, codec, filt, esz, sflags, slen, rlen, scrc, pos))
        pos += slen
    if pos != size:
        raise err(f"{size - pos} unexpected bytes after the last section", "trailing-bytes", pos)
    for tag in plan.expected:
        if tag not in seen:
            raise err(f"section '{SECTION_NAMES[tag]}' is missing", f"section:{SECTION_NAMES[tag]}")
    return version, flags, h, sections, plan


# ============================================================================================ decode


def decode(data: bytes, *, path: str | os.PathLike | None = None, max_gaussians: int | None = None) -> GaussianScene:
    """Decode the bytes of an .exgs file into a :class:`GaussianScene` (in the stored Morton order).

    Args:
        data: the whole file.
        path: the file's name, used in error messages and ``meta["path"]``.
        max_gaussians: the most Gaussians accepted (0 = no limit); default: ``EXGS_MAX_GAUSSIANS`` or
            50,000,000 (:mod:`exgs_core.limits`, which also bounds the Gaussians per byte of file and the memory).

    Returns:
        The scene: ``meta["format"] == "exgs"``, ``meta["exgs_header"]`` the JSON header,
        ``meta["exgs_sh_full"]`` bool [N] (which Gaussians have higher SH; the rest have zeros),
        ``antialiased`` when flagged, ``meta["notes"]`` lists skipped unknown sections.

    Raises:
        LimitError: (a FormatError, field ``fixed-header:n_gaussians``) N above the limits of
            :mod:`exgs_core.limits`, checked before anything N-sized is allocated.
        FormatError: anything wrong with the bytes; ``field`` names the section or header field.
    """
    err = _Err(None if path is None else os.fspath(path))
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode() needs bytes, got {type(data).__name__}")
    limits.check_argument(max_gaussians)
    data = bytes(data)
    _, flags, h, sections, plan = _parse_container(data, err)
    need = decode_memory_estimate(plan.n, plan.degree, sum(v[0] for v in plan.expected.values()))
    lim = dataclasses.replace(limits.current(max_gaussians), memory=_memory_limit())
    limits.check_count(
        plan.n,
        file_bytes=len(data),
        need_bytes=need,
        path=err.path,
        field="fixed-header:n_gaussians",
        offset=12,
        limits=lim,
    )
    try:
        return _decode_sections(data, err, flags, h, sections, plan, path)
    except MemoryError:
        raise err(f"out of memory while decoding {plan.n} Gaussians", "fixed-header:n_gaussians", 12) from None


def decode_memory_estimate(n: int, degree: int, raw_bytes: int) -> int:
    """Bytes :func:`decode` needs at its peak, roughly: the decoded float32 arrays (11 + 3 K per Gaussian, from
    the attribute table), the raw streams, the temporaries of the dequantisers and the range decoder's int64
    values (up to 9 per Gaussian when the five modelled sections decode in parallel)."""
    return int(n * (4 * attributes.decoded_floats(degree) + 64 + 8 * 9) + 2 * raw_bytes)


def _memory_limit() -> int:
    """The ceiling decode() accepts before allocating (:func:`exgs_core._machine.memory_limit`: the smallest of
    half the physical memory and what RLIMIT_AS and the cgroup leave)."""
    return memory_limit()


def _decode_sections(data: bytes, err: _Err, flags: int, h: dict, sections: list, plan: _Plan, path) -> GaussianScene:
    notes = []
    mv = memoryview(data)
    known = []
    head_section = None
    for s in sections:
        if s.tag == HEAD_TAG:
            if zlib.crc32(mv[s.offset : s.offset + s.stored_length]) != s.crc32:
                raise err(f"section '{s.name}' is corrupt (checksum)", f"section:{s.name}", s.offset)
            head_section = s
            continue
        if s.tag not in SECTION_NAMES:
            notes.append(f"skipped unknown optional section '{s.name}' ({s.stored_length} bytes)")
            continue
        if zlib.crc32(mv[s.offset : s.offset + s.stored_length]) != s.crc32:
            raise err(f"section '{s.name}' is corrupt (checksum)", f"section:{s.name}", s.offset)
        known.append(s)

    # zstd and the range coder release the GIL: sections decode in parallel; errors are reported in table order
    parallel = len(known) > 1 and sum(s.raw_length for s in known) > PARALLEL_DECODE_BYTES
    results = entropy.decode_streams(
        [
            (
                mv[s.offset : s.offset + s.stored_length],
                s.codec,
                s.filter,
                s.elem_size,
                s.raw_length,
                plan.models.get(s.tag),
            )
            for s in known
        ],
        threads=min(4, os.cpu_count() or 1) if parallel else 1,
    )
    arrays: dict[bytes, np.ndarray] = {}
    for s, r in zip(known, results, strict=False):
        if isinstance(r, entropy.StreamError):
            raise err(f"section '{s.name}': {r}", f"section:{s.name}", s.offset)
        arrays[s.tag] = r

    try:
        fields = attributes.dequantise(arrays, h["quant"], plan.n, plan.degree, plan.m)
    except attributes.CodeError as e:
        name = SECTION_NAMES[e.tag]
        raise err(f"section '{name}': {e.detail}", f"section:{name}") from None
    full = fields.pop("sh_full")

    meta = {"format": "exgs", "exgs_header": h, "exgs_sh_full": full, "notes": notes}
    if head_section is not None:
        head = _decode_head(mv, head_section, err)
        if isinstance(head, str):
            notes.append(head)
        else:
            meta["exgs_head"] = head
    scene_up = None
    # the compressor records the source's axis facts (``extra.scene_meta``: up vector, coordinate system) so
    # automatic views of the decoded scene match the source's; only known keys of the right type are taken
    sm = h.get("extra", {}).get("scene_meta", {}) if isinstance(h.get("extra"), dict) else {}
    if isinstance(sm, dict):
        up = sm.get("up")
        if (
            isinstance(up, list)
            and len(up) == 3
            and all(isinstance(v, (int, float)) for v in up)
            and all(math.isfinite(v) for v in up)
            and any(v != 0 for v in up)
        ):
            scene_up = (float(up[0]), float(up[1]), float(up[2]))
        if isinstance(sm.get("coordinate_system"), str):
            meta["coordinate_system"] = sm["coordinate_system"][:200]
    if path is not None:
        meta["path"] = os.fspath(path)
    return GaussianScene(
        fields["means"],
        fields["quats"],
        fields["log_scales"],
        fields["opacity_logits"],
        fields["sh"],
        meta=meta,
        antialiased=bool(flags & FLAG_ANTIALIASED),
        up=scene_up,
    )


def _decode_head(mv: memoryview, s: _Section, err: _Err):
    """The SceneHead of the ``HEAD`` section ``s`` (its CRC already checked), or a note (str) when its layout
    version or kind is newer than this reader's. A bad payload raises FormatError naming the section."""
    from ..codec.head import SceneHead, UnknownHeadVersion

    (raw,) = entropy.decode_streams(
        [(mv[s.offset : s.offset + s.stored_length], s.codec, s.filter, s.elem_size, s.raw_length, None)], threads=1
    )
    if isinstance(raw, entropy.StreamError):
        raise err(f"section '{s.name}': {raw}", f"section:{s.name}", s.offset)
    try:
        return SceneHead.from_bytes(np.asarray(raw).tobytes(), path=err.path, offset=s.offset)
    except UnknownHeadVersion as e:
        return f"skipped the scene head ({e}: written by a newer exgs)"


# ============================================================================================ files


def read_exgs(path: str | os.PathLike, *, max_gaussians: int | None = None) -> GaussianScene:
    """Read an .exgs file (see :func:`decode`, which checks the limits of :mod:`exgs_core.limits`)."""
    data = read_bytes(path)
    return decode(data, path=path, max_gaussians=max_gaussians)


def write_exgs(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` (from :func:`encode`) to ``path`` atomically (temp file, then rename)."""
    from .atomic import atomic_write

    if not bytes(data[:4]) == MAGIC:
        raise ValueError("data does not start with the EXGS magic: not the output of encode()")
    with atomic_write(path, "wb") as f:
        f.write(data)
    # atomic_write's temporary file is created 0600; give the result the usual umask-based mode
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def _describe(h: dict, version: int, flags: int, sections: list[_Section], size: int) -> dict:
    out = dict(h)
    out["container"] = {
        "version": version,
        "flags": flags,
        "file_bytes": size,
        "sections": [
            {
                "tag": s.tag.decode("ascii"),
                "name": s.name,
                "codec": s.codec,
                "filter": s.filter,
                "elem_size": s.elem_size,
                "stored_bytes": s.stored_length,
                "raw_bytes": s.raw_length,
            }
            for s in sections
        ],
    }
    return out


def describe(data: bytes, *, path=None) -> dict:
    """The JSON header of in-memory .exgs bytes, plus ``container``: version, flags, file size and the
    section table (tag, name, codec, filter, stored/raw bytes). Payloads are not decoded."""
    err = _Err(path)
    version, flags, h, sections, _ = _parse_container(bytes(data), err)
    return _describe(h, version, flags, sections, len(data))


def read_header(path: str | os.PathLike) -> dict:
    """Cheap look at an .exgs file (for ``exgs info``): reads the fixed header, the JSON header and the section
    table only, checks them (header CRC, limits, section extents against the file size) and returns
    :func:`describe`'s dict. Section payloads are neither read nor verified."""
    err = _Err(os.fspath(path))
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            fixed = f.read(32)
            if len(fixed) == 32 and fixed[:4] == MAGIC:
                _, _, _, _, _, jlen, nsec, _, _, _ = _FIXED.unpack(fixed)
                want = min(32 + min(jlen, MAX_JSON) + 32 * min(nsec, MAX_SECTIONS), size)
                head = fixed + f.read(want - 32)
            else:
                head = fixed
    except FileNotFoundError:
        raise FormatError("no such file", path) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    version, flags, h, sections, _ = _parse_container(head, err, size)
    return _describe(h, version, flags, sections, size)
