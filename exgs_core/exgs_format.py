"""The ``.exgs`` container: encode a clean scene into bytes, decode bytes back, read and write files.

The byte layout is specified in ``docs/FORMAT.md``; this module follows it section by section. The codec
pieces live in :mod:`exgs_core.codec` (Morton order, quantisers, SH palette, filters + zstd).

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

import concurrent.futures
import dataclasses
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import limits
from ._machine import memory_limit
from .codec import entropy, morton, quantize
from .codec.palette import default_palette_size, kmeans_palette
from .conventions import sh_coeff_count
from .io.atomic import read_bytes
from .errors import FormatError, SceneError
from .scene import GaussianScene

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "READER_VERSION",
    "FEATURE_MIN_VERSION",
    "SECTION_NAMES",
    "CodecOptions",
    "encode",
    "decode",
    "read_exgs",
    "write_exgs",
    "read_header",
    "describe",
    "error_bounds",
    "storage_order",
    "auto_position_bits",
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

_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")
MAX_GAUSSIANS = 1 << 27
MAX_JSON = 1 << 20
MAX_SECTIONS = 64
MAX_PALETTE = 65536

_FIXED = struct.Struct("<4sHHIIIHHII")  # 32 bytes
_ENTRY = struct.Struct("<4sBBBBQQII")  # 32 bytes
assert _FIXED.size == 32 and _ENTRY.size == 32

#: Section tag -> name used in messages and ``FormatError.field`` (``section:<name>``).
SECTION_NAMES = {
    b"POSN": "positions",
    b"ROTN": "rotations",
    b"SCAL": "log_scales",
    b"OPAC": "opacity",
    b"COLR": "sh_dc",
    b"SHMK": "sh_mask",
    b"SHPL": "sh_palette",
    b"SHIX": "sh_indices",
}
_TAG_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

Progress = Callable[[float, str], None]


# ============================================================================================ options


@dataclass(frozen=True)
class CodecOptions:
    """Quantisation and entropy-coding knobs of the .exgs encoder (docs/FORMAT.md, section 5).

    Attributes:
        position_bits: bits per axis of the centres, relative to the scene's bounds (12..21; below 16 suits
            pruned scenes, whose Gaussians are large against the grid: ``compress.codec_options``), or ``"auto"``:
            16 plus one bit per doubling of the bounds beyond twice the 1..99 % quantile extent (floaters far
            out would otherwise coarsen the core), at most 21 (:func:`auto_position_bits`).
        rotation_bits: bits per smallest-three component (4..20; 10 packs into 32 bits).
        scale_bits: bits per log-scale axis, uniform over the scene's range (4..16).
        opacity_bits: bits of the quantised sigmoid(opacity) (4..16).
        color_bits: bits per SH DC channel, uniform over the scene's range (4..16).
        sh_palette_size: palette size for the higher SH; None picks
            :func:`~exgs_core.codec.palette.default_palette_size` (about M / 16, 256..16384).
        sh_iterations: Lloyd passes of the palette k-means (coarse and per cell).
        sh_sample_per_centroid: training sample size per palette entry.
        sh_probes: coarse cells searched per vector in the final assignment (1 or 2).
        seed: seed of the palette's subsample and initialisation.
        zstd_level: zstandard level for every stream (1..22).
        range_coder: also range-code the positions, rotations, log-scales, opacity and DC colour with their
            context models (codec 2, format version 2) and keep, per section, the smaller of that and zstd.
            False writes format version 1 files, readable by every exgs.
        choose_filters: try the byte-shuffle and delta filters per stream and keep the smaller.
        threads: worker threads compressing streams in parallel (output does not depend on it).
    """

    position_bits: int | str = 16
    rotation_bits: int = 10
    scale_bits: int = 8
    opacity_bits: int = 8
    color_bits: int = 8
    sh_palette_size: int | None = None
    sh_iterations: int = 4
    sh_sample_per_centroid: int = 8
    sh_probes: int = 2
    seed: int = 0
    zstd_level: int = 9
    range_coder: bool = True
    choose_filters: bool = True
    threads: int = 2

    def __post_init__(self):
        def rng(name, lo, hi):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
                raise ValueError(f"CodecOptions.{name} must be an integer in {lo}..{hi}, got {v!r}")

        if self.position_bits != "auto":
            rng("position_bits", 12, morton.MAX_BITS)
        rng("rotation_bits", 4, 20)
        rng("scale_bits", 4, 16)
        rng("opacity_bits", 4, 16)
        rng("color_bits", 4, 16)
        if self.sh_palette_size is not None:
            rng("sh_palette_size", 1, MAX_PALETTE)
        rng("sh_iterations", 0, 100)
        rng("sh_sample_per_centroid", 1, 1 << 16)
        rng("sh_probes", 1, 2)
        rng("seed", 0, 2**32 - 1)
        rng("zstd_level", 1, 22)
        rng("threads", 1, 64)


# ============================================================================================ encode


def _report(progress: Progress | None, fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(fraction), stage)


def _f32list(a) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def _check_scene(scene: GaussianScene) -> None:
    if not isinstance(scene, GaussianScene):
        raise TypeError(f"encode() needs a GaussianScene, got {type(scene).__name__}")
    lengths = {f: int(getattr(scene, f).shape[0]) for f in ("means", "quats", "log_scales", "opacity_logits", "sh")}
    if len(set(lengths.values())) > 1:
        raise SceneError("the scene is not clean (field lengths disagree: "
                         + ", ".join(f"{k}={v}" for k, v in lengths.items()) + "): sanitize it first")
    if scene.n == 0:
        return  # nothing else to check (and GaussianScene.validate cannot reshape empty SH arrays)
    # fast path: whole-array checks; scene.validate() (slower, per Gaussian) only to word the error
    q = scene.quats.astype(np.float64)
    clean = all(bool(np.isfinite(getattr(scene, f)).all()) for f in _FIELDS) and bool(
        ((q * q).sum(axis=1) >= 1e-24).all())
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
                raise SceneError(f"{name}: values up to {top:.3g} from the minimum, beyond what float32 steps can "
                                 "cover; sanitize first")


def _order(means: np.ndarray, bits: int):
    lo, step = quantize.uniform_params(means, bits)
    qpos = quantize.uniform_encode(means, lo, step, bits, dtype=np.uint32)  # [3, N]
    codes = morton.encode(qpos.T)
    return lo, step, qpos, codes, morton.order(codes)


def auto_position_bits(means: np.ndarray) -> int:
    """Bits per axis for ``position_bits="auto"``: 16 + max(0, ceil(log2(r)) - 1) clamped to 21, with r the
    largest ratio over the axes of the full extent to the 1..99 % quantile extent (16 for r <= 2)."""
    means = np.asarray(means, dtype=np.float64)
    if means.shape[0] < 2:
        return 16
    full = means.max(axis=0) - means.min(axis=0)
    lo, hi = np.quantile(means, [0.01, 0.99], axis=0)
    robust = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(robust > 0, full / np.where(robust > 0, robust, 1.0), 1.0)
    r = float(ratio.max())
    extra = max(0, math.ceil(math.log2(r)) - 1) if r > 1 else 0
    return int(min(16 + extra, morton.MAX_BITS))


def _resolve_bits(means: np.ndarray, position_bits) -> int:
    return auto_position_bits(means) if position_bits == "auto" else int(position_bits)


def storage_order(means: np.ndarray, position_bits: int | str = 16) -> np.ndarray:
    """The permutation :func:`encode` applies: int64 [N] indices into the input such that
    ``decode(encode(scene)).means[i]`` is the quantised ``scene.means[order[i]]`` (Morton order of the quantised
    centres, ties in input order). Use it to map per-Gaussian data of the input to the decoded scene."""
    means = np.asarray(means, dtype=np.float32)
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means: expected float32 [N, 3], got {means.shape}")
    return _order(means, _resolve_bits(means, position_bits))[4]


def encode(
    scene: GaussianScene,
    *,
    sh_full: np.ndarray | None = None,
    options: CodecOptions = CodecOptions(),
    source_sha256: str | None = None,
    extra_header: dict | None = None,
    progress: Progress | None = None,
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

    Returns:
        The file's bytes. Gaussians are stored in Morton order of their quantised centres.

    Raises:
        SceneError: the scene is not clean or too large. ValueError: bad ``sh_full``/``extra_header``.
    """
    from . import __version__

    if not isinstance(options, CodecOptions):
        raise TypeError(f"options must be CodecOptions, got {type(options).__name__}")
    _check_scene(scene)
    n = scene.n
    degree = scene.sh_degree
    k = sh_coeff_count(degree)
    if source_sha256 is not None:
        if not (isinstance(source_sha256, str) and len(source_sha256) == 64
                and all(c in "0123456789abcdef" for c in source_sha256.lower())):
            raise ValueError("source_sha256 must be a 64-character hex string")
        source_sha256 = source_sha256.lower()
    extra = {} if extra_header is None else extra_header
    if not isinstance(extra, dict):
        raise ValueError("extra_header must be a dict")
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra_header must be JSON-serialisable without NaN/Inf: {e}") from None
    if degree == 0:
        full = np.zeros(n, bool)
    elif sh_full is None:
        full = np.ones(n, bool)
    else:
        full = np.asarray(sh_full)
        if full.shape != (n,) or full.dtype != np.bool_:
            raise ValueError(f"sh_full: expected bool [N={n}], got {full.dtype} {full.shape}")

    # ---- order: quantised centres -> Morton codes -> stable sort
    _report(progress, 0.0, "order")
    pb = _resolve_bits(scene.means, options.position_bits)
    p_lo, p_step, qpos, codes, perm = _order(scene.means, pb)
    codes = codes[perm]
    quats = scene.quats[perm]
    log_scales = scene.log_scales[perm]
    logits = scene.opacity_logits[perm]
    dc = scene.sh[perm, 0, :]
    full = full[perm]
    m = int(full.sum())

    # ---- scalar quantisers
    _report(progress, 0.1, "quantize")
    rb, sb, ob, cb = options.rotation_bits, options.scale_bits, options.opacity_bits, options.color_bits
    rot_words = quantize.smallest3_encode(quats, rb) if n else np.zeros(0, quantize.rotation_word_dtype(rb))
    s_lo, s_step = quantize.uniform_params(log_scales, sb)
    scal = quantize.uniform_encode(log_scales, s_lo, s_step, sb)  # [3, N]
    opac = quantize.opacity_encode(logits, ob)
    c_lo, c_step = quantize.uniform_params(dc, cb)
    colr = quantize.uniform_encode(dc, c_lo, c_step, cb)  # [3, N]

    # ---- higher SH palette
    quant: dict = {
        "positions": {"bits": pb, "min": _f32list(p_lo), "step": _f32list(p_step)},
        "rotations": {"scheme": "smallest3", "bits": rb},
        "log_scales": {"scheme": "uniform", "bits": sb, "min": _f32list(s_lo), "step": _f32list(s_step)},
        "opacity": {"scheme": "sigmoid_uniform", "bits": ob},
        "sh_dc": {"scheme": "uniform", "bits": cb, "min": _f32list(c_lo), "step": _f32list(c_step)},
    }
    streams_in: list[tuple[bytes, np.ndarray, tuple[int, ...]]] = []
    S, D_, N_ = entropy.FILTER_SHUFFLE, entropy.FILTER_DELTA, entropy.FILTER_NONE
    choose = options.choose_filters
    streams_in.append((b"POSN", codes, (D_,)))
    streams_in.append((b"ROTN", rot_words, (S,)))
    streams_in.append((b"SCAL", scal.ravel(), (D_, S) if choose else (D_,)))
    streams_in.append((b"OPAC", opac, (S, D_) if choose else (S,)))
    streams_in.append((b"COLR", colr.ravel(), (D_, S) if choose else (D_,)))
    models = _models(quant) if options.range_coder else {}
    pal_dec = None
    sh_rest_in = None
    if degree > 0:
        d = 3 * (k - 1)
        streams_in.append((b"SHMK", np.packbits(full, bitorder="little"), (N_,)))
        if m > 0:
            _report(progress, 0.2, "sh_palette")
            sh_rest_in = np.ascontiguousarray(scene.sh[perm[full], 1:, :]).reshape(m, d)
            size = options.sh_palette_size or default_palette_size(m)
            pal, labels = kmeans_palette(
                sh_rest_in, size, iterations=options.sh_iterations,
                sample_per_centroid=options.sh_sample_per_centroid, probes=options.sh_probes, seed=options.seed,
            )
            q_lo, q_step = quantize.uniform_params(pal, 8)
            pal_codes = quantize.uniform_encode(pal, q_lo, q_step, 8).T.copy()  # [P, D] u8
            pal_dec = quantize.uniform_decode(pal_codes.T, q_lo, q_step)  # [P, D] f32
            quant["sh_rest"] = {"scheme": "palette", "size": int(pal.shape[0]), "dim": d, "bits": 8,
                                "min": _f32list(q_lo), "step": _f32list(q_step)}
            streams_in.append((b"SHPL", pal_codes.ravel(), (N_,)))
            streams_in.append((b"SHIX", labels.astype(np.uint16), (S, D_) if choose else (S,)))
            sh_labels = labels

    # ---- measured errors (decode the codes, compare with the sorted input) and decoded bounds
    _report(progress, 0.7, "errors")
    errors: dict = {}
    dmin = dmax = np.zeros(3, np.float32)
    if n:
        dpos = quantize.uniform_decode(qpos[:, perm], p_lo, p_step)
        dmin, dmax = dpos.min(axis=0), dpos.max(axis=0)
        errors["positions_max_abs"] = _f32list(np.abs(dpos.astype(np.float64) - scene.means[perm]).max(axis=0))
        del dpos
        errors["rotations_max_deg"] = float(np.degrees(
            quantize.rotation_angle(quats, quantize.smallest3_decode(rot_words, rb)).max()))
        dls = quantize.uniform_decode(scal, s_lo, s_step)
        errors["log_scales_max_abs"] = _f32list(np.abs(dls.astype(np.float64) - log_scales).max(axis=0))
        p_in = quantize._sigmoid64(logits)
        p_out = quantize._sigmoid64(quantize.opacity_decode(opac, ob))
        errors["opacity_max_abs"] = float(np.abs(p_out - p_in).max())
        ddc = quantize.uniform_decode(colr, c_lo, c_step)
        errors["sh_dc_max_abs"] = _f32list(np.abs(ddc.astype(np.float64) - dc).max(axis=0))
    if pal_dec is not None:
        sq = ref = mx = 0.0
        for a in range(0, m, 1 << 16):  # in chunks: M x D float64 temporaries would be large
            src = sh_rest_in[a:a + (1 << 16)].astype(np.float64)
            diff = pal_dec[sh_labels[a:a + (1 << 16)]].astype(np.float64) - src
            sq += float((diff * diff).sum())
            ref += float((src * src).sum())
            mx = max(mx, float(np.abs(diff).max()))
        errors["sh_rest_rmse"] = math.sqrt(sq / sh_rest_in.size)
        errors["sh_rest_max_abs"] = mx
        errors["sh_rest_rel_mse"] = sq / ref if ref > 0 else 0.0

    # ---- entropy coding, streams in parallel
    _report(progress, 0.75, "entropy")
    level = options.zstd_level

    def work(item):
        tag, arr, filters = item
        return tag, entropy.encode_stream(arr, filters=filters, level=level, model=models.get(tag))

    if options.threads > 1 and len(streams_in) > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=options.threads) as ex:
            # largest streams first so the pool stays busy; results are put back in table order
            order = sorted(range(len(streams_in)), key=lambda i: -streams_in[i][1].nbytes)
            futs = {i: ex.submit(work, streams_in[i]) for i in order}
            encoded = [futs[i].result() for i in range(len(streams_in))]
    else:
        encoded = [work(it) for it in streams_in]

    # ---- container
    _report(progress, 0.97, "container")
    version = FEATURE_MIN_VERSION["range_coder"] if any(st.codec == entropy.CODEC_RANGE for _, st in encoded) else 1
    header = {
        "format": "exgs",
        "version": version,
        "n": n,
        "sh_degree": degree,
        "n_sh_full": m,
        "order": "morton",
        "bounds": {"min": _f32list(dmin), "max": _f32list(dmax)},
        "quant": quant,
        "encoder": {"name": "exgs", "version": __version__, "codec": CODEC_REVISION},
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "threads"},
        "errors": errors,
        "source_sha256": source_sha256,
        "extra": extra,
    }
    flags = FLAG_ANTIALIASED if scene.meta.get("antialiased") else 0
    out = _assemble(header, flags, n, encoded, version)
    _report(progress, 1.0, "done")
    return out


