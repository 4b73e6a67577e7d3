"""Viewport rendering: a progressive CPU render in a worker thread, drawn as a texture; never blocks ``view_draw``.

``view_update`` (main thread) snapshots the splat objects into one world-space scene when the depsgraph changed.
``view_draw`` turns the region's matrices into a camera; when the view changed it queues a render at 1/8 of the
target resolution, then 1/4, 1/2 and the preference's viewport scale; the newest finished frame is drawn and
``tag_redraw`` is called until the target arrives.

Note: exgs_core's numba kernels hold the GIL while they run, so each progressive step (not the whole render)
briefly competes with the UI; the low-resolution steps keep those pauses short.
"""

from __future__ import annotations

import threading

import numpy as np

from .camera import camera_from_view

STEPS = (0.125, 0.25, 0.5, 1.0)


class ViewportRenderer:
    """State of one viewport (one engine instance). Not shared across engines."""

    def __init__(self):
        self.scene = None  # world-space GaussianScene or None
        self.scene_version = 0
        self._lock = threading.Lock()
        self._want = None  # (key, camera factory args)
        self._frame = None  # (key, step, rgba float32 [h, w, 4] bottom-up)
        self._thread = None
        self._wake = threading.Event()
        self._stop = False
        self.error = None
        self.backend = "cpu"

    # ------------------------------------------------------------ main thread
    def set_scene(self, scene) -> None:
        with self._lock:
            self.scene = scene
            self.scene_version += 1
            self._wake.set()

    def request(self, view_matrix, window_matrix, width, height, is_perspective, scale) -> None:
        key = (self.scene_version, tuple(np.round(np.array(view_matrix).ravel(), 6)),
               tuple(np.round(np.array(window_matrix).ravel(), 6)), width, height, is_perspective, scale)
        with self._lock:
            if self._want is not None and self._want[0] == key:
                return
            self._want = (key, (np.array(view_matrix), np.array(window_matrix), width, height, is_perspective, scale))
            self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="exgs-viewport", daemon=True)
            self._thread.start()

    def latest(self):
        """(rgba bottom-up float32 [h, w, 4], finished) of the newest frame for the current request, or None."""
        with self._lock:
            if self._frame is None or self._want is None:
                return None
            key, step, rgba = self._frame
            return rgba, (key == self._want[0] and step == len(STEPS) - 1)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    # ------------------------------------------------------------ worker thread (no bpy here)
    def _loop(self) -> None:
        from exgs_core.render import render

        from .final import srgb_to_linear

        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                want, scene = self._want, self.scene
            if want is None or scene is None or self._stop:
                continue
            key, (V, P, w, h, persp, scale) = want
            for i, f in enumerate(STEPS):
                s = f * scale
                ww, hh = max(8, int(w * s)), max(8, int(h * s))
                try:
                    cam = camera_from_view(V, P, ww, hh, persp)
                    res = render(scene, cam, backend=self.backend)
                    self.error = None
                except Exception as e:  # noqa: BLE001 - shown in the viewport header by the engine
                    self.error = f"{type(e).__name__}: {e}"
                    break
                rgba = np.empty((hh, ww, 4), np.float32)
                a = res.alpha[..., None]
                straight = np.divide(res.rgb, a, out=np.zeros_like(res.rgb), where=a > 1e-6)
                rgba[..., :3] = srgb_to_linear(straight) * a
                rgba[..., 3] = res.alpha
                with self._lock:
                    self._frame = (key, i, np.ascontiguousarray(np.flipud(rgba)))
                    superseded = self._want is None or self._want[0] != key
                if superseded or self._stop:
                    break


def upload_texture(rgba: np.ndarray):
    """GPUTexture (RGBA16F) of a float32 [h, w, 4] frame, bottom-up rows (flat Buffer: no Fortran-stride mix-up)."""
    import gpu

    h, w = rgba.shape[:2]
    buf = gpu.types.Buffer("FLOAT", w * h * 4, np.ascontiguousarray(rgba, np.float32).ravel())
    return gpu.types.GPUTexture((w, h), format="RGBA16F", data=buf)


def draw_frame(engine, context, rgba: np.ndarray, width: int, height: int) -> None:
    """Draw ``rgba`` (premultiplied, scene linear, bottom-up) over the whole region with the display transform."""
    import gpu
    from gpu_extras.presets import draw_texture_2d

    tex = upload_texture(rgba)
    gpu.state.blend_set("ALPHA_PREMULT")
    engine.bind_display_space_shader(context.scene)
    draw_texture_2d(tex, (0, 0), width, height)
    engine.unbind_display_space_shader()
    gpu.state.blend_set("NONE")
