"""SH rotation (degree 1..3) and whole-scene transforms (exgs_core.sh_rotation)."""

from __future__ import annotations

import numpy as np
import pytest

from exgs_core.camera import Camera
from exgs_core.render.sh import sh_to_color
from exgs_core.scene import GaussianScene
from exgs_core.sh_rotation import (
    matrix_to_quat,
    quat_multiply,
    quat_to_matrix,
    rotate_sh,
    sh_rotation_matrices,
    transform_scene,
)


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return quat_to_matrix(q[None])[0]


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_rotated_sh_shows_rotated_colour(rng, degree):
    k = (degree + 1) ** 2
    sh = rng.normal(size=(50, k, 3)).astype(np.float32)
    R = random_rotation(rng)
    d = rng.normal(size=(50, 3))
    # colour of the rotated coefficients towards R d == colour of the originals towards d (the renderer's basis)
    a = sh_to_color(rotate_sh(sh, R), d @ R.T, offset=False)
    b = sh_to_color(sh, d, offset=False)
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_band_matrices_orthogonal_and_compose(rng, degree):
    R1, R2 = random_rotation(rng), random_rotation(rng)
    for m1, m2, m12 in zip(
        sh_rotation_matrices(R1, degree),
        sh_rotation_matrices(R2, degree),
        sh_rotation_matrices(R2 @ R1, degree),
        strict=False,
    ):
        np.testing.assert_allclose(m1 @ m1.T, np.eye(len(m1)), atol=1e-9)
        np.testing.assert_allclose(m2 @ m1, m12, atol=1e-9)


def test_identity_dc_and_input_untouched(rng):
    sh = rng.normal(size=(10, 16, 3)).astype(np.float32)
    keep = sh.copy()
    np.testing.assert_allclose(rotate_sh(sh, np.eye(3)), sh, atol=1e-6)
    out = rotate_sh(sh, random_rotation(rng))
    np.testing.assert_array_equal(out[:, 0], sh[:, 0])
    np.testing.assert_array_equal(sh, keep)
    assert rotate_sh(sh[:, :1], random_rotation(rng)).shape == (10, 1, 3)


def test_reflection_and_bad_input(rng):
    sh = rng.normal(size=(20, 9, 3)).astype(np.float32)
    M = np.diag([-1.0, 1, 1])
    d = rng.normal(size=(20, 3))
    np.testing.assert_allclose(
        sh_to_color(rotate_sh(sh, M), d @ M.T, offset=False), sh_to_color(sh, d, offset=False), atol=1e-4
    )
    with pytest.raises(ValueError):
        rotate_sh(sh, np.eye(3) * 2)
    with pytest.raises(ValueError):
        rotate_sh(sh[:, :5], np.eye(3))


def test_quaternion_round_trip(rng):
    q = rng.normal(size=(100, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    np.testing.assert_allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-9)
    a, b = q[:50], q[50:]
    np.testing.assert_allclose(quat_to_matrix(quat_multiply(a, b)), quat_to_matrix(a) @ quat_to_matrix(b), atol=1e-9)


def _scene(rng, n=200, degree=3):
    s = GaussianScene.empty(n, sh_degree=degree)
    s.means = rng.normal(size=(n, 3)).astype(np.float32)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    s.quats = q
    s.log_scales = rng.uniform(-4, -2, size=(n, 3)).astype(np.float32)
    s.opacity_logits = rng.normal(size=n).astype(np.float32)
    s.sh = (rng.normal(size=(n, (degree + 1) ** 2, 3)) * 0.3).astype(np.float32)
    return s


def _cov(s):
    r = quat_to_matrix(s.quats)
    sc = np.exp(s.log_scales.astype(np.float64))
    return (r * sc[:, None, :] ** 2) @ np.swapaxes(r, 1, 2)


@pytest.mark.parametrize("kind", ["similarity", "nonuniform"])
def test_transform_scene_geometry(rng, kind):
    s = _scene(rng)
    R = random_rotation(rng)
    A = R * 1.7 if kind == "similarity" else R @ np.diag([0.5, 2.0, 1.3])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = A, [1, -2, 3]
    t = transform_scene(s, M)
    np.testing.assert_allclose(t.means, s.means @ A.T + [1, -2, 3], atol=1e-5)
    np.testing.assert_allclose(_cov(t), A @ _cov(s) @ A.T, atol=1e-6)
    np.testing.assert_array_equal(t.opacity_logits, s.opacity_logits)
    assert transform_scene(s, np.eye(4)).equal(s)


def test_transformed_scene_renders_like_moved_camera(rng):
    """Rendering the transformed scene from M * camera == rendering the original from the camera."""
    from exgs_core.render import render

    s = _scene(rng, n=300)
    s.means *= 0.5
    R = random_rotation(rng)
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R * 1.5, [0.3, 0.1, -0.2]
    cam = Camera.look_at([0, 0, -4], [0, 0, 0], [0, -1, 0], 50, 64, 48)
    c2w = cam.camera_to_world.copy()
    c2w_moved = M @ c2w
    c2w_moved[:3, :3] /= 1.5  # cameras carry no scale; distances scale with the scene
    cam2 = Camera(np.linalg.inv(c2w_moved), cam.fx, cam.fy, cam.cx, cam.cy, 64, 48)
    a = render(s, cam, backend="cpu")
    b = render(transform_scene(s, M), cam2, backend="cpu")
    assert a.alpha.max() > 0.5
    np.testing.assert_allclose(b.rgb, a.rgb, atol=2e-3)
    np.testing.assert_allclose(b.depth, a.depth * 1.5, atol=2e-3 * 1.5 * 5)