def _models(quant: dict) -> dict[bytes, tuple[str, int]]:
    """Range-coder model (docs/FORMAT.md 4.1) and bit width of each section that codec 2 may code."""
    return {
        b"POSN": ("morton", quant["positions"]["bits"]),
        b"ROTN": ("rotation", quant["rotations"]["bits"]),
        b"SCAL": ("triple", quant["log_scales"]["bits"]),
        b"OPAC": ("scalar", quant["opacity"]["bits"]),
        b"COLR": ("triple", quant["sh_dc"]["bits"]),
    }


def _assemble(header: dict, flags: int, n: int, encoded: list[tuple[bytes, entropy.Stream]], version: int) -> bytes:
    hjson = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    if len(hjson) > MAX_JSON:
        raise ValueError(f"JSON header of {len(hjson)} bytes exceeds the limit of {MAX_JSON} (extra_header too big?)")
    table = b"".join(
        _ENTRY.pack(tag, s.codec, s.filter, s.elem_size, SECTION_REQUIRED, len(s.stored), s.raw_length,
                    zlib.crc32(s.stored), 0)
        for tag, s in encoded
    )
    head24 = _FIXED.pack(MAGIC, version, 0, flags, n, len(hjson), len(encoded), 0, 0, 0)[:24]
    crc = zlib.crc32(table, zlib.crc32(hjson, zlib.crc32(head24)))
    fixed = head24 + struct.pack("<II", crc, 0)
    return b"".join([fixed, hjson, table] + [s.stored for _, s in encoded])


