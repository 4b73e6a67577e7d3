"""exgs_core.io.spz writer: round trips within the documented error bounds (v4 and v3, SH 0..3, both axis
conventions), header and flags, deterministic bytes, the writers' contract (NaN refused or sanitised, counted
clamping, atomic writes), re-encoding the committed biker.spz, and an independent check against splat-transform
(which packs SPZ with the Niantic library's own WebAssembly build).

Error bounds (the module docstring's table): means 2**-(f+1); opacity 1/510 after the sigmoid (+1e-6 for the reader's
clip); DC 1/76.5; log scales 1/32; quaternion components 0.0021 up to sign; SH degree 1 4.5/128, degree 2-3
8.5/128. Each is a tight bound (the tests also check that the error is not far below it, so a wrong step would show).
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import plyfile
import pytest
from exgs_testpaths import REPO

from exgs_core.conventions import sigmoid
from exgs_core.errors import OutputError, SceneError
from exgs_core.io import atomic
from exgs_core.io.spz import (
    _CS_STORED,
    encode_spz,
    flip_yz,
    read_spz,
    to_ply_axes,
    unpack_spz,
    write_spz,
)
from exgs_core.scene import GaussianScene

BIKER = REPO / "examples" / "playcanvas_biker.spz"

EPS = 2e-6  # float32 rounding of the quantiser's arithmetic (the reference computes in float32 too)
BOUNDS = {
    "log_scales": 1 / 32 + EPS,
    "opacity": 1 / 510 + 1e-6 + EPS,
    "dc": 1 / 76.5 + EPS,
    "quats": 3 * np.sqrt(0.5) / 1022 + EPS,
    "sh1": 4.5 / 128 + EPS,
    "sh23": 8.5 / 128 + EPS,
}


# ------------------------------------------------------------------------------------------------ helpers
def synthetic(n: int, degree: int, seed: int = 0, extent: float = 40.0) -> GaussianScene:
    """A scene of n Gaussians inside every field's range (PLY axes: no coordinate_system in meta)."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = rng.uniform(-3.3, 3.3, (n, 3))
    sh[:, 1:] = rng.uniform(-1, 1, (n, k - 1, 3))
    return GaussianScene(
        rng.uniform(-extent, extent, (n, 3)),
        rng.normal(size=(n, 4)),  # unnormalised, as 3DGS PLY stores them
        rng.uniform(-9.9, 5.9, (n, 3)),
        rng.normal(0, 4, n),
        sh,
    )


def max_errors(got: GaussianScene, want: GaussianScene) -> dict:
    """Max abs error per attribute (opacity after the sigmoid, quaternions normalised and up to sign)."""
    a = got.quats / np.linalg.norm(got.quats, axis=1, keepdims=True)
    b = want.quats / np.linalg.norm(want.quats, axis=1, keepdims=True)
    out = {
        "means": float(np.abs(got.means.astype(np.float64) - want.means).max()),
        "log_scales": float(np.abs(got.log_scales - want.log_scales).max()),
        "opacity": float(np.abs(sigmoid(got.opacity_logits) - sigmoid(want.opacity_logits)).max()),
        "dc": float(np.abs(got.sh[:, 0] - want.sh[:, 0]).max()),
        "quats": float(np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max()),
    }
    if got.sh.shape[1] > 1:
        out["sh1"] = float(np.abs(got.sh[:, 1:4] - want.sh[:, 1:4]).max())
    if got.sh.shape[1] > 4:
        out["sh23"] = float(np.abs(got.sh[:, 4:] - want.sh[:, 4:]).max())
    return out


def assert_within(got: GaussianScene, want: GaussianScene, fractional_bits: int = 12, tight: bool = True) -> None:
    bounds = dict(BOUNDS, means=2.0 ** -(fractional_bits + 1) + 1e-7 * max(1.0, float(np.abs(want.means).max())))
    err = max_errors(got, want)
    for name, e in err.items():
        assert e <= bounds[name], f"{name}: max error {e:.6g} > bound {bounds[name]:.6g}"
        # random values come close to each bound (rotations only near the rare worst case), so a claimed step
        # much coarser than the real one would show here
        if tight:
            floor = 0.3 if name == "quats" else 0.8
            assert e >= floor * bounds[name], f"{name}: max error {e:.6g} far below bound {bounds[name]:.6g}"


