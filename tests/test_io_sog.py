"""exgs_core.io.sog: reference parity (splat-transform 3.7.0 decodes), the committed flowers fixture, folder /
meta.json / nested-zip containers, synthetic v1 and v2 bundles with known values, malformed bundles (zip bombs,
size mismatches, bad JSON, unknown versions) and a fuzz of bytes, members and meta.json."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import plyfile
import pytest
from exgs_testpaths import DATA, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from exgs_core.conventions import sigmoid
from exgs_core.errors import FormatError
from exgs_core.io import detect_format, load
from exgs_core.io.sog import read_sog

FIXTURE = DATA / "playcanvas_flowers_lod2_sh2_head13rows.sog"


# ------------------------------------------------------------------------------------------------ helpers
def reference(path):
    v = plyfile.PlyData.read(str(path))["vertex"].data
    g = lambda *k: np.stack([v[x] for x in k], 1).astype(np.float64)  # noqa: E731
    nr = sum(1 for x in v.dtype.names if x.startswith("f_rest_"))
    rest = g(*[f"f_rest_{i}" for i in range(nr)]) if nr else np.zeros((len(v), 0))
    rest = rest.reshape(len(v), 3, nr // 3).transpose(0, 2, 1)
    return dict(
        means=g("x", "y", "z"),
        quats=g("rot_0", "rot_1", "rot_2", "rot_3"),
        log_scales=g("scale_0", "scale_1", "scale_2"),
        opacity=v["opacity"].astype(np.float64),
        dc=g("f_dc_0", "f_dc_1", "f_dc_2"),
        rest=rest,
    )


def unit(q):
    q = np.asarray(q, np.float64)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def webp(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba, np.uint8), "RGBA").save(buf, "WEBP", lossless=True, exact=True)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compress=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def fixture_members() -> dict[str, bytes]:
    with zipfile.ZipFile(FIXTURE) as z:
        return {n: z.read(n) for n in z.namelist()}


def fixture_meta() -> dict:
    return json.loads(fixture_members()["meta.json"])


def with_meta(meta: dict, **replace_members) -> bytes:
    m = fixture_members()
    m["meta.json"] = json.dumps(meta).encode()
    m.update(replace_members)
    return zip_bytes({k: v for k, v in m.items() if v is not None})


def codebook_gap(cb) -> float:
    cb = np.sort(np.asarray(cb, np.float64))
    return float(np.diff(cb).min()) if len(cb) > 1 else np.inf


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.shared
@pytest.mark.parametrize(
    "scene_name, degree",
    [
        ("playcanvas_flowers_lod2_sh2", 2),
        ("playcanvas_wc_statue_angel", 0),  # internal-only scene: read from ../shared, never copied
    ],
)
def test_parity_with_splat_transform(scene_name, degree):
    src = shared_file(f"scenes/{scene_name}.sog")
    ref = reference(shared_file(f"reference-ply/{scene_name}.from-sog.ply"))
    s = read_sog(src)
    meta = json.loads(zipfile.ZipFile(src).read("meta.json"))
    assert s.n == len(ref["means"]) == meta["count"] and s.sh_degree == degree
    # Rows in file order (splat-transform keeps it). Tolerances are a quarter of each quantisation step, plus
    # float32 rounding; the reference dequantises the same way, so every measured error is 0 or float32 noise.
    # Positions: 16-bit unorm of sign(x) log(|x| + 1): step (max - min) / 65535 in log space, (|x| + 1) times
    # that in metres. Measured max error: 0.
    span = np.asarray(meta["means"]["maxs"]) - np.asarray(meta["means"]["mins"])
    tol = 0.25 * span / 65535 * (np.abs(ref["means"]) + 1) + 1e-6 * np.abs(ref["means"])
    assert (np.abs(s.means - ref["means"]) <= tol).all()
    assert np.abs(s.means - ref["means"]).max() == 0
    # Codebook attributes (log-scales, DC, SH rest): a label picks one float32 codebook entry, so a wrong label
    # is off by at least the smallest gap between entries; tolerance a quarter of that gap. Measured: 0.
    for key, cb, got, want in [
        ("scales", meta["scales"]["codebook"], s.log_scales, ref["log_scales"]),
        ("sh0", meta["sh0"]["codebook"], s.sh[:, 0], ref["dc"]),
    ] + ([("shN", meta["shN"]["codebook"], s.sh[:, 1:], ref["rest"])] if degree else []):
        err = np.abs(got - want).max()
        assert err <= 0.25 * codebook_gap(cb), key
        assert err == 0, key
    # Opacity: 8-bit sigmoid, step 1/255, compared after the sigmoid. Measured 7.3e-8 (float32 logit rounding).
    assert np.abs(sigmoid(s.opacity_logits) - sigmoid(ref["opacity"])).max() <= 0.25 / 255
    # Rotations: 8-bit smallest three, step 2 / 255 / sqrt(2) = 5.5e-3. Measured 8.2e-8 (float32 rounding).
    a, b = unit(s.quats), unit(ref["quats"])
    err_q = np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max()
    assert err_q <= 0.25 * 2 / 255 / np.sqrt(2)


@pytest.mark.shared
def test_fixture_is_prefix_of_full_file():
    small = read_sog(FIXTURE)
    full = read_sog(shared_file("scenes/playcanvas_flowers_lod2_sh2.sog"))
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(small, f), getattr(full, f)[: small.n], err_msg=f)


# ------------------------------------------------------------------------------------------------ fixture
def test_fixture_flowers():
    s = read_sog(FIXTURE)
    assert (s.n, s.sh_degree, s.meta["sog_version"]) == (4004, 2, 2)
    assert s.validate().ok
    assert np.allclose(np.linalg.norm(s.quats, axis=1), 1, atol=1e-2)
    assert np.abs(s.sh[:, 1:]).max() > 0  # the palette is used
    assert not s.antialiased
    assert detect_format(FIXTURE) == "sog"
    assert load(FIXTURE).meta["format"] == "sog"


def test_folder_and_meta_json_and_nested_zip(tmp_path):
    base = read_sog(FIXTURE)
    folder = tmp_path / "unbundled"
    folder.mkdir()
    for name, data in fixture_members().items():
        (folder / name).write_bytes(data)
    for p in (folder, folder / "meta.json"):
        assert read_sog(p).equal(base)
        assert load(p).equal(base)
    nested = tmp_path / "nested.sog"
    nested.write_bytes(zip_bytes({f"scene/{k}": v for k, v in fixture_members().items()}, zipfile.ZIP_DEFLATED))
    assert read_sog(nested).equal(base)


def test_antialiased_model(tmp_path):
    meta = fixture_meta()
    meta["model"] = "antialiased"
    p = tmp_path / "aa.sog"
    p.write_bytes(with_meta(meta))
    assert read_sog(p).antialiased is True


# ------------------------------------------------------------------------------------------------ synthetic bundles
def _pad(rows: np.ndarray, w: int, h: int) -> np.ndarray:
    out = np.zeros((w * h, 4), np.uint8)
    out[: len(rows)] = rows
    return out.reshape(h, w, 4)


def _quat_texels(q_wxyz: np.ndarray) -> np.ndarray:
    """Test-side SOG quaternion packer: smallest three, 8 bits, alpha 252 + index of the largest."""
    q = unit(q_wxyz)
    largest = np.argmax(np.abs(q), 1)
    q = q * np.where(q[np.arange(len(q)), largest] < 0, -1, 1)[:, None]
    others = np.array([[j for j in range(4) if j != m] for m in range(4)])[largest]
    rgb = np.stack([q[np.arange(len(q)), others[:, j]] for j in range(3)], 1)
    rgb = np.clip(np.round((rgb * np.sqrt(2) * 0.5 + 0.5) * 255), 0, 255)
    return np.concatenate([rgb, (252 + largest)[:, None]], 1).astype(np.uint8)


def test_synthetic_v1(tmp_path, rng):
    n, w, h = 10, 4, 3
    u = rng.integers(0, 65536, size=(n, 3))
    mins, maxs = np.array([-1.0, -2.0, 0.5]), np.array([1.0, 0.0, 2.0])
    means_l = _pad(np.concatenate([u & 255, np.full((n, 1), 255)], 1), w, h)
    means_u = _pad(np.concatenate([u >> 8, np.full((n, 1), 255)], 1), w, h)
    q = rng.normal(size=(n, 4))
    sb = rng.integers(0, 256, size=(n, 3))
    s_min, s_max = [-8.0, -7.0, -6.0], [-1.0, -2.0, -3.0]
    cb = rng.integers(0, 256, size=(n, 4))
    c_min, c_max = [-2.0, -1.5, -1.0, -5.0], [2.0, 1.5, 1.0, 5.0]
    labels = rng.integers(0, 64, size=n)
    cen = rng.integers(0, 256, size=(1, 192, 4)).astype(np.uint8)  # 64 entries x 3 coefficients (degree 1)
    meta = {
        "means": {"shape": [n, 3], "mins": mins.tolist(), "maxs": maxs.tolist(), "files": ["ml.webp", "mu.webp"]},
        "scales": {"mins": s_min, "maxs": s_max, "files": ["s.webp"]},
        "quats": {"files": ["q.webp"]},
        "sh0": {"mins": c_min, "maxs": c_max, "files": ["c.webp"]},
        "shN": {"mins": -0.7, "maxs": 0.9, "files": ["cen.webp", "lab.webp"]},
    }
    members = {
        "meta.json": json.dumps(meta).encode(),
        "ml.webp": webp(means_l),
        "mu.webp": webp(means_u),
        "q.webp": webp(_pad(_quat_texels(q), w, h)),
        "s.webp": webp(_pad(np.c_[sb, np.full(n, 255)], w, h)),
        "c.webp": webp(_pad(cb, w, h)),
        "cen.webp": webp(cen),
        "lab.webp": webp(_pad(np.c_[labels & 255, labels >> 8, np.zeros(n), np.full(n, 255)], w, h)),
    }
    p = tmp_path / "v1.sog"
    p.write_bytes(zip_bytes(members))
    s = read_sog(p)
    assert s.meta["sog_version"] == 1 and s.n == n and s.sh_degree == 1
    v = mins + (maxs - mins) * u / 65535
    np.testing.assert_allclose(s.means, np.sign(v) * np.expm1(np.abs(v)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        s.log_scales, np.array(s_min) + (np.array(s_max) - np.array(s_min)) * sb / 255, rtol=1e-6
    )
    col = np.array(c_min) + (np.array(c_max) - np.array(c_min)) * cb / 255
    np.testing.assert_allclose(s.sh[:, 0], col[:, :3], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s.opacity_logits, col[:, 3], rtol=1e-6, atol=1e-6)  # v1 stores the logit
    for i in range(n):
        for j in range(3):
            texel = cen[0, labels[i] * 3 + j, :3]
            np.testing.assert_allclose(s.sh[i, 1 + j], -0.7 + 1.6 * texel / 255, rtol=1e-6, atol=1e-7)
    a, b = unit(s.quats), unit(q)
    assert np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max() <= 1 / 255 / np.sqrt(2) + 1e-6


def test_synthetic_v2_layout(tmp_path, rng):
    """Known labels -> known codebook values: texel i is Gaussian i, palette entry j occupies texels
    (j % 64) * (K-1) .. + K-2 of row j // 64, RGB = channels, coefficient-major inside an entry."""
    n, w, h, bands = 20, 5, 4, 3
    ncoef = 15
    palette = 70  # two palette rows
    u = rng.integers(0, 65536, size=(n, 3))
    sl = rng.integers(0, 256, size=(n, 3))
    c0 = rng.integers(0, 256, size=(n, 4))
    labels = rng.integers(0, palette, size=n)
    labels[0] = 65  # in the second palette row
    cen = rng.integers(0, 256, size=(2, 64 * ncoef, 4)).astype(np.uint8)
    cb = np.sort(rng.normal(size=256)).round(6)
    meta = {
        "version": 2,
        "count": n,
        "means": {"mins": [0.0, 0.0, 0.0], "maxs": [1.0, 1.0, 1.0], "files": ["a.webp", "b.webp"]},
        "scales": {"codebook": (cb - 5).tolist(), "files": ["s.webp"]},
        "quats": {"files": ["q.webp"]},
        "sh0": {"codebook": cb.tolist(), "files": ["c.webp"]},
        "shN": {"count": palette, "bands": bands, "codebook": (cb / 3).tolist(), "files": ["cen.webp", "lab.webp"]},
    }
    q = rng.normal(size=(n, 4))
    members = {
        "meta.json": json.dumps(meta).encode(),
        "a.webp": webp(_pad(np.c_[u & 255, np.full(n, 255)], w, h)),
        "b.webp": webp(_pad(np.c_[u >> 8, np.full(n, 255)], w, h)),
        "q.webp": webp(_pad(_quat_texels(q), w, h)),
        "s.webp": webp(_pad(np.c_[sl, np.full(n, 255)], w, h)),
        "c.webp": webp(_pad(c0, w, h)),
        "cen.webp": webp(cen),
        "lab.webp": webp(_pad(np.c_[labels & 255, labels >> 8, np.zeros(n), np.full(n, 255)], w, h)),
    }
    p = tmp_path / "v2.sog"
    p.write_bytes(zip_bytes(members))
    s = read_sog(p)
    assert s.sh_degree == 3 and s.n == n
    np.testing.assert_allclose(s.means, np.expm1(u / 65535), rtol=1e-6)
    np.testing.assert_array_equal(s.log_scales, (cb - 5)[sl].astype(np.float32))
    np.testing.assert_array_equal(s.sh[:, 0], cb[c0[:, :3]].astype(np.float32))
    np.testing.assert_allclose(sigmoid(s.opacity_logits), np.clip(c0[:, 3] / 255, 1e-6, 1 - 1e-6), atol=1e-6)
    for i in range(n):
        row, col0 = labels[i] // 64, (labels[i] % 64) * ncoef
        for j in range(ncoef):
            np.testing.assert_array_equal(s.sh[i, 1 + j], (cb / 3)[cen[row, col0 + j, :3]].astype(np.float32))


