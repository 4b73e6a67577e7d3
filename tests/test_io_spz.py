"""exgs_core.io.spz: reference parity (splat-transform 3.7.0 decodes), committed fixtures, synthetic v1/v3 and
layout checks, axis conversion, malformed files and a truncation/mutation fuzz."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc

import numpy as np
import plyfile
import pytest
from exgs_testpaths import DATA, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from exgs_core.conventions import SH_C1, SH_C2, SH_C3, sigmoid
from exgs_core.errors import FormatError
from exgs_core.io import detect_format, load
from exgs_core.io.spz import SpzRaw, decode_spz, flip_yz, pack_spz, read_spz, unpack_spz

V4_FIXTURE = DATA / "playcanvas_biker_head4096.v4.spz"
V2_FIXTURE = DATA / "pdal_fourth_st_sh3_head4096.v2.spz"


# ------------------------------------------------------------------------------------------------ helpers
def reference(path):
    """A splat-transform PLY decode as float64 arrays in our layout (quats w, x, y, z; sh [N, K, 3])."""
    v = plyfile.PlyData.read(str(path))["vertex"].data
    g = lambda *k: np.stack([v[x] for x in k], 1).astype(np.float64)  # noqa: E731
    nr = sum(1 for x in v.dtype.names if x.startswith("f_rest_"))
    rest = g(*[f"f_rest_{i}" for i in range(nr)]) if nr else np.zeros((len(v), 0))
    rest = rest.reshape(len(v), 3, nr // 3).transpose(0, 2, 1)  # channel-major f_rest -> [N, K-1, 3]
    return dict(
        means=g("x", "y", "z"),
        quats=g("rot_0", "rot_1", "rot_2", "rot_3"),
        log_scales=g("scale_0", "scale_1", "scale_2"),
        opacity=v["opacity"].astype(np.float64),
        dc=g("f_dc_0", "f_dc_1", "f_dc_2"),
        rest=rest,
    )


def errors_vs(scene, ref) -> dict:
    """Max abs error per attribute: opacity in sigmoid space, quaternions normalised and up to sign."""
    a = scene.quats / np.linalg.norm(scene.quats, axis=1, keepdims=True)
    b = ref["quats"] / np.linalg.norm(ref["quats"], axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        ref_op = 1.0 / (1.0 + np.exp(-ref["opacity"]))
    out = {
        "means": np.abs(scene.means - ref["means"]).max(),
        "log_scales": np.abs(scene.log_scales - ref["log_scales"]).max(),
        "opacity": np.abs(sigmoid(scene.opacity_logits) - ref_op).max(),
        "dc": np.abs(scene.sh[:, 0] - ref["dc"]).max(),
        "quats": np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max(),
    }
    if ref["rest"].size:
        out["rest"] = np.abs(scene.sh[:, 1:] - ref["rest"]).max()
    return out


def spz_tolerances(version: int, fractional_bits: int) -> dict:
    """A quarter of each attribute's quantisation step (plus float32 rounding): the reference uses the same
    dequantisation, so the ideal error is 0 and any off-by-one code or wrong field would exceed this."""
    q = 0.25
    rot_step = 1 / 127.5 if version <= 2 else np.sqrt(0.5) / 511  # v2: xyz u8; v3+: 9-bit magnitudes
    return {
        "means": q * 2.0**-fractional_bits,  # 24-bit fixed point, 2^-12 = 0.24 mm at fractionalBits 12
        "log_scales": q / 16,  # u8 (log + 10) * 16
        "opacity": q / 255,  # u8 sigmoid * 255 (compared after the sigmoid)
        "dc": q / (255 * 0.15),  # u8 dc * 0.15 * 255 + 127.5
        "rest": q / 128,  # u8 (v - 128) / 128 (the encoder keeps only 4-5 of the bits, the byte step is 1/128)
        "quats": q * rot_step,
    }


def sh_colour(sh: np.ndarray, d: np.ndarray) -> np.ndarray:
    """gsplat/3DGS SH colour (before +0.5) of coefficients [N, K, 3] in unit directions d [N, 3]."""
    x, y, z = d.T
    k = sh.shape[1]
    basis = [np.full_like(x, 0.28209479177387814)]
    if k > 1:
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if k > 4:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if k > 9:
        basis += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return np.einsum("kn,nkc->nc", np.stack(basis), sh)


def covariances(scene) -> np.ndarray:
    q = scene.quats / np.linalg.norm(scene.quats, axis=1, keepdims=True)
    w, x, y, z = q.T.astype(np.float64)
    r = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )
    s2 = np.exp(2 * scene.log_scales.astype(np.float64))
    return np.einsum("nij,nj,nkj->nik", r, s2, r)


def encode_smallest_three(q_xyzw: np.ndarray) -> np.ndarray:
    """Test-side SPZ v3 quaternion packer (as the Niantic writer): uint8 [N, 4]."""
    q = q_xyzw / np.linalg.norm(q_xyzw, axis=1, keepdims=True)
    out = np.zeros(len(q), np.uint32)
    for n, v in enumerate(q):
        il = int(np.argmax(np.abs(v)))
        neg = v[il] < 0
        comp = il
        for i in range(4):
            if i != il:
                negbit = int((v[i] < 0) ^ neg)
                mag = int(511 * (abs(v[i]) / np.sqrt(0.5)) + 0.5)
                comp = (comp << 10) | (negbit << 9) | mag
        out[n] = comp
    return out.view(np.uint8).reshape(-1, 4)


def write(tmp_path, data: bytes, name="bad.spz"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def legacy_payload(version=2, n=3, sh_degree=0, frac=12, flags=0, body=None) -> bytes:
    per = (9, 1, 3, 3, 3 if version <= 2 else 4, 3 * ((sh_degree + 1) ** 2 - 1))
    if version == 1:
        per = (6,) + per[1:]
    head = struct.pack("<IIIBBBB", 0x5053474E, version, n, sh_degree, frac, flags, 0)
    return head + (bytes(n * sum(per)) if body is None else body)


# ------------------------------------------------------------------------------------------------ reference parity
@pytest.mark.shared
@pytest.mark.parametrize(
    "scene_name, version, degree",
    [
        ("playcanvas_biker", 4, 0),
        ("pdal_fourth_st_sh3", 2, 3),
    ],
)
def test_parity_with_splat_transform(scene_name, version, degree):
    src = shared_file(f"scenes/{scene_name}.spz")
    ref = reference(shared_file(f"reference-ply/{scene_name}.from-spz.ply"))
    scene = read_spz(src)
    assert scene.meta["spz_version"] == version and scene.sh_degree == degree
    assert scene.n == len(ref["means"])
    # Same order as the reference: splat-transform keeps the file order; row i must match row i.
    err = errors_vs(scene, ref)
    tol = spz_tolerances(version, scene.meta["fractional_bits"])
    for k, e in err.items():
        assert e <= tol[k], f"{k}: max error {e:.3g} > {tol[k]:.3g}"
    # Measured (2025): 0 for means, log-scales, DC and SH rest (bit-identical float32); opacity 7.3e-8 and
    # quaternions <= 1.2e-7 (float32 rounding of logit / sqrt).
    assert err["means"] == 0 and err["log_scales"] == 0 and err["dc"] == 0


@pytest.mark.shared
def test_axes_rdf_matches_compressed_ply_of_same_scene():
    """biker.spz and biker.compressed.ply are the same capture: after RUB -> RDF (flip_yz) every SPZ centre has
    a compressed-PLY centre within the two formats' quantisation (< 1 mm) and the rotations agree."""
    scipy_spatial = pytest.importorskip("scipy.spatial")
    from exgs_core.io.compressed_ply import read_compressed_ply

    a = read_spz(shared_file("scenes/playcanvas_biker.spz"), axes="rdf")
    b = read_compressed_ply(shared_file("scenes/playcanvas_biker.compressed.ply"))
    d, i = scipy_spatial.cKDTree(b.means).query(a.means)
    assert np.percentile(d, 100) < 1e-3
    qa = a.quats / np.linalg.norm(a.quats, axis=1, keepdims=True)
    qb = b.quats[i] / np.linalg.norm(b.quats[i], axis=1, keepdims=True)
    assert np.percentile(np.abs((qa * qb).sum(1)), 1) > 0.999
    raw = read_spz(shared_file("scenes/playcanvas_biker.spz"))
    d_raw, _ = scipy_spatial.cKDTree(b.means).query(raw.means)
    assert np.median(d_raw) > 0.1  # without the conversion the scenes do not line up


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.mark.shared
@pytest.mark.parametrize(
    "fixture, source",
    [
        (V4_FIXTURE, "playcanvas_biker.spz"),
        (V2_FIXTURE, "pdal_fourth_st_sh3.spz"),
    ],
)
def test_fixture_is_prefix_of_full_file(fixture, source):
    small = read_spz(fixture)
    full = read_spz(shared_file(f"scenes/{source}"))
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(small, f), getattr(full, f)[: small.n], err_msg=f)


