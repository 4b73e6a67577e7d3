"""One camera type, in OpenCV axes as gsplat uses, and every conversion to and from Blender/OpenGL cameras.

OpenCV camera axes: +x right, +y down, +z forward. Blender and OpenGL camera axes: +x right, +y up, -z forward.
The two differ by ``FLIP_YZ = diag(1, -1, -1, 1)`` applied on the camera side:
``c2w_opencv = c2w_blender @ FLIP_YZ``. World coordinates are never changed here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .errors import CameraError

FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    Attributes:
        world_to_camera: float64 [4, 4], OpenCV axes (gsplat's ``viewmats``).
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (pixel centres at integer + 0.5; a centred camera has cx = W/2).
        width, height: image size in pixels.
        near, far: clipping distances along +z (world units); Gaussians outside are culled.
        name: optional label (image name from cameras.json, "orbit_003", ...).
    """

    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10
    name: str = ""

    def __post_init__(self):
        m = np.asarray(self.world_to_camera, dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise CameraError(f"world_to_camera: expected a finite 4x4 matrix, got shape {m.shape}")
        object.__setattr__(self, "world_to_camera", m)
        if not (self.width >= 1 and self.height >= 1):
            raise CameraError(f"image size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0 and math.isfinite(self.fx) and math.isfinite(self.fy)):
            raise CameraError(f"focal lengths must be positive and finite, got fx={self.fx}, fy={self.fy}")
        if not (0 < self.near < self.far):
            raise CameraError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ----------------------------------------------------------------- properties
    @property
    def K(self) -> np.ndarray:
        """float64 [3, 3] intrinsics matrix (gsplat's ``Ks``)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @functools.cached_property
    def camera_to_world(self) -> np.ndarray:
        """float64 [4, 4], OpenCV axes (read-only; computed once per camera: a 4 x 4 LAPACK inverse costs about a
        millisecond while numba's worker threads hold the cores, and every render, refit view and SH fold asks)."""
        m = np.linalg.inv(self.world_to_camera)
        m.setflags(write=False)
        return m

    @property
    def position(self) -> np.ndarray:
        """float64 [3] camera centre in world units."""
        return self.camera_to_world[:3, 3].copy()

    @property
    def forward(self) -> np.ndarray:
        """float64 [3] unit viewing direction (+z of the camera) in world axes."""
        return self.camera_to_world[:3, 2].copy()

    @property
    def fov_x(self) -> float:
        """Horizontal field of view in radians (for a centred principal point)."""
        return 2 * math.atan(self.width / (2 * self.fx))

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians (for a centred principal point)."""
        return 2 * math.atan(self.height / (2 * self.fy))

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_fov(cls, c2w_opencv, fov_y_deg: float, width: int, height: int, **kw) -> Camera:
        """Camera from an OpenCV camera-to-world matrix [4, 4] and a vertical field of view in degrees (square pixels)."""
        f = height / (2 * math.tan(math.radians(fov_y_deg) / 2))
        w2c = np.linalg.inv(np.asarray(c2w_opencv, dtype=np.float64))
        return cls(w2c, f, f, width / 2, height / 2, width, height, **kw)

    @classmethod
    def look_at(cls, eye, target, up, fov_y_deg: float, width: int, height: int, **kw) -> Camera:
        """Camera at ``eye`` [3] looking at ``target`` [3], with ``up`` [3] appearing upwards in the image."""
        c2w = look_at_c2w(eye, target, up)
        return cls.from_fov(c2w, fov_y_deg, width, height, **kw)

    def resized(self, width: int, height: int) -> Camera:
        """The same view at another resolution (intrinsics scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        return Camera(
            self.world_to_camera,
            self.fx * sx,
            self.fy * sy,
            self.cx * sx,
            self.cy * sy,
            width,
            height,
            self.near,
            self.far,
            self.name,
        )

    # ----------------------------------------------------------------- OpenGL / Blender
    @classmethod
    def from_opengl(cls, c2w_opengl, fx, fy, cx, cy, width, height, **kw) -> Camera:
        """From an OpenGL/Blender camera-to-world [4, 4] (-z forward, +y up); intrinsics in OpenCV pixels."""
        c2w = np.asarray(c2w_opengl, dtype=np.float64) @ FLIP_YZ
        return cls(np.linalg.inv(c2w), fx, fy, cx, cy, width, height, **kw)

    def to_opengl_c2w(self) -> np.ndarray:
        """float64 [4, 4] camera-to-world in OpenGL/Blender camera axes (what Blender's ``matrix_world`` holds
        for an unscaled camera)."""
        return self.camera_to_world @ FLIP_YZ

    @classmethod
    def from_blender(
        cls,
        matrix_world,
        *,
        lens_mm: float,
        sensor_width_mm: float = 36.0,
        sensor_height_mm: float = 24.0,
        sensor_fit: str = "AUTO",
        shift_x: float = 0.0,
        shift_y: float = 0.0,
        width: int,
        height: int,
        pixel_aspect: float = 1.0,
        clip_start: float = 0.1,
        clip_end: float = 1000.0,
        name: str = "",
    ) -> Camera:
        """From the values of a Blender perspective camera (``bpy.types.Camera`` + object ``matrix_world``).

        Follows Blender's rules: with ``sensor_fit="AUTO"`` the sensor width spans the larger image side;
        ``HORIZONTAL`` spans the width with ``sensor_width_mm``; ``VERTICAL`` spans the height with
        ``sensor_height_mm``. Shifts are fractions of that fitted side; positive ``shift_x`` moves the view
        right, positive ``shift_y`` up. ``pixel_aspect`` = pixel width / pixel height (``pixel_aspect_x/_y``).
        Scale in ``matrix_world`` is removed (cameras are never scaled in OpenCV terms).
        """
        if lens_mm <= 0:
            raise CameraError(f"lens must be positive, got {lens_mm} mm")
        fit, sensor = _sensor_fit(sensor_fit, sensor_width_mm, sensor_height_mm, width, height * pixel_aspect)
        if fit == "HORIZONTAL":
            fx = lens_mm / sensor * width
            fy = fx * pixel_aspect
            side = width
        else:
            fy = lens_mm / sensor * height
            fx = fy / pixel_aspect
            side = height
        cx = width / 2 - shift_x * side * (fx / fy if fit == "VERTICAL" else 1.0)
        cy = height / 2 + shift_y * side * (fy / fx if fit == "HORIZONTAL" else 1.0)
        m = np.asarray(matrix_world, dtype=np.float64).copy()
        if m.shape != (4, 4):
            raise CameraError(f"matrix_world: expected 4x4, got {m.shape}")
        norms = np.linalg.norm(m[:3, :3], axis=0)
        if (norms < 1e-12).any():
            raise CameraError("matrix_world has a zero scale axis")
        m[:3, :3] /= norms
        return cls.from_opengl(m, fx, fy, cx, cy, width, height, near=clip_start, far=clip_end, name=name)

    def to_blender(self, sensor_width_mm: float = 36.0) -> dict:
        """Values for a Blender camera reproducing this one (square pixels assumed: uses fx for the lens).

        Returns a dict with ``matrix_world`` (float64 [4, 4]), ``lens_mm``, ``sensor_width_mm``,
        ``sensor_fit`` ("HORIZONTAL" or "VERTICAL", whichever side is larger, as AUTO would pick),
        ``shift_x``, ``shift_y``, ``width``, ``height``, ``clip_start``, ``clip_end``.
        """
        if self.width >= self.height:
            fit, side, f = "HORIZONTAL", self.width, self.fx
        else:
            fit, side, f = "VERTICAL", self.height, self.fy
        lens = f * sensor_width_mm / side
        return {
            "matrix_world": self.to_opengl_c2w(),
            "lens_mm": lens,
            "sensor_width_mm": sensor_width_mm,
            "sensor_height_mm": sensor_width_mm,
            "sensor_fit": fit,
            "shift_x": (self.width / 2 - self.cx) / side,
            "shift_y": (self.cy - self.height / 2) / side,
            "width": self.width,
            "height": self.height,
            "clip_start": self.near,
            "clip_end": self.far,
        }


def _sensor_fit(fit: str, sw: float, sh: float, width: float, height: float) -> tuple[str, float]:
    fit = fit.upper()
    if fit == "AUTO":
        return ("HORIZONTAL", sw) if width >= height else ("VERTICAL", sw)
    if fit == "HORIZONTAL":
        return "HORIZONTAL", sw
    if fit == "VERTICAL":
        return "VERTICAL", sh
    raise CameraError(f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL, got {fit!r}")


def look_at_c2w(eye, target, up) -> np.ndarray:
    """float64 [4, 4] OpenCV camera-to-world for a camera at ``eye`` [3] looking at ``target`` [3].

    ``up`` [3] is the world direction that should point up in the image (image -y).
    """
    eye = np.asarray(eye, np.float64)
    fwd = np.asarray(target, np.float64) - eye
    n = np.linalg.norm(fwd)
    if n < 1e-12:
        raise CameraError("look_at: eye and target coincide")
    fwd /= n
    up = np.asarray(up, np.float64)
    right = np.cross(-up, fwd)  # OpenCV: x = y cross z with y = down = -up
    if np.linalg.norm(right) < 1e-9:  # looking along up: pick any perpendicular
        alt = np.array([1.0, 0, 0]) if abs(fwd[0]) < 0.9 else np.array([0, 0, 1.0])
        right = np.cross(alt, fwd)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    return c2w