# ------------------------------------------------------------------------------------------------ malformed
def _meta_with(**changes) -> dict:
    m = fixture_meta()
    for path, value in changes.items():
        keys = path.split("__")
        d = m
        for k in keys[:-1]:
            d = d[k]
        if value is KeyError:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    return m


def _bad_cases() -> dict:
    zeros = bytes(4 << 20)
    big_png = io.BytesIO()
    Image.new("RGBA", (308, 13)).save(big_png, "PNG")
    huge_webp = webp(np.zeros((400, 400, 4), np.uint8))
    return {
        "not a zip": (b"PK\x03\x04" + bytes(100), "zip"),
        "truncated zip": (FIXTURE.read_bytes()[:5000], "zip"),
        "no meta.json": (zip_bytes({"x.txt": b"hi"}), "meta.json"),
        "two meta.json": (zip_bytes({"a/meta.json": b"{}", "b/meta.json": b"{}"}), "meta.json"),
        "bad json": (with_meta({}, **{"meta.json": b"{not json"}), "meta.json"),
        "json array": (with_meta({}, **{"meta.json": b"[1, 2]"}), "meta.json"),
        "unknown version": (with_meta(_meta_with(version=3)), "version"),
        "version string": (with_meta(_meta_with(version="2")), "version"),
        "missing member": (with_meta(fixture_meta(), **{"sh0.webp": None}), "sh0"),
        "missing count": (with_meta(_meta_with(count=KeyError)), "count"),
        "count negative": (with_meta(_meta_with(count=-1)), "count"),
        "count float": (with_meta(_meta_with(count=4.5)), "count"),
        "count too big for images": (with_meta(_meta_with(count=4004 + 3000)), "means_l"),
        "count 1e9": (with_meta(_meta_with(count=10**9)), "count"),
        "count 2e8 (more than the textures can hold)": (with_meta(_meta_with(count=2 * 10**8)), "count"),
        "mins not numbers": (with_meta(_meta_with(means__mins=["a", 0, 0])), "means.mins"),
        "mins too short": (with_meta(_meta_with(means__mins=[0, 0])), "means.mins"),
        "mins NaN": (with_meta(_meta_with(means__mins=[float("nan"), 0, 0])), "means.mins"),
        "files missing": (with_meta(_meta_with(quats__files=[])), "quats.files"),
        "path traversal": (with_meta(_meta_with(sh0__files=["../sh0.webp"])), "sh0"),
        "codebook too short": (with_meta(_meta_with(scales__codebook=[0.0] * 4)), "scales.codebook"),
        "codebook too long": (with_meta(_meta_with(sh0__codebook=[0.0] * 300)), "sh0.codebook"),
        "shN bands 5": (with_meta(_meta_with(shN__bands=5)), "shN.bands"),
        "shN bands 1 vs width": (with_meta(_meta_with(shN__bands=1)), "shN_centroids"),
        "shN palette bigger than texture": (with_meta(_meta_with(shN__count=65536)), "shN_centroids"),
        "png instead of webp": (with_meta(fixture_meta(), **{"quats.webp": big_png.getvalue()}), "quats"),
        "garbage image": (
            with_meta(fixture_meta(), **{"scales.webp": b"RIFF\x00\x00\x00\x00WEBPVP8L" + bytes(50)}),
            "scales",
        ),
        "image too large for count": (with_meta(fixture_meta(), **{"means_u.webp": huge_webp}), "means_u"),
        "zip bomb member": (zip_bytes({**fixture_members(), "means_l.webp": zeros}, zipfile.ZIP_DEFLATED), "means_l"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_raises_format_error_naming_file_and_field(tmp_path, name):
    data, field = BAD[name]
    p = tmp_path / "bad.sog"
    p.write_bytes(data)
    t = time.perf_counter()
    with pytest.raises(FormatError) as ei:
        read_sog(p)
    assert time.perf_counter() - t < 1.0
    assert str(p) in str(ei.value)
    assert ei.value.field == field, (name, ei.value.field, str(ei.value))


def test_folder_without_meta_and_missing_path(tmp_path):
    with pytest.raises(FormatError):
        read_sog(tmp_path)
    with pytest.raises(FormatError, match="no such"):
        read_sog(tmp_path / "nope.sog")


def test_folder_member_size_bound(tmp_path):
    for name, data in fixture_members().items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "sh0.webp").write_bytes(bytes(8 << 20))
    with pytest.raises(FormatError) as ei:
        read_sog(tmp_path)
    assert ei.value.field == "sh0"


# ------------------------------------------------------------------------------------------------ fuzz
_MEMBERS = fixture_members()
_NAMES = sorted(_MEMBERS)
_ZIP = FIXTURE.read_bytes()
_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 10**10),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(-5, 300), max_size=4),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    mode=st.sampled_from(["zip", "member", "member", "meta"]),
    member=st.sampled_from(_NAMES),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
    key=st.sampled_from(["version", "count", "means", "scales", "quats", "sh0", "shN", "model"]),
    sub=st.sampled_from(["mins", "maxs", "files", "codebook", "count", "bands", None]),
    value=_json_values,
)
def test_fuzz(tmp_path_factory, mode, member, cut, edits, key, sub, value):
    if mode == "zip":
        data = bytearray(_ZIP)
        for pos, val in edits:
            data[int(pos * (len(data) - 1))] = val
        if cut is not None:
            data = data[: int(cut * len(data))]
        data = bytes(data)
    elif mode == "member":  # valid zip, corrupt content (reaches JSON / WebP decoders)
        m = dict(_MEMBERS)
        b = bytearray(m[member])
        head = min(len(b), 64)
        for i, (pos, val) in enumerate(edits):
            span = head if i % 2 == 0 else len(b)
            b[int(pos * (span - 1))] = val
        if cut is not None:
            b = b[: int(cut * len(b))]
        m[member] = bytes(b)
        data = zip_bytes(m)
    else:
        meta = json.loads(_MEMBERS["meta.json"])
        if sub is None or not isinstance(meta.get(key), dict):
            meta[key] = value
        else:
            meta[key][sub] = value
        data = zip_bytes({**_MEMBERS, "meta.json": json.dumps(meta).encode()})
    p = Path(tmp_path_factory.mktemp("fz")) / "f.sog"
    p.write_bytes(data)
    try:
        s = read_sog(p)
    except FormatError as e:
        assert str(p) in str(e)
        return
    assert s.means.shape == (s.n, 3) and s.sh.shape[0] == s.n