def test_fixture_v4_biker():
    s = read_spz(V4_FIXTURE)
    assert (s.n, s.sh_degree, s.meta["spz_version"]) == (4096, 0, 4)
    assert not s.antialiased
    assert s.validate().ok
    assert np.allclose(np.linalg.norm(s.quats, axis=1), 1, atol=2e-3)
    lo, hi = s.bounds()
    assert (hi - lo).max() < 10  # metres-ish object


def test_fixture_v2_pdal_sh3_antialiased():
    s = read_spz(V2_FIXTURE)
    assert (s.n, s.sh_degree, s.meta["spz_version"]) == (4096, 3, 2)
    assert s.antialiased is True
    assert any("antialiased" in n for n in s.meta["notes"])
    assert s.validate().ok
    assert np.abs(s.sh[:, 1:]).max() <= 1.0  # (b - 128) / 128
    assert np.allclose(np.linalg.norm(s.quats, axis=1), 1, atol=1e-2)


def test_load_detects_spz():
    for p in (V4_FIXTURE, V2_FIXTURE):
        assert detect_format(p) == "spz"
        s = load(p)
        assert s.meta["format"] == "spz" and s.meta["path"] == str(p)


def test_v3_container_decodes_like_v4():
    """v3 (gzip) and v4 (zstd) share the smallest-three rotation bytes: re-wrapping must not change anything."""
    raw = unpack_spz(V4_FIXTURE.read_bytes())
    raw.version = 3
    s3 = decode_spz(unpack_spz(pack_spz(raw)))
    s4 = read_spz(V4_FIXTURE)
    assert s3.meta["spz_version"] == 3
    assert s3.equal(s4)


