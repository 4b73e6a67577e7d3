"""Viewport rendering: a progressive CPU render in a worker thread, drawn as a texture; never blocks ``view_draw``.

``view_update`` (main thread) snapshots the splat objects into one world-space scene when the depsgraph changed.
``view_draw`` turns the region's matrices into a camera; when the view changed it queues a render at 1/8 of the
target resolution, then 1/4, 1/2 and the preference's viewport scale; the newest finished frame is drawn and
``tag_redraw`` is called until the target arrives.

With restoration on, the finished raw frame stays on screen while GaussPainter restores it (worker process or
in-process, :mod:`.restoring`); the restored frame replaces it when ready. A newer request abandons a restoration
in flight (the worker finishes it in the background and its reply is discarded). Restoration errors (a crashed
worker, missing weights) are shown in the header and the raw frame stays. With the scene's temporal option, each
restored frame is stabilised against the previous one (reprojected, :mod:`exgs_core.temporal`) while the view
moves. When CUDA/gsplat is chosen but only the worker's Python has it, the worker renders the frames too.

exgs_core's numba kernels release the GIL (nogil) and restoration runs in another process (or in torch, which
releases it too), so the UI thread keeps running; only the numpy glue between the steps holds the GIL briefly.
"""

from __future__ import annotations

import threading

import numpy as np

from exgs_core.worker.settings import RestoreSettings

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
        self.notice = None  # why frames are not restored although the scene asks for it (shown in the header)
        self.backend = "cpu"
        self.restore_settings: RestoreSettings | None = None  # preferences.restore_settings() when restoring
        self.worker_settings: RestoreSettings | None = None  # the same, for rendering in the worker
        self.remote = False  # render in the worker process (gsplat that this Python lacks)
        self.temporal = False  # stabilise restored frames against the previous one while the view moves
        self._stab = None  # (scene_version, TemporalStabilizer)
        self._prepared = (None, None)  # ((scene_version, backend), exgs_core.render.prepare() result)
        self.restore_seconds = None

    # ------------------------------------------------------------ main thread
    def set_scene(self, scene) -> None:
        with self._lock:
            self.scene = scene
            self.scene_version += 1
            self._wake.set()

    def request(self, view_matrix, window_matrix, width, height, is_perspective, scale) -> None:
        rs = self.restore_settings
        key = (
            self.scene_version,
            rs,
            tuple(np.round(np.array(view_matrix).ravel(), 6)),
            tuple(np.round(np.array(window_matrix).ravel(), 6)),
            width,
            height,
            is_perspective,
            scale,
        )
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
            key, step, rgba, final = self._frame
            return rgba, (key == self._want[0] and final)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    # ------------------------------------------------------------ worker thread (no bpy here)
    def _loop(self) -> None:
        from exgs_core.render import prepare, render

        from .final import srgb_to_linear

        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                want, scene = self._want, self.scene
            if want is None or scene is None or self._stop:
                continue
            key, (V, P, w, h, persp, scale) = want
            restore = key[1] is not None
            for i, f in enumerate(STEPS):
                s = f * scale
                ww, hh = max(8, int(w * s)), max(8, int(h * s))
                try:
                    cam = camera_from_view(V, P, ww, hh, persp)
                    if self.remote:
                        from . import restoring

                        res = restoring.backend(self.worker_settings or key[1] or RestoreSettings()).render(
                            scene, cam, backend=self.backend, key=f"viewport-{id(self)}-{key[0]}"
                        )
                    else:  # the scene converted (CPU) or uploaded (gsplat) once per version, not per frame
                        pk = (key[0], self.backend)
                        if self._prepared[0] != pk:
                            self._prepared = (pk, prepare(scene, self.backend))
                        res = render(scene, cam, backend=self.backend, prepared=self._prepared[1])
                    self.error = None
                except Exception as e:  # noqa: BLE001 - shown in the viewport header by the engine
                    self.error = f"{type(e).__name__}: {e}"
                    break
                last = i == len(STEPS) - 1
                with self._lock:
                    self._frame = (key, i, _rgba(res.rgb, res.alpha, srgb_to_linear), last and not restore)
                    superseded = self._want is None or self._want[0] != key
                if superseded or self._stop:
                    break
                if last and restore:
                    self._restore(key, res, cam, srgb_to_linear, scene)

    def _superseded(self, key) -> bool:
        return self._stop or self._want is None or self._want[0] != key

    def _restore(self, key, res, cam, srgb_to_linear, scene=None) -> None:
        """Restore the frame ``res`` of ``scene`` (its scene head, when it carries one, runs first)."""
        import time

        from exgs_core.codec.head import scene_head

        from . import restoring
        from .final import restored_result

        t = time.perf_counter()
        try:
            out = restoring.restore_frame(
                key[1], res.rgb, res.alpha, res.depth, head=scene_head(scene), cancel=lambda: self._superseded(key)
            )
        except Exception as e:  # noqa: BLE001 - WorkerCrashed etc.: header message, raw frame stays
            self.error = f"restoration: {e}".splitlines()[0][:300]
            with self._lock:
                if self._frame is not None and self._frame[0] == key:
                    self._frame = self._frame[:3] + (True,)
            return
        if out is None:
            return  # superseded
        self.restore_seconds = time.perf_counter() - t
        if self.temporal:
            from exgs_core.temporal import TemporalStabilizer

            if self._stab is None or self._stab[0] != key[0]:
                self._stab = (key[0], TemporalStabilizer())
            out = self._stab[1](res.rgb, res.alpha, res.depth, out, cam)
        rr = restored_result(res, out, True)
        with self._lock:
            if self._want is not None and self._want[0] == key:
                self._frame = (key, len(STEPS), _rgba(rr.rgb, rr.alpha, srgb_to_linear), True)


def _rgba(rgb, alpha, srgb_to_linear) -> np.ndarray:
    """Premultiplied scene-linear RGBA, bottom-up rows, from a premultiplied sRGB render (rows top-down)."""
    h, w = alpha.shape
    rgba = np.empty((h, w, 4), np.float32)
    a = alpha[..., None]
    straight = np.divide(rgb, a, out=np.zeros_like(rgb), where=a > 1e-6)
    rgba[..., :3] = srgb_to_linear(straight) * a
    rgba[..., 3] = alpha
    return np.ascontiguousarray(np.flipud(rgba))


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
