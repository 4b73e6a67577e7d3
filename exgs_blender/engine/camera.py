"""Blender cameras and viewports -> exgs_core cameras (OpenCV). Pure functions of plain values where possible."""

from __future__ import annotations

import numpy as np

from exgs_core.camera import FLIP_YZ, Camera
from exgs_core.errors import CameraError

ORTHO_DISTANCE = 1000.0  # orthographic = a pinhole this many ortho_scales behind the view (relative error ~1e-3)


def render_size(render) -> tuple[int, int]:
    """(W, H) in pixels of ``scene.render`` with ``resolution_percentage`` applied."""
    pct = render.resolution_percentage / 100.0
    return max(1, int(render.resolution_x * pct)), max(1, int(render.resolution_y * pct))


def camera_from_object(cam_ob, render, width: int | None = None, height: int | None = None) -> Camera:
    """exgs Camera for a Blender camera object (perspective; orthographic approximated) and render settings.

    Raises:
        CameraError: the object is not a camera or is a panoramic camera.
    """
    if cam_ob is None or cam_ob.type != "CAMERA":
        raise CameraError("the scene has no active camera (Scene > Camera)")
    cam = cam_ob.data
    if width is None or height is None:
        width, height = render_size(render)
    aspect = render.pixel_aspect_x / render.pixel_aspect_y
    mw = np.array(cam_ob.matrix_world, dtype=np.float64)
    common = dict(
        sensor_width_mm=cam.sensor_width,
        sensor_height_mm=cam.sensor_height,
        sensor_fit=cam.sensor_fit,
        shift_x=cam.shift_x,
        shift_y=cam.shift_y,
        width=width,
        height=height,
        pixel_aspect=aspect,
        name=cam_ob.name,
    )
    if cam.type == "PERSP":
        return Camera.from_blender(mw, lens_mm=cam.lens, clip_start=cam.clip_start, clip_end=cam.clip_end, **common)
    if cam.type == "ORTHO":
        # A far pinhole with the matching field of view: lens/sensor = distance/ortho_scale.
        d = ORTHO_DISTANCE * cam.ortho_scale
        sensor = common["sensor_width_mm"] if common["sensor_fit"] != "VERTICAL" else common["sensor_height_mm"]
        lens = sensor * d / cam.ortho_scale
        m = mw.copy()
        m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0)
        m[:3, 3] += m[:3, 2] * d  # back along the view axis (Blender cameras look down -Z)
        return Camera.from_blender(m, lens_mm=lens, clip_start=d + cam.clip_start, clip_end=d + cam.clip_end, **common)
    raise CameraError(f"camera {cam_ob.name!r} is {cam.type}; the EXGS engine renders perspective and orthographic")


def camera_from_view(
    view_matrix,
    window_matrix,
    width: int,
    height: int,
    is_perspective: bool = True,
    near: float = 0.01,
    far: float = 1e10,
) -> Camera:
    """exgs Camera for a 3D viewport region: ``view_matrix`` (world -> OpenGL view) and ``window_matrix`` (P).

    fx = W P00 / 2, fy = H P11 / 2, cx = W (1 - P02) / 2, cy = H (1 + P12) / 2 (v from the top); OpenCV
    world-to-camera = diag(1, -1, -1, 1) @ V. Orthographic views become a far pinhole.
    """
    V = np.array(view_matrix, dtype=np.float64)
    P = np.array(window_matrix, dtype=np.float64)
    fx, fy = 0.5 * width * P[0, 0], 0.5 * height * P[1, 1]
    cx, cy = 0.5 * width * (1 - P[0, 2]), 0.5 * height * (1 + P[1, 2])
    w2c = FLIP_YZ @ V
    if not is_perspective:
        # P00 = 2/width_world: put a pinhole at distance d with fx = W/2 * P00 * d
        d = 1000.0 * 2.0 / max(P[0, 0], 1e-9)
        fx, fy = fx * d, fy * d
        cx, cy = 0.5 * width * (1 + P[0, 3]), 0.5 * height * (1 - P[1, 3])
        w2c = w2c.copy()
        w2c[2, 3] += d
        near, far = d * 0.01, d * 10.0
    return Camera(w2c, fx, fy, cx, cy, width, height, near=near, far=far)
