"""The files exgs (and its peer, splat-transform) writes open in real web viewers and look like exgs's own render.

Each case serves one file with :mod:`exgs_core.viewer`, loads it in headless Chromium (software WebGL: SwiftShader
through ANGLE) in one of the pinned engines (Babylon.js 9.28 with Niantic's SPZ decoder, PlayCanvas 2.23, Spark 2.2),
takes the canvas at a fixed camera, and compares it with ``exgs_core.render.render(..., backend="cpu")`` of the same
camera. All pages run in one browser, one after another (~1 s of browser start-up in all).

Camera mapping (exact): our OpenCV camera's ``to_opengl_c2w()`` is the viewer camera's world matrix, and the
projection is built from fx, fy, cx, cy, near, far (vertical fov = 2 atan(H / 2 fy)); 320x240 canvas at pixel ratio
1, no MSAA, black background, colours written as stored (no sRGB transfer either side: on opaque grey discs Spark
and PlayCanvas return our 8-bit values within 1-2 levels; Babylon.js agrees with us to 46 dB on the probe). The page adds no axis conversion, so the reference is a scene in
the file's own stored axes:

* peer files and the shipped example: the file read back by exgs in stored axes (``read_stored``);
* our files: the **source** scene turned into the frame the writer documents (SPZ: right-up-back, ``flip_yz``; glTF:
  ``ply_to_gltf_axes``; SOG: as is), so a writer that put wrong axes, quaternions or SH signs into the file fails here
  even if our reader undid the same mistake. These cases use a synthetic probe scene (2,000 large, elongated, rotated
  Gaussians with degree-3 SH) on which the engines agree with us closely, so small errors are visible.

Tolerances (PSNR over the whole 320x240 image, 8-bit; measured values in brackets), and why:

* vs our render of the file as decoded (the engine and the camera mapping, no codec in between):
  Babylon.js >= 40 dB [44.6-46.3], Spark (against our ``antialiased`` mode: Spark always applies the mip-splatting
  opacity compensation) >= 38 dB [41.2], PlayCanvas >= 35 dB [38.2-38.4], all on the probe scene. Babylon packs
  rotations and colours into 8 bits per component; PlayCanvas stores scales as 8-bit logs and alpha in 8 bits and
  cuts each Gaussian at 2.83 sigma with a renormalised falloff; all sort per frame on the CPU and blend into an
  8-bit canvas.
* our files vs the source scene in the file's documented frame (writer + codec + engine): SPZ >= 33 dB [36.8-37.4],
  glTF >= 33 dB [38.4-46.3], SOG >= 29.5 dB [31.4-32.5] (SOG's k-means palettes cost the most). What these catch on
  the probe (our renders, deliberately broken): SH signs of the y/z flip left out 24.0 dB, SH coefficients in the
  wrong order 25.2, quaternion order xyzw-for-wxyz 26.3, conjugated quaternions 27.2, scale axes swapped 27.2, SH
  bands 2-3 lost 28.5, a display gamma 14.3.
* the real biker scene (peer files, the shipped example) vs our ``classic`` render: >= 28 dB [31.9-33.3], mean abs
  diff [1.15-1.40]/255. Most of its Gaussians cover under a pixel at this distance, and Babylon.js and PlayCanvas
  draw such a Gaussian into its centre pixel only (measured: a sigma = 0.2 px Gaussian deposits 0.80 of a pixel's
  worth of colour in both, 1.71 in gsplat's classic mode and 0.20 in its antialiased mode), so they render sub-pixel
  detail darker than gsplat; they agree with each other to 45 dB on the same file. What 28 dB still catches on this
  scene: a mirrored axis 21.7 dB, a display gamma 24.3 dB, the wrong file frame (nothing in view) < 20 dB; subtler
  mistakes are the probe's job.

Also checked: the page asked for nothing but the local server (and blob: URLs), and the engine saw every Gaussian.
Cost (2 shared cores): 3-4.5 s per biker page (152,746 Gaussians) and 1-1.7 s per probe page in SwiftShader, ~1 s
of browser start, ~10 s of splat-transform conversions: ~50 s for the module. Spark draws a 150k scene at ~3 s a
frame in SwiftShader, so it only gets the probe.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from exgs_testpaths import REPO

from exgs_core.camera import Camera
from exgs_core.conventions import SH_C0, logit
from exgs_core.render import render
from exgs_core.scene import GaussianScene
from exgs_core.views import auto_views

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = REPO / "examples" / "playcanvas_biker.spz"
SPLAT_TRANSFORM = REPO / ".tools" / "node_modules" / ".bin" / "splat-transform"
SIZE = (320, 240)

#: case id -> (scene, how the file is made, engine, reference render mode, min PSNR vs our render of the file as
#: decoded, min PSNR vs the source scene in the file's frame (our files only))
CASES = {
    "example-spz-v4/babylon": ("example", None, "babylon", "classic", 28.0, None),
    "splat-transform-spz-v3/babylon": ("peer", ".spz", "babylon", "classic", 28.0, None),
    "splat-transform-sog/playcanvas": ("peer", ".sog", "playcanvas", "classic", 28.0, None),
    "splat-transform-glb/playcanvas": ("peer", ".glb", "playcanvas", "classic", 28.0, None),
    "exgs-spz-v4/babylon": ("ours", "spz4", "babylon", "classic", 40.0, 33.0),
    "exgs-spz-v3/babylon": ("ours", "spz3", "babylon", "classic", 40.0, 33.0),
    "exgs-spz-v3/spark": ("ours", "spz3", "spark", "antialiased", 38.0, 33.0),
    "exgs-sog/playcanvas": ("ours", "sog", "playcanvas", "classic", 35.0, 29.5),
    "exgs-sog/babylon": ("ours", "sog", "babylon", "classic", 40.0, 29.5),
    "exgs-glb/playcanvas": ("ours", "glb", "playcanvas", "classic", 35.0, 33.0),
    "exgs-glb/babylon": ("ours", "glb", "babylon", "classic", 40.0, 33.0),
}


def probe_scene(n: int = 2000, seed: int = 7) -> GaussianScene:
    """A synthetic scene in 3DGS PLY axes that the engines draw almost as we do: n Gaussians filling a unit ball,
    each 2-8 px across at the test camera (no sub-pixel ones, which the engines draw differently), elongated (axes
    1 : 0.6 : 0.35), random rotations, opacity 0.3-0.9, DC colour 0.15-0.85 and degree-3 SH rest coefficients
    N(0, 0.12) (view-dependent colour, so SH sign or order mistakes change the image)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    means = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 1, (n, 1)) ** (1 / 3)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    size = np.exp(rng.normal(np.log(0.05), 0.25, (n, 1)))
    scales = size * np.array([1.0, 0.6, 0.35])
    sh = np.zeros((n, 16, 3), np.float32)
    sh[:, 0] = (rng.uniform(0.15, 0.85, (n, 3)) - 0.5) / SH_C0
    sh[:, 1:] = rng.normal(0, 0.12, (n, 15, 3))
    return GaussianScene(
        means.astype(np.float32),
        q.astype(np.float32),
        np.log(scales).astype(np.float32),
        logit(rng.uniform(0.3, 0.9, n)),
        sh,
    )


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 100.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def _camera(scene: GaussianScene, up) -> Camera:
    c = auto_views(scene, 1, *SIZE, split="eval", up=up, mode="orbit")[0]
    return Camera(c.world_to_camera, c.fx, c.fy, c.cx, c.cy, c.width, c.height, near=0.05, far=1000.0, name=c.name)