def test_raw_uncompressed_legacy_payload(tmp_path):
    """A legacy payload without the gzip wrapper (splat-transform accepts it) decodes the same."""
    raw = unpack_spz(V2_FIXTURE.read_bytes())
    payload = gzip.decompress(pack_spz(raw))
    assert read_spz(write(tmp_path, payload, "raw.spz")).equal(read_spz(V2_FIXTURE))


def test_pack_unpack_roundtrip_v4_sh():
    raw = unpack_spz(V2_FIXTURE.read_bytes()).head(100)
    raw.version = 4
    raw.rotations = encode_smallest_three(np.random.default_rng(0).normal(size=(100, 4)))
    back = unpack_spz(pack_spz(raw))
    for name in ("positions", "alphas", "colors", "scales", "rotations", "sh"):
        np.testing.assert_array_equal(getattr(back, name), getattr(raw, name), err_msg=name)
    assert back.flags == raw.flags and back.sh_degree == 3


# ------------------------------------------------------------------------------------------------ synthetic layout
def test_smallest_three_decode_known_quaternions():
    rng = np.random.default_rng(7)
    q = rng.normal(size=(500, 4))  # x, y, z, w
    q[:4] = np.eye(4)  # each component the largest once
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    n = len(q)
    raw = SpzRaw(
        3,
        n,
        0,
        12,
        0,
        np.zeros((n, 9), np.uint8),
        np.full(n, 128, np.uint8),
        np.zeros((n, 3), np.uint8),
        np.zeros((n, 3), np.uint8),
        encode_smallest_three(q),
        np.zeros((n, 0), np.uint8),
    )
    s = decode_spz(raw)
    want = q[:, [3, 0, 1, 2]]  # -> w, x, y, z
    got = s.quats.astype(np.float64)
    err = np.minimum(np.abs(got - want).max(1), np.abs(got + want).max(1))
    assert err.max() <= np.sqrt(0.5) / 511  # one 9-bit step (rounding gives <= half a step)


