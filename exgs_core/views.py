"""Views to render from: the cameras of a 3DGS training run (``cameras.json``), or automatic views.

Automatic views, the rule (tested in ``tests/test_views.py``):

1. **Frame.** Centre ``c`` = per-axis median of the finite Gaussian centres. Radius ``r`` = the 90th percentile of
   the distances of the centres from ``c`` (floaters do not inflate it). Up = the caller's up vector, else the
   reader's ``scene.up`` when the format pins its axes (SPZ is right-up-back: +y), else ``-y``
   (3DGS/COLMAP PLY, .splat and the PlayCanvas formats are y-down).
2. **Object or room.** A scene is a *room* (views from inside, looking out) when it is hollow around its centre
   and encloses it: fewer than 5 % of the centres lie within ``0.3 r`` of ``c``, **and** in every one of 64
   evenly spread directions (a Fibonacci sphere) at least 0.1 % of the other centres lie within 30 degrees of
   that direction as seen from ``c`` (no empty cone: a ring or a bowl has one, a room does not). Otherwise it
   is an *object* (views from outside, looking at ``c``). Callers can force ``mode="orbit"`` or ``"inside"``.
3. **Orbit (objects).** ``n`` cameras on a spiral around ``c``: elevation (angle above the horizontal plane, towards
   up) goes linearly from -15 to +60 degrees, azimuth advances by the golden angle; distance ``r / sin(fov/2) * 1.05``
   with ``fov`` the smaller of the horizontal and vertical fields of view (default vertical 50 degrees), so the
   radius-``r`` sphere fits the frame. Every camera looks at ``c`` with up pointing up in the image.
4. **Inside-out (rooms).** ``n`` cameras at ``c`` (each displaced by up to ``0.1 r`` along its own viewing direction's
   opposite), looking outwards along the same spiral of directions (elevation -30..+45 degrees), vertical fov 70.
5. **Held-out evaluation views differ from the decision views.** ``split="train"`` uses spiral positions
   ``i + 0.25``, ``split="eval"`` uses ``i + 0.75`` (same count, interleaved, never the same pose) and an azimuth
   offset of half the golden angle. Compression scores on ``train`` views; ``exgs eval`` measures on ``eval`` views.
   ``split="check"`` (positions ``i + 0.5``, azimuth offset a quarter of the golden angle) is a third, disjoint set:
   compression judges its own choices on it, because judging on the views it scored on favours rules that drop
   what those views do not see.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from .camera import Camera
from .errors import CameraError
from .scene import GaussianScene

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
#: ``train``: the views compression scores on; ``check``: the views it judges its own choices on (merge rule, codec,
#: SH share), never scored on; ``eval``: held-out views for ``exgs eval`` and the benchmarks, never used by compression.
SPLITS = ("train", "eval", "check")
DEFAULT_UP = (0.0, -1.0, 0.0)
_MAX_CAMERAS_JSON_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SceneFrame:
    """Where a scene is: ``center`` [3], ``radius`` (world units), ``up`` [3] unit, and ``kind`` ("orbit"/"inside")."""

    center: np.ndarray
    radius: float
    up: np.ndarray
    kind: str


def fibonacci_sphere(n: int) -> np.ndarray:
    """float64 [n, 3] unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    rho = np.sqrt(1 - z * z)
    a = GOLDEN_ANGLE * i
    return np.stack([rho * np.cos(a), rho * np.sin(a), z], axis=1)


def _encloses(d: np.ndarray, cone_deg: float = 30.0, min_frac: float = 0.001) -> bool:
    """True when every one of 64 Fibonacci directions has >= ``min_frac`` of the unit directions ``d`` [M, 3]
    within ``cone_deg`` of it (no empty cone around the centre)."""
    if len(d) == 0:
        return False
    cos = fibonacci_sphere(64) @ d.T  # [64, M]
    frac = (cos > np.cos(np.radians(cone_deg))).mean(axis=1)
    return bool(frac.min() >= min_frac)


def scene_up(scene: GaussianScene) -> np.ndarray:
    """float64 [3] the up direction the scene's format implies: ``scene.up`` when a reader (SPZ as stored is
    right-up-back: +y) or the user set it, else -y."""
    return np.asarray(DEFAULT_UP if scene.up is None else scene.up, np.float64)


