""".exgs container and codec: round trips within the documented bounds, determinism, golden files, and bad input
(every failure a FormatError naming the section or header field; a hypothesis fuzz of mutated golden files)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard as zstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exgs_core as ex
from exgs_core import exgs_format as F
from exgs_core.codec import attributes as A
from exgs_core.codec import quantize as Q
from exgs_core.codec import rangecoder
from exgs_core.codec.synthetic import synthetic_scene
from exgs_core.errors import FormatError, SceneError
from exgs_core.scene import GaussianScene

GOLDEN = Path(__file__).parent / "data" / "golden"
GOLDEN_FILES = sorted(GOLDEN.glob("golden_v*.exgs"))
FULL_GOLDEN = GOLDEN / "golden_v1_supersplat_sh3_500.exgs"  # has every v1 section
FULL_GOLDEN_V2 = GOLDEN / "golden_v2_supersplat_sh3_500.exgs"  # the same with range-coded (codec 2) sections
FULL_GOLDENS = [FULL_GOLDEN, FULL_GOLDEN_V2]
FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")

# ----------------------------------------------------------------------------------------- spec-level helpers
# An independent reading of docs/FORMAT.md (not the implementation's), used to craft files.

FIXED = struct.Struct("<4sHHIIIHHII")
ENTRY = struct.Struct("<4sBBBBQQII")


def split(data: bytes) -> tuple[dict, bytes, list[dict]]:
    magic, version, r0, flags, n, jlen, nsec, r1, crc, r2 = FIXED.unpack_from(data, 0)
    fixed = dict(magic=magic, version=version, r0=r0, flags=flags, n=n, r1=r1, r2=r2)
    hjson = data[32 : 32 + jlen]
    entries = []
    pos = 32 + jlen + 32 * nsec
    for i in range(nsec):
        tag, codec, filt, esz, sflags, slen, rlen, scrc, rr = ENTRY.unpack_from(data, 32 + jlen + 32 * i)
        entries.append(
            dict(
                tag=tag,
                codec=codec,
                filter=filt,
                elem=esz,
                flags=sflags,
                raw=rlen,
                crc=scrc,
                rr=rr,
                payload=data[pos : pos + slen],
                slen=slen,
            )
        )
        pos += slen
    return fixed, hjson, entries


def pack(fixed: dict, hjson, entries: list[dict], *, fix_crc: bool = True) -> bytes:
    if isinstance(hjson, dict):
        hjson = json.dumps(hjson, sort_keys=True, separators=(",", ":")).encode()
    table = b""
    for e in entries:
        crc = zlib.crc32(e["payload"]) if fix_crc else e["crc"]
        slen = len(e["payload"]) if fix_crc else e["slen"]
        table += ENTRY.pack(
            e["tag"], e["codec"], e["filter"], e["elem"], e["flags"], slen, e["raw"], crc, e.get("rr", 0)
        )
    head24 = FIXED.pack(
        fixed["magic"],
        fixed["version"],
        fixed["r0"],
        fixed["flags"],
        fixed["n"],
        len(hjson),
        len(entries),
        fixed["r1"],
        0,
        0,
    )[:24]
    crc = zlib.crc32(head24 + hjson + table)
    return head24 + struct.pack("<II", crc, fixed["r2"]) + hjson + table + b"".join(e["payload"] for e in entries)


def entry(entries, tag: bytes) -> dict:
    return next(e for e in entries if e["tag"] == tag)


def raw_of(e: dict, hjson: bytes | None = None) -> np.ndarray:
    """Decompressed, unfiltered elements of a section entry (spec reading). Range-coded sections (codec 2)
    need the JSON header for their model's bit width and are decoded by the implementation's range coder."""
    dt = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}[e["elem"]]
    if e["codec"] == 2:
        model = A.models(json.loads(hjson)["quant"])[e["tag"]]
        count = e["raw"] // e["elem"] // rangecoder.MODELS[model[0]]
        return rangecoder.decode(model[0], e["payload"], model[1], count, dt)
    raw = zstd.ZstdDecompressor().decompress(e["payload"]) if e["codec"] == 1 else e["payload"]
    n = len(raw) // e["elem"]
    if e["filter"] in (1, 2) and e["elem"] > 1:
        a = np.frombuffer(raw, np.uint8).reshape(e["elem"], n).T.copy().view(dt).ravel()
    else:
        a = np.frombuffer(raw, dt).copy()
    if e["filter"] == 2:
        a = np.cumsum(a, dtype=dt)
    return a


def set_raw(e: dict, arr: np.ndarray) -> None:
    """Store ``arr`` (elements) in the entry as an unfiltered zstd frame."""
    arr = np.ascontiguousarray(arr, dtype={1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}[e["elem"]])
    e["payload"] = zstd.ZstdCompressor(level=3).compress(arr.tobytes())
    e["codec"], e["filter"], e["raw"] = 1, 0, arr.nbytes


def expect_error(data: bytes, field_prefix: str | None = None, match: str | None = None) -> FormatError:
    with pytest.raises(FormatError) as ei:
        F.decode(data, path="x.exgs")
    e = ei.value
    assert e.path == "x.exgs" and "x.exgs" in str(e)
    if field_prefix is not None:
        assert e.field is not None and e.field.startswith(field_prefix), (e.field, str(e))
    if match is not None:
        assert match in str(e), str(e)
    return e


@pytest.fixture(scope="module", params=FULL_GOLDENS, ids=lambda p: p.stem)
def golden_bytes(request) -> bytes:
    return request.param.read_bytes()


# ----------------------------------------------------------------------------------------- round trips


def check_bounds(scene: GaussianScene, data: bytes, sh_full=None, options=None):
    options = F.CodecOptions() if options is None else options
    dec = F.decode(data)
    h = dec.meta["exgs_header"]
    b = F.error_bounds(h)
    n = scene.n
    assert dec.n == n and dec.sh_degree == scene.sh_degree
    perm = F.storage_order(scene.means, options.position_bits)
    src = scene.subset(perm)
    if n == 0:
        return dec, h
    assert (np.abs(dec.means.astype(np.float64) - src.means) <= np.array(b["positions_abs"])).all()
    assert Q.rotation_angle(src.quats, dec.quats).max() <= b["rotations_rad"]
    assert (np.abs(dec.log_scales.astype(np.float64) - src.log_scales) <= np.array(b["log_scales_abs"])).all()
    p_err = np.abs(Q._sigmoid64(dec.opacity_logits) - Q._sigmoid64(src.opacity_logits))
    assert p_err.max() <= b["opacity_abs"]
    assert (np.abs(dec.sh[:, 0].astype(np.float64) - src.sh[:, 0]) <= np.array(b["sh_dc_abs"])).all()
    full = np.ones(n, bool) if sh_full is None else np.asarray(sh_full)[perm]
    if scene.sh_degree == 0:
        full = np.zeros(n, bool)
    assert (dec.meta["exgs_sh_full"] == full).all()
    assert h["n_sh_full"] == int(full.sum())
    if scene.sh_degree > 0:
        assert (dec.sh[~full, 1:] == 0).all()
        if full.any():
            diff = dec.sh[full, 1:].astype(np.float64) - src.sh[full, 1:]
            rmse = math.sqrt((diff**2).mean())
            assert rmse == pytest.approx(b["sh_rest"]["rmse"], rel=1e-6, abs=1e-9)
            assert np.abs(diff).max() == pytest.approx(b["sh_rest"]["max_abs"], rel=1e-6, abs=1e-9)
            if full.sum() <= h["quant"]["sh_rest"]["size"]:  # palette holds every vector: only the u8 step
                step = np.asarray(h["quant"]["sh_rest"]["step"], np.float64).reshape(-1, 3)
                assert (np.abs(diff) <= step / 2 + 1e-6).all()
    # the header's measured errors are within the a-priori bounds
    m = b["measured"]
    assert (np.array(m["positions_max_abs"]) <= np.array(b["positions_abs"])).all()
    assert math.radians(m["rotations_max_deg"]) <= b["rotations_rad"]
    assert m["opacity_max_abs"] <= b["opacity_abs"]
    return dec, h


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 3000])
def test_round_trip_within_bounds(degree, n):
    s = synthetic_scene(n, degree, seed=n + degree)
    data = F.encode(s)
    dec, h = check_bounds(s, data)
    assert h["sh_degree"] == degree and h["order"] == "morton" and dec.meta["format"] == "exgs"
    # the decoded order is the Morton order: codes non-decreasing
    _, hjson, entries = split(data)
    codes = raw_of(entry(entries, b"POSN"), hjson)
    assert (np.diff(codes.astype(np.int64)) >= 0).all() if n > 1 else True


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_empty_scene(degree):
    s = GaussianScene.empty(0, sh_degree=degree)
    data = F.encode(s)
    dec = F.decode(data)
    assert dec.n == 0 and dec.sh.shape == (0, (degree + 1) ** 2, 3)
    assert F.decode(F.encode(dec)).n == 0


def test_wide_options_and_real_scene():
    s = ex.load(Path(__file__).parent / "data" / "supersplat_label_sh3_1000.ply")
    s, _ = s.sanitize()
    opts = F.CodecOptions(
        position_bits=21,
        rotation_bits=16,
        scale_bits=12,
        opacity_bits=12,
        color_bits=12,
        sh_palette_size=128,
        zstd_level=3,
    )
    data = F.encode(s, options=opts)
    check_bounds(s, data, options=opts)
    # more bits -> smaller errors than the defaults
    e_def = F.describe(F.encode(s))["errors"]
    e_wide = F.describe(data)["errors"]
    assert e_wide["rotations_max_deg"] < e_def["rotations_max_deg"] / 10
    assert max(e_wide["positions_max_abs"]) < max(e_def["positions_max_abs"]) / 10


def test_auto_position_bits(rng):
    s = synthetic_scene(3000, 0, seed=2)
    s.means[:] = rng.uniform(-1, 1, (s.n, 3))
    assert F.auto_position_bits(s.means) == 16  # no floaters: the 1..99 % extent is the full extent
    far = s.copy()
    far.means[:5] *= 100  # floaters 100x out
    bits = F.auto_position_bits(far.means)
    assert 19 <= bits <= 21
    opts = F.CodecOptions(position_bits="auto")
    data = F.encode(far, options=opts)
    dec, h = check_bounds(far, data, options=opts)
    assert h["quant"]["positions"]["bits"] == bits and h["options"]["position_bits"] == "auto"
    assert F.auto_position_bits(np.zeros((1, 3))) == 16
    with pytest.raises(ValueError):
        F.CodecOptions(position_bits="max")


def test_sh_full_partial(rng):
    s = synthetic_scene(2500, 3, seed=5)
    keep = rng.random(s.n) < 0.3
    data = F.encode(s, sh_full=keep)
    dec, h = check_bounds(s, data, sh_full=keep)
    assert h["n_sh_full"] == keep.sum()
    # no Gaussian keeps SH: mask only, no palette sections
    data = F.encode(s, sh_full=np.zeros(s.n, bool))
    names = [x["name"] for x in F.describe(data)["container"]["sections"]]
    assert "sh_mask" in names and "sh_palette" not in names and "sh_indices" not in names
    assert (F.decode(data).sh[:, 1:] == 0).all()
    with pytest.raises(ValueError, match="sh_full"):
        F.encode(s, sh_full=np.ones(s.n - 1, bool))
    with pytest.raises(ValueError, match="sh_full"):
        F.encode(s, sh_full=np.ones(s.n, np.float32))


def test_deterministic_bytes():
    s = synthetic_scene(3000, 3, seed=11)
    a = F.encode(s)
    assert F.encode(s) == a
    assert F.encode(s, options=F.CodecOptions(threads=1)) == a
    assert F.encode(s.copy()) == a


def test_header_contents():
    s = synthetic_scene(100, 1)
    sha = hashlib.sha256(b"source").hexdigest()
    data = F.encode(s, source_sha256=sha, extra_header={"ratio": 0.25, "tool": "test"})
    h = F.describe(data)
    assert h["format"] == "exgs" and h["version"] == F.FORMAT_VERSION and h["n"] == 100
    assert h["source_sha256"] == sha and h["extra"] == {"ratio": 0.25, "tool": "test"}
    assert h["encoder"]["name"] == "exgs" and h["options"]["position_bits"] == 16
    assert h["container"]["file_bytes"] == len(data)
    assert [x["tag"] for x in h["container"]["sections"]] == [
        "POSN",
        "ROTN",
        "SCAL",
        "OPAC",
        "COLR",
        "SHMK",
        "SHPL",
        "SHIX",
    ]
    with pytest.raises(ValueError, match="source_sha256"):
        F.encode(s, source_sha256="xyz")
    with pytest.raises(ValueError, match="JSON"):
        F.encode(s, extra_header={"x": float("nan")})


def test_unclean_scene_refused():
    s = synthetic_scene(50, 1)
    bad = s.copy()
    bad.means[3, 1] = np.nan
    with pytest.raises(SceneError, match="sanitize"):
        F.encode(bad)
    bad = s.copy()
    bad.quats[7] = 0
    with pytest.raises(SceneError, match="zero-norm"):
        F.encode(bad)
    clean, _ = bad.sanitize()
    assert F.decode(F.encode(clean)).n == 50


def test_options_validated():
    for kw in (
        {"position_bits": 11},
        {"position_bits": 22},
        {"rotation_bits": 21},
        {"scale_bits": 3},
        {"sh_palette_size": 0},
        {"sh_palette_size": 65537},
        {"zstd_level": 0},
        {"sh_probes": 3},
        {"color_bits": 8.0},
    ):
        with pytest.raises(ValueError):
            F.CodecOptions(**kw)


def test_antialiased_flag():
    s = synthetic_scene(20, 0)
    assert not F.decode(F.encode(s)).antialiased
    s.antialiased = True
    data = F.encode(s)
    assert F.decode(data).antialiased is True
    assert FIXED.unpack_from(data)[3] == 1


def test_progress_and_cancel():
    s = synthetic_scene(500, 2)
    seen = []
    F.encode(s, progress=lambda f, stage: seen.append((f, stage)))
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[0] == 0.0 and fr[-1] == 1.0
    assert "sh_palette" in {st for _, st in seen}

    class Cancel(Exception):
        pass

    def cancel(f, stage):
        if stage == "sh_palette":
            raise Cancel

    with pytest.raises(Cancel):
        F.encode(s, progress=cancel)


def test_files(tmp_path):
    s = synthetic_scene(400, 3)
    data = F.encode(s)
    p = tmp_path / "scene.exgs"
    F.write_exgs(p, data)
    assert p.read_bytes() == data
    assert ex.detect_format(p) == "exgs"
    for dec in (F.read_exgs(p), ex.load(p)):
        assert dec.n == 400 and dec.meta["format"] == "exgs" and dec.meta["path"] == os.fspath(p)
    h = F.read_header(p)
    assert h["n"] == 400 and h["container"]["file_bytes"] == len(data)
    assert [x["name"] for x in h["container"]["sections"]][0] == "positions"
    # read_header checks the extents against the file size without reading payloads
    (tmp_path / "cut.exgs").write_bytes(data[:-10])
    with pytest.raises(FormatError, match="truncated"):
        F.read_header(tmp_path / "cut.exgs")
    with pytest.raises(FormatError, match="truncated") as ei:
        ex.load(tmp_path / "cut.exgs")
    assert ei.value.field == "section:sh_indices" and "cut.exgs" in str(ei.value)
    with pytest.raises(FormatError, match="no such file"):
        F.read_exgs(tmp_path / "missing.exgs")
    with pytest.raises(ValueError):
        F.write_exgs(tmp_path / "bad.exgs", b"nope")
    assert not (tmp_path / "bad.exgs").exists()


# ----------------------------------------------------------------------------------------- attribute table


def test_section_table_is_the_format():
    """The attribute table reproduces docs/FORMAT.md section 4: tags, names, order, and the codec-2 models."""
    assert [(s.tag, s.name) for s in A.SECTIONS] == [
        (b"POSN", "positions"),
        (b"ROTN", "rotations"),
        (b"SCAL", "log_scales"),
        (b"OPAC", "opacity"),
        (b"COLR", "sh_dc"),
        (b"SHMK", "sh_mask"),
        (b"SHPL", "sh_palette"),
        (b"SHIX", "sh_indices"),
    ]
    assert F.SECTION_NAMES == {s.tag: s.name for s in A.SECTIONS}
    assert {s.tag: s.model for s in A.SECTIONS if s.model} == {
        b"POSN": "morton",
        b"ROTN": "rotation",
        b"SCAL": "triple",
        b"OPAC": "scalar",
        b"COLR": "triple",
    }
    options = {f.name for f in dataclasses.fields(F.CodecOptions)}
    for a in A.ATTRIBUTES:  # the writer never produces a width a reader refuses
        assert a.read_bits[0] <= a.write_bits[0] and a.write_bits[1] <= a.read_bits[1], a.name
        assert a.option in options and rangecoder.MODELS[a.model] == a.per_gaussian, a.name


@pytest.mark.parametrize("attr", A.ATTRIBUTES, ids=lambda a: a.name)
def test_attribute_row_round_trip(attr, rng):
    """Each row alone, at its narrowest, default and widest width: quantise -> section -> unpack -> dequantise;
    the section has the size the header validation expects, and the measured error is within the row's bound."""
    n = 257
    values = {
        "means": rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1],
        "quats": rng.normal(size=(n, 4)),
        "log_scales": rng.normal(-4.0, 1.0, (n, 3)),
        "opacity_logits": rng.normal(0.0, 3.0, n),
        "sh_dc": rng.normal(size=(n, 3)),
    }[attr.field].astype(np.float32)
    for bits in (attr.write_bits[0], getattr(F.CodecOptions(), attr.option), attr.write_bits[1]):
        codes = attr.quantise(values, bits)
        quant = json.loads(json.dumps(attr.quant_entry(bits, codes)))  # as a reader sees it
        assert quant["bits"] == bits and quant.get("scheme") == attr.scheme
        raw_length, elem_size = attr.expected(n, bits)
        assert codes.section.ndim == 1 and codes.section.nbytes == raw_length
        assert codes.section.itemsize == elem_size
        planar = attr.unpack(codes.section, n, bits)
        assert np.array_equal(planar, codes.planar)
        dec = attr.dequantise(planar, quant)
        err = np.asarray(attr.measure(values, dec), np.float64)
        if attr.error_key.endswith("_deg"):
            err = np.radians(err)
        assert (err <= np.asarray(attr.bound(quant))).all(), (attr.name, bits, err, attr.bound(quant))


