"""Worst-case probe of every reader: crafted hostile inputs of at most 64 KB, each loaded with ``exgs_core.load`` in
its own child process under a timeout and an address-space cap, reporting time, peak RSS and what came out.

    .venv/bin/python scripts/probe_worst_case.py [--timeout 20] [--mem-gb 4] [--only spz] [--all] [--json out.json]

Inputs (generated here, never stored): declared-count bombs that stay inside each container's own ratio limits
(zstd RLE blocks: 32768:1, deflate: ~1030:1, lossless WebP of a constant image: a few dozen bytes for any size),
truncations, huge headers, absurd dimensions and counts, deep JSON, range-coded payloads cut short.

For each reader the table prints the worst input (a timeout or crash first, then the slowest), its time (of the
load alone, imports excluded), the peak RSS of the child (``resource.getrusage``; it includes the ~100-200 MB of
Python + NumPy + numba) and the result: ``typed error`` (an :class:`~exgs_core.errors.ExgsError`), ``ok``,
``crash`` (any other exception, a signal or a killed child) or ``timeout``. ``--all`` prints every case.

Target: <= 2 s and <= 1 GB for every input. Exit status 1 when a case crashes, times out or misses the target.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_INPUT = 64 * 1024
TARGET_S = 2.0
TARGET_RSS = 1 << 30

# ============================================================================================ generic pieces


def zstd_rle(nbytes: int, byte: int = 0, window_log: int = 17) -> bytes:
    """A zstd frame of ``nbytes`` copies of ``byte`` made of RLE blocks (4 bytes per 128 KiB: 32768:1), with the
    content size declared and a 2^window_log window (what careful readers accept)."""
    out = [struct.pack("<IBB", 0xFD2FB528, 0xC0, (window_log - 10) << 3), struct.pack("<Q", nbytes)]
    block = min(1 << window_log, 1 << 17)
    if nbytes == 0:
        out.append(struct.pack("<I", 1)[:3])  # last raw block of 0 bytes
        return b"".join(out)
    full, rest = divmod(nbytes, block)
    if rest == 0:
        full, rest = full - 1, block
    mid = struct.pack("<I", (1 << 1) | (block << 3))[:3] + bytes([byte])
    out.append(mid * full)
    out.append(struct.pack("<I", 1 | (1 << 1) | (rest << 3))[:3] + bytes([byte]))
    return b"".join(out)


def deflate_zeros(prefix: bytes, nbytes: int, wbits: int = 31, chunk: int = 1 << 22) -> bytes:
    """``prefix`` + ``nbytes`` zero bytes through deflate at level 9 (gzip container for wbits=31)."""
    co = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [co.compress(prefix)]
    z = bytes(chunk)
    left = nbytes
    while left > 0:
        parts.append(co.compress(z[: min(chunk, left)]))
        left -= chunk
    parts.append(co.flush())
    return b"".join(parts)


def fit(make, lo: int, hi: int, limit: int = MAX_INPUT) -> bytes:
    """About the largest output of ``make(k)``, k in lo..hi, whose size is <= limit (the size grows about linearly
    with k: extrapolate from two probes, then step down)."""
    a, b = len(make(lo)), len(make(2 * lo))
    per = max((b - a) / lo, 1e-9)
    k = min(hi, max(lo, int(lo + (limit - a) / per)))
    while True:
        out = make(k)
        if len(out) <= limit or k <= lo:
            return out
        k = max(lo, int(k * 0.98))


# ============================================================================================ PLY

_PROPS = [
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
]


def ply_header(fmt: str, count: int | str, props=_PROPS, pre: str = "", post: str = "") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", pre.rstrip("\n")] if pre else ["ply", f"format {fmt} 1.0"]
    lines.append(f"element vertex {count}")
    lines += [f"property float {p}" for p in props]
    if post:
        lines.append(post.rstrip("\n"))
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode()


def ply_cases():
    row = struct.pack("<14f", 0, 0, 0, 0.1, 0.2, 0.3, 0, -3, -3, -3, 1, 0, 0, 0)
    yield "ply", "vertex count 2e9, 1000 rows", ply_header("binary_little_endian", 2_000_000_000) + row * 1000
    yield "ply", "vertex count 2^64-1", ply_header("binary_little_endian", 2**64 - 1) + row * 10
    yield "ply", "vertex count 10^40", ply_header("binary_little_endian", 10**40) + row * 10
    yield "ply", "truncated (1e5 declared, 1e3 rows)", ply_header("binary_little_endian", 100_000) + row * 1000
    yield "ply", "full file of 1100 rows", ply_header("binary_little_endian", 1100) + row * 1100
    yield (
        "ply",
        "element of 4e9 zero-property rows",
        ply_header("binary_little_endian", 10, pre="element junk 4000000000") + row * 10,
    )
    yield (
        "ply",
        "list element 1e9 rows",
        ply_header("binary_little_endian", 10, post="element face 1000000000\nproperty list uchar int vertex_indices")
        + row * 10,
    )
    yield (
        "ply",
        "list with uint count 2^32-1",
        ply_header("binary_little_endian", 10, post="element face 1\nproperty list uint int vertex_indices")
        + row * 10
        + struct.pack("<I", 2**32 - 1)
        + bytes(64),
    )
    extras = [f"extra_{i}" for i in range(2000)]
    yield (
        "ply",
        "2000 extra properties",
        ply_header("binary_little_endian", 1, props=_PROPS + extras) + bytes(4 * (14 + 3500)),
    )
    yield "ply", "60 KB header line", ply_header("binary_little_endian", 1, pre="comment " + "x" * 60000) + row
    yield "ply", "no end_header (64 KB)", b"ply\nformat binary_little_endian 1.0\n" + b"comment a\n" * 6500
    yield (
        "ply",
        "2500 elements of 1e9 rows",
        b"ply\nformat binary_little_endian 1.0\n"
        + b"".join(b"element e%d 1000000000\n" % i for i in range(2500))
        + ply_header("binary_little_endian", 1)[len(b"ply\nformat binary_little_endian 1.0\n") :]
        + row,
    )
    # ASCII
    arow = b"0 0 0 0.1 0.2 0.3 0 -3 -3 -3 1 0 0 0\n"
    yield "ply_ascii", "vertex count 1e9, 1500 rows", ply_header("ascii", 1_000_000_000) + arow * 1500
    yield "ply_ascii", "vertex count 2^64-1", ply_header("ascii", 2**64 - 1) + arow * 100
    yield "ply_ascii", "truncated (5000 declared, 1500 rows)", ply_header("ascii", 5000) + arow * 1500
    yield "ply_ascii", "full file of 1700 rows", ply_header("ascii", 1700) + arow * 1700
    yield "ply_ascii", "one 60 KB token", ply_header("ascii", 1) + b"1" * 60000 + b" 0" * 13 + b"\n"
    yield "ply_ascii", "one row of 30000 tokens", ply_header("ascii", 1) + b"0 " * 30000 + b"\n"
    yield "ply_ascii", "32000 empty lines", ply_header("ascii", 1) + b"\n" * 32000 + arow
    yield "ply_ascii", "1e400 values", ply_header("ascii", 1000) + b"1e400 " * 14 * 700 + b"\n"
    yield (
        "ply_ascii",
        "list element 1e9 rows",
        ply_header("ascii", 10, post="element face 1000000000\nproperty list uchar int vertex_indices")
        + arow * 10
        + b"3 0 1 2\n" * 1000,
    )
    yield (
        "ply_ascii",
        "list element count 255 x 6000",
        ply_header("ascii", 1, post="element face 250\nproperty list uchar int vertex_indices")
        + arow
        + (b"255 " + b"1 " * 255 + b"\n") * 100,
    )


def cply_cases():
    def hdr(chunks, verts, sh=None, props=18):
        names = [
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
            "min_r",
            "min_g",
            "min_b",
            "max_r",
            "max_g",
            "max_b",
        ][:props]
        s = ["ply", "format binary_little_endian 1.0", f"element chunk {chunks}"]
        s += [f"property float {n}" for n in names]
        s += [f"element vertex {verts}"] + [
            f"property uint {n}" for n in ("packed_position", "packed_rotation", "packed_scale", "packed_color")
        ]
        if sh:
            s += [f"element sh {sh[0]}"] + [f"property uchar f_rest_{i}" for i in range(sh[1])]
        return ("\n".join(s + ["end_header"]) + "\n").encode()

    chunk = struct.pack("<18f", *([0] * 6 + [1] * 6 + [-3] * 3 + [3] * 3))
    yield "compressed_ply", "chunk 4e6 / vertex 1e9 declared", hdr(3906250, 1_000_000_000) + chunk * 100
    yield "compressed_ply", "vertex 2^32-1, chunk ceil", hdr(16777216, 2**32 - 1) + chunk * 10
    yield "compressed_ply", "truncated vertex block", hdr(4, 1024) + chunk * 4 + bytes(16 * 500)
    yield "compressed_ply", "full file 3584 Gaussians", hdr(14, 3584) + chunk * 14 + bytes(16 * 3584)
    yield "compressed_ply", "sh element 1e9 x 45", hdr(1, 10, sh=(1_000_000_000, 45)) + chunk + bytes(160)
    yield "compressed_ply", "chunk 0 / vertex 0", hdr(0, 0)
    yield (
        "compressed_ply",
        "60 KB of comments",
        hdr(1, 1).replace(
            b"format binary_little_endian 1.0\n", b"format binary_little_endian 1.0\n" + b"comment aaaaaaaa\n" * 3500
        )
        + chunk
        + bytes(16),
    )


def splat_cases():
    import numpy as np

    rec = np.zeros((2048, 32), np.uint8)
    f = rec[:, :24].view(np.float32)
    f[:, 3:] = 0.01
    rec[:, 28] = 255
    rec[:, 29:32] = 128
    yield "splat", "2048 records (64 KB)", rec.tobytes()
    nan = rec.copy()
    nan[:, :24].view(np.float32)[:] = np.nan
    yield "splat", "2048 NaN records", nan.tobytes()
    yield "splat", "65535 bytes (truncated)", rec.tobytes()[:-1]


# ============================================================================================ SPZ


def spz_legacy_header(version, n, sh=0, frac=12, flags=0):
    return struct.pack("<IIIBBBB", 0x5053474E, version, n, sh, frac, flags, 0)


def spz_per_point(version, sh):
    k = (sh + 1) ** 2
    return (6 if version == 1 else 9) + 1 + 3 + 3 + (3 if version <= 2 else 4) + 3 * (k - 1)


def spz_v4(n, sh=0, streams=None, toc_sizes=None, frac=12, flags=0):
    per = [9, 1, 3, 3, 4] + ([3 * ((sh + 1) ** 2 - 1)] if sh else [])
    if streams is None:
        streams = [zstd_rle(n * p) for p in per]
    sizes = toc_sizes or [(len(s), n * p) for s, p in zip(streams, per, strict=False)]
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, sh, frac, flags, len(sizes), 32)
    return head + b"".join(struct.pack("<QQ", c, u) for c, u in sizes) + b"".join(streams)


def spz_cases():
    for version in (2, 3):
        for sh in (0, 3):
            per = spz_per_point(version, sh)
            data = fit(lambda k: deflate_zeros(spz_legacy_header(version, k * 1024, sh), k * 1024 * per), 100, 8000)
            n = struct.unpack_from("<I", zlib.decompressobj(31).decompress(data, 16), 8)[0]
            yield "spz", f"v{version} gzip, {n / 1e6:.1f} M declared, sh{sh}", data
    yield "spz", "v2 gzip numPoints 2^32-1", deflate_zeros(spz_legacy_header(2, 2**32 - 1), 1 << 20)
    yield "spz", "v2 raw numPoints 2^32-1", spz_legacy_header(2, 2**32 - 1) + bytes(60000)
    yield (
        "spz",
        "v1 gzip, float16 positions",
        fit(lambda k: deflate_zeros(spz_legacy_header(1, k * 1024), k * 1024 * spz_per_point(1, 0)), 100, 8000),
    )
    yield "spz", "v4 zstd 40 M declared (24.6 KB)", spz_v4(40_000_000)
    yield "spz", "v4 zstd max declared in 64 KB", fit(lambda k: spz_v4(k * 1_000_000), 5, 200)
    yield "spz", "v4 zstd sh3, max in 64 KB", fit(lambda k: spz_v4(k * 1_000_000, sh=3), 5, 200)
    yield "spz", "v4 TOC sizes 2^63", spz_v4(1000, streams=[b""] * 5, toc_sizes=[(2**63, 2**63)] * 5)
    yield "spz", "v4 sh3 1,048,576 declared (the floor)", spz_v4(1 << 20, sh=3)
    yield "spz", "v4 cut inside the last stream", spz_v4(1_000_000, sh=3)[:-5]
    yield (
        "spz",
        "v4 numPoints 2^32-1",
        spz_v4(
            2**32 - 1,
            streams=[zstd_rle(16)] * 5,
            toc_sizes=[(len(zstd_rle(16)), (2**32 - 1) * p) for p in (9, 1, 3, 3, 4)],
        ),
    )


# ============================================================================================ SOG


def _webp_const(w: int, h: int, rgba=(0, 0, 0, 255)) -> bytes:
    """A lossless WebP of a constant colour, ``w`` x ``h``: encode 64 x 64 and patch the VP8L size fields (the
    bitstream of a constant image does not depend on its size)."""
    from PIL import Image

    b = io.BytesIO()
    Image.new("RGBA", (64, 64), rgba).save(b, "WEBP", lossless=True, quality=100, method=0)
    d = b.getvalue()
    assert d[12:16] == b"VP8L" and d[20] == 0x2F
    bits = struct.unpack_from("<I", d, 21)[0]
    bits = (bits & ~((1 << 28) - 1)) | (w - 1) | ((h - 1) << 14)
    return d[:21] + struct.pack("<I", bits) + d[25:]


def sog_zip(meta: dict, files: dict, pad_to: int = 0) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", json.dumps(meta))
        names = list(files)
        for name in names:
            data = files[name]
            if pad_to:
                data = data + bytes(max(0, pad_to // len(names) - len(data)))
            z.writestr(name, data)
    return b.getvalue()


def sog_v2(n, side=None, pad_to=0, shn=None):
    w = h = side or max(1, int((n - 1) ** 0.5) + 1)
    while w * h < n:
        h += 1
    meta = {
        "version": 2,
        "count": n,
        "means": {"mins": [0, 0, 0], "maxs": [1, 1, 1], "files": ["means_l.webp", "means_u.webp"]},
        "quats": {"files": ["quats.webp"]},
        "scales": {"codebook": [0.0] * 256, "files": ["scales.webp"]},
        "sh0": {"codebook": [0.0] * 256, "files": ["sh0.webp"]},
    }
    files = {
        "means_l.webp": _webp_const(w, h),
        "means_u.webp": _webp_const(w, h),
        "quats.webp": _webp_const(w, h, (128, 128, 128, 252)),
        "scales.webp": _webp_const(w, h),
        "sh0.webp": _webp_const(w, h),
    }
    if shn:
        palette, bands = shn
        ncoef = (bands + 1) ** 2 - 1
        meta["shN"] = {
            "count": palette,
            "bands": bands,
            "codebook": [0.0] * 256,
            "files": ["shN_centroids.webp", "shN_labels.webp"],
        }
        files["shN_centroids.webp"] = _webp_const(64 * ncoef, -(-palette // 64))
        files["shN_labels.webp"] = _webp_const(w, h, (255, 255, 0, 255))
    return sog_zip(meta, files, pad_to)


def sog_cases():
    yield "sog", "v2 50 M declared, 53 KB (1024/byte)", sog_v2(50_000_000, pad_to=50_000_000 // 1024 + 100)
    yield "sog", "v2 max count 16383^2, 64 KB", sog_v2(16383 * 16383 // 8, pad_to=60_000)
    yield "sog", "v2 5 M declared, sh3 palette 65536", sog_v2(5_000_000, pad_to=60_000, shn=(65536, 3))
    yield "sog", "v2 200 k, tiny textures", sog_v2(200_000)
    yield "sog", "v2 sh3 1,048,576 declared (the floor)", sog_v2(1 << 20, shn=(65536, 3))
    v1 = {
        "means": {
            "shape": [50_000_000, 3],
            "mins": [0, 0, 0],
            "maxs": [1, 1, 1],
            "files": ["means_l.webp", "means_u.webp"],
        },
        "quats": {"files": ["quats.webp"]},
        "scales": {"mins": [0, 0, 0], "maxs": [1, 1, 1], "files": ["scales.webp"]},
        "sh0": {"mins": [0, 0, 0, 0], "maxs": [1, 1, 1, 1], "files": ["sh0.webp"]},
    }
    tex = {k: _webp_const(7072, 7072) for k in ("means_l.webp", "means_u.webp", "scales.webp", "sh0.webp")}
    tex["quats.webp"] = _webp_const(7072, 7072, (128, 128, 128, 252))
    yield "sog", "v1 50 M declared", sog_zip(v1, tex, pad_to=50_000_000 // 1024 + 100)
    yield "sog", "meta.json nested 30000 deep", _zip_raw({"meta.json": b"[" * 30000 + b"]" * 30000})
    yield (
        "sog",
        "meta.json 16 MB of spaces (deflated)",
        _zip_raw({"meta.json": b" " * (16 << 20) + b"{}"}, deflate=True),
    )
    yield "sog", "member declaring 4 GB", _zip_lie()
    yield "sog", "texture 16383 x 16383 for count 1", sog_v2(1, side=16383)


def _zip_raw(files: dict, deflate=False) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for k, v in files.items():
            z.writestr(k, v)
    return b.getvalue()


def _zip_lie() -> bytes:
    data = sog_v2(1000)
    # rewrite the uncompressed size of every central-directory entry to 4 GB - 1
    out = bytearray(data)
    i = 0
    while True:
        i = out.find(b"PK\x01\x02", i)
        if i < 0:
            break
        out[i + 24 : i + 28] = struct.pack("<I", 0xFFFFFFFE)
        i += 4
    return bytes(out)


# ============================================================================================ .exgs


def exgs_pack(
    n: int, sections: list, degree: int = 0, m: int = 0, quant_extra=None, version: int = 1, json_pad: int = 0
) -> bytes:
    """An .exgs file with valid CRCs: header for ``n`` Gaussians (8-bit everything, 16-bit positions, 10-bit
    rotations) and ``sections`` = [(tag, codec, filter, elem_size, stored, raw_length)]."""
    quant = {
        "positions": {"bits": 16, "min": [0, 0, 0], "step": [1, 1, 1]},
        "rotations": {"scheme": "smallest3", "bits": 10},
        "log_scales": {"scheme": "uniform", "bits": 8, "min": [0, 0, 0], "step": [1, 1, 1]},
        "opacity": {"scheme": "sigmoid_uniform", "bits": 8},
        "sh_dc": {"scheme": "uniform", "bits": 8, "min": [0, 0, 0], "step": [1, 1, 1]},
    }
    quant.update(quant_extra or {})
    h = {
        "format": "exgs",
        "version": version,
        "n": n,
        "sh_degree": degree,
        "n_sh_full": m,
        "order": "morton",
        "bounds": {"min": [0, 0, 0], "max": [1, 1, 1]},
        "quant": quant,
        "encoder": {},
        "options": {},
        "errors": {},
        "source_sha256": None,
        "extra": {"pad": "x" * json_pad} if json_pad else {},
    }
    hj = json.dumps(h, separators=(",", ":")).encode()
    table = b"".join(
        struct.pack("<4sBBBBQQII", tag, c, f, e, 1, len(st), raw, zlib.crc32(st), 0)
        for tag, c, f, e, st, raw in sections
    )
    head24 = struct.pack("<4sHHIIIH", b"EXGS", version, 0, 0, n, len(hj), len(sections)) + bytes(2)
    crc = zlib.crc32(table, zlib.crc32(hj, zlib.crc32(head24)))
    return head24 + struct.pack("<II", crc, 0) + hj + table + b"".join(s[4] for s in sections)


def exgs_zstd_bomb(n: int, degree: int = 0, palette: int = 0) -> bytes:
    secs = [
        (b"POSN", 1, 0, 8, zstd_rle(8 * n), 8 * n),
        (b"ROTN", 1, 0, 4, zstd_rle(4 * n), 4 * n),
        (b"SCAL", 1, 0, 1, zstd_rle(3 * n), 3 * n),
        (b"OPAC", 1, 0, 1, zstd_rle(n), n),
        (b"COLR", 1, 0, 1, zstd_rle(3 * n), 3 * n),
    ]
    extra = None
    if degree:
        d = 3 * ((degree + 1) ** 2 - 1)
        secs.append((b"SHMK", 1, 0, 1, zstd_rle((n + 7) // 8, 0xFF), (n + 7) // 8))
        secs.append((b"SHPL", 1, 0, 1, zstd_rle(palette * d), palette * d))
        secs.append((b"SHIX", 1, 0, 2, zstd_rle(2 * n), 2 * n))
        extra = {
            "sh_rest": {"scheme": "palette", "size": palette, "dim": d, "bits": 8, "min": [0] * d, "step": [1] * d}
        }
        if n % 8:
            raise ValueError("n must be a multiple of 8 for the all-ones SH mask")
    return exgs_pack(n, secs, degree, n if degree else 0, extra)


def exgs_range_truncated(n: int) -> bytes:
    """Every modelled section range-coded (codec 2, format version 2) from a short payload: the coder runs out of
    input at once."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from exgs_core.codec import rangecoder as R

    def rc(model, bits, count):
        v = np.zeros(count * R.MODELS[model], np.int64)
        return R.encode(model, v, bits)

    secs = [
        (b"POSN", 2, 0, 8, rc("morton", 16, 2000)[:300], 8 * n),
        (b"ROTN", 2, 0, 4, rc("rotation", 10, 2000)[:300], 4 * n),
        (b"SCAL", 2, 0, 1, rc("triple", 8, 2000)[:300], 3 * n),
        (b"OPAC", 2, 0, 1, rc("scalar", 8, 2000)[:300], n),
        (b"COLR", 2, 0, 1, rc("triple", 8, 2000)[:300], 3 * n),
    ]
    return exgs_pack(n, secs, version=2)


