"""exgs_core.io.sog_write: SOG v2 written as splat-transform 3.10.2 writes it, checked against our reader
(exgs_core.io.sog) within the bounds the module docstring documents, and against splat-transform itself when it is
installed (.tools/node_modules/.bin/splat-transform, or EXGS_SPLAT_TRANSFORM).

Round trips match Gaussians through :func:`sog_order` (texel i holds Gaussian ``order[i]``)."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from exgs_testpaths import REPO
from PIL import Image

from exgs_core.conventions import sigmoid
from exgs_core.errors import OutputError, SceneError
from exgs_core.io import encode_as, load, save
from exgs_core.io.sog import read_sog
from exgs_core.io.sog_write import (
    OPACITY_LOGIT_MAX,
    default_palette_size,
    encode_sog,
    encode_sog_members,
    quantize_1d,
    sog_order,
    sog_texture_shape,
    write_sog,
)
from exgs_core.io.spz import to_ply_axes
from exgs_core.scene import GaussianScene

BIKER = REPO / "examples" / "playcanvas_biker.spz"
QUAT_STEP = 1.0 / (255.0 * math.sqrt(2.0))  # half a byte step of a stored quaternion component


# ------------------------------------------------------------------------------------------------ helpers
def synthetic(n: int = 3000, degree: int = 3, seed: int = 0, *, clusters: int = 40, antialiased=False):
    """A scene of n Gaussians: centres spread over +-20 units (so the log transform matters), random rotations,
    log-scales N(-4, 1), logits N(0, 2), DC N(0, 0.6); SH rest drawn around ``clusters`` centres (+ noise 0.01),
    so a palette can represent them."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0] = rng.normal(0, 0.6, (n, 3))
    if k > 1:
        centres = rng.normal(0, 0.15, (clusters, k - 1, 3))
        sh[:, 1:] = centres[rng.integers(0, clusters, n)] + rng.normal(0, 0.01, (n, k - 1, 3))
    return GaussianScene(
        rng.normal(0, 6, (n, 3)),
        rng.normal(size=(n, 4)),
        rng.normal(-4, 1, (n, 3)),
        rng.normal(0, 2, n),
        sh,
        antialiased=antialiased,
    )


def decode(data: bytes, tmp_path: Path, name: str = "x.sog") -> GaussianScene:
    p = tmp_path / name
    p.write_bytes(data)
    return read_sog(p)


def means_bound(x: np.ndarray, meta_means: dict) -> np.ndarray:
    """Per-value bound of the means decode: half a 16-bit step of the log transform, mapped back, plus float32."""
    span = np.asarray(meta_means["maxs"]) - np.asarray(meta_means["mins"])
    dl = span / 131070.0
    return (1.0 + np.abs(x)) * np.expm1(dl) + 4e-7 * (1.0 + np.abs(x))


def nearest_error(values: np.ndarray, codebook) -> np.ndarray:
    """Distance of each value to its nearest codebook entry (float64)."""
    cb = np.asarray(codebook, np.float64)
    return np.abs(values.astype(np.float64)[..., None] - cb).min(axis=-1)