# ============================================================================================ decode


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
        if (not isinstance(cur, list) or len(cur) != want
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cur)):
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
    pb = _get(h, "quant.positions.bits", err, int, 1, morton.MAX_BITS)
    _get(h, "quant.positions.min", err, "f32list:3")
    _get(h, "quant.positions.step", err, "f32list:3", 0.0)
    if _get(h, "quant.rotations.scheme", err, str) != "smallest3":
        raise err("unknown rotation scheme", "header:quant.rotations.scheme")
    rb = _get(h, "quant.rotations.bits", err, int, 1, 20)
    for key, scheme in (("log_scales", "uniform"), ("sh_dc", "uniform")):
        if _get(h, f"quant.{key}.scheme", err, str) != scheme:
            raise err(f"unknown {key} scheme", f"header:quant.{key}.scheme")
        _get(h, f"quant.{key}.bits", err, int, 1, 16)
        _get(h, f"quant.{key}.min", err, "f32list:3")
        _get(h, f"quant.{key}.step", err, "f32list:3", 0.0)
    for key in ("positions", "log_scales", "sh_dc"):
        _check_range(h, key, err)
    if _get(h, "quant.opacity.scheme", err, str) != "sigmoid_uniform":
        raise err("unknown opacity scheme", "header:quant.opacity.scheme")
    _get(h, "quant.opacity.bits", err, int, 1, 16)
    del pb

    def usize(bits):
        return quantize.uniform_dtype(bits).itemsize

    rsz = quantize.rotation_word_dtype(rb).itemsize
    sbz = usize(h["quant"]["log_scales"]["bits"])
    obz = usize(h["quant"]["opacity"]["bits"])
    cbz = usize(h["quant"]["sh_dc"]["bits"])
    expected = {
        b"POSN": (8 * n, 8),
        b"ROTN": (rsz * n, rsz),
        b"SCAL": (3 * sbz * n, sbz),
        b"OPAC": (obz * n, obz),
        b"COLR": (3 * cbz * n, cbz),
    }
    if degree > 0:
        expected[b"SHMK"] = ((n + 7) // 8, 1)
    if m > 0:
        d = 3 * (sh_coeff_count(degree) - 1)
        if _get(h, "quant.sh_rest.scheme", err, str) != "palette":
            raise err("unknown sh_rest scheme", "header:quant.sh_rest.scheme")
        p = _get(h, "quant.sh_rest.size", err, int, 1, MAX_PALETTE)
        _get(h, "quant.sh_rest.dim", err, int, d, d)
        _get(h, "quant.sh_rest.bits", err, int, 8, 8)
        _get(h, "quant.sh_rest.min", err, f"f32list:{d}")
        _get(h, "quant.sh_rest.step", err, f"f32list:{d}", 0.0)
        _check_range(h, "sh_rest", err)
        expected[b"SHPL"] = (p * d, 1)
        expected[b"SHIX"] = (2 * m, 2)
    return _Plan(n, degree, m, expected, _models(h["quant"]))


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
            f"{READER_VERSION}): upgrade exgs", "fixed-header:version", 4)
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
        raise err(f"truncated: the header and section table need {data_start} bytes, the file has {size}",
                  "section-table", size)
    mv = memoryview(data)
    got_crc = zlib.crc32(mv[32:data_start], zlib.crc32(mv[:24]))
    if got_crc != crc:
        raise err("the header is corrupt (checksum)", "fixed-header:header_crc32", 24)
    h = _parse_json(bytes(mv[32:32 + jlen]), err)
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
        name = SECTION_NAMES.get(tag, tag.decode("ascii"))
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
                raise err(f"section '{name}': codec 2 (range coder) needs format version 2, the file says {version}",
                          field, off + 4)
            if tag in SECTION_NAMES and tag not in plan.models:  # unknown tags: required -> refused, else skipped
                raise err(f"section '{name}': codec 2 (range coder) is not defined for this section", field, off + 4)
            if filt != entropy.FILTER_NONE:
                raise err(f"section '{name}': codec 2 (range coder) takes no filter, got filter {filt}", field,
                          off + 5)
        if esz not in entropy.ELEM_DTYPES:
            raise err(f"section '{name}': element size {esz} is not 1, 2, 4 or 8", field, off + 6)
        if slen > size - pos:
            raise err(f"truncated: section '{name}' needs {slen} bytes at offset {pos}, the file has {size - pos}",
                      field, pos)
        if codec == entropy.CODEC_STORED and slen != rlen:
            raise err(f"section '{name}': stored length {slen} differs from raw length {rlen}", field, off + 8)
        if tag in SECTION_NAMES:
            if tag not in plan.expected:
                raise err(f"section '{name}' is not expected for this header (SH degree {plan.degree}, "
                          f"{plan.m} full-SH Gaussians)", field, off)
            want, want_e = plan.expected[tag]
            if rlen != want or esz != want_e:
                raise err(f"section '{name}': raw length {rlen} / element size {esz}, expected {want} / {want_e} "
                          f"for N = {plan.n}", field, off + 16)
            most = entropy.max_raw_length(codec, slen, esz, plan.models.get(tag))
            if rlen > most:
                raise err(f"section '{name}': {slen} stored bytes cannot hold the {rlen} raw bytes N = {plan.n} needs "
                          f"({entropy.CODEC_NAMES[codec]} gives at most {most}): a decompression bomb or a cut file",
                          field, off + 8)
        elif sflags & SECTION_REQUIRED:
            raise err(f"required section '{name}' is unknown to this reader: written by a newer exgs? upgrade exgs",
                      field, off)
        sections.append(_Section(tag, name, codec, filt, esz, sflags, slen, rlen, scrc, pos))
        pos += slen
    if pos != size:
        raise err(f"{size - pos} unexpected bytes after the last section", "trailing-bytes", pos)
    for tag in plan.expected:
        if tag not in seen:
            raise err(f"section '{SECTION_NAMES[tag]}' is missing", f"section:{SECTION_NAMES[tag]}")
    return version, flags, h, sections, plan


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
        ``meta["antialiased"]`` when flagged, ``meta["notes"]`` lists skipped unknown sections.

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
    limits.check_count(plan.n, file_bytes=len(data), need_bytes=need, path=err.path,
                       field="fixed-header:n_gaussians", offset=12, limits=lim)
    try:
        return _decode_sections(data, err, flags, h, sections, plan, path)
    except MemoryError:
        raise err(f"out of memory while decoding {plan.n} Gaussians", "fixed-header:n_gaussians", 12) from None


