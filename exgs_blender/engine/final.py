"""Final renders (F12, animation, ``blender -b -f/-a``): every visible splat object, rendered by exgs_core from the
scene camera, written to the Combined, Depth and Alpha passes. With restoration on (``scene.exgs.restore``),
the frame is restored (:mod:`.restoring`: by the scene head of an .exgs that carries one, in Blender itself, or by
GaussPainter in the worker process or in-process): Combined is the
restored image, ``Unrestored`` the raw render and ``Mask`` its coverage mask (1 - alpha); animations are
stabilised frame to frame (:mod:`exgs_core.temporal`).

Reads only the depsgraph and the engine (never ``bpy.context``). Fails loudly: problems become ``error_set`` +
``report`` rather than an empty frame.
"""

from __future__ import annotations

import time

import numpy as np

from exgs_core.errors import ExgsError

from .. import convert, preferences
from .camera import camera_from_object, render_size

ALPHA_PASS = ("Alpha", 1, "A", "VALUE")
DEPTH_PASS = ("Depth", 1, "Z", "VALUE")
UNRESTORED_PASS = ("Unrestored", 4, "RGBA", "COLOR")
MASK_PASS = ("Mask", 1, "X", "VALUE")
EMPTY_DEPTH = 1e10  # Blender's Z for pixels that see nothing
COVERED = 1e-4  # alpha above which a pixel has a depth (the same threshold as restoring.COVERED)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB transfer function inverse (IEC 61966-2-1), any shape; values > 1 follow the power segment."""
    c = np.asarray(c, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float32)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.maximum(c, 0.0031308) ** (1 / 2.4) - 0.055).astype(np.float32)


def gather_splats(depsgraph, test_break=None):
    """(world-space GaussianScene of every visible splat object instance, object names), or (None, []).
    When exactly one object is in view and came from an .exgs with a scene head, the scene carries that head
    (``meta["exgs_head"]``, :func:`.restoring.frame_head`), as a decoded .exgs does, so restoration applies it."""
    scenes, names, heads = [], [], []
    for inst in depsgraph.object_instances:
        ob = inst.object
        if ob.type != "POINTCLOUD" or not convert.is_splat_data(ob.data):
            continue
        if test_break is not None and test_break():
            return None, names
        orig = ob.original if hasattr(ob, "original") else ob
        s = convert.pointcloud_to_scene(ob.data, antialiased=bool(orig.exgs.antialiased))
        if s.n == 0:
            continue
        from exgs_core.sh_rotation import transform_scene

        scenes.append(transform_scene(s, np.array(inst.matrix_world, dtype=np.float64)))
        names.append(ob.name)
        heads.append(_head_payload(orig))
    if not scenes:
        return None, names
    merged = convert.merge_scenes(scenes)
    from .restoring import frame_head

    head = frame_head(heads)
    if head is not None:
        merged.meta = {**merged.meta, "exgs_head": head}
    return merged, names


def _head_payload(ob) -> bytes | None:
    """The HEAD payload bytes an object keeps (``ob.exgs.head_hex``), or None (none, or not valid hex)."""
    text = getattr(getattr(ob, "exgs", None), "head_hex", "")
    try:
        return bytes.fromhex(text) if text else None
    except ValueError:
        return None


def frame_pixels(res, *, transparent: bool, background_srgb: np.ndarray, color_input: str):
    """(combined RGBA float32 [H, W, 4], depth [H, W], alpha [H, W]), rows bottom-up as Blender stores them.

    Colours are blended in the scene's own (sRGB) space, exactly as exgs_core renders them, then converted to
    scene linear (``color_input == "SRGB"``) so Blender's Standard view transform shows the trained colours.
    """
    rgb, alpha = res.rgb, res.alpha  # [H, W, 3] premultiplied (black background), [H, W]; rows top-down
    h, w = alpha.shape
    out = np.empty((h, w, 4), np.float32)
    if transparent:
        a = alpha[..., None]
        straight = np.divide(rgb, a, out=np.zeros_like(rgb), where=a > 1e-6)
        lin = srgb_to_linear(straight) if color_input == "SRGB" else straight
        out[..., :3] = lin * a
        out[..., 3] = alpha
    else:
        comp = rgb + (1.0 - alpha[..., None]) * background_srgb
        out[..., :3] = srgb_to_linear(comp) if color_input == "SRGB" else comp
        out[..., 3] = 1.0
    depth = np.where(alpha > COVERED, res.depth, EMPTY_DEPTH).astype(np.float32)
    return np.flipud(out), np.flipud(depth), np.flipud(alpha).astype(np.float32)