def exgs_range_at_bound(n: int) -> bytes:
    """Every modelled section range-coded from random values and cut to the fewest bytes that may still claim
    ``n`` values (the decoder runs until it reads past the end)."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from exgs_core.codec import rangecoder as R

    rng = np.random.default_rng(0)

    def rc(model, bits, raw):
        count = raw // R.MODELS[model]
        need = -(-count * R._min_decisions(model, bits) // R.MAX_DECISIONS_PER_BYTE)
        if model == "morton":
            v = np.sort(rng.integers(0, 1 << (3 * bits), size=count))
        elif model == "rotation":
            v = rng.integers(0, 1 << (3 * bits + 2), size=count)
        else:
            v = rng.integers(0, 1 << bits, size=count * R.MODELS[model])
        return R.encode(model, v[: max(1, len(v) // 8)], bits)[:need]

    secs = [
        (b"POSN", 2, 0, 8, rc("morton", 16, n), 8 * n),
        (b"ROTN", 2, 0, 4, rc("rotation", 10, n), 4 * n),
        (b"SCAL", 2, 0, 1, rc("triple", 8, 3 * n), 3 * n),
        (b"OPAC", 2, 0, 1, rc("scalar", 8, n), n),
        (b"COLR", 2, 0, 1, rc("triple", 8, 3 * n), 3 * n),
    ]
    return exgs_pack(n, secs, version=2)


def exgs_cases():
    yield "exgs", "zstd 40 M declared (25 KB)", exgs_zstd_bomb(40_000_000)
    yield "exgs", "zstd max declared in 64 KB", fit(lambda k: exgs_zstd_bomb(k * 1_000_000), 5, 134)
    yield "exgs", "zstd sh3 palette 65536, max in 64 KB", fit(lambda k: exgs_zstd_bomb(k * 1_000_000, 3, 65536), 5, 134)
    yield "exgs", "zstd sh3 1,048,576 declared (the floor)", exgs_zstd_bomb(1 << 20, 3, 65536)
    yield "exgs", "range coder cut short, 40 M declared", exgs_range_truncated(40_000_000)
    yield "exgs", "range coder cut short, 134 M declared", exgs_range_truncated(134_217_728)
    yield "exgs", "range coder cut short, 1 M declared", exgs_range_truncated(1_000_000)
    yield "exgs", "range coder cut at the bound, 300 k declared", exgs_range_at_bound(300_000)
    yield (
        "exgs",
        "60 KB JSON header",
        exgs_pack(
            10,
            [
                (t, 0, 0, e, bytes(r), r)
                for t, e, r in (
                    (b"POSN", 8, 80),
                    (b"ROTN", 4, 40),
                    (b"SCAL", 1, 30),
                    (b"OPAC", 1, 10),
                    (b"COLR", 1, 30),
                )
            ],
            json_pad=60000,
        ),
    )
    deep = b"EXGS" + struct.pack("<HHIIIHHII", 1, 0, 0, 10, 60000, 0, 0, 0, 0)[:28]
    body = b"[" * 30000 + b"]" * 30000
    head24 = deep[:24]
    crc = zlib.crc32(body, zlib.crc32(head24))
    yield "exgs", "JSON nested 30000 deep", head24 + struct.pack("<II", crc, 0) + body
    yield (
        "exgs",
        "n = 2^32-1 in the fixed header",
        exgs_zstd_bomb(1000)[:12] + struct.pack("<I", 2**32 - 1) + exgs_zstd_bomb(1000)[16:],
    )


# ============================================================================================ running

EXT = {
    "ply": ".ply",
    "ply_ascii": ".ply",
    "compressed_ply": ".compressed.ply",
    "splat": ".splat",
    "spz": ".spz",
    "sog": ".sog",
    "exgs": ".exgs",
}
GROUPS = {
    "ply": ply_cases,
    "compressed_ply": cply_cases,
    "splat": splat_cases,
    "spz": spz_cases,
    "sog": sog_cases,
    "exgs": exgs_cases,
}


def child(path: str, mem_bytes: int) -> None:
    """Runs in the child: cap the address space, import, time one load, print one JSON line."""
    import resource

    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    sys.path.insert(0, str(REPO))
    out = {}
    try:
        import numpy  # noqa: F401

        import exgs_core
        import exgs_core.exgs_format  # noqa: F401
        from exgs_core.errors import ExgsError
        from exgs_core.io import compressed_ply, ply, sog, splat, spz  # noqa: F401

        out["rss0_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        try:
            s = exgs_core.load(path)
            out.update(result="ok", detail=f"{s.n:,} Gaussians")
        except ExgsError as e:
            out.update(result="typed error", detail=f"{type(e).__name__}: {e}")
        except BaseException as e:  # noqa: BLE001
            out.update(result="crash", detail=f"{type(e).__name__}: {e}")
        out["time"] = time.perf_counter() - t
    except BaseException as e:  # noqa: BLE001  (the imports themselves)
        out.update(result="crash", detail=f"import: {type(e).__name__}: {e}", time=0.0)
    out["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write("\nPROBE " + json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


def run_case(path: Path, timeout: float, mem_bytes: int) -> dict:
    t = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--child-mem", str(mem_bytes)],
            capture_output=True,
            text=True,
            timeout=timeout + 15,
        )
    except subprocess.TimeoutExpired:
        return {"result": "timeout", "time": time.perf_counter() - t, "rss_kb": 0, "detail": "killed"}
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")]
    if not line:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
        return {
            "result": "crash",
            "time": time.perf_counter() - t,
            "rss_kb": 0,
            "detail": f"exit {p.returncode}: {tail[0][:200]}",
        }
    out = json.loads(line[-1][6:])
    if out["time"] > timeout:
        out["result"] = "timeout"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per load (default 20)")
    ap.add_argument("--mem-gb", type=float, default=4.0, help="address-space cap of each child (default 4 GB)")
    ap.add_argument("--only", help="comma-separated groups: " + ", ".join(GROUPS))
    ap.add_argument("--all", action="store_true", help="print every case, not only the worst per reader")
    ap.add_argument("--json", help="write every case's result here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-mem", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.child_mem)
    groups = a.only.split(",") if a.only else list(GROUPS)
    mem = int(a.mem_gb * (1 << 30))
    rows = []
    with tempfile.TemporaryDirectory(prefix="exgs-probe-") as tmp:
        for g in groups:
            for i, (reader, name, data) in enumerate(GROUPS[g]()):
                assert len(data) <= MAX_INPUT, (name, len(data))
                path = Path(tmp) / f"{reader}_{i}{EXT[reader]}"
                path.write_bytes(data)
                r = run_case(path, a.timeout, mem)
                r.update(reader=reader, name=name, size=len(data))
                rows.append(r)
                if a.all:
                    print(
                        f"{reader:15s} {name:42s} {len(data):6d} B {r['time']:7.2f} s "
                        f"{r['rss_kb'] / 1024:7.0f} MB  {r['result']:11s} {r.get('detail', '')[:110]}",
                        flush=True,
                    )
    rank = {"timeout": 3, "crash": 2}

    def badness(r):
        return (
            rank.get(r["result"], 0),
            r["time"] > TARGET_S or r["rss_kb"] * 1024 > TARGET_RSS,
            r["time"],
            r["rss_kb"],
        )

    print()
    print(
        f"{'reader':15s} | {'worst input':42s} | {'bytes':>6s} | {'time s':>6s} | {'peak RSS MB':>11s} | "
        f"{'result':11s} | detail"
    )
    print("-" * 150)
    fails = 0
    for reader in dict.fromkeys(r["reader"] for r in rows):
        mine = [r for r in rows if r["reader"] == reader]
        w = max(mine, key=badness)
        worst_rss = max(r["rss_kb"] for r in mine)
        print(
            f"{reader:15s} | {w['name']:42s} | {w['size']:6d} | {w['time']:6.2f} | {w['rss_kb'] / 1024:11.0f} | "
            f"{w['result']:11s} | {w.get('detail', '')[:90]}"
            + (f"  (max RSS of any input {worst_rss / 1024:.0f} MB)" if worst_rss > w["rss_kb"] else "")
        )
    for r in rows:
        if r["result"] in ("crash", "timeout") or r["time"] > TARGET_S or r["rss_kb"] * 1024 > TARGET_RSS:
            fails += 1
    print(
        f"\n{len(rows)} inputs, {fails} over the target (<= {TARGET_S:.0f} s, <= {TARGET_RSS >> 30} GB, typed "
        "error or ok)"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