def splat_transform() -> Path | None:
    """The splat-transform executable: $EXGS_SPLAT_TRANSFORM, else the project's .tools install, else None."""
    env = os.environ.get("EXGS_SPLAT_TRANSFORM")
    if env:
        return Path(env) if Path(env).exists() else None
    p = REPO / ".tools" / "node_modules" / ".bin" / "splat-transform"
    return p if p.exists() else None


def run_splat_transform(*args) -> None:
    exe = splat_transform()
    r = subprocess.run([str(exe), "-g", "cpu", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"splat-transform {args} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def ply_scene(path) -> GaussianScene:
    """A splat-transform PLY output as a scene, values as written (no axis interpretation)."""
    v = plyfile.PlyData.read(str(path))["vertex"].data
    g = lambda *k: np.stack([v[x] for x in k], 1)  # noqa: E731
    nr = sum(1 for x in v.dtype.names if x.startswith("f_rest_"))
    sh = np.empty((len(v), nr // 3 + 1, 3), np.float32)
    sh[:, 0] = g("f_dc_0", "f_dc_1", "f_dc_2")
    if nr:
        sh[:, 1:] = g(*[f"f_rest_{i}" for i in range(nr)]).reshape(len(v), 3, nr // 3).transpose(0, 2, 1)
    with np.errstate(invalid="ignore"):
        opacity = np.clip(v["opacity"].astype(np.float32), -30, 30)  # splat-transform writes +-inf for bytes 0/255
    return GaussianScene(
        g("x", "y", "z"), g("rot_0", "rot_1", "rot_2", "rot_3"), g("scale_0", "scale_1", "scale_2"), opacity, sh
    )


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("version", [4, 3])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_ply_axes_within_bounds(tmp_path, version, degree):
    scene = synthetic(70_000 if degree == 3 else 5000, degree, seed=degree)  # 70,000 > one 65,536-row block
    p = tmp_path / "a.spz"
    rep = write_spz(scene, p, version=version)
    assert rep.path == str(p) and rep.bytes == p.stat().st_size and rep.gaussians == scene.n
    assert rep.clamped == {}
    assert any("flip_yz" in note for note in rep.notes)
    raw = unpack_spz(p.read_bytes())
    assert (raw.version, raw.num_points, raw.sh_degree, raw.fractional_bits, raw.flags) == (
        version,
        scene.n,
        degree,
        12,
        0,
    )
    back = read_spz(p)
    assert back.meta["coordinate_system"] == _CS_STORED
    # stored as RUB: the raw decode is the scene turned about x; to_ply_axes / axes="rdf" give the scene back
    assert_within(back, flip_yz(scene))
    assert_within(to_ply_axes(back), scene)
    assert_within(read_spz(p, axes="rdf"), scene)
    assert float(np.abs(back.means[:, 1] + scene.means[:, 1]).max()) < 1e-3


@pytest.mark.parametrize("version", [4, 3])
def test_round_trip_stored_axes_written_as_is(version):
    scene = synthetic(4000, 3, seed=7)
    scene.meta["coordinate_system"] = _CS_STORED
    data, rep = encode_spz(scene, version=version)
    assert not any("flip_yz" in note for note in rep.notes)
    back = read_spz_bytes(data)
    assert_within(back, scene)
    # and read -> write -> read is a fixed point of the stored codes
    again, _ = encode_spz(back, version=version)
    raw1, raw2 = unpack_spz(data), unpack_spz(again)
    for a, b in zip(raw1.streams(), raw2.streams(), strict=True):
        np.testing.assert_array_equal(a, b)


def read_spz_bytes(data: bytes) -> GaussianScene:
    from exgs_core.io.spz import decode_spz

    return decode_spz(unpack_spz(data))


def test_header_layouts():
    scene = synthetic(100, 2, seed=3)
    v4, _ = encode_spz(scene)
    magic, version, n, deg, frac, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", v4)
    assert (magic, version, n, deg, frac, flags, nstreams, toc) == (0x5053474E, 4, 100, 2, 12, 0, 6, 32)
    assert v4[20:32] == bytes(12)
    sizes = [struct.unpack_from("<QQ", v4, 32 + 16 * i) for i in range(6)]
    assert [u for _, u in sizes] == [900, 100, 300, 300, 400, 100 * 8 * 3]
    assert 32 + 96 + sum(c for c, _ in sizes) == len(v4)
    scene0 = synthetic(100, 0, seed=3)
    assert struct.unpack_from("<B", encode_spz(scene0)[0], 15)[0] == 5  # no SH stream at degree 0
    v3, _ = encode_spz(scene, version=3)
    assert v3[:4] == b"\x1f\x8b\x08\x00" and v3[4:10] == b"\0\0\0\0\0\x03"  # gzip, no name, mtime 0, OS 3
    payload = gzip.decompress(v3)
    assert struct.unpack_from("<IIIBBBB", payload) == (0x5053474E, 3, 100, 2, 12, 0, 0)
    assert len(payload) == 16 + 100 * (9 + 1 + 3 + 3 + 4 + 24)


def test_sh_degree_cut_and_pad():
    scene = synthetic(500, 3, seed=4)
    data, rep = encode_spz(scene, sh_degree=1)
    back = read_spz_bytes(data)
    assert back.sh_degree == 1 and any("cut" in note for note in rep.notes)
    assert_within(back, flip_yz(scene.with_sh_degree(1)), tight=False)
    data, rep = encode_spz(synthetic(500, 0, seed=4), sh_degree=3)
    back = read_spz_bytes(data)
    assert back.sh_degree == 3 and np.all(back.sh[:, 1:] == 0) and any("padded" in note for note in rep.notes)


def test_deterministic_bytes():
    scene = synthetic(3000, 3, seed=5)
    for version in (4, 3):
        a, _ = encode_spz(scene, version=version)
        b, _ = encode_spz(scene.copy(), version=version)
        assert a == b


def test_antialiased_flag_round_trips(tmp_path):
    scene = synthetic(200, 1, seed=6)
    scene.antialiased = True
    for version in (4, 3):
        p = tmp_path / f"aa{version}.spz"
        write_spz(scene, p, version=version)
        assert unpack_spz(p.read_bytes()).flags == 0x1
        assert read_spz(p).antialiased is True
    data, _ = encode_spz(scene, antialiased=False)
    assert unpack_spz(data).flags == 0 and read_spz_bytes(data).antialiased is False
    data, _ = encode_spz(synthetic(10, 0), antialiased=True)
    assert read_spz_bytes(data).antialiased is True


def test_empty_scene(tmp_path):
    p = tmp_path / "empty.spz"
    rep = write_spz(GaussianScene.empty(0, 2), p)
    back = read_spz(p)
    assert back.n == 0 and back.sh_degree == 2 and rep.gaussians == 0
    assert any("0 points" in note for note in rep.notes)


# ------------------------------------------------------------------------------------------------ the contract
def test_nan_refused_with_counts_and_sanitize_writes(tmp_path):
    scene = synthetic(100, 1, seed=8)
    scene.means[3, 0] = np.nan
    scene.sh[5, 2, 1] = np.inf
    scene.quats[7] = 0
    p = tmp_path / "bad.spz"
    with pytest.raises(SceneError) as e:
        write_spz(scene, p)
    msg = str(e.value)
    assert "1 Gaussian(s) with NaN/Inf in means" in msg and "in sh" in msg and "zero-norm rotation" in msg
    assert str(p) in msg and not p.exists()
    with pytest.raises(SceneError):
        encode_spz(scene)
    rep = write_spz(scene, p, sanitize=True)
    assert rep.gaussians == 98 and read_spz(p).n == 98
    assert any(note.startswith("sanitised:") and "dropped 2" in note for note in rep.notes)
    assert any("identity" in note for note in rep.notes)


def test_out_of_range_values_are_clamped_and_counted():
    scene = synthetic(1000, 3, seed=9)
    scene.means[:3] = [[3000.0, 0, 0], [0, -2100.0, 0], [0, 0, 5000.0]]  # beyond +-2048 at 12 bits
    scene.log_scales[10] = [-12.0, 7.0, 0.0]  # two outside [-10, 5.9375]
    scene.sh[20, 0] = [4.0, -4.0, 0.0]  # two outside +-3.333
    scene.sh[30, 5] = [1.5, -2.0, 0.5]  # two outside [-1, 1]
    scene.sh[31, 1, 0] = 1.002  # beyond by less than half a step: rounds into range, not counted
    data, rep = encode_spz(scene, fractional_bits=12)
    assert rep.clamped == {"means": 3, "log_scales": 2, "sh_dc": 2, "sh_rest": 2}
    assert any("clamped" in note for note in rep.notes)
    back = to_ply_axes(read_spz_bytes(data))
    top = 2048 - 2**-12  # the largest code, (2**23 - 1) / 2**12; y and z are flipped in the file
    np.testing.assert_allclose(back.means[:3], [[top, 0, 0], [0, -top, 0], [0, 0, 2048]])
    assert back.log_scales[10, 0] == -10 and back.log_scales[10, 1] == 255 / 16 - 10
    np.testing.assert_allclose(back.sh[20, 0, :2], [127.5 / 38.25, -127.5 / 38.25], rtol=1e-6)
    assert back.sh[30, 5, 1] in (-1.0, 1.0) and abs(back.sh[30, 5, 0]) == pytest.approx(127 / 128)
    ok = np.ones(scene.n, bool)
    ok[[0, 1, 2, 10, 20, 30]] = False
    assert_within(back.subset(ok), scene.subset(ok), tight=False)


def test_fractional_bits_chosen_to_fit():
    scene = synthetic(2000, 0, seed=10)
    scene.means[0] = [9000.0, -100, 100]  # needs 9000 < 2**(23 - f): f = 9 (+-16384)
    data, rep = encode_spz(scene)
    assert unpack_spz(data).fractional_bits == 9 and rep.clamped == {}
    assert any("fractional bits" in note for note in rep.notes)
    assert_within(to_ply_axes(read_spz_bytes(data)), scene, fractional_bits=9, tight=False)
    # -2048 fits the 24-bit codes at 12 bits, but +2048 (y after the axis conversion) does not
    edge = synthetic(100, 0)
    edge.means[0, 1] = -2048.0
    data, rep = encode_spz(edge)
    assert unpack_spz(data).fractional_bits == 11 and rep.clamped == {}
    assert to_ply_axes(read_spz_bytes(data)).means[0, 1] == -2048.0
    # a scene that fits keeps 12; an explicit value is used as given
    assert unpack_spz(encode_spz(synthetic(100, 0))[0]).fractional_bits == 12
    data, rep = encode_spz(synthetic(100, 0, extent=1.0), fractional_bits=20)
    assert unpack_spz(data).fractional_bits == 20 and rep.clamped == {}
    assert_within(to_ply_axes(read_spz_bytes(data)), synthetic(100, 0, extent=1.0), fractional_bits=20, tight=False)


def test_halves_round_away_from_zero_as_the_reference():
    """Exact half steps round away from zero (C's std::round in the Niantic packer), not to even."""
    scene = GaussianScene.empty(2, 1)
    scene.meta["coordinate_system"] = _CS_STORED
    scene.means[:, 0] = [2.5 * 2**-12, -2.5 * 2**-12]  # codes 3 and -3 (to even: 2, -2)
    scene.log_scales[:, 0] = [-10 + 2.5 / 16, -10 + 0.5 / 16]  # codes 3 and 1
    scene.sh[:, 1, 0] = [2.5 / 128, -2.5 / 128]  # 8 bits: codes 131 and 125
    raw = unpack_spz(encode_spz(scene, sh1_bits=8)[0])
    fixed = raw.positions[:, :3].astype(np.int32) @ [1, 256, 65536]
    assert list(fixed) == [3, (1 << 24) - 3]
    assert list(raw.scales[:, 0]) == [3, 1]
    assert list(raw.sh[:, 0]) == [131, 125]


def test_bad_options():
    scene = synthetic(10, 0)
    for kw in ({"version": 2}, {"version": 5}, {"sh_degree": 4}, {"fractional_bits": 24}, {"sh1_bits": 0}):
        with pytest.raises(ValueError):
            encode_spz(scene, **kw)


def test_sh_bits_options():
    scene = synthetic(3000, 2, seed=11)
    back = read_spz_bytes(encode_spz(scene, sh1_bits=8, sh_rest_bits=8)[0])
    err = max_errors(back, flip_yz(scene))
    assert err["sh1"] <= 1 / 128 + 1e-7 and err["sh23"] <= 1 / 128 + 1e-7
    raw = unpack_spz(encode_spz(scene, sh1_bits=3, sh_rest_bits=2)[0]).sh.reshape(-1, 8, 3)
    assert set(np.unique(raw[:, :3]) % 32) <= {0, 31} and set(np.unique(raw[:, 3:]) % 64) <= {0, 63}


def test_atomic_write_keeps_existing_file(tmp_path, monkeypatch):
    p = tmp_path / "keep.spz"
    p.write_bytes(b"old contents")
    bad = synthetic(50, 0)
    bad.log_scales[0, 0] = np.nan
    with pytest.raises(SceneError):
        write_spz(bad, p)
    assert p.read_bytes() == b"old contents"

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OutputError, match="No space left"):
        write_spz(synthetic(50, 0), p)
    assert p.read_bytes() == b"old contents"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.spz"]  # no temporary file left
    monkeypatch.undo()
    with pytest.raises(OutputError):
        write_spz(synthetic(5, 0), tmp_path / "no-such-folder" / "a.spz")
    assert not (tmp_path / "new.spz").exists()


# ------------------------------------------------------------------------------------------------ biker.spz
def test_reencoding_biker_reproduces_its_codes():
    """decode -> encode of the committed PlayCanvas biker.spz (v4, SH 0) as v3 and v4 gives back every stored code
    except the rotations of Gaussians whose two largest quaternion components are a near tie: the decoder rebuilds
    the largest component from the other three, and when that comes out a hair below the second largest the
    encoder picks the other one as largest (3 of 152,746 here); those decode within the rotation bound."""
    original = unpack_spz(BIKER.read_bytes())
    scene = read_spz(BIKER)
    for version in (3, 4):
        data, rep = encode_spz(scene, version=version)
        assert rep.clamped == {} and not any("flip_yz" in note for note in rep.notes)
        raw = unpack_spz(data)
        assert (raw.version, raw.fractional_bits, raw.flags, raw.sh_degree) == (version, 12, 0, 0)
        for name in ("positions", "alphas", "colors", "scales", "sh"):
            np.testing.assert_array_equal(getattr(raw, name), getattr(original, name), err_msg=name)
        differ = np.nonzero((raw.rotations != original.rotations).any(axis=1))[0]
        assert len(differ) <= 5, len(differ)
        q = np.abs(scene.quats[differ] / np.linalg.norm(scene.quats[differ], axis=1, keepdims=True))
        top2 = np.sort(q, axis=1)[:, -2:]
        assert np.all(top2[:, 1] - top2[:, 0] < np.sqrt(0.5) / 511)  # near ties, within one step
        back = read_spz_bytes(data)
        assert max_errors(back, scene)["quats"] <= BOUNDS["quats"]


# ------------------------------------------------------------------------------------------------ splat-transform
@pytest.mark.skipif(splat_transform() is None, reason="splat-transform not installed (EXGS_SPLAT_TRANSFORM)")
def test_splat_transform_reads_ours_and_writes_what_we_write(tmp_path):
    """Independent check with PlayCanvas splat-transform (3.10.2), whose SPZ writer is the Niantic library compiled
    to WebAssembly. It writes and reads SPZ without any axis conversion (``from: UNSPECIFIED``): a PLY's values go
    into the SPZ as they are, and an SPZ's stored values come out into the PLY as they are. So:

    * our SPZ of a PLY-axes scene S stores flip_yz(S) (RUB); splat-transform's PLY of it holds flip_yz(S);
    * splat-transform's SPZ of S's PLY stores S itself; our reader gives S (labelled as stored);
    * packing S as stored (no flip) ourselves gives the very same codes as splat-transform's (the same quantiser).
    """
    from exgs_core.io.ply import write_ply

    scene = synthetic(3000, 3, seed=12)
    write_ply(scene, tmp_path / "s.ply")
    stored = scene.copy()
    stored.meta["coordinate_system"] = _CS_STORED
    for version in (4, 3):
        ours = tmp_path / f"ours{version}.spz"
        write_spz(scene, ours, version=version)
        run_splat_transform(ours, tmp_path / f"ours{version}.ply")
        theirs_decode = ply_scene(tmp_path / f"ours{version}.ply")
        assert_within(theirs_decode, flip_yz(scene))
        ours_decode = read_spz(ours)  # the same dequantisation: agrees to float rounding
        assert max_errors(theirs_decode, ours_decode)["means"] < 1e-6

        theirs = tmp_path / f"theirs{version}.spz"
        run_splat_transform("--spz-version", version, tmp_path / "s.ply", theirs)
        raw = unpack_spz(theirs.read_bytes())
        assert raw.version == version and raw.fractional_bits == 12
        assert_within(read_spz(theirs), scene)
        mine = unpack_spz(encode_spz(stored, version=version)[0])
        for name in ("positions", "alphas", "colors", "scales", "rotations", "sh"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(raw, name), err_msg=f"v{version} {name}")


def test_splat_transform_lookup_honours_env(monkeypatch, tmp_path):
    fake = tmp_path / "st"
    fake.write_text("")
    monkeypatch.setenv("EXGS_SPLAT_TRANSFORM", str(fake))
    assert splat_transform() == fake
    monkeypatch.setenv("EXGS_SPLAT_TRANSFORM", str(tmp_path / "missing"))
    assert splat_transform() is None
