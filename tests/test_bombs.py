"""Hostile inputs to the compressed-format readers (.sog, .spz, .exgs): decompression bombs that stay inside each
container's own ratio limits, payloads that cannot hold what the header declares, range-coded payloads cut short,
and the limits of :mod:`exgs_core.limits` (Gaussian count cap, Gaussians per byte, memory ceiling from RLIMIT_AS
and cgroups).

Every bomb is generated here (a few KB; nothing stored). Every load that could blow up runs in a forked child
under a timeout and an address-space cap, so a regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import exgs_core as ex
from exgs_core import _machine, limits
from exgs_core import exgs_format as F
from exgs_core.codec import entropy as E
from exgs_core.codec import rangecoder as R
from exgs_core.errors import ExgsError, FormatError, LimitError
from exgs_core.io import sog as SOG
from exgs_core.io import spz as SPZ

resource = pytest.importorskip("resource")  # POSIX: RLIMIT_AS, and os.fork for the guarded runs
if not hasattr(os, "fork"):
    pytest.skip("needs os.fork", allow_module_level=True)

DATA = Path(__file__).parent / "data"
FAST_S = 2.0  # a refusal must come this fast (the bombs below took 10-36 s before the limits)


# ============================================================================================ running guarded


def guarded(fn, *, timeout: float = 30.0, mem: int = 3 << 30) -> dict:
    """Run ``fn()`` in a forked child whose address space may grow by ``mem`` bytes, killed after ``timeout``
    seconds. Returns ``result`` ("ok" with ``value``, "error" with ``type``, ``mro``, ``message``, ``field``,
    ``limit``, or "timeout" / "died"), ``time`` (of ``fn``) and ``rss_mb`` (growth of the child's peak RSS)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            cap = _machine._vm_size() + mem
            if hard != resource.RLIM_INFINITY:
                cap = min(cap, hard)
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            try:
                out = {"result": "ok", "value": fn()}
            except BaseException as e:  # noqa: BLE001
                out = {
                    "result": "error",
                    "type": type(e).__name__,
                    "mro": [c.__name__ for c in type(e).__mro__],
                    "message": str(e),
                    "field": getattr(e, "field", None),
                    "limit": getattr(e, "limit", None),
                }
            out["time"] = time.perf_counter() - t
            out["rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
            data = json.dumps(out, default=str).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(w, view) :]
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline, timed_out = [], time.monotonic() + timeout, False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            b = os.read(r, 1 << 16)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if timed_out:
        return {"result": "timeout", "time": timeout, "rss_mb": 0}
    if not chunks:
        return {"result": "died", "time": 0, "rss_mb": 0}
    return json.loads(b"".join(chunks))


def load_n(path):
    return lambda: ex.load(path).n


def assert_refused_fast(out: dict, *, limit: str | None = None, field: str | None = None, match: str | None = None):
    assert out["result"] == "error", out
    assert "FormatError" in out["mro"], out  # typed (LimitError is a FormatError)
    if limit is not None:
        assert out["type"] == "LimitError" and out["limit"] == limit, out
    if field is not None:
        assert out["field"] == field, out
    if match is not None:
        assert match in out["message"], out
    assert out["time"] < FAST_S, out
    assert out["rss_mb"] < 200, out  # refused before anything N-sized was allocated


# ============================================================================================ crafting


def zstd_rle(nbytes: int, byte: int = 0) -> bytes:
    """A zstd frame of ``nbytes`` copies of ``byte``: RLE blocks of 128 KiB in 4 bytes each (32768:1), content
    size declared, 128 KiB window."""
    out = [struct.pack("<IBB", 0xFD2FB528, 0xC0, 7 << 3), struct.pack("<Q", nbytes)]
    block = 1 << 17
    full, rest = divmod(nbytes, block)
    if rest == 0 and full:
        full, rest = full - 1, block
    out.append((struct.pack("<I", 2 | (block << 3))[:3] + bytes([byte])) * full)
    out.append(struct.pack("<I", 1 | 2 | (rest << 3))[:3] + bytes([byte]))
    return b"".join(out)


def webp_const(w: int, h: int, rgba=(0, 0, 0, 255)) -> bytes:
    """A lossless WebP of one colour at any size (34 bytes + header): a 64 x 64 one with its size fields patched."""
    from PIL import Image

    b = io.BytesIO()
    Image.new("RGBA", (64, 64), rgba).save(b, "WEBP", lossless=True, quality=100, method=0)
    d = b.getvalue()
    assert d[12:16] == b"VP8L" and d[20] == 0x2F
    bits = (struct.unpack_from("<I", d, 21)[0] & ~((1 << 28) - 1)) | (w - 1) | ((h - 1) << 14)
    return d[:21] + struct.pack("<I", bits) + d[25:]


def sog_bundle(n: int, pad_to: int = 0, side: int | None = None) -> bytes:
    w = h = side or int((n - 1) ** 0.5) + 1
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
        "means_l.webp": webp_const(w, h),
        "means_u.webp": webp_const(w, h),
        "quats.webp": webp_const(w, h, (128, 128, 128, 252)),
        "scales.webp": webp_const(w, h),
        "sh0.webp": webp_const(w, h),
    }
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", json.dumps(meta))
        for name, data in files.items():  # trailing bytes after the RIFF chunk: ignored by WebP decoders
            z.writestr(name, data + bytes(max(0, pad_to // len(files) - len(data))))
    return b.getvalue()


def spz_v4(n: int, sh: int = 0) -> bytes:
    per = [9, 1, 3, 3, 4] + ([3 * ((sh + 1) ** 2 - 1)] if sh else [])
    streams = [zstd_rle(n * p) for p in per]
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, sh, 12, 0, len(per), 32)
    return (
        head
        + b"".join(struct.pack("<QQ", len(s), n * p) for s, p in zip(streams, per, strict=False))
        + b"".join(streams)
    )


def spz_gzip(version: int, n: int) -> bytes:
    """Legacy gzip SPZ of ``n`` all-zero points (SH degree 0): deflate at ~1030:1."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [co.compress(struct.pack("<IIIBBBB", 0x5053474E, version, n, 0, 12, 0, 0))]
    left, z = n * (9 + 1 + 3 + 3 + (3 if version <= 2 else 4)), bytes(1 << 22)
    while left > 0:
        parts.append(co.compress(z[: min(left, len(z))]))
        left -= len(z)
    return b"".join(parts) + co.flush()


def exgs_pack(n: int, sections: list, version: int = 1) -> bytes:
    """An .exgs file with valid CRCs for ``n`` Gaussians (SH degree 0, 8-bit attributes, 16-bit positions, 10-bit
    rotations); ``sections`` = [(tag, codec, filter, elem_size, stored bytes, raw_length)]."""
    uni = {"scheme": "uniform", "bits": 8, "min": [0, 0, 0], "step": [1, 1, 1]}
    h = {
        "format": "exgs",
        "version": version,
        "n": n,
        "sh_degree": 0,
        "n_sh_full": 0,
        "order": "morton",
        "bounds": {"min": [0, 0, 0], "max": [1, 1, 1]},
        "quant": {
            "positions": {"bits": 16, "min": [0, 0, 0], "step": [1, 1, 1]},
            "rotations": {"scheme": "smallest3", "bits": 10},
            "log_scales": uni,
            "sh_dc": uni,
            "opacity": {"scheme": "sigmoid_uniform", "bits": 8},
        },
        "encoder": {},
        "options": {},
        "errors": {},
        "source_sha256": None,
        "extra": {},
    }
    hj = json.dumps(h, separators=(",", ":")).encode()
    table = b"".join(
        struct.pack("<4sBBBBQQII", tag, c, f, e, 1, len(st), raw, zlib.crc32(st), 0)
        for tag, c, f, e, st, raw in sections
    )
    head24 = struct.pack("<4sHHIIIH", b"EXGS", version, 0, 0, n, len(hj), len(sections)) + bytes(2)
    crc = zlib.crc32(table, zlib.crc32(hj, zlib.crc32(head24)))
    return head24 + struct.pack("<II", crc, 0) + hj + table + b"".join(s[4] for s in sections)


_RAW = ((b"POSN", 8), (b"ROTN", 4), (b"SCAL", 3), (b"OPAC", 1), (b"COLR", 3))


def exgs_zstd_bomb(n: int) -> bytes:
    return exgs_pack(
        n,
        [(tag, 1, 0, min(per, 8) if tag in (b"POSN", b"ROTN") else 1, zstd_rle(per * n), per * n) for tag, per in _RAW],
    )


# ============================================================================================ item 1: bombs


def test_sog_count_bomb_is_refused_before_decoding(tmp_path):
    """53 KB of .sog declaring 50 M Gaussians (constant WebP textures patched to 7072 x 7072, padded to pass the
    old 1024-per-byte bound): it used to decode with 7.7 GB."""
    p = tmp_path / "bomb.sog"
    p.write_bytes(sog_bundle(50_000_000, pad_to=50_000_000 // 1024 + 100))
    assert len(p.read_bytes()) < 54_000
    assert_refused_fast(guarded(load_n(p)), limit="gaussians_per_byte", field="count")


def test_spz_v4_count_bomb_is_refused_before_decompressing(tmp_path):
    """24.6 KB of SPZ v4 declaring 40 M points in zstd RLE blocks: it used to run into an 8 GB cap after 20 s."""
    p = tmp_path / "bomb.spz"
    p.write_bytes(spz_v4(40_000_000))
    assert len(p.read_bytes()) < 25_000
    assert_refused_fast(guarded(load_n(p)), limit="gaussians_per_byte", field="numPoints")


def test_spz_gzip_count_bomb_is_refused_before_inflating(tmp_path):
    """40 KB of gzip SPZ v2 holding 2 M all-zero points (within deflate's 1032:1): refused before inflating."""
    p = tmp_path / "bomb.spz"
    p.write_bytes(spz_gzip(2, 2_000_000))
    assert len(p.read_bytes()) < 45_000
    assert_refused_fast(guarded(load_n(p)), limit="gaussians_per_byte", field="numPoints")


def test_exgs_zstd_count_bomb_is_refused_before_decompressing(tmp_path):
    """25 KB of .exgs declaring 40 M Gaussians in zstd RLE sections: it used to take 36 s and 5.5 GB."""
    p = tmp_path / "bomb.exgs"
    p.write_bytes(exgs_zstd_bomb(40_000_000))
    assert len(p.read_bytes()) < 25_000
    assert_refused_fast(guarded(load_n(p)), limit="gaussians_per_byte", field="fixed-header:n_gaussians")


def test_exgs_range_coded_bomb_is_refused_from_the_section_table(tmp_path):
    """1.7 KB of .exgs declaring 40 M Gaussians in range-coded sections cut short: it used to take 28 s and 2.9 GB
    to say "truncated"; now its section table alone shows that 300 bytes cannot hold 40 M values."""

    def rc(model, bits):
        return R.encode(model, np.zeros(2000 * R.MODELS[model], np.int64), bits)[:300]

    n = 40_000_000
    p = tmp_path / "cut.exgs"
    p.write_bytes(
        exgs_pack(
            n,
            [
                (b"POSN", 2, 0, 8, rc("morton", 16), 8 * n),
                (b"ROTN", 2, 0, 4, rc("rotation", 10), 4 * n),
                (b"SCAL", 2, 0, 1, rc("triple", 8), 3 * n),
                (b"OPAC", 2, 0, 1, rc("scalar", 8), n),
                (b"COLR", 2, 0, 1, rc("triple", 8), 3 * n),
            ],
            version=2,
        )
    )
    assert len(p.read_bytes()) < 2000
    assert_refused_fast(guarded(load_n(p)), field="section:positions", match="cannot hold")


def test_exgs_zstd_frame_that_cannot_hold_its_raw_length(tmp_path):
    """zstd frames that declare 320 MB but are 20 bytes long (more than 32768:1) are refused from the section
    table, before the output buffer is allocated (it used to be: raw_length bytes per section)."""
    n = 40_000_000
    secs = []
    for tag, per in _RAW:
        frame = bytearray(zstd_rle(1 << 17))  # one 128 KiB block ...
        frame[6:14] = struct.pack("<Q", per * n)  # ... declaring per * n bytes
        secs.append((tag, 1, 0, 8 if tag == b"POSN" else (4 if tag == b"ROTN" else 1), bytes(frame), per * n))
    p = tmp_path / "lie.exgs"
    p.write_bytes(exgs_pack(n, secs))
    out = guarded(lambda: F.decode(p.read_bytes(), path=p).n)
    assert_refused_fast(out, field="section:positions", match="cannot hold")
    # and decode_stream on its own checks the ratio before allocating
    with pytest.raises(E.StreamError, match="cannot hold"):
        E.decode_stream(secs[0][4], E.CODEC_ZSTD, 0, 8, 8 * n)


def test_zstd_max_ratio_is_what_rle_blocks_reach():
    """The 32768:1 bound is tight: a frame of RLE blocks reaches it, and zstandard agrees with our frames."""
    import zstandard

    frame = zstd_rle(1 << 24)
    out = zstandard.ZstdDecompressor().decompressobj().decompress(frame)
    assert len(out) == 1 << 24 and not any(out[:4096])
    assert len(out) <= E.ZSTD_MAX_RATIO * len(frame) < 1.05 * len(out)


def test_floor_accepts_small_degenerate_files(tmp_path):
    """Up to 1,048,576 Gaussians are accepted whatever the file size (degenerate synthetic scenes, test fixtures):
    100,000 identical points in 400 bytes of SPZ load."""
    p = tmp_path / "flat.spz"
    p.write_bytes(spz_v4(100_000))
    assert len(p.read_bytes()) < 500
    assert ex.load(p).n == 100_000


# ============================================================================================ item 1: limits

SMALL = {
    "spz": DATA / "playcanvas_biker_head4096.v4.spz",
    "sog": DATA / "playcanvas_flowers_lod2_sh2_head13rows.sog",
    "exgs": DATA / "golden" / "golden_v2_biker_sh0_1024_coarse.exgs",
}
READERS = {"spz": SPZ.read_spz, "sog": SOG.read_sog, "exgs": F.read_exgs}
FIELDS = {"spz": "numPoints", "sog": "count", "exgs": "fixed-header:n_gaussians"}


@pytest.mark.parametrize("fmt", sorted(SMALL))
def test_max_gaussians_from_env_argument_and_override(fmt, monkeypatch):
    path, read = SMALL[fmt], READERS[fmt]
    n = ex.load(path).n
    monkeypatch.setenv(limits.ENV_MAX_GAUSSIANS, str(n - 1))
    with pytest.raises(LimitError) as e:
        ex.load(path)
    assert isinstance(e.value, FormatError) and e.value.limit == "max_gaussians" and e.value.field == FIELDS[fmt]
    assert e.value.value == n and e.value.allowed == n - 1
    assert limits.ENV_MAX_GAUSSIANS in str(e.value) and str(path) in str(e.value)
    assert read(path, max_gaussians=n).n == n  # the argument wins over the environment
    with pytest.raises(LimitError):
        read(path, max_gaussians=n - 1)
    with limits.override(max_gaussians=0):  # 0 = no limit
        assert ex.load(path).n == n
    with pytest.raises(LimitError):
        ex.load(path)
    monkeypatch.setenv(limits.ENV_MAX_GAUSSIANS, "none")
    assert ex.load(path).n == n
    monkeypatch.setenv(limits.ENV_MAX_GAUSSIANS, "lots")
    with pytest.raises(ExgsError, match=limits.ENV_MAX_GAUSSIANS):
        ex.load(path)


def test_limits_defaults_and_switches(monkeypatch):
    lim = limits.current()
    assert (lim.max_gaussians, lim.gaussians_per_byte) == (50_000_000, 16)
    assert lim.allowed(0) == limits.ALWAYS_ALLOWED == 1 << 20
    assert lim.allowed(2 << 20) == 16 * (2 << 20) and lim.allowed(10 << 20) == 50_000_000
    with pytest.raises(LimitError, match="per byte") as e:
        limits.check_count(40_000_000, file_bytes=24_606, path="x.spz", field="numPoints")
    assert e.value.limit == "gaussians_per_byte" and e.value.allowed == 1 << 20
    limits.check_count(1 << 20, file_bytes=1, path="x.spz")  # the floor
    with limits.override(gaussians_per_byte=0):
        limits.check_count(40_000_000, file_bytes=24_606, path="x.spz")
    monkeypatch.setenv(limits.ENV_GAUSSIANS_PER_BYTE, "0")
    limits.check_count(40_000_000, file_bytes=24_606, path="x.spz")
    monkeypatch.setenv(limits.ENV_MAX_GAUSSIANS, "20M")
    assert limits.current().max_gaussians == 20_000_000
    with pytest.raises(LimitError, match="more than the limit of 20,000,000"):
        limits.check_count(40_000_000, file_bytes=24_606, path="x.spz")
    with pytest.raises(LimitError, match="needs about") as e:
        limits.check_count(10, file_bytes=1, need_bytes=2000, limits=limits.Limits(memory=1000))
    assert e.value.limit == "memory"


# ============================================================================================ item 1: memory ceiling


def test_memory_limit_honours_rlimit_as(tmp_path):
    """Under ``ulimit -v`` the ceiling is the address space left, and a decode that does not fit is refused up
    front (SPZ used to try and die in a MemoryError half-way)."""
    p = tmp_path / "big.spz"
    p.write_bytes(spz_v4(1_000_000))  # within the floor: only the memory check can refuse it

    def child():
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_machine._vm_size() + (128 << 20), hard))
        got = _machine.memory_limit()
        assert got <= 128 << 20, got
        assert "RLIMIT_AS" in _machine.memory_limit_source()
        return ex.load(p).n

    out = guarded(child)
    assert_refused_fast(out, limit="memory", field="numPoints", match="RLIMIT_AS")


def _fake_cgroup(tmp_path, monkeypatch, v2: bool, limit: int, usage: int, inactive: int, parent_limit=None):
    root = tmp_path / "cg"
    if v2:
        d = root / "user.slice" / "app"
        d.mkdir(parents=True)
        (root / "cgroup.controllers").write_text("memory\n")
        (d / "memory.max").write_text(f"{limit}\n")
        (d / "memory.current").write_text(f"{usage}\n")
        (d / "memory.stat").write_text(f"anon 1\nfile 5\ninactive_file {inactive}\nactive_file 3\n")
        (root / "user.slice" / "memory.max").write_text("max\n")
        if parent_limit is not None:
            (root / "user.slice" / "memory.max").write_text(f"{parent_limit}\n")
            (root / "user.slice" / "memory.current").write_text(f"{usage}\n")
        proc = "0::/user.slice/app\n"
    else:
        d = root / "memory" / "docker" / "abc"
        d.mkdir(parents=True)
        (d / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
        hier = parent_limit if parent_limit is not None else 9223372036854771712
        (d / "memory.stat").write_text(
            f"cache 5\ninactive_file {inactive}\nhierarchical_memory_limit {hier}\ntotal_inactive_file {inactive}\n"
        )
        proc = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n"
    pc = tmp_path / "proc_cgroup"
    pc.write_text(proc)
    monkeypatch.setattr(_machine, "CGROUP_ROOT", str(root))
    monkeypatch.setattr(_machine, "PROC_CGROUP", str(pc))
    monkeypatch.delenv(_machine.ENV_MEMORY_LIMIT, raising=False)


@pytest.mark.parametrize("v2", [True, False], ids=["cgroup-v2", "cgroup-v1"])
def test_memory_limit_honours_cgroup(tmp_path, monkeypatch, v2):
    gb = 1 << 30
    _fake_cgroup(tmp_path, monkeypatch, v2, limit=2 * gb, usage=gb, inactive=256 << 20)
    assert _machine._cgroup_headroom() == gb + (256 << 20)
    assert _machine.memory_limit() == gb + (256 << 20)  # below half the RAM of any machine running this
    assert "cgroup" in _machine.memory_limit_source()
    # a tighter parent limit wins (v2: the parent's memory.max; v1: hierarchical_memory_limit)
    _fake_cgroup(tmp_path / "p", monkeypatch, v2, limit=2 * gb, usage=gb, inactive=0, parent_limit=gb + (64 << 20))
    assert _machine.memory_limit() == 64 << 20


def test_memory_limit_without_cgroup_limits_is_half_the_ram(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, True, limit=1, usage=0, inactive=0)
    (tmp_path / "cg" / "user.slice" / "app" / "memory.max").write_text("max\n")
    assert _machine._cgroup_headroom() is None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        assert _machine.memory_limit() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def test_memory_limit_environment_variable(monkeypatch):
    monkeypatch.setenv(_machine.ENV_MEMORY_LIMIT, "512M")
    assert _machine.memory_limit() == 512 << 20
    assert "EXGS_MEMORY_LIMIT" in _machine.memory_limit_source()
    monkeypatch.setenv(_machine.ENV_MEMORY_LIMIT, "1.5G")
    assert _machine.memory_limit() == 3 << 29
    monkeypatch.setenv(_machine.ENV_MEMORY_LIMIT, "plenty")
    with pytest.raises(ExgsError, match="EXGS_MEMORY_LIMIT"):
        _machine.memory_limit()


@pytest.mark.parametrize("fmt", sorted(SMALL))
def test_every_reader_checks_memory(fmt, monkeypatch):
    monkeypatch.setenv(_machine.ENV_MEMORY_LIMIT, "1000")
    with pytest.raises(LimitError, match="needs about") as e:
        ex.load(SMALL[fmt])
    assert e.value.limit == "memory" and e.value.field == FIELDS[fmt]


# ============================================================================================ item 2: range decoder


def test_range_decode_refuses_a_count_its_payload_cannot_hold():
    """Checked before the int64 output is allocated (it used to allocate N values, then run them all)."""
    data = R.encode("scalar", np.arange(50) % 7, 8)
    tracemalloc.start()
    try:
        with pytest.raises(R.RangeError, match="cannot hold"):
            R.decode("scalar", data, 8, 10**7, np.uint8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("model,bits", [("scalar", 8), ("triple", 8), ("rotation", 10), ("morton", 16)])
def test_range_decoder_stops_at_the_end_of_its_payload(model, bits):
    """A payload cut short: the kernel stops at the first record that reads past the end instead of decoding
    zeros for every value left (it used to run all N values)."""
    rng = np.random.default_rng(7)
    n = 200_000
    if model == "morton":
        v = np.sort(rng.integers(0, 1 << (3 * bits), size=n))
    elif model == "rotation":
        v = rng.integers(0, 1 << (3 * bits + 2), size=n)
    else:
        v = rng.integers(0, 1 << bits, size=n * R.MODELS[model])
    data = R.encode(model, v, bits)
    cut = np.frombuffer(data[: len(data) // 20], np.uint8).copy()
    vals = np.full((3, n) if model == "triple" else n, -1, np.int64)
    code = int.from_bytes(bytes(cut[1:5]), "big")
    s, status = R._run(model, (0, R._M32, 0, 0, 5, code), cut, vals, bits, False)
    assert status == R._PAST_END
    assert s[4] > cut.size
    untouched = int((vals.reshape(-1, n)[0] == -1).sum())
    assert untouched > 0.9 * n, untouched  # it stopped about 1/20 of the way
    with pytest.raises(R.RangeError, match="truncated"):
        R.decode(model, bytes(cut), bits, n, np.uint64)


def test_max_values_holds_for_the_most_compressible_streams():
    """The bound never refuses a real payload: constant streams (the cheapest possible) stay below it."""
    for model, bits in (("scalar", 1), ("scalar", 8), ("triple", 4), ("rotation", 4), ("morton", 1), ("morton", 21)):
        n = 100_000
        v = np.zeros(n * R.MODELS[model], np.int64)
        data = R.encode(model, v, bits)
        assert n <= R.max_values(model, bits, len(data)) < 2 * n, (model, len(data))  # safe, and not loose
        assert (R.decode(model, data, bits, n, np.uint64) == 0).all()


@pytest.mark.parametrize("fmt", sorted(SMALL))
def test_bad_max_gaussians_argument_is_a_value_error(fmt):
    for bad in (-1, "10", 1.5e400, True):
        with pytest.raises(ValueError, match="max_gaussians"):
            READERS[fmt](SMALL[fmt], max_gaussians=bad)