def test_dequantise_names_the_section_of_a_bad_code():
    s = synthetic_scene(50, 0, seed=3)
    q = A.quantise(s, np.zeros(s.n, bool), F.CodecOptions())
    arrays = {tag: arr for tag, arr, _ in q.streams}
    assert A.dequantise(arrays, q.quant, s.n, 0, 0)["means"].shape == (s.n, 3)
    arrays[b"OPAC"] = arrays[b"OPAC"].copy()
    arrays[b"OPAC"][7] = 255
    q.quant["opacity"]["bits"] = 7
    with pytest.raises(A.CodeError) as ei:
        A.dequantise(arrays, q.quant, s.n, 0, 0)
    assert ei.value.tag == b"OPAC" and "exceeds the 7-bit range" in str(ei.value)


# ----------------------------------------------------------------------------------------- golden files


def test_golden_files_present():
    assert len(GOLDEN_FILES) >= 8 and FULL_GOLDEN in GOLDEN_FILES and FULL_GOLDEN_V2 in GOLDEN_FILES
    # the version-2 goldens really use the range coder
    for p in GOLDEN_FILES:
        if p.name.startswith("golden_v2_"):
            assert any(e["codec"] == 2 for e in split(p.read_bytes())[2]), p.name


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_decodes_bit_exactly(path):
    ref = np.load(path.with_suffix(".npz"), allow_pickle=False)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == str(ref["sha256"]), "golden file changed: never rewrite goldens"
    dec = F.decode(data)
    for f in FIELDS:
        got, want = getattr(dec, f), ref[f"out_{f}"]
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), f
    assert (dec.meta["exgs_sh_full"] == ref["out_sh_full"]).all()
    assert dec.antialiased == bool(ref["in_antialiased"])
    # the current encoder still meets the documented bounds on the golden inputs
    src = GaussianScene(*(ref[f"in_{f}"] for f in FIELDS))
    opts = F.CodecOptions(**{k: v for k, v in dec.meta["exgs_header"]["options"].items()})
    check_bounds(
        src,
        F.encode(src, sh_full=ref["in_sh_full"] if src.sh_degree else None, options=opts),
        sh_full=ref["in_sh_full"],
        options=opts,
    )