def scene_frame(scene: GaussianScene, up=None, mode: str = "auto") -> SceneFrame:
    """Centre, radius, up and object/room decision of ``scene`` by the rule in the module docstring."""
    if mode not in ("auto", "orbit", "inside"):
        raise ValueError(f"mode must be 'auto', 'orbit' or 'inside', got {mode!r}")
    up = scene_up(scene) if up is None else np.asarray(up, np.float64)
    if up.shape != (3,) or np.linalg.norm(up) < 1e-12:
        raise CameraError(f"up must be a non-zero 3-vector, got {up}")
    up = up / np.linalg.norm(up)
    m = scene.means[np.isfinite(scene.means).all(axis=1)].astype(np.float64)
    if len(m) == 0:
        return SceneFrame(np.zeros(3), 1.0, up, "orbit" if mode == "auto" else mode)
    if len(m) > 200_000:  # statistics on a fixed, seeded sample keep this O(1) for huge scenes
        m = m[np.random.default_rng(0).choice(len(m), 200_000, replace=False)]
    c = np.median(m, axis=0)
    dist = np.linalg.norm(m - c, axis=1)
    r = float(np.quantile(dist, 0.9))
    if not r > 1e-9:
        r = max(float(dist.max()), 1e-3)
    kind = mode
    if mode == "auto":
        near_frac = float((dist < 0.3 * r).mean())
        far = dist > 0.3 * r
        hollow = near_frac < 0.05
        sub = np.flatnonzero(far)[:20_000]  # a fixed prefix of the (already sampled) points bounds the cost
        kind = "inside" if hollow and _encloses((m[sub] - c) / dist[sub, None]) else "orbit"
    return SceneFrame(c, r, up, kind)


def _spiral(n: int, split: str, elev_lo: float, elev_hi: float) -> np.ndarray:
    """Unit directions [n, 3] in a local frame (z = up): the spiral of the module docstring."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    off = {"train": 0.25, "eval": 0.75, "check": 0.5}[split]
    az0 = {"train": 0.0, "eval": GOLDEN_ANGLE / 2, "check": GOLDEN_ANGLE / 4}[split]
    t = (np.arange(n) + off) / max(n, 1)
    elev = np.radians(elev_lo + (elev_hi - elev_lo) * t)
    az = az0 + GOLDEN_ANGLE * (np.arange(n) + off)
    return np.stack([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)], axis=1)


def _basis(up: np.ndarray) -> np.ndarray:
    """[3, 3] columns (a, b, up): an orthonormal frame with up as the third axis."""
    a = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 0, 1.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    return np.stack([a, b, up], axis=1)


def auto_views(
    scene: GaussianScene,
    n: int,
    width: int = 512,
    height: int = 512,
    *,
    split: str = "train",
    mode: str = "auto",
    up=None,
    fov_y_deg: float | None = None,
) -> list[Camera]:
    """``n`` automatic cameras for ``scene`` by the rule in the module docstring.

    Args:
        scene: the scene to frame.
        n: number of views (>= 1).
        width, height: image size in pixels.
        split: ``"train"`` (views for compression decisions) or ``"eval"`` (held-out views, never the same poses).
        mode: ``"auto"`` (object/room decision), ``"orbit"`` or ``"inside"``.
        up: world up direction [3] (default: :func:`scene_up`).
        fov_y_deg: vertical field of view; default 50 (orbit) or 70 (inside).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    fr = scene_frame(scene, up, mode)
    basis = _basis(fr.up)
    cams = []
    if fr.kind == "orbit":
        fov_y = fov_y_deg or 50.0
        fov_x = math.degrees(2 * math.atan(math.tan(math.radians(fov_y) / 2) * width / height))
        half = math.radians(min(fov_x, fov_y)) / 2
        dist = fr.radius / math.sin(half) * 1.05
        dirs = _spiral(n, split, -15.0, 60.0) @ basis.T
        for i, d in enumerate(dirs):
            eye = fr.center + d * dist
            cams.append(
                Camera.look_at(
                    eye,
                    fr.center,
                    fr.up,
                    fov_y,
                    width,
                    height,
                    near=max(1e-3, dist * 1e-3),
                    far=max(1e10, dist * 1e4),
                    name=f"{split}_orbit_{i:03d}",
                )
            )
    else:
        fov_y = fov_y_deg or 70.0
        dirs = _spiral(n, split, -30.0, 45.0) @ basis.T
        for i, d in enumerate(dirs):
            eye = fr.center - d * (0.1 * fr.radius)
            cams.append(
                Camera.look_at(
                    eye,
                    eye + d,
                    fr.up,
                    fov_y,
                    width,
                    height,
                    near=max(1e-3, fr.radius * 1e-3),
                    far=max(1e10, fr.radius * 1e4),
                    name=f"{split}_inside_{i:03d}",
                )
            )
    return cams


