"""exgs_core.io.compressed_ply: reference parity (splat-transform 3.7.0 decodes), the committed biker fixture, a
synthetic old 12-property layout and SH element built by a test-side encoder, malformed files and a fuzz."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest
from exgs_testpaths import DATA, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from exgs_core.conventions import SH_C0, sigmoid
from exgs_core.errors import FormatError
from exgs_core.io import detect_format, load
from exgs_core.io.compressed_ply import CHUNK_COLOR, CHUNK_REQUIRED, read_compressed_ply

FIXTURE = DATA / "playcanvas_biker_head16chunks.compressed.ply"


# ------------------------------------------------------------------------------------------------ helpers
def reference(path):
    """A splat-transform PLY decode as float64 arrays in our layout (quats w, x, y, z; sh [N, K, 3])."""
    v = plyfile.PlyData.read(str(path))["vertex"].data
    g = lambda *k: np.stack([v[x] for x in k], 1).astype(np.float64)  # noqa: E731
    return dict(
        means=g("x", "y", "z"),
        quats=g("rot_0", "rot_1", "rot_2", "rot_3"),
        log_scales=g("scale_0", "scale_1", "scale_2"),
        opacity=v["opacity"].astype(np.float64),
        dc=g("f_dc_0", "f_dc_1", "f_dc_2"),
    )


def chunk_table(path) -> np.ndarray:
    return plyfile.PlyData.read(str(path))["chunk"].data


def steps(chunks, n: int) -> dict:
    """Per-Gaussian quantisation step of each attribute (chunk range / (2^bits - 1)), shape [N, 3]."""
    ci = np.arange(n) // 256
    bits = np.array([2047.0, 1023.0, 2047.0])
    pos = np.stack([chunks[f"max_{x}"] - chunks[f"min_{x}"] for x in "xyz"], 1)[ci] / bits
    sc = np.stack([chunks[f"max_scale_{x}"] - chunks[f"min_scale_{x}"] for x in "xyz"], 1)[ci] / bits
    col = np.stack([chunks[f"max_{x}"] - chunks[f"min_{x}"] for x in "rgb"], 1)[ci] / 255 / SH_C0
    return {"means": pos.astype(np.float64), "log_scales": sc.astype(np.float64), "dc": col.astype(np.float64)}


def unit(q):
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def quat_err(a, b):
    a, b = unit(np.asarray(a, np.float64)), unit(np.asarray(b, np.float64))
    return np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1))


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.shared
@pytest.mark.parametrize("scene_name", ["playcanvas_biker", "playcanvas_guitar"])
def test_parity_with_splat_transform(scene_name):
    src = shared_file(f"scenes/{scene_name}.compressed.ply")
    ref = reference(shared_file(f"reference-ply/{scene_name}.from-compressed-ply.ply"))
    s = read_compressed_ply(src)
    assert s.n == len(ref["means"]) and s.sh_degree == 0
    assert s.meta["compressed_ply_layout"].startswith("18")
    st_ = steps(chunk_table(src), s.n)
    # Tolerance: a quarter of the per-Gaussian quantisation step (11/10/11-bit unorm of the chunk's range,
    # 8-bit colour of the chunk's colour range), plus float32 rounding. splat-transform dequantises with the
    # same formula, so the ideal error is 0; rows are compared in file order (splat-transform keeps it).
    f32 = lambda x: 1e-6 * (np.abs(x) + 1)  # noqa: E731
    for k in ("means", "log_scales"):
        err = np.abs(getattr(s, k) - ref[k])
        assert (err <= 0.25 * st_[k] + f32(ref[k])).all(), k
        assert err.max() == 0  # measured: bit-identical
    err_dc = np.abs(s.sh[:, 0] - ref["dc"])
    assert (err_dc <= 0.25 * st_["dc"] + f32(ref["dc"])).all() and err_dc.max() == 0
    # Opacity: 8-bit sigmoid; we clip bytes 0 / 255 to logit(1e-6) where splat-transform writes -inf / +inf,
    # so compare after the sigmoid: max error measured 9.5e-7 (the clip), tolerance a quarter step (1/1020).
    with np.errstate(over="ignore"):
        ref_op = 1 / (1 + np.exp(-ref["opacity"]))
    assert np.abs(sigmoid(s.opacity_logits) - ref_op).max() <= 0.25 / 255
    # Rotations: 10-bit smallest three, step sqrt(2) / 1023 = 1.4e-3; measured <= 9.5e-8 (float32 rounding).
    assert quat_err(s.quats, ref["quats"]).max() <= 0.25 * np.sqrt(2) / 1023


@pytest.mark.shared
def test_fixture_is_prefix_of_full_file():
    small = read_compressed_ply(FIXTURE)
    full = read_compressed_ply(shared_file("scenes/playcanvas_biker.compressed.ply"))
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(small, f), getattr(full, f)[: small.n], err_msg=f)


@pytest.mark.shared
def test_old_layout_angel_is_plausible():
    """The old 12-property angel (internal-only, read from ../shared, not copied) is the same statue as the
    angel .sog, exported rotated 180 degrees about z: after that rotation nearly every centre matches within
    2 mm, colours are identical, log-scales and opacities agree within their quantisation."""
    spatial = pytest.importorskip("scipy.spatial")
    from exgs_core.io.sog import read_sog

    old = read_compressed_ply(shared_file("scenes/playcanvas_wc_statue_angel_old.compressed.ply"))
    sog = read_sog(shared_file("scenes/playcanvas_wc_statue_angel.sog"))
    assert old.meta["compressed_ply_layout"].startswith("12") and old.validate().ok
    d, i = spatial.cKDTree(sog.means).query(old.means * np.array([-1, -1, 1], np.float32))
    m = d < 2e-3
    assert m.mean() > 0.99
    assert np.median(np.abs(old.sh[m, 0] - sog.sh[i[m], 0])) < 1e-3
    assert np.percentile(np.abs(old.log_scales[m] - sog.log_scales[i[m]]), 99) < 0.1
    assert np.percentile(np.abs(old.opacities[m] - sog.opacities[i[m]]), 99) <= 1 / 255 + 1e-6
    # Orientation: rotating by qz = (0, 0, 0, 1) (left product) maps old rotations onto the SOG ones.
    w, x, y, z = old.quats[m].T
    rotated = np.stack([-z, -y, x, w], 1)
    assert np.median(1 - np.abs((unit(rotated) * unit(sog.quats[i[m]])).sum(1))) < 1e-3


# ------------------------------------------------------------------------------------------------ fixture
def test_fixture_biker():
    s = read_compressed_ply(FIXTURE)
    assert (s.n, s.sh_degree) == (16 * 256, 0)
    assert s.meta["compressed_ply_layout"].startswith("18")
    assert s.validate().ok
    assert np.allclose(np.linalg.norm(s.quats, axis=1), 1, atol=3e-3)
    assert detect_format(FIXTURE) == "compressed_ply"
    assert load(FIXTURE).meta["format"] == "compressed_ply"


# ------------------------------------------------------------------------------------------------ synthetic encoder
def _pack_unorm(v, bits):
    t = (1 << bits) - 1
    return np.clip(np.floor(v * t + 0.5), 0, t).astype(np.uint32)


def _norm(x, lo, hi):
    return np.where(hi - lo < 1e-5, 0.0, np.clip((x - lo) / np.where(hi - lo == 0, 1, hi - lo), 0, 1))


def encode_compressed_ply(
    means,
    quats,
    log_scales,
    opacity,
    dc,
    rest=None,
    *,
    chunk_colour=True,
    chunk_count=None,
    fmt="binary_little_endian",
    body_cut=0,
) -> bytes:
    """Test-side compressed-PLY writer (as SuperSplat): 256-Gaussian chunks, 11/10/11 + 2/10/10/10 + 8888."""
    n = len(means)
    nc = -(-n // 256)
    ci = np.arange(n) // 256
    chunk_cols = list(CHUNK_REQUIRED) + (list(CHUNK_COLOR) if chunk_colour else [])
    ch = np.zeros(nc, [(c, "<f4") for c in chunk_cols])
    rgb = dc * SH_C0 + 0.5
    fields = {
        "x": means[:, 0],
        "y": means[:, 1],
        "z": means[:, 2],
        "scale_x": log_scales[:, 0],
        "scale_y": log_scales[:, 1],
        "scale_z": log_scales[:, 2],
    }
    if chunk_colour:
        fields.update(r=rgb[:, 0], g=rgb[:, 1], b=rgb[:, 2])
    starts = np.arange(0, n, 256)
    for name, x in fields.items():
        ch["min_" + name] = np.minimum.reduceat(x, starts)
        ch["max_" + name] = np.maximum.reduceat(x, starts)

    def g(name):  # the chunk-normalised value in [0, 1]
        return _norm(fields[name], ch["min_" + name].astype(np.float64)[ci], ch["max_" + name].astype(np.float64)[ci])

    def pack111011(a, b, c):
        return (_pack_unorm(g(a), 11) << 21) | (_pack_unorm(g(b), 10) << 11) | _pack_unorm(g(c), 11)

    pos = pack111011("x", "y", "z")
    sca = pack111011("scale_x", "scale_y", "scale_z")
    if chunk_colour:
        cn = np.stack([g("r"), g("g"), g("b")], 1)
    else:
        cn = np.clip(rgb, 0, 1)
    col = (
        (_pack_unorm(cn[:, 0], 8) << 24)
        | (_pack_unorm(cn[:, 1], 8) << 16)
        | (_pack_unorm(cn[:, 2], 8) << 8)
        | _pack_unorm(1 / (1 + np.exp(-opacity)), 8)
    )
    q = unit(quats)
    largest = np.argmax(np.abs(q), 1)
    q = q * np.where(q[np.arange(n), largest] < 0, -1, 1)[:, None]
    rot = largest.astype(np.uint32)
    others = np.array([[j for j in range(4) if j != L] for L in range(4)])[largest]  # [N, 3]
    for j in range(3):
        rot = (rot << 10) | _pack_unorm(q[np.arange(n), others[:, j]] * (np.sqrt(2) * 0.5) + 0.5, 10)
    v = np.zeros(
        n, [("packed_position", "<u4"), ("packed_rotation", "<u4"), ("packed_scale", "<u4"), ("packed_color", "<u4")]
    )
    v["packed_position"], v["packed_rotation"], v["packed_scale"], v["packed_color"] = pos, rot, sca, col
    nc_head = nc if chunk_count is None else chunk_count
    head = ["ply", f"format {fmt} 1.0", "comment test encoder", f"element chunk {nc_head}"]
    head += [f"property float {c}" for c in chunk_cols]
    head += [f"element vertex {n}"] + [f"property uint {c}" for c in v.dtype.names]
    body = ch.tobytes() + v.tobytes()
    if rest is not None:  # rest [N, K-1, 3] -> channel-major f_rest bytes
        m = rest.shape[1] * 3
        flat = rest.transpose(0, 2, 1).reshape(n, m)
        b = np.clip(np.floor((flat / 8 + 0.5) * 256), 0, 255).astype(np.uint8)
        head += [f"element sh {n}"] + [f"property uchar f_rest_{i}" for i in range(m)]
        body += b.tobytes()
    data = ("\n".join(head) + "\nend_header\n").encode() + body
    return data[: len(data) - body_cut] if body_cut else data


def synthetic(rng, n=700, degree=0):
    means = rng.normal(size=(n, 3)) * [1, 2, 0.5]
    quats = rng.normal(size=(n, 4))
    log_scales = rng.normal(-4, 1, size=(n, 3))
    opacity = rng.normal(0, 2, size=n)
    dc = rng.normal(0, 0.6, size=(n, 3))
    k = (degree + 1) ** 2
    rest = rng.uniform(-0.9, 0.9, size=(n, k - 1, 3)) if degree else None
    return means, quats, log_scales, opacity, dc, rest


@pytest.mark.parametrize("chunk_colour", [False, True])
def test_synthetic_roundtrip_both_layouts(tmp_path, rng, chunk_colour):
    means, quats, log_scales, opacity, dc, _ = synthetic(rng)
    p = tmp_path / "s.compressed.ply"
    p.write_bytes(encode_compressed_ply(means, quats, log_scales, opacity, dc, chunk_colour=chunk_colour))
    s = read_compressed_ply(p)
    assert s.n == len(means)
    assert s.meta["compressed_ply_layout"].startswith("18" if chunk_colour else "12")
    ci = np.arange(s.n) // 256
    ch = chunk_table(p)
    bits = np.array([2047.0, 1023.0, 2047.0])
    # half a step of rounding in the encoder (plus float32): the bound any correct decode satisfies
    pos_step = np.stack([ch[f"max_{x}"] - ch[f"min_{x}"] for x in "xyz"], 1)[ci] / bits
    assert (np.abs(s.means - means) <= 0.5 * pos_step + 1e-5).all()
    sc_step = np.stack([ch[f"max_scale_{x}"] - ch[f"min_scale_{x}"] for x in "xyz"], 1)[ci] / bits
    assert (np.abs(s.log_scales - log_scales) <= 0.5 * sc_step + 1e-5).all()
    rgb = np.clip(dc * SH_C0 + 0.5, 0, 1) if not chunk_colour else dc * SH_C0 + 0.5
    col_step = (
        (np.stack([ch[f"max_{x}"] - ch[f"min_{x}"] for x in "rgb"], 1)[ci] / 255)
        if chunk_colour
        else np.full((s.n, 3), 1 / 255)
    )
    assert (np.abs(s.sh[:, 0] * SH_C0 + 0.5 - rgb) <= 0.5 * col_step + 1e-6).all()
    assert np.abs(s.opacities - 1 / (1 + np.exp(-opacity))).max() <= 0.5 / 255 + 1e-6
    # smallest three: each stored component within half a 10-bit step of sqrt(2), the largest recomputed
    assert quat_err(s.quats, quats).max() < 3 * np.sqrt(2) / 1023


def test_synthetic_sh_element(tmp_path, rng):
    means, quats, log_scales, opacity, dc, rest = synthetic(rng, n=300, degree=2)
    p = tmp_path / "sh.compressed.ply"
    p.write_bytes(encode_compressed_ply(means, quats, log_scales, opacity, dc, rest))
    s = read_compressed_ply(p)
    assert s.sh_degree == 2
    # 8-bit over [-4, 4): step 1/32; the writer truncates, the reader takes the bucket centre -> <= half a step
    assert np.abs(s.sh[:, 1:] - rest).max() <= 0.5 / 32 + 1e-6
    # explicit byte -> value rule incl. the 0 and 255 end points, and the channel-major order
    b = np.zeros((3, 24), np.uint8)
    b[0, :] = 0
    b[1, :] = 255
    b[2, :] = np.arange(24) * 10
    raw = encode_compressed_ply(means[:3], quats[:3], log_scales[:3], opacity[:3], dc[:3], rest[:3])
    raw = raw[: len(raw) - 3 * 24] + b.tobytes()
    p.write_bytes(raw)
    s = read_compressed_ply(p)
    assert (s.sh[0, 1:] == -4).all() and (s.sh[1, 1:] == 4).all()
    for c in range(3):
        for k in range(8):
            byte = int(b[2, c * 8 + k])
            want = 4.0 if byte == 255 else -4.0 if byte == 0 else ((byte + 0.5) / 256 - 0.5) * 8
            assert s.sh[2, 1 + k, c] == pytest.approx(want)


# ------------------------------------------------------------------------------------------------ malformed
def _fixture_text_patch(old: bytes, new: bytes) -> bytes:
    data = FIXTURE.read_bytes()
    assert old in data[:2000]
    return data.replace(old, new, 1)


def _bad_cases():
    r = np.random.default_rng(5)
    means, quats, log_scales, opacity, dc, rest = synthetic(r, n=300, degree=1)
    enc = lambda **kw: encode_compressed_ply(means, quats, log_scales, opacity, dc, **kw)  # noqa: E731
    return {
        "not ply": (b"plx\nformat binary_little_endian 1.0\n", "magic"),
        "no end_header": (b"ply\nformat binary_little_endian 1.0\nelement chunk 1\n", "header"),
        "ascii": (enc(fmt="ascii"), "format"),
        "big endian": (enc(fmt="binary_big_endian"), "format"),
        "chunk count": (enc(chunk_count=1), "chunk"),
        "chunk count 0": (enc(chunk_count=0), "chunk"),
        "truncated body": (enc(body_cut=5), "vertex"),
        "truncated header": (enc()[:100], "header"),
        "missing min_x": (_fixture_text_patch(b"property float min_x\n", b"property float mon_x\n"), "chunk.min_x"),
        "packed_position float": (
            _fixture_text_patch(b"property uint packed_position", b"property float packed_position"),
            "vertex.packed_position",
        ),
        "partial colour range": (
            _fixture_text_patch(b"property float max_b\n", b"property float max_q\n"),
            "chunk.max_b",
        ),
        "no vertex": (_fixture_text_patch(b"element vertex", b"element vurtex"), "vertex"),
        "no chunk": (_fixture_text_patch(b"element chunk", b"element chonk"), "chunk"),
        "list property": (
            _fixture_text_patch(b"property uint packed_color", b"property list uchar uint packed_color"),
            "vertex.packed_color",
        ),
        "bad count": (_fixture_text_patch(b"element vertex 4096", b"element vertex 40x6"), "element"),
        "huge count": (_fixture_text_patch(b"element vertex 4096", b"element vertex 4000000000"), "chunk"),
        "huge count, chunks match": (
            _fixture_text_patch(b"element chunk 16\n", b"element chunk 15625000\n").replace(
                b"element vertex 4096", b"element vertex 4000000000"
            ),
            "chunk",
        ),
        "sh wrong count": (
            encode_compressed_ply(means, quats, log_scales, opacity, dc, rest).replace(
                b"property uchar f_rest_8\n", b""
            ),
            "sh",
        ),
        "sh rows": (
            encode_compressed_ply(means, quats, log_scales, opacity, dc, rest).replace(
                b"element sh 300", b"element sh 299"
            ),
            "sh",
        ),
        "sh type": (
            encode_compressed_ply(means, quats, log_scales, opacity, dc, rest).replace(
                b"property uchar f_rest_3\n", b"property float f_rest_3\n"
            ),
            "sh.f_rest_3",
        ),
        "non-ascii header": (b"ply\nformat binary_little_endian 1.0\ncomment \xff\nend_header\n", "header"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_raises_format_error_naming_file_and_field(tmp_path, name):
    data, field = BAD[name]
    p = tmp_path / "bad.compressed.ply"
    p.write_bytes(data)
    with pytest.raises(FormatError) as ei:
        read_compressed_ply(p)
    assert str(p) in str(ei.value)
    assert ei.value.field == field, (name, ei.value.field, str(ei.value))


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_compressed_ply(tmp_path / "nope.compressed.ply")


# ------------------------------------------------------------------------------------------------ fuzz
FUZZ_SOURCE = FIXTURE.read_bytes()
HEADER_LEN = FUZZ_SOURCE.index(b"end_header\n") + len(b"end_header\n")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    cut=st.one_of(st.none(), st.floats(0, 1)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
    in_header=st.booleans(),
)
def test_fuzz_truncation_and_mutation(tmp_path_factory, cut, edits, in_header):
    data = bytearray(FUZZ_SOURCE)
    span = HEADER_LEN if in_header else len(data)
    for pos, val in edits:
        data[int(pos * (span - 1))] = val
    if cut is not None:
        data = data[: int(cut * len(data))]
    p = tmp_path_factory.mktemp("fz") / "f.compressed.ply"
    p.write_bytes(bytes(data))
    try:
        s = read_compressed_ply(p)
    except FormatError as e:
        assert str(p) in str(e)
        return
    assert s.means.shape == (s.n, 3) and s.quats.shape == (s.n, 4)