# ----------------------------------------------------------------------------------------- corruption table

SECTION_TAGS = list(F.SECTION_NAMES)


@pytest.mark.parametrize("tag", SECTION_TAGS, ids=lambda t: F.SECTION_NAMES[t])
def test_corrupt_section_names_itself(golden_bytes, tag):
    name = F.SECTION_NAMES[tag]
    fixed, hjson, entries = split(golden_bytes)
    e = entry(entries, tag)
    # 1. a flipped payload byte: the CRC catches it
    p = bytearray(e["payload"])
    p[len(p) // 2] ^= 0x40
    e2 = dict(e, payload=bytes(p))
    data = pack(fixed, hjson, [e2 if x is e else x for x in entries], fix_crc=False)
    expect_error(data, f"section:{name}", f"section '{name}' is corrupt (checksum)")
    # 2. the same payload with a matching CRC: zstd or the semantic checks must name the section (or it decodes)
    data = pack(fixed, hjson, [e2 if x is e else x for x in entries])
    try:
        F.decode(data, path="x.exgs")
    except FormatError as err:
        assert err.field == f"section:{name}", (err.field, str(err))
    # 3. a payload cut short (lengths fixed up): zstd error naming the section
    e3 = dict(e, payload=e["payload"][:-3])
    expect_error(pack(fixed, hjson, [e3 if x is e else x for x in entries]), f"section:{name}")
    # 4. the raw length disagrees with N
    e4 = dict(e, raw=e["raw"] + e["elem"])
    expect_error(pack(fixed, hjson, [e4 if x is e else x for x in entries]), f"section:{name}", "raw length")
    # 5. missing
    expect_error(pack(fixed, hjson, [x for x in entries if x is not e]), f"section:{name}", "missing")


def _header_cases(golden: bytes):
    fixed, hjson, entries = split(golden)
    h = json.loads(hjson)
    size = len(golden)
    cases = {
        "magic": (b"EXGZ" + golden[4:], "fixed-header:magic", "not an .exgs file"),
        "ply": (b"ply\nformat ascii 1.0\n", "fixed-header:magic", None),
        "empty": (b"", "fixed-header:magic", None),
        "version_newer": (
            pack(dict(fixed, version=F.READER_VERSION + 1), hjson, entries),
            "fixed-header:version",
            "newer exgs",
        ),
        "version0": (pack(dict(fixed, version=0), hjson, entries), "fixed-header:version", None),
        "reserved": (pack(dict(fixed, r1=1), hjson, entries), "fixed-header:reserved", None),
        "reserved2": (pack(dict(fixed, r2=5), hjson, entries), "fixed-header:reserved", None),
        "flags": (pack(dict(fixed, flags=0x10), hjson, entries), "fixed-header:flags", None),
        "n_too_big": (pack(dict(fixed, n=(1 << 27) + 1), hjson, entries), "fixed-header:n_gaussians", None),
        "n_mismatch": (pack(dict(fixed, n=fixed["n"] + 1), hjson, entries), "header:n", None),
        "header_crc": (
            golden[:40] + bytes([golden[40] ^ 1]) + golden[41:],
            "fixed-header:header_crc32",
            "header is corrupt (checksum)",
        ),
        "json_garbage": (pack(fixed, b"{not json" + b" " * 10, entries), "header", "not valid JSON"),
        "json_utf8": (pack(fixed, b'{"a":"\xff"}', entries), "header", "UTF-8"),
        "json_list": (pack(fixed, b"[1,2,3]", entries), "header", "expected an object"),
        "json_nan": (pack(fixed, hjson.replace(b'"n":', b'"nan_":NaN,"n":'), entries), "header", None),
        "json_deep": (pack(fixed, b"[" * 100000 + b"]" * 100000, entries), "header", None),
        "json_len": (golden[:16] + struct.pack("<I", (1 << 20) + 1) + golden[20:], "fixed-header:json_length", None),
        "sections_65": (golden[:20] + struct.pack("<H", 65) + golden[22:], "fixed-header:section_count", None),
        "trailing": (golden + b"\0", "trailing-bytes", None),
        "duplicate": (pack(fixed, hjson, entries + [entries[0]]), "section:positions", "twice"),
        "unknown_required": (
            pack(fixed, hjson, entries + [dict(entries[0], tag=b"ZZZ9", flags=1)]),
            "section:ZZZ9",
            "newer exgs",
        ),
        "bad_tag": (pack(fixed, hjson, [dict(entries[0], tag=b"po s")] + entries[1:]), "section-table[0]", None),
        "bad_codec": (pack(fixed, hjson, [dict(entries[0], codec=9)] + entries[1:]), "section:positions", "codec"),
        "bad_filter": (pack(fixed, hjson, [dict(entries[0], filter=9)] + entries[1:]), "section:positions", "filter"),
        "bad_elem": (pack(fixed, hjson, [dict(entries[0], elem=3)] + entries[1:]), "section:positions", None),
        "table_reserved": (pack(fixed, hjson, [dict(entries[0], rr=1)] + entries[1:]), "section:positions", None),
        "stored_len_past_end": (
            pack(fixed, hjson, [dict(entries[0], slen=size)] + entries[1:], fix_crc=False),
            "section:positions",
            "truncated",
        ),
    }
    for cut in (1, 3, 31, 32, 33, 32 + len(hjson) - 1, 32 + len(hjson) + 5, size // 2, size - 1):
        cases[f"truncated_{cut}"] = (golden[:cut], None, None)
    for key in (
        "format",
        "version",
        "n",
        "sh_degree",
        "n_sh_full",
        "order",
        "bounds",
        "quant",
        "encoder",
        "options",
        "errors",
        "extra",
        "quant.positions.bits",
        "quant.positions.step",
        "quant.rotations.bits",
        "quant.log_scales.min",
        "quant.opacity.bits",
        "quant.sh_dc.step",
        "quant.sh_rest.size",
        "quant.sh_rest.min",
    ):
        h2 = json.loads(hjson)
        cur = h2
        parts = key.split(".")
        for part in parts[:-1]:
            cur = cur[part]
        del cur[parts[-1]]
        cases[f"missing_{key}"] = (pack(fixed, h2, entries), f"header:{key}", "misses")
    for key, value, field in (
        ("format", "ply", "header:format"),
        ("version", F.READER_VERSION + 1, "header:version"),
        ("n", -1, "header:n"),
        ("sh_degree", 4, "header:sh_degree"),
        ("n_sh_full", 10**9, "header:n_sh_full"),
        ("order", "hilbert", "header:order"),
        ("quant.positions.bits", 22, "header:quant.positions.bits"),
        ("quant.positions.bits", True, "header:quant.positions.bits"),
        ("quant.positions.step", [1, 2], "header:quant.positions.step"),
        ("quant.positions.step", [1, -2, 3], "header:quant.positions.step"),
        ("quant.log_scales.min", [1e300, 0, 0], "header:quant.log_scales.min"),
        ("quant.rotations.scheme", "euler", "header:quant.rotations.scheme"),
        ("quant.sh_rest.size", 70000, "header:quant.sh_rest.size"),
        ("quant.sh_rest.dim", 44, "header:quant.sh_rest.dim"),
        ("source_sha256", 5, "header:source_sha256"),
        ("quant.positions.min", [10**400, 0, 0], "header:quant.positions.min"),
        ("bounds.max", [1e39, 0, 0], "header:bounds.max"),
    ):
        h2 = json.loads(hjson)
        cur = h2
        parts = key.split(".")
        for part in parts[:-1]:
            cur = cur[part]
        cur[parts[-1]] = value
        cases[f"value_{key}={value}"] = (pack(fixed, h2, entries), field, None)
    # semantic checks after decoding, with valid CRCs
    n = h["n"]
    ix = entry(entries, b"SHIX")
    bad = [dict(x) for x in entries]
    arr = raw_of(ix, hjson).copy()
    arr[5] = h["quant"]["sh_rest"]["size"]
    set_raw(entry(bad, b"SHIX"), arr)
    cases["palette_index_out_of_range"] = (pack(fixed, hjson, bad), "section:sh_indices", "out of range")
    bad = [dict(x) for x in entries]
    mk = raw_of(entry(entries, b"SHMK"), hjson).copy()
    mk[0] ^= 1
    set_raw(entry(bad, b"SHMK"), mk)
    cases["mask_popcount"] = (pack(fixed, hjson, bad), "section:sh_mask", "bits set")
    if n % 8:
        bad = [dict(x) for x in entries]
        mk = raw_of(entry(entries, b"SHMK"), hjson).copy()
        mk[-1] |= 0x80
        set_raw(entry(bad, b"SHMK"), mk)
        cases["mask_padding"] = (pack(fixed, hjson, bad), "section:sh_mask", None)
    bad = [dict(x) for x in entries]
    pc = raw_of(entry(entries, b"POSN"), hjson).copy()
    pc[-1] = np.uint64(1) << np.uint64(3 * h["quant"]["positions"]["bits"])
    set_raw(entry(bad, b"POSN"), pc)
    cases["morton_range"] = (pack(fixed, hjson, bad), "section:positions", "Morton")
    bad = [dict(x) for x in entries]
    zs = entry(bad, b"SCAL")
    zs["payload"] = zstd.ZstdCompressor(write_content_size=False).compress(b"\0" * zs["raw"])
    zs["codec"] = 1
    cases["zstd_no_content_size"] = (pack(fixed, hjson, bad), "section:log_scales", "content size")
    bad = [dict(x) for x in entries]
    zs = entry(bad, b"OPAC")
    zs["payload"] = zs["payload"] + b"\0\0"
    cases["zstd_trailing"] = (pack(fixed, hjson, bad), "section:opacity", None)
    bad = [dict(x) for x in entries]
    bad[0] = dict(bad[0], codec=0, payload=bad[0]["payload"])
    cases["stored_length_mismatch"] = (pack(fixed, hjson, bad), "section:positions", None)
    return cases


CASES = {
    f"v{i + 1}_{k}": v
    for i, g in enumerate(FULL_GOLDENS)
    if g.exists()
    for k, v in _header_cases(g.read_bytes()).items()
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_table(case):
    data, field, match = CASES[case]
    e = expect_error(data, field, match)
    if case.split("_", 1)[1].startswith("truncated"):
        assert "truncated" in str(e) or e.field.startswith("fixed-header:magic"), str(e)


def test_wide_codes_checked():
    """u16 codes above the declared bits (the 10-bit log-scales of a golden file) are refused."""
    g = GOLDEN / "golden_v1_synthetic_sh0_300_aa_wide.exgs"
    fixed, hjson, entries = split(g.read_bytes())
    for tag, name in ((b"SCAL", "log_scales"), (b"OPAC", "opacity"), (b"COLR", "sh_dc")):
        bad = [dict(x) for x in entries]
        a = raw_of(entry(entries, tag), hjson).copy()
        a[1] = 0xFFFF
        set_raw(entry(bad, tag), a)
        expect_error(pack(fixed, hjson, bad), f"section:{name}", "exceeds")
    # 12-bit rotations use 38 of the 64 bits of a word: anything above is refused
    bad = [dict(x) for x in entries]
    rw = raw_of(entry(entries, b"ROTN"), hjson).copy()
    assert rw.dtype.itemsize == 8
    rw[0] |= np.uint64(1) << np.uint64(3 * 12 + 2)
    set_raw(entry(bad, b"ROTN"), rw)
    expect_error(pack(fixed, hjson, bad), "section:rotations", "bits above")


def test_unknown_optional_section_skipped(golden_bytes):
    fixed, hjson, entries = split(golden_bytes)
    extra = dict(entries[0], tag=b"XTRA", flags=0, codec=0, filter=0, elem=1, payload=b"hello", raw=5)
    dec = F.decode(pack(fixed, hjson, entries[:2] + [extra] + entries[2:]))
    ref = F.decode(golden_bytes)
    assert dec.means.tobytes() == ref.means.tobytes()
    assert any("XTRA" in note for note in dec.meta["notes"])


def test_memory_limit(golden_bytes, monkeypatch):
    import exgs_core.io.exgs as X

    monkeypatch.setattr(X, "_memory_limit", lambda: 1000)
    expect_error(golden_bytes, "fixed-header:n_gaussians", "needs about")
    assert F.decode_memory_estimate(10**6, 3, 0) > 200e6


def test_decode_type_errors():
    with pytest.raises(TypeError):
        F.decode("EXGS")


# ----------------------------------------------------------------------------------------- hypothesis fuzz

GOLDEN_DATA = [p.read_bytes() for p in GOLDEN_FILES]


def _try_decode(data: bytes):
    try:
        s = F.decode(data, path="fuzz.exgs")
    except FormatError as e:
        assert e.field, str(e)
        assert "fuzz.exgs" in str(e)
        return "error"
    assert isinstance(s, GaussianScene)
    return "ok"


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("u32"), st.integers(0, 1 << 20), st.integers(0, 2**32 - 1)),
)


def mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, val in muts:
        if not b:
            break
        pos %= len(b)
        if kind == "flip":
            b[pos] ^= 1 << val
        elif kind == "byte":
            b[pos] = val
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([val])
        elif kind == "u32":
            b[pos : pos + 4] = struct.pack("<I", val)[: len(b) - pos]
    return bytes(b)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1000), st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_raw_mutations(which, muts):
    _try_decode(mutate(GOLDEN_DATA[which % len(GOLDEN_DATA)], muts))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.lists(mutation, min_size=1, max_size=3),
    st.sampled_from(["payload", "json", "table"]),
)
@pytest.mark.slow
def test_fuzz_with_valid_checksums(which, target, muts, where):
    """Mutations behind valid CRCs reach zstd, the JSON schema and the semantic checks."""
    golden = GOLDEN_DATA[which % len(GOLDEN_DATA)]
    fixed, hjson, entries = split(golden)
    entries = [dict(e) for e in entries]
    if where == "json":
        hjson = mutate(hjson, muts)
    elif entries:
        e = entries[target % len(entries)]
        if where == "payload":
            e["payload"] = mutate(e["payload"], muts)
        else:
            kind, pos, val = muts[0]
            key = ["raw", "codec", "filter", "elem", "flags", "rr"][pos % 6]
            e[key] = val % {"raw": 2**64, "rr": 2**32}.get(key, 256)
    _try_decode(pack(fixed, hjson, entries))