def _reference(scene: GaussianScene, cam: Camera, mode: str) -> np.ndarray:
    """float64 [H, W, 3] in [0, 1], rounded to 8 bits as the browser's canvas is."""
    rgb = render(scene, cam, backend="cpu", rasterize_mode=mode).rgb
    return np.round(np.clip(rgb, 0, 1) * 255) / 255


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not installed"
    if not shutil.which("node"):
        return "node not installed"
    from exgs_core.viewer import ViewerNotBuilt, check_built

    try:
        check_built()
    except ViewerNotBuilt as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case's file, reference and browser shot: one capture run for all. id -> dict."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from exgs_core.io import save
    from exgs_core.io.glb import ply_to_gltf_axes
    from exgs_core.io.spz import flip_yz
    from exgs_core.viewer import ViewerServer, capture, prepare, read_stored, view_dict, viewer_format

    t_start = time.perf_counter()
    d = tmp_path_factory.mktemp("browser")
    probe = probe_scene()
    made: dict[str, Path] = {}
    results: dict[str, dict] = {}

    def peer_file(ext: str) -> Path:
        out = d / f"biker_st{ext}"
        if out not in made.values():
            cmd = [str(SPLAT_TRANSFORM), "-q", "-w", "-g", "cpu"]
            cmd += ["--spz-version", "3"] if ext == ".spz" else []
            subprocess.run([*cmd, str(EXAMPLE), str(out)], check=True, capture_output=True, timeout=120)
        return out

    def our_file(kind: str) -> tuple[Path, GaussianScene]:
        ext = {"spz4": ".spz", "spz3": ".spz", "sog": ".sog", "glb": ".glb"}[kind]
        out = d / f"probe_{kind}{ext}"
        if not out.exists():
            save(probe, out, **({"version": 3} if kind == "spz3" else {}))
        frame = {"spz4": flip_yz, "spz3": flip_yz, "sog": lambda s: s, "glb": ply_to_gltf_axes}[kind]
        return out, frame(probe)

    servers, jobs = [], []
    try:
        for cid, (kind, how, engine, mode, _, _) in CASES.items():
            r: dict = {"engine": engine, "mode": mode}
            results[cid] = r
            try:
                if kind == "example":
                    path = EXAMPLE
                elif kind == "peer":
                    if not SPLAT_TRANSFORM.exists():
                        r["skip"] = f"{SPLAT_TRANSFORM} not installed (npm install @playcanvas/splat-transform)"
                        continue
                    path = peer_file(how)
                else:
                    path, source = our_file(how)
                decoded = read_stored(path, viewer_format(path))
                if kind == "ours":
                    r["reference_scene"] = source
                    cam = _camera(source, up=(0, 1, 0) if how != "sog" else (0, -1, 0))
                else:
                    r["reference_scene"] = decoded
                    cam = _camera(decoded, up=None)
                r.update(path=path, n=decoded.n, camera=cam, decoded=decoded)
                inp = prepare(path, engine=engine, views=0)
                srv = ViewerServer(inp).start()
                servers.append(srv)

                v = view_dict(cam)
                shot = d / (cid.replace("/", "_") + ".png")
                r["png"] = shot
                r["origin"] = srv.origin
                jobs.append(
                    {
                        "url": srv.page_url(still="1", view=json.dumps(v)),
                        "out": str(shot),
                        **dict(zip(("width", "height"), SIZE, strict=False)),
                    }
                )
                r["job"] = len(jobs) - 1
            except Exception as e:  # a writer that does not exist yet, a file it refuses: that case fails, not all
                r["setup_error"] = f"{type(e).__name__}: {e}"
        t_browser = time.perf_counter()
        report = capture(jobs, timeout=90)
        browser_s = time.perf_counter() - t_browser
    finally:
        for srv in servers:
            srv.close()

    from PIL import Image

    for r in results.values():
        if "job" not in r:
            continue
        r["report"] = report["jobs"][r["job"]]
        if r["report"].get("error"):
            continue
        shot = np.asarray(Image.open(r["png"]).convert("RGB"), np.float64) / 255
        ref = _reference(r["decoded"], r["camera"], r["mode"])
        r["psnr"] = _psnr(shot, ref)
        r["mad"] = float(np.abs(shot - ref).mean() * 255)
        if r["reference_scene"] is not r["decoded"]:
            r["psnr_source"] = _psnr(shot, _reference(r["reference_scene"], r["camera"], r["mode"]))
    results["_timing"] = {"total_s": time.perf_counter() - t_start, "browser_s": browser_s, "pages": len(jobs)}
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_file_opens_in_web_viewer_and_matches_our_render(runs, case):
    r = runs[case]
    if "skip" in r:
        pytest.skip(r["skip"])
    assert "setup_error" not in r, f"{case}: could not make or serve the file: {r['setup_error']}"
    rep = r["report"]
    assert not rep.get("error"), f"{case}: {rep.get('error')}; console: {rep.get('console')}"
    st = rep["state"]
    assert st["engine"] == r["engine"]
    # every Gaussian reached the engine (Babylon.js rounds its buffers up to a multiple of 16)
    assert r["n"] <= st["numSplats"] < r["n"] + 16, (st["numSplats"], r["n"])
    # nothing but the local server and the page's own blob: URLs
    foreign = [u for u in rep["requests"] if not (u.startswith(r["origin"] + "/") or u.startswith(("blob:", "data:")))]
    assert not foreign, f"{case}: the page fetched {foreign}"
    need, need_source = CASES[case][4:]
    detail = (
        f"{case}: PSNR {r['psnr']:.2f} dB vs our render of the file as decoded (need >= {need}), "
        f"mean abs diff {r['mad']:.2f}/255"
    )
    if need_source is not None:
        detail += f"; vs the source scene in the file's frame {r['psnr_source']:.2f} dB (need >= {need_source})"
    print(detail, f"[{rep['seconds']:.1f} s in the browser]")
    assert r["psnr"] >= need, detail
    if need_source is not None:
        assert r["psnr_source"] >= need_source, detail


def test_browser_checks_cost(runs):
    """Not a pass/fail on speed (the machine is shared); prints what the module cost, for the issue notes."""
    t = runs["_timing"]
    print(f"browser checks: {t['pages']} pages, {t['browser_s']:.1f} s in the browser, {t['total_s']:.1f} s in all")
    assert t["pages"] >= 1