def world_background_srgb(scene, color_input: str) -> np.ndarray:
    """The world colour (``world.color``, scene linear) in the splats' colour space; black without a world."""
    w = scene.world
    c = np.array(w.color[:3], np.float32) if w is not None else np.zeros(3, np.float32)
    return linear_to_srgb(c) if color_input == "SRGB" else c


def restore_state(scene, head=None) -> tuple[bool, str | None]:
    """(restore ``scene``'s frames?, why not when its Restore toggle is on but restoration cannot run): the
    Restoration preference is off, or no worker environment (or torch in-process) exists for frames that need
    GaussPainter's network. ``head``: the frame's scene head (:func:`exgs_core.codec.head.scene_head` of
    :func:`gather_splats`' scene, or :func:`visible_head`); a frame its head alone restores runs in Blender
    itself (:func:`.restoring.head_alone`). Frames that cannot be restored render unrestored and the reason is
    reported, never silently."""
    if scene is None or not hasattr(scene, "exgs") or not scene.exgs.restore:
        return False, None
    settings = preferences.restore_settings()
    if not settings.enabled:
        return False, "Restoration is off in Preferences > Add-ons > ExGS (the scene's Restore is on)"
    from .restoring import unavailable_reason

    why = unavailable_reason(settings, head)
    return why is None, why


def visible_head(scene):
    """The scene head frames of ``scene`` would carry, judged from its objects without reading their points (for
    the panel): that of the only visible splat object, when it came from an .exgs with one
    (:func:`.restoring.frame_head`); else None. :func:`gather_splats` decides for a rendered frame."""
    from .restoring import frame_head

    obs = [ob for ob in scene.objects if ob.type == "POINTCLOUD" and convert.is_splat_data(ob.data)]
    try:
        obs = [ob for ob in obs if ob.visible_get()]
    except RuntimeError:  # no view layer to ask (e.g. while Blender loads a file): keep every splat object
        pass
    return frame_head([_head_payload(ob) for ob in obs])


def restore_enabled(scene) -> bool:
    """Restoration is on for ``scene`` (its toggle), allowed by the preferences and able to run."""
    return restore_state(scene)[0]


def restored_result(res, restored: np.ndarray, transparent: bool):
    """A RenderResult-like view of a restored frame (premultiplied over black, as the restorer returns it) with
    the closed coverage (what the restorer fills) as alpha, so compositing keeps the filled holes. With a
    transparent film the colour is limited to that alpha (valid premultiplied colour)."""
    from exgs_core.render.result import RenderResult

    from .restoring import close_alpha, fill_depth

    a = close_alpha(res.alpha)
    rgb = np.asarray(restored, np.float32)
    if transparent:
        rgb = np.minimum(rgb, a[..., None])
    # pixels the restorer filled get the nearest covered depth (not the renderer's 0 where it saw nothing)
    return RenderResult(rgb, a, fill_depth(res.depth, res.alpha, a), None, res.backend, res.n_rendered)


RENDER_IN_WORKER = None  # None: decide (render_in_worker); True/False: force (tests, debugging)


