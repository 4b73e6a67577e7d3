import math

import numpy as np
import pytest

from exgs_core import Camera, CameraError
from exgs_core.camera import FLIP_YZ, look_at_c2w


def project(cam, p):
    x = cam.world_to_camera @ np.append(p, 1.0)
    return np.array([cam.fx * x[0] / x[2] + cam.cx, cam.fy * x[1] / x[2] + cam.cy]), x[2]


def test_look_at_puts_target_at_centre_and_up_at_top():
    cam = Camera.look_at([3, -1, 4], [0.5, 0.2, -0.3], [0, -1, 0], 50, 640, 480)
    uv, z = project(cam, np.array([0.5, 0.2, -0.3]))
    np.testing.assert_allclose(uv, [320, 240], atol=1e-9)
    assert z > 0
    # a point displaced along world up appears higher in the image (smaller v)
    uv_up, _ = project(cam, np.array([0.5, 0.2 - 0.1, -0.3]))
    assert uv_up[1] < 240
    r = cam.world_to_camera[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_fov_and_intrinsics():
    cam = Camera.look_at([0, 0, -5], [0, 0, 0], [0, -1, 0], 60, 800, 600)
    assert math.degrees(cam.fov_y) == pytest.approx(60)
    assert cam.K[0, 2] == 400 and cam.K[1, 2] == 300


def test_opengl_round_trip():
    cam = Camera.look_at([1, 2, 3], [0, 0, 0], [0, 0, 1], 40, 320, 200)
    gl = cam.to_opengl_c2w()
    # OpenGL camera looks along its -z
    np.testing.assert_allclose(-gl[:3, 2], cam.forward, atol=1e-12)
    back = Camera.from_opengl(gl, cam.fx, cam.fy, cam.cx, cam.cy, 320, 200)
    np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-12)


@pytest.mark.parametrize("w,h", [(1920, 1080), (600, 900)])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.1, -0.05)])
def test_blender_round_trip(w, h, shift):
    cam0 = Camera.look_at([2, -3, 1.5], [0, 0, 0.5], [0, 0, 1], 45, w, h)
    side = max(w, h)
    cam = Camera(cam0.world_to_camera, cam0.fx, cam0.fy, w / 2 - shift[0] * side, h / 2 + shift[1] * side, w, h)
    b = cam.to_blender()
    back = Camera.from_blender(
        b["matrix_world"],
        lens_mm=b["lens_mm"],
        sensor_width_mm=b["sensor_width_mm"],
        sensor_fit="AUTO",
        shift_x=b["shift_x"],
        shift_y=b["shift_y"],
        width=w,
        height=h,
        clip_start=cam.near,
        clip_end=cam.far,
    )
    np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-9)
    for a in ("fx", "fy", "cx", "cy"):
        assert getattr(back, a) == pytest.approx(getattr(cam, a))
    assert b["shift_x"] == pytest.approx(shift[0]) and b["shift_y"] == pytest.approx(shift[1])


def test_blender_default_camera_known_values():
    # Blender's default: 50 mm lens, 36 mm sensor, AUTO fit, 1920x1080 -> fx = 50/36*1920
    mw = np.eye(4)
    mw[:3, 3] = [0, 0, 10]  # at +z, looking down -z (Blender camera default orientation with identity rotation)
    cam = Camera.from_blender(mw, lens_mm=50, width=1920, height=1080)
    assert cam.fx == pytest.approx(50 / 36 * 1920) and cam.fy == pytest.approx(cam.fx)
    np.testing.assert_allclose(cam.forward, [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(cam.position, [0, 0, 10], atol=1e-12)
    # world +y (Blender up in this view) projects above the centre
    uv, z = project(cam, np.array([0, 1, 0]))
    assert z == pytest.approx(10) and uv[1] < 540
    # VERTICAL fit uses the sensor height across the image height
    v = Camera.from_blender(mw, lens_mm=50, sensor_height_mm=24, sensor_fit="VERTICAL", width=1920, height=1080)
    assert v.fy == pytest.approx(50 / 24 * 1080)
    # scale in matrix_world is ignored
    s = mw.copy()
    s[:3, :3] *= 3
    np.testing.assert_allclose(
        Camera.from_blender(s, lens_mm=50, width=64, height=64).world_to_camera[:3, :3],
        np.eye(3) @ FLIP_YZ[:3, :3],
        atol=1e-12,
    )


def test_bad_cameras_raise():
    with pytest.raises(CameraError):
        Camera(np.eye(3), 1, 1, 0, 0, 10, 10)
    with pytest.raises(CameraError):
        Camera(np.eye(4), -1, 1, 0, 0, 10, 10)
    with pytest.raises(CameraError):
        Camera(np.eye(4), 1, 1, 0, 0, 0, 10)
    with pytest.raises(CameraError):
        look_at_c2w([0, 0, 0], [0, 0, 0], [0, 1, 0])
    with pytest.raises(CameraError):
        Camera.from_blender(np.eye(4), lens_mm=50, sensor_fit="DIAGONAL", width=10, height=10)


def test_resized_keeps_view():
    cam = Camera.look_at([0, 0, -5], [0, 0, 0], [0, -1, 0], 50, 640, 480)
    small = cam.resized(320, 240)
    p = np.array([0.3, -0.2, 0.1])
    np.testing.assert_allclose(project(small, p)[0] * 2, project(cam, p)[0], atol=1e-9)