def decode_memory_estimate(n: int, degree: int, raw_bytes: int) -> int:
    """Bytes :func:`decode` needs at its peak, roughly: the decoded float32 arrays, the raw streams, the
    temporaries of the dequantisers and the range decoder's int64 values (up to 9 per Gaussian when the five
    modelled sections decode in parallel)."""
    k = sh_coeff_count(degree)
    return int(n * (4 * (3 + 4 + 3 + 1 + 3 * k) + 64 + 8 * 9) + 2 * raw_bytes)


def _memory_limit() -> int:
    """The ceiling decode() accepts before allocating (:func:`exgs_core._machine.memory_limit`: the smallest of
    half the physical memory and what RLIMIT_AS and the cgroup leave)."""
    return memory_limit()


def _decode_sections(data: bytes, err: _Err, flags: int, h: dict, sections: list, plan: _Plan, path) -> GaussianScene:
    n, degree, m = plan.n, plan.degree, plan.m
    k = sh_coeff_count(degree)
    q = h["quant"]
    notes = []
    arrays: dict[bytes, np.ndarray] = {}
    mv = memoryview(data)
    known = []
    for s in sections:
        if s.tag not in SECTION_NAMES:
            notes.append(f"skipped unknown optional section '{s.name}' ({s.stored_length} bytes)")
            continue
        if zlib.crc32(mv[s.offset:s.offset + s.stored_length]) != s.crc32:
            raise err(f"section '{s.name}' is corrupt (checksum)", f"section:{s.name}", s.offset)
        known.append(s)

    def work(s):
        try:
            return entropy.decode_stream(bytes(mv[s.offset:s.offset + s.stored_length]), s.codec, s.filter,
                                         s.elem_size, s.raw_length, plan.models.get(s.tag))
        except entropy.StreamError as e:
            return e

    # zstd and the range coder release the GIL: sections decode in parallel; errors are reported in table order
    if len(known) > 1 and sum(s.raw_length for s in known) > PARALLEL_DECODE_BYTES:
        largest_first = sorted(known, key=lambda s: -s.raw_length)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex:
            by_tag = dict(zip((s.tag for s in largest_first), ex.map(work, largest_first)))
    else:
        by_tag = {s.tag: work(s) for s in known}
    for s in known:
        r = by_tag[s.tag]
        if isinstance(r, entropy.StreamError):
            raise err(f"section '{s.name}': {r}", f"section:{s.name}", s.offset)
        arrays[s.tag] = r

    def bad(tag, detail):
        return err(f"section '{SECTION_NAMES[tag]}': {detail}", f"section:{SECTION_NAMES[tag]}")

    # positions
    pb = q["positions"]["bits"]
    codes = arrays[b"POSN"]
    if n and pb < morton.MAX_BITS and int(codes.max()) >> (3 * pb):
        raise bad(b"POSN", f"Morton code above 2^{3 * pb}")
    if n and pb == morton.MAX_BITS and int(codes.max()) >> 63:
        raise bad(b"POSN", "Morton code above 2^63")
    qpos = morton.decode(codes)  # [N, 3] u32
    means = quantize.uniform_decode(qpos.T, np.asarray(q["positions"]["min"], np.float32),
                                    np.asarray(q["positions"]["step"], np.float32))
    # rotations
    rb = q["rotations"]["bits"]
    words = arrays[b"ROTN"]
    if n and int(words.max()) >> (3 * rb + 2):
        raise bad(b"ROTN", "rotation word with bits above the index field")
    quats = quantize.smallest3_decode(words, rb)
    # scales, opacity, colour
    scal = _uniform_codes(arrays[b"SCAL"], 3, n, q["log_scales"]["bits"], lambda d: bad(b"SCAL", d))
    log_scales = quantize.uniform_decode(scal, np.asarray(q["log_scales"]["min"], np.float32),
                                         np.asarray(q["log_scales"]["step"], np.float32))
    opac = _uniform_codes(arrays[b"OPAC"], 1, n, q["opacity"]["bits"], lambda d: bad(b"OPAC", d))[0]
    logits = quantize.opacity_decode(opac, q["opacity"]["bits"])
    colr = _uniform_codes(arrays[b"COLR"], 3, n, q["sh_dc"]["bits"], lambda d: bad(b"COLR", d))
    dc = quantize.uniform_decode(colr, np.asarray(q["sh_dc"]["min"], np.float32),
                                 np.asarray(q["sh_dc"]["step"], np.float32))
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0, :] = dc
    full = np.zeros(n, bool)
    if degree > 0:
        bits = arrays[b"SHMK"]
        full = np.unpackbits(bits, count=n, bitorder="little").astype(bool) if n else full
        if n % 8 and int(bits[-1]) >> (n % 8):
            raise bad(b"SHMK", "padding bits are not zero")
        cnt = int(full.sum())
        if cnt != m:
            raise bad(b"SHMK", f"{cnt} bits set, the header says {m} full-SH Gaussians")
        if m > 0:
            p = q["sh_rest"]["size"]
            d = q["sh_rest"]["dim"]
            pal_codes = arrays[b"SHPL"].reshape(p, d)
            pal = quantize.uniform_decode(pal_codes.T, np.asarray(q["sh_rest"]["min"], np.float32),
                                          np.asarray(q["sh_rest"]["step"], np.float32))
            idx = arrays[b"SHIX"]
            if int(idx.max()) >= p:
                raise bad(b"SHIX", f"palette index {int(idx.max())} out of range (palette size {p})")
            # in blocks of rows: no [M, K - 1, 3] temporary beside the output (the same values)
            flat = sh.reshape(n, 3 * k)
            rows = None if m == n else np.flatnonzero(full)
            for a in range(0, m, 4096):
                block = pal[idx[a:a + 4096]]
                if rows is None:
                    flat[a:a + 4096, 3:] = block
                else:
                    flat[rows[a:a + 4096], 3:] = block

    meta = {"format": "exgs", "exgs_header": h, "exgs_sh_full": full, "notes": notes}
    # the compressor records the source's axis facts (``extra.scene_meta``: up vector, coordinate system) so
    # automatic views of the decoded scene match the source's; only known keys of the right type are taken
    sm = h.get("extra", {}).get("scene_meta", {}) if isinstance(h.get("extra"), dict) else {}
    if isinstance(sm, dict):
        up = sm.get("up")
        if (isinstance(up, list) and len(up) == 3 and all(isinstance(v, (int, float)) for v in up)
                and all(math.isfinite(v) for v in up) and any(v != 0 for v in up)):
            meta["up"] = [float(v) for v in up]
        if isinstance(sm.get("coordinate_system"), str):
            meta["coordinate_system"] = sm["coordinate_system"][:200]
    if path is not None:
        meta["path"] = os.fspath(path)
    if flags & FLAG_ANTIALIASED:
        meta["antialiased"] = True
    return GaussianScene(means, quats, log_scales, logits, sh, meta=meta)