def render_in_worker(backend: str, settings) -> bool:
    """Render in the worker process when CUDA/gsplat is asked for, this Python cannot provide it and the worker
    mode is chosen (gsplat needs torch, which e.g. Blender 5.3's Python 3.13 may lack)."""
    if RENDER_IN_WORKER is not None:
        return bool(RENDER_IN_WORKER)
    if backend != "gsplat" or settings.mode != "WORKER":
        return False
    import importlib.util

    if importlib.util.find_spec("gsplat") is None or importlib.util.find_spec("torch") is None:
        return True
    from exgs_core.render import has_gsplat

    return not has_gsplat()


_SEQ: dict = {"key": None, "frame": None, "stab": None}


def _stabilise(engine, scene, cam, res, restored, width, height):
    """Temporal stabilisation across consecutive frames of one animation render; state reset on any cut."""
    from exgs_core.temporal import TemporalStabilizer

    key = (scene.name, width, height, engine.camera_override.name if engine.camera_override else "")
    frame = scene.frame_current
    if not (engine.is_animation and scene.exgs.temporal):
        _SEQ.update(key=None, frame=None, stab=None)
        return restored
    if _SEQ["stab"] is None or _SEQ["key"] != key or _SEQ["frame"] != frame - scene.frame_step:
        _SEQ.update(key=key, stab=TemporalStabilizer())
    _SEQ["frame"] = frame
    return _SEQ["stab"](res.rgb, res.alpha, res.depth, restored, cam)