def test_attribute_layout_and_formulas():
    """Known bytes -> known values: positions (sign extension), alpha, colour, scale, v2 rotation, SH order."""
    n, deg = 2, 1
    pos = np.array([[1 << 12, 0, 0x800000], [0xFFFFFF, 2 << 12, 5]], np.int64)  # 1.0, 0, min; -1 lsb, 2.0, 5 lsb
    pos_b = np.stack([(pos >> s) & 255 for s in (0, 8, 16)], -1).reshape(n, 9).astype(np.uint8)
    alphas = np.array([0, 255], np.uint8)
    colors = np.array([[0, 128, 255], [64, 32, 16]], np.uint8)
    scales = np.array([[0, 160, 255], [16, 32, 48]], np.uint8)
    rot = np.array([[128, 128, 128], [255, 128, 128]], np.uint8)  # ~identity; ~x-rotation of 180 degrees
    sh = np.arange(n * 9, dtype=np.uint8).reshape(n, 9) + 100  # coefficient-major, RGB inner
    raw = SpzRaw(2, n, deg, 12, 0, pos_b, alphas, colors, scales, rot, sh)
    s = decode_spz(raw)
    np.testing.assert_array_equal(s.means[0], [1.0, 0.0, -(1 << 23) / 4096])
    np.testing.assert_array_equal(s.means[1], [-1 / 4096, 2.0, 5 / 4096])
    np.testing.assert_allclose(sigmoid(s.opacity_logits), [1e-6, 1 - 1e-6], atol=1e-7)
    np.testing.assert_allclose(s.sh[:, 0], (colors / 255 - 0.5) / 0.15, rtol=1e-6)
    np.testing.assert_allclose(s.log_scales, scales / 16 - 10, rtol=1e-6)
    np.testing.assert_allclose(s.quats[0], [np.sqrt(1 - 3 / 255**2), 1 / 255, 1 / 255, 1 / 255], atol=1e-6)
    assert abs(s.quats[1, 1] - 1.0) < 1e-6 and abs(s.quats[1, 0]) < 0.2
    for c in range(3):
        for k in range(3):
            assert s.sh[1, 1 + k, c] == pytest.approx((int(sh[1, 3 * k + c]) - 128) / 128)


def test_version1_float16_positions():
    n = 3
    p = np.array([[0.5, -2.0, 3.25], [0, 0, 0], [100, -0.125, 1]], np.float16)
    raw = SpzRaw(
        1,
        n,
        0,
        0,
        0,
        p.view(np.uint8).reshape(n, 6),
        np.zeros(n, np.uint8),
        np.zeros((n, 3), np.uint8),
        np.zeros((n, 3), np.uint8),
        np.full((n, 3), 128, np.uint8),
        np.zeros((n, 0), np.uint8),
    )
    s = decode_spz(unpack_spz(pack_spz(raw)))
    np.testing.assert_array_equal(s.means, p.astype(np.float32))


def test_flip_yz_is_a_rotation_of_the_whole_scene():
    s = read_spz(V2_FIXTURE).subset(np.arange(300))
    f = flip_yz(s)
    F = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_array_equal(f.means, s.means * np.array([1, -1, -1], np.float32))
    np.testing.assert_allclose(covariances(f), F @ covariances(s) @ F, atol=1e-9, rtol=1e-4)
    d = np.random.default_rng(3).normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(sh_colour(f.sh, d @ F), sh_colour(s.sh, d), atol=1e-5)
    assert flip_yz(f).equal(s)
    assert f.meta["coordinate_system"].startswith("RDF")


# ------------------------------------------------------------------------------------------------ malformed files
def v4_bytes() -> bytearray:
    return bytearray(V4_FIXTURE.read_bytes())


def _gz(b: bytes) -> bytes:
    return gzip.compress(b, mtime=0)


def _patch(b: bytearray, off: int, fmt: str, *vals) -> bytes:
    struct.pack_into(fmt, b, off, *vals)
    return bytes(b)


RANDOM_BODY = np.random.default_rng(0).integers(0, 256, 10 * 19, dtype=np.uint8).tobytes()