def _uniform_codes(arr: np.ndarray, c: int, n: int, bits: int, bad) -> np.ndarray:
    """Planar codes [c, n] with every code checked against 2^bits - 1."""
    if n and int(arr.max()) > (1 << bits) - 1:
        raise bad(f"code {int(arr.max())} exceeds the {bits}-bit range")
    return arr.reshape(c, n)


# ============================================================================================ files


def read_exgs(path: str | os.PathLike, *, max_gaussians: int | None = None) -> GaussianScene:
    """Read an .exgs file (see :func:`decode`, which checks the limits of :mod:`exgs_core.limits`)."""
    data = read_bytes(path)
    return decode(data, path=path, max_gaussians=max_gaussians)


def write_exgs(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` (from :func:`encode`) to ``path`` atomically (temp file, then rename)."""
    from .io.atomic import atomic_write

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
            {"tag": s.tag.decode("ascii"), "name": s.name, "codec": s.codec, "filter": s.filter,
             "elem_size": s.elem_size, "stored_bytes": s.stored_length, "raw_bytes": s.raw_length}
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


def error_bounds(header: dict) -> dict:
    """Documented maximum errors (docs/FORMAT.md, sections 5 and 6) of a decoded file against the encoder's
    input, from its JSON header.

    Returns:
        ``positions_abs`` [3] (per axis, world units), ``rotations_rad`` (rotation angle), ``log_scales_abs`` [3],
        ``opacity_abs`` (in sigmoid space), ``sh_dc_abs`` [3] (SH units), and ``sh_rest`` = the encoder's measured
        ``{"rmse", "max_abs", "rel_mse"}`` for the full-SH Gaussians (None without higher SH; the palette has no
        a-priori bound). ``measured`` repeats the header's ``errors``.
    """
    q = header["quant"]

    def uni(key):
        lo = np.asarray(q[key]["min"], np.float64)
        st = np.asarray(q[key]["step"], np.float64)
        top = lo + st * ((1 << q[key]["bits"]) - 1)
        mag = np.maximum(np.abs(lo), np.abs(top))
        return [float(v) for v in st / 2 + mag * 2.0 ** -22 + 1e-30]

    rb = q["rotations"]["bits"]
    e = header.get("errors", {})
    sh_rest = None
    if "sh_rest" in q:
        sh_rest = {"rmse": e.get("sh_rest_rmse"), "max_abs": e.get("sh_rest_max_abs"),
                   "rel_mse": e.get("sh_rest_rel_mse")}
    return {
        "positions_abs": uni("positions"),
        "rotations_rad": quantize.smallest3_max_angle(rb) + 8.0 * 2.0 ** -24,
        "log_scales_abs": uni("log_scales"),
        "opacity_abs": 2.0 ** -(q["opacity"]["bits"] + 1) + 2.0 ** -23,
        "sh_dc_abs": uni("sh_dc"),
        "sh_rest": sh_rest,
        "measured": e,
    }