def render(engine, depsgraph) -> None:
    """Render one frame of ``depsgraph`` into ``engine``'s result."""
    t0 = time.perf_counter()
    scene = depsgraph.scene
    view_layer = depsgraph.view_layer
    width, height = render_size(scene.render)
    color_input = scene.exgs.color_input if hasattr(scene, "exgs") else "SRGB"

    cam_ob = engine.camera_override or scene.camera
    try:
        cam = camera_from_object(
            cam_ob.evaluated_get(depsgraph) if cam_ob is not None else None, scene.render, width, height
        )
    except ExgsError as e:
        _fail(engine, f"ExGS: {e}")
        return

    from ..jobs import FIRST_USE, kernels_ready

    first_use = "" if kernels_ready() else f" ({FIRST_USE})"
    if first_use:  # numba compiles the render kernels now (or waits for the warm-up started at enable)
        engine.report({"INFO"}, f"ExGS: {FIRST_USE}: this frame takes longer")
    engine.update_stats("", "ExGS | collecting splats")
    try:
        splats, names = gather_splats(depsgraph, engine.test_break)
    except (ValueError, ExgsError) as e:
        _fail(engine, f"ExGS: cannot read splat data: {e}")
        return
    if engine.test_break():
        return

    bg = world_background_srgb(scene, color_input)
    transparent = bool(scene.render.film_transparent)
    from exgs_core.codec.head import scene_head

    head = scene_head(splats) if splats is not None else None
    restore, why_not = restore_state(scene, head)
    if why_not:  # the frame still renders (unrestored) and says why
        engine.report({"WARNING"}, f"ExGS: rendered without restoration: {why_not}")
    restore_passes = bool(getattr(getattr(scene, "exgs", None), "restore", False))  # the passes the scene declares
    restored = None
    if splats is None:
        engine.report({"WARNING"}, "ExGS: no visible Gaussian-splat objects; rendering the background only")
        from exgs_core.render.result import RenderResult

        z = np.zeros((height, width), np.float32)
        res: RenderResult | None = RenderResult(np.zeros((height, width, 3), np.float32), z, z, None, "none", 0)
    else:
        engine.update_progress(0.1)
        from exgs_core.render import render as core_render

        backend = preferences.render_backend()
        settings = preferences.restore_settings()
        remote = render_in_worker(backend, settings)
        engine.update_stats(
            "",
            f"ExGS | rendering {splats.n:,} Gaussians ({len(names)} object(s)) "
            f"at {width}x{height}{' in the worker' if remote else ''}{first_use}",
        )
        try:
            if remote:  # gsplat lives in the worker's Python (e.g. Blender 5.3 / Python 3.13 has no torch)
                from . import restoring

                be = restoring.backend(settings)
                if restore:
                    got = be.render_restore(splats, cam, backend=backend, cancel=engine.test_break)
                    res, restored = got if got is not None else (None, None)
                else:
                    res = be.render(splats, cam, backend=backend, cancel=engine.test_break)
                if res is None:
                    return  # cancelled
            else:
                res = core_render(splats, cam, backend=backend)
        except ExgsError as e:  # BackendUnavailable for CUDA without gsplat, a crashed worker, ...
            _fail(engine, f"ExGS: {e}")
            return
        except MemoryError:
            _fail(engine, f"ExGS: out of memory rendering {splats.n:,} Gaussians at {width}x{height}")
            return
    if engine.test_break() or res is None:  # None: the worker's render was cancelled
        return
    if restore and splats is not None and restored is None:
        from exgs_core.errors import ExgsError as _E

        from . import restoring

        engine.update_progress(0.5)
        settings = preferences.restore_settings()
        if restoring.head_alone(settings, head):
            where = (
                "nothing to do: the .exgs has no scene head"
                if head is not None and head.is_identity
                else "with the file's scene head, in Blender"
            )
        else:
            where = "GaussPainter, " + ("worker process" if settings.mode == "WORKER" else "in Blender")
        engine.update_stats("", f"ExGS | restoring ({where})")
        try:
            restored = restoring.restore_frame(
                settings, res.rgb, res.alpha, res.depth, head=head, cancel=engine.test_break
            )
        except _E as e:  # WorkerError / WorkerCrashed (the next render restarts the worker), weights errors
            _fail(engine, f"ExGS: restoration failed: {e}")
            return
        except Exception as e:  # noqa: BLE001 - never a silently unrestored frame
            _fail(engine, f"ExGS: restoration failed: {type(e).__name__}: {e}")
            return
        if restored is None or engine.test_break():
            return
    if restored is not None:
        restored = _stabilise(engine, scene, cam, res, restored, width, height)
    engine.update_progress(0.9)
    if restored is not None:
        # Combined, Alpha and Depth describe the restored image (closed coverage, filled depth); Unrestored and
        # Mask the raw render the restorer saw (Mask = 1 - its alpha)
        combined, depth, alpha = frame_pixels(
            restored_result(res, restored, transparent),
            transparent=transparent,
            background_srgb=bg,
            color_input=color_input,
        )
        raw, _, raw_alpha = frame_pixels(res, transparent=transparent, background_srgb=bg, color_input=color_input)
    else:
        combined, depth, alpha = frame_pixels(res, transparent=transparent, background_srgb=bg, color_input=color_input)
        raw, raw_alpha = combined, alpha
    mask = (1.0 - raw_alpha).astype(np.float32)

    engine.add_pass(ALPHA_PASS[0], ALPHA_PASS[1], ALPHA_PASS[2], layer=view_layer.name)
    if restore_passes:
        for p in (UNRESTORED_PASS, MASK_PASS):
            engine.add_pass(p[0], p[1], p[2], layer=view_layer.name)
    result = engine.begin_result(0, 0, width, height, layer=view_layer.name)
    layer = result.layers[0]
    for p in layer.passes:
        if p.name == "Combined":
            p.rect.foreach_set(combined.ravel())
        elif p.name == "Depth":
            p.rect.foreach_set(depth.ravel())
        elif p.name == "Alpha":
            p.rect.foreach_set(alpha.ravel())
        elif p.name == "Unrestored":
            p.rect.foreach_set(raw.ravel())
        elif p.name == "Mask":
            p.rect.foreach_set(mask.ravel())
    engine.end_result(result)
    engine.update_progress(1.0)
    engine.update_stats(
        "",
        f"ExGS | {0 if splats is None else splats.n:,} Gaussians, {res.backend}"
        f"{', restored' if restored is not None else ''}"
        f"{', NOT restored (see the report)' if why_not else ''}, {time.perf_counter() - t0:.2f} s",
    )


def _fail(engine, msg: str) -> None:
    engine.error_set(msg)
    engine.report({"ERROR"}, msg)