BAD = {
    "empty": (b"", "header"),
    "three bytes": (b"NGS", "header"),
    "wrong magic": (b"XGSP" + bytes(40), "magic"),
    "gzip wrong magic": (_gz(b"XGSP" + bytes(40)), "magic"),
    "unknown version 9 (raw)": (_patch(v4_bytes(), 4, "<I", 9), "version"),
    "unknown version 9 (gzip)": (_gz(legacy_payload()[:4] + struct.pack("<I", 9) + legacy_payload()[8:]), "version"),
    "version 0": (_gz(legacy_payload(version=0)), "version"),
    "shDegree 4 (v4)": (_patch(v4_bytes(), 12, "<B", 4), "shDegree"),
    "shDegree 4 (gzip)": (_gz(legacy_payload(sh_degree=4)), "shDegree"),
    "numPoints 1e9 (v4)": (_patch(v4_bytes(), 8, "<I", 10**9), "numPoints"),
    "numPoints 1e9 (gzip)": (_gz(legacy_payload(n=10**9, body=bytes(100))), "numPoints"),
    "numPoints 2^32-1 (raw legacy)": (legacy_payload(n=2**32 - 1, body=bytes(100)), "numPoints"),
    "numPoints +1 (gzip)": (_gz(legacy_payload(n=4)[:16] + bytes(3 * 19)), "numPoints"),
    "truncated gzip payload": (_gz(legacy_payload(n=10, body=RANDOM_BODY))[:-30], "numPoints"),
    "gzip without trailer": (_gz(legacy_payload(n=10))[:-8], "gzip"),
    "corrupt gzip crc": (_gz(legacy_payload(n=10))[:-8] + b"\0\0\0\0" + _gz(legacy_payload(n=10))[-4:], "gzip"),
    "gzip header only": (b"\x1f\x8b\x08\x00" + bytes(6), None),
    "v4 truncated header": (bytes(v4_bytes()[:20]), "header"),
    "v4 numStreams": (_patch(v4_bytes(), 15, "<B", 6), "numStreams"),
    "v4 toc offset outside": (_patch(v4_bytes(), 16, "<I", 10**8), "tocByteOffset"),
    "v4 toc offset inside header": (_patch(v4_bytes(), 16, "<I", 8), "tocByteOffset"),
    "v4 toc uncompressed size": (_patch(v4_bytes(), 32 + 8, "<Q", 5), "numPoints"),
    "v4 toc compressed size too big": (_patch(v4_bytes(), 32, "<Q", 2**40), "toc"),
    "v4 truncated streams": (bytes(v4_bytes()[:-1000]), "toc"),
    "v4 gzip-wrapped": (_gz(bytes(v4_bytes()[:16])), "version"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_raises_format_error_naming_file_and_field(tmp_path, name):
    data, field = BAD[name]
    p = write(tmp_path, data)
    with pytest.raises(FormatError) as ei:
        read_spz(p)
    assert str(p) in str(ei.value)
    if field:
        assert ei.value.field == field, (name, ei.value.field, str(ei.value))


def test_corrupt_zstd_stream(tmp_path):
    b = v4_bytes()
    start = 32 + 5 * 16
    b[start + 4 : start + 40] = bytes(36)  # inside the positions frame, after its header
    with pytest.raises(FormatError) as ei:
        read_spz(write(tmp_path, bytes(b)))
    assert ei.value.field == "positions"


def test_huge_point_count_fails_fast_without_allocating(tmp_path):
    cases = [_patch(v4_bytes(), 8, "<I", 10**9), _gz(legacy_payload(n=10**9, body=bytes(1000)))]
    for data in cases:
        p = write(tmp_path, data)
        tracemalloc.start()
        t = time.perf_counter()
        with pytest.raises(FormatError):
            read_spz(p)
        dt = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert dt < 0.5 and peak < 20 << 20, (dt, peak)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_spz(tmp_path / "nope.spz")


# ------------------------------------------------------------------------------------------------ fuzz
FUZZ_SOURCES = [V4_FIXTURE.read_bytes(), V2_FIXTURE.read_bytes(), gzip.decompress(V2_FIXTURE.read_bytes())]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    src=st.integers(0, len(FUZZ_SOURCES) - 1),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255), st.booleans()), max_size=4),
    head_bias=st.booleans(),
)
def test_fuzz_truncation_and_mutation(tmp_path_factory, src, cut, edits, head_bias):
    data = bytearray(FUZZ_SOURCES[src])
    for pos, val, in_head in edits:
        span = min(len(data), 160) if (in_head or head_bias) else len(data)
        data[int(pos * (span - 1))] = val
    if cut is not None:
        data = data[: int(cut * len(data))]
    p = tmp_path_factory.mktemp("fz") / "f.spz"
    p.write_bytes(bytes(data))
    try:
        s = read_spz(p)
    except FormatError as e:
        assert str(p) in str(e)
        return
    assert s.means.shape == (s.n, 3) and s.sh.shape[0] == s.n
