"""Analytic checks of the CPU renderer (exgs_core.render, backend="cpu"): one or a few Gaussians with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exgs_core import Camera, GaussianScene
from exgs_core.camera import look_at_c2w
from exgs_core.conventions import SH_C0, SH_C1, logit, rgb_to_sh_dc
from exgs_core.errors import BackendUnavailable
from exgs_core.render import (
    ALPHA_MAX,
    ALPHA_THRESHOLD,
    EPS2D,
    RenderResult,
    has_gsplat,
    render,
    render_many,
    sh_to_color,
)

W, H, F = 64, 48, 50.0


def cam(cx=W / 2 + 0.5, cy=H / 2 + 0.5, w=W, h=H, f=F, w2c=None) -> Camera:
    """Camera at the origin looking along +z (identity world-to-camera); by default the principal point sits on the
    centre of pixel (32, 24), so a Gaussian on the axis projects exactly onto that pixel centre."""
    return Camera(np.eye(4) if w2c is None else w2c, f, f, cx, cy, w, h)


def scene_of(means, opacities, rgbs, scales=0.05, quats=None, sh_rest=None) -> GaussianScene:
    """Isotropic Gaussians: means [N, 3], opacities [N] in (0, 1], base colours [N, 3], one scale or [N]."""
    means = np.asarray(means, np.float32).reshape(-1, 3)
    n = len(means)
    q = np.tile([1.0, 0, 0, 0], (n, 1)) if quats is None else quats
    ls = np.log(np.broadcast_to(np.asarray(scales, np.float64).reshape(-1, 1), (n, 3)))
    ol = logit(np.asarray(opacities, np.float64), eps=1e-9)
    dc = rgb_to_sh_dc(np.asarray(rgbs, np.float32).reshape(n, 3))
    sh = dc[:, None, :] if sh_rest is None else np.concatenate([dc[:, None, :], sh_rest], axis=1)
    return GaussianScene(means, q, ls, ol, sh)


def r_cpu(scene, camera, **kw) -> RenderResult:
    return render(scene, camera, backend="cpu", **kw)


def sigma2_px(scale, z, f=F):
    """Variance in pixels^2 of an isotropic Gaussian on the optical axis, including the 0.3 dilation."""
    return (f * scale / z) ** 2 + EPS2D


# --------------------------------------------------------------------------- single Gaussian


def test_centre_pixel_alpha_and_colour():
    s = scene_of([[0, 0, 5]], [0.8], [[0.2, 0.6, 0.9]])
    res = r_cpu(s, cam())
    assert res.rgb.shape == (H, W, 3) and res.rgb.dtype == np.float32
    assert res.alpha.shape == (H, W) and res.depth.shape == (H, W)
    assert res.backend == "cpu" and res.n_rendered == 1
    assert res.alpha[24, 32] == pytest.approx(0.8, abs=1e-6)
    colour = SH_C0 * s.sh[0, 0] + 0.5
    np.testing.assert_allclose(res.rgb[24, 32], 0.8 * colour, atol=1e-6)
    np.testing.assert_allclose(colour, [0.2, 0.6, 0.9], atol=1e-6)
    assert res.depth[24, 32] == pytest.approx(5.0, rel=1e-6)


def test_centred_camera_pixel_offset():
    """With cx = W/2 the mean lands on a pixel corner: the four central pixels see d = (0.5, 0.5)."""
    s = scene_of([[0, 0, 5]], [0.8], [[1, 1, 1]])
    res = r_cpu(s, cam(cx=W / 2, cy=H / 2))
    s2 = sigma2_px(0.05, 5.0)
    expect = 0.8 * math.exp(-0.5 * 0.5 / s2)
    for py, px in [(23, 31), (23, 32), (24, 31), (24, 32)]:
        assert res.alpha[py, px] == pytest.approx(expect, abs=1e-6)


def test_falloff_includes_dilation():
    scale, z, op = 0.2, 4.0, 0.9
    s = scene_of([[0, 0, z]], [op], [[1, 1, 1]], scales=scale)
    res = r_cpu(s, cam())
    s2 = sigma2_px(scale, z)
    for dx in range(0, 12):
        a = op * math.exp(-0.5 * dx * dx / s2)
        expect = a if a >= ALPHA_THRESHOLD else 0.0
        assert res.alpha[24, 32 + dx] == pytest.approx(expect, abs=1e-6), dx
        assert res.alpha[24 + min(dx, 23), 32] == pytest.approx(expect, abs=1e-6), dx  # isotropic: same along y
    # diagonal: r^2 = 2 dx^2
    assert res.alpha[27, 35] == pytest.approx(op * math.exp(-0.5 * 18 / s2), abs=1e-6)
    # the dilation matters: without it the value would differ clearly
    assert abs(res.alpha[24, 35] - op * math.exp(-0.5 * 9 / (s2 - EPS2D))) > 1e-3


def test_alpha_cutoff_1_over_255():
    """Pixels whose alpha falls below 1/255 get nothing; just above, they get alpha."""
    scale, z = 0.2, 4.0
    s2 = sigma2_px(scale, z)
    dx = 5
    # opacity so that alpha at dx is 0.9 * 1/255 and 1.1 * 1/255
    for factor, drawn in [(0.9, False), (1.1, True)]:
        op = factor * ALPHA_THRESHOLD * math.exp(0.5 * dx * dx / s2)
        assert op < 0.99
        res = r_cpu(scene_of([[0, 0, z]], [op], [[1, 1, 1]], scales=scale), cam())
        if drawn:
            assert res.alpha[24, 32 + dx] == pytest.approx(factor * ALPHA_THRESHOLD, rel=1e-4)
        else:
            assert res.alpha[24, 32 + dx] == 0.0
            assert res.alpha[24, 32 + dx - 1] > 0.0


def test_low_opacity_culled():
    res = r_cpu(scene_of([[0, 0, 5]], [0.9 / 255], [[1, 1, 1]]), cam(), return_weights=True)
    assert res.n_rendered == 0 and res.alpha.max() == 0.0 and res.weights[0] == 0.0


def test_alpha_clamp_is_0_999():
    """gsplat 1.x clamps alpha at 0.999 (the Inria 3DGS code uses 0.99)."""
    res = r_cpu(scene_of([[0, 0, 5]], [1.0], [[1, 1, 1]]), cam())
    assert res.alpha[24, 32] == pytest.approx(ALPHA_MAX, abs=1e-6)
    assert ALPHA_MAX == 0.999


# --------------------------------------------------------------------------- several Gaussians


def test_front_to_back_order():
    red, blue = [1.0, 0, 0], [0, 0, 1.0]
    a = r_cpu(scene_of([[0, 0, 4], [0, 0, 6]], [0.5, 0.5], [red, blue]), cam())
    b = r_cpu(scene_of([[0, 0, 6], [0, 0, 4]], [0.5, 0.5], [red, blue]), cam())
    np.testing.assert_allclose(a.rgb[24, 32], [0.5, 0, 0.25], atol=1e-5)
    np.testing.assert_allclose(b.rgb[24, 32], [0.25, 0, 0.5], atol=1e-5)
    assert a.alpha[24, 32] == pytest.approx(0.75, abs=1e-6)
    # expected depth = (0.5 * 4 + 0.25 * 6) / 0.75
    assert a.depth[24, 32] == pytest.approx((0.5 * 4 + 0.25 * 6) / 0.75, rel=1e-5)


def test_depth_order_is_a_stable_sort_by_depth():
    """Front-to-back order of the visible Gaussians: by float32 depth, ties by index, the invisible left out (the
    radix sort gives the order of numpy's sort of depth-bits << 32 | index keys), also with every depth equal, no
    visible Gaussian, or depths spanning many octaves."""
    from exgs_core.render.cpu import _visible_depth_order

    rng = np.random.default_rng(3)
    cases = [
        rng.uniform(0.1, 50.0, 5000).astype(np.float32),
        np.full(300, 2.5, np.float32),
        np.exp(rng.uniform(-9, 9, 4000)).astype(np.float32),
        rng.choice(np.float32([1.0, 1.5, 7.25]), 999),
    ]
    for depth in cases:
        radii = np.where(rng.random((depth.size, 2)) < 0.2, 0, 3).astype(np.int32)
        vis = np.flatnonzero((radii[:, 0] > 0) | (radii[:, 1] > 0))
        want = vis[np.lexsort((vis, depth[vis]))].astype(np.int32)
        got = _visible_depth_order(radii, depth)
        assert got.dtype == np.int32 and np.array_equal(got, want)
    assert _visible_depth_order(np.zeros((5, 2), np.int32), np.ones(5, np.float32)).size == 0


def test_transmittance_stop():
    """T: 1 -> 0.05 -> 0.0025 -> 1.25e-4 (> 1e-4, drawn) -> 6.25e-6 (<= 1e-4: the pixel stops, not drawn)."""
    z = np.array([3.0, 3.5, 4.0, 4.5, 5.0])
    cols = np.eye(3)[[0, 1, 2, 0, 1]] * 0.5 + 0.25
    s = scene_of(np.stack([np.zeros(5), np.zeros(5), z], 1), [0.95] * 5, cols, scales=0.5)
    res = r_cpu(s, cam(), return_weights=True)
    t = [1.0, 0.05, 0.0025]
    expect = sum(0.95 * t[i] * cols[i] for i in range(3))
    np.testing.assert_allclose(res.rgb[24, 32], expect, atol=1e-6)
    assert res.alpha[24, 32] == pytest.approx(1 - 1.25e-4, abs=1e-6)
    # the fourth and fifth Gaussians still draw away from the centre, where the alphas are lower
    assert res.weights[3] > 0 and res.weights[4] > 0


def test_sh_degree1_view_dependence():
    """SH basis term for x is -C1 * x * sh[3]; with sh[3] = -1 on red, red grows when the view ray points along +x."""
    rest = np.zeros((1, 3, 3), np.float32)
    rest[0, 2, 0] = -1.0  # sh index 3 (x), red
    s = scene_of([[0, 0, 0]], [0.9], [[0.5, 0.5, 0.5]], sh_rest=rest)

    def view_from(eye):
        c2w = look_at_c2w(eye, [0, 0, 0], [0, -1, 0])
        return cam(w2c=np.linalg.inv(c2w))

    from_minus_x = r_cpu(s, view_from([-5.0, 0, 0]))  # ray direction mean - campos = +x
    from_plus_x = r_cpu(s, view_from([5.0, 0, 0]))  # ray direction -x
    c_minus = from_minus_x.rgb[24, 32] / from_minus_x.alpha[24, 32]
    c_plus = from_plus_x.rgb[24, 32] / from_plus_x.alpha[24, 32]
    assert c_minus[0] == pytest.approx(0.5 + SH_C1, abs=1e-5)
    assert c_plus[0] == pytest.approx(0.5 - SH_C1, abs=1e-5)
    np.testing.assert_allclose(c_minus[1:], [0.5, 0.5], atol=1e-5)
    # sh_degree=0 ignores the view-dependent part
    flat = r_cpu(s, view_from([-5.0, 0, 0]), sh_degree=0)
    assert flat.rgb[24, 32, 0] / flat.alpha[24, 32] == pytest.approx(0.5, abs=1e-5)


def test_colour_clamped_at_zero_not_one():
    s = scene_of([[0, 0, 5]], [0.9], [[-1.0, 3.0, 0.5]])
    res = r_cpu(s, cam())
    c = res.rgb[24, 32] / res.alpha[24, 32]
    assert c[0] == pytest.approx(0.0, abs=1e-6) and c[1] == pytest.approx(3.0, abs=1e-5)


def test_background():
    bg = np.array([0.1, 0.2, 0.3], np.float32)
    s = scene_of([[0, 0, 5]], [0.6], [[1, 1, 1]])
    res = r_cpu(s, cam(), background=bg)
    np.testing.assert_allclose(res.rgb[0, 0], bg, atol=1e-7)
    np.testing.assert_allclose(res.rgb[24, 32], 0.6 * 1.0 + 0.4 * bg, atol=1e-6)
    grey = r_cpu(s, cam(), background=0.5)
    np.testing.assert_allclose(grey.rgb[0, 0], [0.5] * 3)


def test_antialiased_compensation_and_auto_mode():
    scale, z, op = 0.01, 5.0, 0.8
    s = scene_of([[0, 0, z]], [op], [[1, 1, 1]], scales=scale)
    s0 = (F * scale / z) ** 2
    comp = math.sqrt(s0 * s0 / ((s0 + EPS2D) ** 2))  # sqrt(det_orig / det_dilated), isotropic
    aa = r_cpu(s, cam(), rasterize_mode="antialiased")
    assert aa.alpha[24, 32] == pytest.approx(op * comp, abs=1e-6)
    s.antialiased = True
    auto = r_cpu(s, cam())
    assert auto.alpha[24, 32] == pytest.approx(op * comp, abs=1e-6)
    assert auto.stats["rasterize_mode"] == "antialiased"
    classic = r_cpu(s, cam(), rasterize_mode="classic")
    assert classic.alpha[24, 32] == pytest.approx(op, abs=1e-6)


# --------------------------------------------------------------------------- culling and robustness


def test_behind_camera_near_far_culled():
    s = scene_of([[0, 0, -5], [0, 0, 0.005], [0, 0, 50]], [0.9] * 3, [[1, 1, 1]] * 3)
    res = r_cpu(s, cam(), far=20.0)
    assert res.n_rendered == 0 and res.alpha.max() == 0.0
    assert r_cpu(s, cam()).n_rendered == 1  # default far = 1e10 keeps z = 50


def test_off_screen_culled():
    # x/z = 1.0 -> pixel 32.5 + 50 = 82.5, radius ~ 3 px: entirely right of a 64-px image
    s = scene_of([[5.0, 0, 5], [0, 0, 5]], [0.9, 0.9], [[1, 1, 1]] * 2, scales=0.01)
    res = r_cpu(s, cam(), return_weights=True)
    assert res.n_rendered == 1 and res.weights[0] == 0.0 and res.weights[1] > 0


def test_empty_scene():
    res = r_cpu(GaussianScene.empty(0), cam(), background=[0.2, 0.2, 0.2], return_weights=True)
    assert res.n_rendered == 0 and res.weights.shape == (0,)
    np.testing.assert_allclose(res.rgb, 0.2)
    assert (res.alpha == 0).all() and (res.depth == 0).all()


@pytest.mark.parametrize("field", ["means", "quats", "log_scales", "opacity_logits", "sh"])
def test_nonfinite_gaussians_are_culled(field):
    """NaN/Inf never crashes: such Gaussians are culled and the rest renders as if they were absent."""
    rng = np.random.default_rng(7)
    n = 40
    s = scene_of(
        rng.normal(0, 0.5, (n, 3)) + [0, 0, 5],
        rng.uniform(0.2, 0.9, n),
        rng.uniform(0, 1, (n, 3)),
        scales=rng.uniform(0.02, 0.2, n),
    )
    bad = s.copy()
    arr = getattr(bad, field)
    arr[3] = np.nan
    arr[7] = np.inf
    res = r_cpu(bad, cam(), return_weights=True)
    keep = np.ones(n, bool)
    keep[[3, 7]] = False
    if field == "opacity_logits":  # +inf logit = opacity 1.0, a legal value
        keep[7] = True
    ref = r_cpu(bad.subset(keep), cam())
    assert np.isfinite(res.rgb).all() and np.isfinite(res.alpha).all() and np.isfinite(res.weights).all()
    np.testing.assert_allclose(res.rgb, ref.rgb, atol=1e-6)
    assert res.weights[3] == 0.0


def test_zero_quaternion_culled():
    s = scene_of([[0, 0, 5]], [0.9], [[1, 1, 1]], quats=np.zeros((1, 4)))
    res = r_cpu(s, cam())
    assert res.n_rendered == 0


def test_unnormalised_quaternion_same_as_normalised():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(10, 4))
    s1 = scene_of(rng.normal(0, 0.3, (10, 3)) + [0, 0, 4], [0.7] * 10, rng.uniform(0, 1, (10, 3)), quats=q)
    s1.log_scales[:] = np.log(rng.uniform(0.01, 0.2, (10, 3)))
    s2 = s1.copy()
    s2.quats = (q / np.linalg.norm(q, axis=1, keepdims=True) * 7.0).astype(np.float32)
    np.testing.assert_allclose(r_cpu(s1, cam()).rgb, r_cpu(s2, cam()).rgb, atol=1e-6)


def test_weights_sum_equals_alpha_sum_and_odd_image_size():
    rng = np.random.default_rng(11)
    n = 200
    s = scene_of(
        rng.normal(0, 0.6, (n, 3)) + [0, 0, 5],
        rng.uniform(0.05, 1.0, n),
        rng.uniform(0, 1, (n, 3)),
        scales=rng.uniform(0.01, 0.3, n),
    )
    res = r_cpu(s, cam(w=37, h=29, cx=17.2, cy=15.9), return_weights=True)
    assert res.weights.dtype == np.float32 and res.weights.shape == (n,)
    assert (res.weights >= 0).all()
    total = float(res.alpha.astype(np.float64).sum())
    assert total > 10
    assert abs(float(res.weights.astype(np.float64).sum()) - total) <= 1e-4 * total
    # no weights or counts unless asked
    plain = r_cpu(s, cam())
    assert plain.weights is None and plain.counts is None


def test_counts_single_gaussian():
    """counts = number of pixels the Gaussian was blended into = pixels with alpha > 0 for a lone Gaussian."""
    res = r_cpu(scene_of([[0, 0, 4]], [0.9], [[1, 1, 1]], scales=0.2), cam(), return_counts=True, return_weights=True)
    assert res.counts.dtype == np.int32 and res.counts[0] == int((res.alpha > 0).sum()) > 50
    # two nearly opaque wide Gaussians stop every central pixel (T: 1 -> ~1e-3 -> stop at the second), so a small
    # Gaussian behind them is blended nowhere
    three = r_cpu(
        scene_of([[0, 0, 3], [0, 0, 3.5], [0, 0, 4]], [1.0, 1.0, 1.0], [[1, 1, 1]] * 3, scales=[3.0, 3.0, 0.05]),
        cam(),
        return_counts=True,
    )
    assert three.counts[0] == W * H and three.counts[2] == 0


# --------------------------------------------------------------------------- API


def test_options_validated():
    s = scene_of([[0, 0, 5]], [0.9], [[1, 1, 1]])
    with pytest.raises(ValueError):
        render(s, cam(), backend="vulkan")
    with pytest.raises(ValueError):
        render(s, cam(), backend="cpu", rasterize_mode="fancy")
    with pytest.raises(ValueError):
        render(s, cam(), backend="cpu", sh_degree=1)  # scene is SH0
    with pytest.raises(ValueError):
        render(s, cam(), backend="cpu", background=[1, 2])
    with pytest.raises(ValueError):
        render(s, cam(), backend="cpu", near=2.0, far=1.0)


@pytest.mark.skipif(has_gsplat(), reason="gsplat is available here")
def test_gsplat_missing_raises_backend_unavailable():
    s = scene_of([[0, 0, 5]], [0.9], [[1, 1, 1]])
    with pytest.raises(BackendUnavailable, match="pip install"):
        render(s, cam(), backend="gsplat")
    assert render(s, cam()).backend == "cpu"  # auto falls back


def test_render_many_matches_render():
    rng = np.random.default_rng(5)
    s = scene_of(rng.normal(0, 0.5, (30, 3)) + [0, 0, 5], [0.6] * 30, rng.uniform(0, 1, (30, 3)))
    cams = [cam(), cam(cx=20.0), cam(w=40, h=40, cx=20, cy=20)]
    seen = []
    many = render_many(s, cams, backend="cpu", progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    for c, r in zip(cams, many, strict=False):
        np.testing.assert_array_equal(r.rgb, r_cpu(s, c).rgb)


def test_sh_to_color_numpy_matches_inria_form():
    """The Sloan-form evaluation in exgs_core.render.sh equals the 3DGS (Inria) formulation of the same basis."""
    from render_oracle import sh_color_inria

    rng = np.random.default_rng(2)
    sh = rng.normal(0, 1, (50, 16, 3)).astype(np.float32)
    dirs = rng.normal(0, 1, (50, 3))
    for deg in range(4):
        np.testing.assert_allclose(
            sh_to_color(sh, dirs, deg), sh_color_inria(sh.astype(np.float64), dirs, deg), atol=2e-5
        )


def test_views_needing_more_memory_than_the_machine_are_a_render_error(monkeypatch):
    """The tile intersections are counted before they are allocated: a view that needs more than half the
    machine's memory is a RenderError saying how much (here the limit is lowered instead of building a scene that
    covers the screen a billion times), not an out-of-memory kill."""
    from exgs_core import RenderError, _machine

    n = 200
    s = scene_of(np.zeros((n, 3)) + [0, 0, 2.0], np.full(n, 0.5), np.full((n, 3), 0.5), scales=1.0)
    full = r_cpu(s, cam())
    assert full.alpha.max() > 0.9
    monkeypatch.setattr(_machine, "memory_limit", lambda: 1000)
    with pytest.raises(RenderError, match=r"64x48 view: 2,400 \(Gaussian, tile\) intersections need"):
        r_cpu(s, cam())


@pytest.mark.slow
def test_parallel_kernels_from_several_threads_under_the_workqueue_layer(tmp_path):
    """Blender compresses in a thread while its engine renders. Under numba's fallback threading layer
    (workqueue: pip numba without OpenMP/TBB, e.g. on macOS) concurrent parallel launches terminate the process;
    exgs_core._machine serialises them there. Three threads render at once in a subprocess forced onto workqueue."""
    import os
    import subprocess
    import sys

    from exgs_testpaths import DATA, REPO

    code = f"""
import sys, threading
sys.path.insert(0, {str(REPO)!r})
import exgs_core as ex
s = ex.load({str(DATA / "donut_sh0_2000.ply")!r})
cams = ex.views.auto_views(s, 4, 128, 128)
def job():
    for i in range(150):
        ex.render(s, cams[i % 4], backend="cpu")
ts = [threading.Thread(target=job) for _ in range(2)]
[t.start() for t in ts]; job(); [t.join() for t in ts]
import numba
print("ok", numba.threading_layer())
"""
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok workqueue" in r.stdout, (r.returncode, r.stderr[-1500:])