def unit(q):
    q = np.asarray(q, np.float64)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def meta_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return json.loads(z.read("meta.json"))


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_within_documented_bounds(tmp_path, degree):
    s = synthetic(3000, degree, seed=degree)
    data, rep = encode_sog(s)
    meta = meta_of(data)
    d = decode(data, tmp_path)
    o = sog_order(s)
    ref = s.subset(o)
    assert d.n == s.n and d.sh_degree == degree and rep.gaussians == s.n and rep.bytes == len(data)
    assert meta["count"] == s.n and meta["version"] == 2

    # means: half a 16-bit step of sign(x) ln(1 + |x|), mapped back
    err = np.abs(d.means.astype(np.float64) - ref.means)
    assert (err <= means_bound(ref.means, meta["means"])).all(), err.max()

    # quaternions: the three stored components within half a step, the largest within three, angle <= 1.1 deg
    qa, qb = unit(ref.quats), unit(d.quats)
    sign = np.sign((qa * qb).sum(1))[:, None]
    comp = np.abs(qa - sign * qb)
    largest = np.argmax(np.abs(qa), axis=1)
    small = np.ones_like(comp, bool)
    small[np.arange(s.n), largest] = False
    assert comp[small].max() <= QUAT_STEP + 1e-6
    assert comp.max() <= 3 * QUAT_STEP + 1e-6
    angle = np.degrees(2 * np.arccos(np.clip(np.abs((qa * qb).sum(1)), 0, 1)))
    assert angle.max() <= 1.1

    # codebooks: every value decodes to its nearest entry, and the fit is tight (RMS < 0.3 % of the span)
    for got, want, cb in (
        (d.log_scales, ref.log_scales, meta["scales"]["codebook"]),
        (d.sh[:, 0], ref.sh[:, 0], meta["sh0"]["codebook"]),
    ):
        assert len(cb) == 256
        e = np.abs(got.astype(np.float64) - want)
        np.testing.assert_allclose(e, nearest_error(want, cb), atol=1e-6)
        assert np.sqrt((e**2).mean()) < 0.003 * float(np.ptp(want))

    # opacity: 8 bits of sigmoid
    assert np.abs(sigmoid(d.opacity_logits) - sigmoid(ref.opacity_logits)).max() <= 1 / 510 + 1e-6

    if degree:
        # the palette (P = 2048 < N here) plus its codebook: error at the level of the clusters' noise (0.01)
        e = d.sh[:, 1:] - ref.sh[:, 1:]
        assert np.sqrt((e**2).mean()) < 0.02
        assert meta["shN"]["bands"] == degree and meta["shN"]["count"] == default_palette_size(s.n) == 2048
        assert len(meta["shN"]["codebook"]) == 256
    else:
        assert "shN" not in meta


def test_palette_covering_every_gaussian_leaves_only_the_codebook_error(tmp_path):
    s = synthetic(600, 3, seed=5, clusters=600)
    data, _ = encode_sog(s, palette_size=1024)
    meta = meta_of(data)
    d = decode(data, tmp_path)
    ref = s.subset(sog_order(s))
    assert meta["shN"]["count"] == 600  # a palette never has more entries than Gaussians
    e = np.abs(d.sh[:, 1:].astype(np.float64) - ref.sh[:, 1:])
    np.testing.assert_allclose(e, nearest_error(ref.sh[:, 1:], meta["shN"]["codebook"]), atol=1e-6)


def test_biker_round_trip_is_exact_where_sog_can_be(tmp_path):
    """The biker (SPZ: 8-bit scales, colours, alpha) has fewer than 256 distinct log-scales and DC values, so those
    decode exactly; its SPZ axes are turned into PLY axes (noted)."""
    s = load(BIKER)
    data, rep = encode_sog(s)
    assert any("right-up-back" in n for n in rep.notes)
    d = decode(data, tmp_path)
    ref = to_ply_axes(s)
    ref = ref.subset(sog_order(ref))
    assert d.n == s.n == 152746
    np.testing.assert_array_equal(d.log_scales, ref.log_scales)
    np.testing.assert_array_equal(d.sh, ref.sh)
    np.testing.assert_allclose(sigmoid(d.opacity_logits), sigmoid(ref.opacity_logits), atol=1e-6)
    assert (np.abs(d.means - ref.means) <= means_bound(ref.means, meta_of(data)["means"])).all()
    # PLY axes: the biker stands along -y (3DGS y down), while the SPZ stores it along +y
    assert d.means[:, 1].mean() < 0 < s.means[:, 1].mean()


def test_transparent_gaussians_keep_their_colour_labels(tmp_path):
    """Opacity byte 0 is sh0's alpha 0: the WebP must keep the RGB under it (lossless ``exact``)."""
    s = synthetic(500, 0, seed=3)
    s.opacity_logits[:] = -30.0
    data, rep = encode_sog(s)
    d = decode(data, tmp_path)
    ref = s.subset(sog_order(s))
    np.testing.assert_allclose(
        np.abs(d.sh[:, 0] - ref.sh[:, 0]), nearest_error(ref.sh[:, 0], meta_of(data)["sh0"]["codebook"]), atol=1e-6
    )
    assert rep.clamped == {"opacity_logits": 500}