def load_cameras_json(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> list[Camera]:
    """Cameras of a 3DGS training run's ``cameras.json`` (graphdeco format).

    Each entry has ``width``, ``height``, ``position`` [3] (camera centre), ``rotation`` [3][3] (camera-to-world
    rotation, OpenCV axes, rows), ``fx``, ``fy`` and ``img_name``; the principal point is the image centre.
    ``width``/``height`` rescale every camera (intrinsics scaled per axis).

    Raises:
        CameraError: naming the file, the entry and the field at fault.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > _MAX_CAMERAS_JSON_BYTES:
            raise CameraError(f"file is {size} bytes; cameras.json larger than 256 MiB is not plausible", path)
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise CameraError("no such file", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CameraError(f"not valid JSON: {e}", path) from None
    if not isinstance(data, list) or not data:
        raise CameraError("expected a non-empty JSON list of cameras", path)
    cams = []
    for i, item in enumerate(data):
        where = f"camera #{i}"
        try:
            if not isinstance(item, dict):
                raise CameraError(f"{where}: expected an object")
            w, h = _whole(item["width"], "width"), _whole(item["height"], "height")
            rot = np.asarray(item["rotation"], np.float64)
            pos = np.asarray(item["position"], np.float64)
            fx, fy = float(item["fx"]), float(item["fy"])
        except KeyError as k:
            raise CameraError(f"{where}: missing field {k}", path) from None
        except (TypeError, ValueError, OverflowError) as err:
            raise CameraError(f"{where}: bad value: {err}", path) from None
        if rot.shape != (3, 3) or pos.shape != (3,):
            raise CameraError(f"{where}: rotation must be 3x3 and position 3, got {rot.shape} and {pos.shape}", path)
        if not (np.isfinite(rot).all() and np.isfinite(pos).all()):
            raise CameraError(f"{where}: non-finite rotation or position", path)
        if abs(np.linalg.det(rot) - 1) > 1e-3:
            raise CameraError(f"{where}: rotation is not a rotation matrix (det {np.linalg.det(rot):.4f})", path)
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rot, pos
        try:
            cam = Camera(np.linalg.inv(c2w), fx, fy, w / 2, h / 2, w, h, name=str(item.get("img_name", i)))
        except CameraError as err:
            raise CameraError(f"{where}: {err.detail}", path) from None
        if width or height:
            W = width or round(w * (height or 0) / h)
            H = height or round(h * (width or 0) / w)
            cam = cam.resized(W, H)
        cams.append(cam)
    return cams


def _whole(v, name: str) -> int:
    """A JSON image size: an integer (or an integral float such as 1920.0); never silently truncated."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, got {v!r}")
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        raise ValueError(f"{name} must be a whole number of pixels, got {v!r}")
    return int(v)


def save_cameras_json(cameras: list[Camera], path: str | os.PathLike) -> None:
    """Write cameras in the 3DGS ``cameras.json`` format (centred principal point assumed)."""
    from .io.atomic import atomic_write

    out = []
    for i, c in enumerate(cameras):
        c2w = c.camera_to_world
        out.append(
            {
                "id": i,
                "img_name": c.name or f"view_{i:04d}",
                "width": c.width,
                "height": c.height,
                "position": c2w[:3, 3].tolist(),
                "rotation": c2w[:3, :3].tolist(),
                "fx": c.fx,
                "fy": c.fy,
            }
        )
    with atomic_write(path, "w") as f:
        json.dump(out, f, indent=1)


def split_views(cameras: list[Camera], hold_every: int = 8) -> tuple[list[Camera], list[Camera]]:
    """(train, test) split of given cameras as the 3DGS papers do: sorted by name, every ``hold_every``-th
    (index % hold_every == 0) is held out for evaluation."""
    cams = sorted(cameras, key=lambda c: c.name)
    test = [c for i, c in enumerate(cams) if i % hold_every == 0]
    train = [c for i, c in enumerate(cams) if i % hold_every != 0]
    return train, test