def test_textures_are_lossless_webp_of_the_documented_size(monkeypatch):
    import exgs_core.io.sog_write as sw

    encoded = []
    real = sw._webp

    def spy(img, quality, method):
        data = real(img, quality, method)
        encoded.append((img.copy(), data))
        return data

    monkeypatch.setattr(sw, "_webp", spy)
    s = synthetic(1000, 1, seed=1)
    s.opacity_logits[::3] = -40.0  # alpha 0 under distinct colour labels
    files, _ = encode_sog_members(s)
    assert len(encoded) == 7
    for img, data in encoded:  # every texel back exactly, the RGB of transparent ones included
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")), img)
    assert list(files) == [
        "means_l.webp",
        "means_u.webp",
        "quats.webp",
        "scales.webp",
        "sh0.webp",
        "shN_centroids.webp",
        "shN_labels.webp",
        "meta.json",
    ]
    w, h = sog_texture_shape(1000)
    assert (w, h) == (32, 32)
    for name, data in files.items():
        if name.endswith(".webp"):
            assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8L"  # lossless bitstream
            im = Image.open(io.BytesIO(data))
            assert im.size == ((w, h) if name != "shN_centroids.webp" else (64 * 3, 512 // 64))


@pytest.mark.parametrize("n", [0, 1, 2, 5, 1023, 1024, 1025, 70000, 200000])
def test_sizes_follow_splat_transform(n):
    # splat-transform 3.10.2: paletteSize = min(64, 2 ** floor(log2(N / 1024))) * 1024, in doubles
    want = 0 if n == 0 else int(min(64, 2 ** math.floor(math.log2(n / 1024))) * 1024)
    assert default_palette_size(n) == want
    w = math.ceil(math.sqrt(n) / 4) * 4
    if n:
        assert sog_texture_shape(n) == (w, math.ceil(n / w / 4) * 4)


def test_degenerate_scenes(tmp_path):
    empty, rep = encode_sog(GaussianScene.empty(0, 2))
    assert decode(empty, tmp_path, "e.sog").n == 0 and "shN" not in meta_of(empty)
    one = GaussianScene.empty(1, 1)
    one.means[:] = (1.5, -2.0, 0.25)
    d = decode(encode_sog(one)[0], tmp_path, "o.sog")
    np.testing.assert_allclose(d.means, one.means, rtol=1e-6)  # zero span: the exact value
    # the byte grid has no zero (127.5 is its middle): zero components decode as +-0.0028, half a step
    np.testing.assert_allclose(unit(d.quats), [[1, 0, 0, 0]], atol=QUAT_STEP + 1e-6)


# ------------------------------------------------------------------------------------------------ contract
def test_deterministic_bytes_and_zip_layout():
    s = synthetic(2000, 2, seed=7)
    a, _ = encode_sog(s)
    b, _ = encode_sog(s.copy())
    assert a == b
    c, _ = encode_sog(s, seed=1)
    assert c != a  # the seed reaches the k-means
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        infos = z.infolist()
        assert [i.filename for i in infos][-1] == "meta.json"
        assert all(i.compress_type == zipfile.ZIP_STORED and i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)


def test_meta_json_fields_as_splat_transform_writes_them():
    s = synthetic(1500, 3, seed=2, antialiased=True)
    meta = meta_of(encode_sog(s)[0])
    assert list(meta) == ["version", "asset", "count", "model", "means", "scales", "quats", "sh0", "shN"]
    assert meta["model"] == "antialiased" and meta["asset"]["generator"].startswith("exgs v")
    assert list(meta["means"]) == ["mins", "maxs", "files"] and meta["means"]["files"] == [
        "means_l.webp",
        "means_u.webp",
    ]
    assert list(meta["shN"]) == ["count", "bands", "codebook", "files"]
    assert meta["shN"]["files"] == ["shN_centroids.webp", "shN_labels.webp"]
    ln = np.sign(s.means) * np.log1p(np.abs(s.means.astype(np.float64)))
    np.testing.assert_allclose(meta["means"]["mins"], ln.min(0), rtol=1e-12)
    np.testing.assert_allclose(meta["means"]["maxs"], ln.max(0), rtol=1e-12)
    assert "model" not in meta_of(encode_sog(synthetic(100, 0))[0])


def test_antialiased_round_trips(tmp_path):
    for aa in (True, False):
        assert decode(encode_sog(synthetic(300, 1, antialiased=aa))[0], tmp_path).antialiased is aa


def test_sh_degree_option(tmp_path):
    s = synthetic(800, 3, seed=4)
    data, rep = encode_sog(s, sh_degree=1)
    d = decode(data, tmp_path)
    assert d.sh_degree == 1 and meta_of(data)["shN"]["bands"] == 1
    assert any("SH degree cut from 3 to 1" in n for n in rep.notes)
    assert decode(encode_sog(s, sh_degree=0)[0], tmp_path, "z.sog").sh_degree == 0
    with pytest.raises(ValueError, match="above the scene's SH degree"):
        encode_sog(synthetic(50, 1), sh_degree=2)
    for bad in ({"palette_size": 0}, {"palette_size": 65537}, {"iterations": 0}, {"sh_degree": 4}, {"bundle": False}):
        with pytest.raises(ValueError):
            encode_sog(s, **bad)


def test_nan_is_refused_with_counts_and_sanitize_writes(tmp_path):
    s = synthetic(400, 1, seed=9)
    s.means[3, 0] = np.nan
    s.opacity_logits[7] = np.inf
    s.quats[11] = 0.0
    out = tmp_path / "bad.sog"
    with pytest.raises(SceneError) as e:
        write_sog(s, out)
    msg = str(e.value)
    assert "1 Gaussian(s) with NaN/Inf in means" in msg and "zero-norm rotation" in msg and str(out) in msg
    assert not out.exists()
    with pytest.raises(SceneError):
        encode_sog(s)
    rep = write_sog(s, out, sanitize=True)
    assert rep.gaussians == 398 and any(n.startswith("sanitised:") for n in rep.notes)
    d = read_sog(out)
    assert d.n == 398 and rep.bytes == out.stat().st_size and rep.path == str(out)


def test_out_of_range_opacity_is_clamped_and_counted(tmp_path):
    s = synthetic(200, 0, seed=11)
    s.opacity_logits[:3] = (20.0, -25.0, OPACITY_LOGIT_MAX - 0.5)
    data, rep = encode_sog(s)
    assert rep.clamped == {"opacity_logits": 2}
    assert "clamped 2 value(s) of opacity_logits" in str(rep)
    d = decode(data, tmp_path)
    o = sog_order(s)
    got = dict(zip(o.tolist(), d.opacity_logits.tolist(), strict=True))
    assert got[0] == pytest.approx(OPACITY_LOGIT_MAX, abs=1e-4) and got[1] == pytest.approx(
        -OPACITY_LOGIT_MAX, abs=1e-4
    )


def test_write_is_atomic(tmp_path, monkeypatch):
    import exgs_core.io.sog_write as sw

    out = tmp_path / "scene.sog"
    out.write_bytes(b"previous")
    boom = RuntimeError("disk on fire")

    def fail(*a, **k):
        raise boom

    monkeypatch.setattr(sw, "_zip", fail)
    with pytest.raises(RuntimeError):
        write_sog(synthetic(100, 0), out)
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["scene.sog"]
    monkeypatch.undo()
    with pytest.raises(OutputError, match="does not exist"):
        write_sog(synthetic(100, 0), tmp_path / "missing" / "x.sog")
    rep = write_sog(synthetic(100, 0), out)
    assert read_sog(out).n == 100 and rep.bytes == out.stat().st_size


def test_unbundled_folder_decodes_like_the_bundle(tmp_path):
    s = synthetic(700, 2, seed=12)
    write_sog(s, tmp_path / "a.sog")
    folder = tmp_path / "unbundled"
    folder.mkdir()
    rep = write_sog(s, folder / "meta.json", bundle=False)
    with zipfile.ZipFile(tmp_path / "a.sog") as z:
        assert sorted(p.name for p in folder.iterdir()) == sorted(z.namelist())
    assert rep.bytes == sum(p.stat().st_size for p in folder.iterdir())
    a, b = read_sog(tmp_path / "a.sog"), read_sog(folder)
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    with pytest.raises(ValueError, match="meta.json"):
        write_sog(s, folder / "x.sog", bundle=False)


def test_save_and_encode_as_reach_this_writer(tmp_path):
    s = load(BIKER).subset(np.arange(3000))
    data, rep = encode_as(s, "sog")
    assert rep.format == "sog" and rep.bytes == len(data) and rep.gaussians == 3000
    rep = save(s, tmp_path / "b.sog")
    assert read_sog(tmp_path / "b.sog").n == 3000 and rep.path == str(tmp_path / "b.sog")


def test_quantize_1d():
    rng = np.random.default_rng(0)
    # few distinct values: exact
    v = rng.choice(np.linspace(-3, 2, 100), 5000).astype(np.float32)
    cb, lab = quantize_1d(v)
    assert cb.shape == (256,) and (np.diff(cb) >= 0).all()
    np.testing.assert_array_equal(cb[lab], v)
    # a wild outlier cannot take the bulk's precision away
    v = np.concatenate([rng.normal(size=200000), [1e6]]).astype(np.float32)
    cb, lab = quantize_1d(v)
    e = np.abs(cb[lab] - v)
    assert e[-1] == 0 and np.sqrt((e[:-1] ** 2).mean()) < 0.05
    # labels are the nearest entry, also on the sampled path (more than 2^20 values)
    v = rng.standard_t(3, 1_200_000).astype(np.float32)
    cb, lab = quantize_1d(v, seed=2)
    mids = (cb[1:].astype(np.float64) + cb[:-1]) / 2
    np.testing.assert_array_equal(lab, np.searchsorted(mids, v.astype(np.float64)))


# ------------------------------------------------------------------------------------------------ splat-transform
def _splat_transform() -> Path:
    p = Path(os.environ.get("EXGS_SPLAT_TRANSFORM", REPO / ".tools" / "node_modules" / ".bin" / "splat-transform"))
    if not p.exists() or shutil.which("node") is None:
        pytest.skip(f"splat-transform not installed ({p})")
    return p


def _run(tool: Path, *args) -> None:
    r = subprocess.run([str(tool), "-q", "-w", "-g", "cpu", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_splat_transform_decodes_our_sog_as_we_do(tmp_path):
    tool = _splat_transform()
    for name, s in (("biker", load(BIKER).subset(np.arange(0, 152746, 10))), ("sh3", synthetic(2500, 3, seed=13))):
        ours = tmp_path / f"{name}.sog"
        write_sog(s, ours)
        _run(tool, ours, tmp_path / f"{name}.ply")
        st = load(tmp_path / f"{name}.ply")
        d = read_sog(ours)
        assert st.n == d.n and st.sh_degree == d.sh_degree
        np.testing.assert_allclose(st.means, d.means, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st.log_scales, d.log_scales, atol=1e-6)
        np.testing.assert_allclose(st.sh, d.sh, atol=1e-6)
        np.testing.assert_allclose(sigmoid(st.opacity_logits), sigmoid(d.opacity_logits), atol=1e-6)
        assert np.abs(np.abs((unit(st.quats) * unit(d.quats)).sum(1)) - 1).max() < 1e-5


@pytest.mark.slow
def test_we_read_splat_transforms_sog_and_compare_sizes_and_renders(tmp_path):
    """Same input PLY to both writers: our reader decodes splat-transform's bundle close to the input, and both
    decodes render close to the original (the numbers go to the issue notes: printed with -s)."""
    from exgs_core.io.ply import write_ply
    from exgs_core.metrics import psnr
    from exgs_core.render import render
    from exgs_core.views import auto_views

    tool = _splat_transform()
    s = synthetic(4000, 3, seed=14)
    ply = tmp_path / "in.ply"
    write_ply(s, ply)
    _run(tool, ply, tmp_path / "st.sog")
    st = read_sog(tmp_path / "st.sog")
    write_sog(load(ply), tmp_path / "ours.sog")
    ours = read_sog(tmp_path / "ours.sog")
    assert st.n == s.n and st.sh_degree == 3
    # splat-transform writes in its Morton order (10 bits + refinement), we in ours: match by position
    from scipy.spatial import cKDTree

    _, idx = cKDTree(s.means).query(st.means)
    ref = s.subset(idx)
    # splat-transform truncates where we round: a whole 16-bit step instead of half
    st_meta = meta_of((tmp_path / "st.sog").read_bytes())
    assert (np.abs(st.means - ref.means) <= 2 * means_bound(ref.means, st_meta["means"])).all()
    assert np.abs(sigmoid(st.opacity_logits) - sigmoid(ref.opacity_logits)).max() <= 1 / 255 + 1e-6
    assert np.sqrt(((st.log_scales - ref.log_scales) ** 2).mean()) < 0.02
    cams = auto_views(s, 4, 128, 128, split="eval")
    p = {k: np.mean([psnr(render(s, c).rgb, render(v, c).rgb) for c in cams]) for k, v in (("ours", ours), ("st", st))}
    sizes = {"ours": (tmp_path / "ours.sog").stat().st_size, "st": (tmp_path / "st.sog").stat().st_size}
    print(f"\nSOG of a 4000-Gaussian SH3 scene: bytes {sizes}, PSNR vs original {p}")
    assert p["ours"] > 35 and p["st"] > 30
    assert sizes["ours"] < 1.15 * sizes["st"]
