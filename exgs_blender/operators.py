"""Operators: import (any splat format, several files), export (.exgs / .ply), compress (UGC, non-blocking).

Thin by design: parse properties into exgs_core options, call one exgs_core function, turn ``ExgsError`` into
``self.report({'ERROR'}, ...)``. Blender data is created and read on the main thread only.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper
from mathutils import Matrix

from exgs_core.errors import ExgsError

from . import convert
from .jobs import FIRST_USE, CompressJob
from .properties import size_lines

IMPORT_EXTENSIONS = (".ply", ".splat", ".spz", ".sog", ".exgs", ".json")
IMPORT_GLOB = "*.ply;*.splat;*.spz;*.sog;*.glb;*.exgs;meta.json"


def _matrix16(m) -> tuple:
    return tuple(float(x) for x in np.asarray(m, np.float64).ravel())


def _matrix_from16(v) -> np.ndarray:
    return np.array(list(v), np.float64).reshape(4, 4)


def scene_hash(scene) -> str:
    h = hashlib.sha256()
    for a in (scene.means, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh):
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """Where compressed bytes are kept: the extension's user folder when installed, else Blender's temp dir."""
    try:
        return Path(bpy.utils.extension_path_user(__package__, path="cache", create=True))
    except (ValueError, RuntimeError, TypeError, AttributeError):
        d = Path(bpy.app.tempdir or os.environ.get("TMPDIR", "/tmp")) / "exgs_cache"
        d.mkdir(parents=True, exist_ok=True)
        return d


def create_splat_object(context, scene, name: str, *, collection=None, orient: bool = True, source: str = ""):
    """New object holding ``scene``; oriented so the scene's up is +Z when ``orient``; linked to ``collection``
    (default: the active collection). Returns the object."""
    from exgs_core.codec.head import restoration_head
    from exgs_core.views import scene_up

    pc = convert.scene_to_pointcloud(scene, name, context)
    ob = bpy.data.objects.new(name, pc)
    (collection or context.collection or context.scene.collection).objects.link(ob)
    m = convert.up_to_z_matrix(scene_up(scene)) if orient else np.eye(4)
    ob.matrix_world = Matrix(m.tolist())  # rows (a bare nested list would be read as columns)
    ob.exgs.orientation = _matrix16(m)
    ob.exgs.antialiased = scene.antialiased
    # a decoded .exgs's scene head (the identity when it has none) travels with the object: restored renders use it
    head = restoration_head(scene)
    ob.exgs.head_hex = "" if head is None else head.to_bytes().hex()
    ob.exgs.source_path = source
    ob.exgs.source_format = str(scene.meta.get("format", ""))
    return ob


def source_size(path: str) -> int:
    """Bytes of a splat file as the user has it (an unbundled SOG: every file of its folder)."""
    p = Path(path)
    if p.name == "meta.json" or p.is_dir():
        folder = p if p.is_dir() else p.parent
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return p.stat().st_size


def export_matrix(ob) -> np.ndarray:
    """Transform baked into exported data: the object's world matrix relative to its import orientation, so an
    imported and untouched object exports exactly its file's data."""
    orient = _matrix_from16(ob.exgs.orientation)
    m = np.linalg.inv(orient) @ np.array(ob.matrix_world, np.float64)
    return np.eye(4) if np.allclose(m, np.eye(4), atol=1e-6) else m  # Blender stores matrices as float32


# =========================================================================== import


class EXGS_OT_import_scene(bpy.types.Operator, ImportHelper):
    """Import Gaussian splats (.ply, .compressed.ply, .splat, .spz, .sog, .glb, .exgs) as point-cloud objects"""

    bl_idname = "exgs.import_scene"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE", "HIDDEN"})
    filter_glob: StringProperty(default=IMPORT_GLOB, options={"HIDDEN"})
    orient: BoolProperty(
        name="Scene up to +Z",
        default=True,
        description="Rotate the object so the format's up axis is Blender's +Z (data unchanged)",
    )

    def invoke(self, context, event):
        if self.filepath or self.files:  # drag and drop (FileHandler) or scripted: no browser
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def paths(self) -> list[str]:
        if self.files and self.directory:
            return [os.path.join(self.directory, f.name) for f in self.files if f.name]
        return [self.filepath] if self.filepath else []

    def execute(self, context):
        import exgs_core
        from exgs_core.io.spz import to_ply_axes

        paths = self.paths()
        if not paths:
            self.report({"ERROR"}, "ExGS import: no file given")
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, len(paths))
        ok, failed, created = 0, [], []
        t = time.perf_counter()
        try:
            for i, p in enumerate(paths):
                try:
                    # objects hold PLY's RDF axes, so exports open the right way up everywhere (SPZ is RUB)
                    scene = to_ply_axes(exgs_core.load(p))
                except ExgsError as e:
                    failed.append(str(e))
                    continue
                name = Path(p).name
                for suf in (".compressed.ply", ".ply", ".splat", ".spz", ".sog", ".exgs", ".json"):
                    if name.lower().endswith(suf):
                        name = name[: -len(suf)] or name
                        break
                if name == "meta":  # unbundled SOG: use the folder name
                    name = Path(p).parent.name
                ob = create_splat_object(context, scene, name, orient=self.orient, source=p)
                ob.exgs.source_bytes = source_size(p)
                created.append(ob)
                ok += 1
                wm.progress_update(i + 1)
        finally:
            wm.progress_end()
        if created:
            for o in context.selected_objects:
                o.select_set(False)
            for o in created:
                o.select_set(True)
            context.view_layer.objects.active = created[-1]
        for msg in failed:  # errors only when nothing imported (an ERROR report fails the whole call)
            self.report({"WARNING"} if ok else {"ERROR"}, f"ExGS import: {msg}")
        if ok:
            n = sum(len(o.data.points) for o in created)
            self.report(
                {"INFO"},
                f"ExGS: imported {ok} file(s), {n:,} Gaussians in {time.perf_counter() - t:.2f} s"
                + (f"; {len(failed)} failed" if failed else ""),
            )
            return {"FINISHED"}
        return {"CANCELLED"}


# =========================================================================== export


def _target_objects(context, use_selection: bool):
    if use_selection:
        obs = [o for o in context.selected_objects if convert.is_splat_object(o)]
        if not obs and convert.is_splat_object(context.active_object):
            obs = [context.active_object]
        return obs
    return [o for o in context.scene.objects if convert.is_splat_object(o) and o.visible_get()]


def export_scene_bytes(objects, fmt: str, apply_transform: bool = True):
    """(bytes for .exgs or None, scene) for ``objects``: the compressor's own bytes when the single object is
    an untouched compressed object, else a fresh encode of the (transformed) data."""
    from exgs_core.sh_rotation import transform_scene

    scenes = []
    for ob in objects:
        s = convert.pointcloud_to_scene(ob.data, antialiased=bool(ob.exgs.antialiased))
        if apply_transform:
            s = transform_scene(s, export_matrix(ob))
        scenes.append(s)
    scene = convert.merge_scenes(scenes)
    if fmt == "exgs" and len(objects) == 1:
        ob = objects[0]
        cache = ob.exgs.exgs_cache
        local = convert.pointcloud_to_scene(ob.data)
        untouched = not apply_transform or np.array_equal(export_matrix(ob), np.eye(4))
        if cache and os.path.isfile(cache) and untouched and scene_hash(local) == ob.exgs.exgs_cache_hash:
            return Path(cache).read_bytes(), scene
    return None, scene


#: Export formats: (enum id, exgs_core.io format, file name ending, label, description)
EXPORT_FORMATS = (
    ("EXGS", "exgs", ".exgs", ".exgs", "exgs container (UGC output; quantised, entropy-coded; read by exgs)"),
    (
        "SPZ",
        "spz",
        ".spz",
        ".spz",
        "SPZ (Niantic; version 4 or 3): Scaniverse, Babylon.js, three.js, Spark, PlayCanvas",
    ),
    (
        "SOG",
        "sog",
        ".sog",
        ".sog",
        "PlayCanvas SOG (WebP textures in a zip): SuperSplat, PlayCanvas, Babylon.js, Spark",
    ),
    ("GLB", "glb", ".glb", ".glb", "glTF 2.0 binary with KHR_gaussian_splatting"),
    ("CPLY", "compressed_ply", ".compressed.ply", ".compressed.ply", "PlayCanvas compressed PLY (SuperSplat)"),
    ("SPLAT", "splat", ".splat", ".splat", "antimatter15 .splat (DC colour only, 32 bytes per Gaussian)"),
    ("PLY", "ply", ".ply", ".ply", "standard 3DGS PLY (uncompressed, every viewer)"),
)
_EXPORT_BY_ID = {e[0]: e for e in EXPORT_FORMATS}


def _ending_format(path: str) -> str | None:
    """The export enum id whose file ending ``path`` has (longest ending first), or None."""
    low = path.lower()
    for e in sorted(EXPORT_FORMATS, key=lambda e: -len(e[2])):
        if low.endswith(e[2]):
            return e[0]
    return None


class EXGS_OT_export_scene(bpy.types.Operator, ExportHelper):
    """Export Gaussian-splat objects as .exgs or a standard format other tools open (.spz, .sog, .glb, ...)"""

    bl_idname = "exgs.export_scene"
    bl_label = "Export Gaussian Splats"
    bl_options = {"REGISTER", "PRESET"}

    filename_ext = ".exgs"
    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.exgs;*.spz;*.sog;*.glb;*.ply;*.splat", options={"HIDDEN"})
    file_format: EnumProperty(
        name="Format",
        items=[(e[0], e[3], e[4], i) for i, e in enumerate(EXPORT_FORMATS)],
        default="EXGS",
    )
    spz_version: EnumProperty(
        name="SPZ version",
        items=[("4", "4", "SPZ version 4 (current)", 0), ("3", "3", "SPZ version 3 (for readers without v4)", 1)],
        default="4",
    )
    use_selection: BoolProperty(
        name="Selected only", default=True, description="Export the selected splat objects (else every visible one)"
    )
    apply_transform: BoolProperty(
        name="Apply transform",
        default=True,
        description="Bake object moves/rotations/scales (SH rotated) into the data",
    )

    def check(self, context):
        want = _EXPORT_BY_ID[self.file_format][2]
        self.filename_ext = want
        if not self.filepath or self.filepath.lower().endswith(want):
            return False
        have = _ending_format(self.filepath)
        root = self.filepath[: -len(_EXPORT_BY_ID[have][2])] if have else os.path.splitext(self.filepath)[0]
        self.filepath = root + want
        return True

    def execute(self, context):
        from exgs_core import exgs_format
        from exgs_core.io import save

        if not self.filepath:
            self.report({"ERROR"}, "ExGS export: no file path")
            return {"CANCELLED"}
        _, fmt, want, _, _ = _EXPORT_BY_ID[self.file_format]
        have = _ending_format(self.filepath)
        if have is None and os.path.splitext(self.filepath)[1] == "":
            self.filepath += want
        elif have != self.file_format:
            ext = _EXPORT_BY_ID[have][2] if have else os.path.splitext(self.filepath)[1].lower()
            hint = (
                f"the file name ends in {ext} but Format is {self.file_format}: give it a {want} name or "
                f"choose Format {have}"
                if have
                else f"cannot write {ext} files (formats: {', '.join(e[2] for e in EXPORT_FORMATS)})"
            )
            self.report({"ERROR"}, f"ExGS export: {self.filepath}: {hint}")
            return {"CANCELLED"}
        objects = _target_objects(context, self.use_selection)
        if not objects:
            self.report({"ERROR"}, "ExGS export: no Gaussian-splat object selected")
            return {"CANCELLED"}
        try:
            data, scene = export_scene_bytes(objects, fmt, self.apply_transform)
            if not scene.validate().ok:
                scene, rep = scene.sanitize()
                self.report({"WARNING"}, f"ExGS export: repaired data: {rep}")
            if fmt == "exgs":
                exgs_format.write_exgs(self.filepath, data if data is not None else exgs_format.encode(scene))
            else:
                opts = {"version": int(self.spz_version)} if fmt == "spz" else {}
                wrep = save(scene, self.filepath, format=fmt, **opts)
                for k, n in wrep.clamped.items():
                    self.report({"WARNING"}, f"ExGS export: clamped {n:,} value(s) of {k} into the {fmt} range")
        except (ExgsError, ValueError, OSError) as e:
            self.report({"ERROR"}, f"ExGS export: {e}")
            return {"CANCELLED"}
        size = os.path.getsize(self.filepath)
        self.report({"INFO"}, f"ExGS: wrote {scene.n:,} Gaussians to {self.filepath} ({size:,} bytes)")
        return {"FINISHED"}


# =========================================================================== compress


_JOBS: dict[str, CompressJob] = {}  # scene name -> running job (one per scene); cleared on unregister


def compress_cameras(context, ob, props):
    """The views to score with, in the object's data space, or None for automatic views."""
    if props.views == "AUTO":
        return None
    if props.views == "JSON":
        from exgs_core.views import load_cameras_json

        path = bpy.path.abspath(props.cameras_json)
        if not path:
            raise ExgsError("choose a cameras.json file (or switch Views to Automatic)")
        return load_cameras_json(path)
    from .engine.camera import camera_from_object, render_size

    w, h = render_size(context.scene.render)
    s = 512 / max(w, h)
    w, h = max(1, round(w * s)), max(1, round(h * s))
    inv = np.linalg.inv(np.array(ob.matrix_world, np.float64))
    cams = []
    for cam_ob in context.scene.objects:
        if cam_ob.type != "CAMERA" or cam_ob.data.type != "PERSP":
            continue
        c = camera_from_object(cam_ob, context.scene.render, w, h)
        # world -> object space: the object's data is what gets compressed
        c2w = inv @ np.array(cam_ob.matrix_world, np.float64)
        from exgs_core.camera import Camera

        cd = cam_ob.data
        c = Camera.from_blender(
            c2w,
            lens_mm=cd.lens,
            sensor_width_mm=cd.sensor_width,
            sensor_height_mm=cd.sensor_height,
            sensor_fit=cd.sensor_fit,
            shift_x=cd.shift_x,
            shift_y=cd.shift_y,
            width=w,
            height=h,
            clip_start=cd.clip_start,
            clip_end=cd.clip_end,
            name=cam_ob.name,
        )
        cams.append(c)
    if not cams:
        raise ExgsError("Views is 'Scene cameras' but the scene has no perspective camera")
    return cams


def compress_options(props):
    """The panel's settings (the scene's ``exgs`` properties) as :class:`exgs_core.compress.CompressOptions`; the
    "Fast" speed is the CLI's ``--fast`` (:data:`exgs_core.presets.FAST_PRESET`)."""
    from exgs_core.compress import CompressOptions
    from exgs_core.presets import FAST_PRESET

    kw = dict(
        ratio=float(props.ratio),
        sh_keep=float(props.sh_keep),
        views=int(props.auto_views),
        target_bytes=int(props.target_mb * 1e6) if props.size_mode == "TARGET" else None,
        sh_keep_auto=props.size_mode == "TARGET" and bool(props.sh_keep_auto),
        refit=bool(props.refit),
        head=str(props.scene_head),
    )
    if props.speed == "FAST":
        kw.update(FAST_PRESET)
    return CompressOptions(**kw)


class EXGS_OT_compress(bpy.types.Operator):
    """Compress the active splat object with UGC; the result appears beside it (the original is hidden)"""

    bl_idname = "exgs.compress"
    bl_label = "Compress Splats"
    bl_options = {"REGISTER", "UNDO"}

    _timer = None
    _job = None
    _source = ""

    @classmethod
    def poll(cls, context):
        return convert.is_splat_object(context.active_object) and context.scene.exgs.job_running is False

    def _start(self, context):
        ob = context.active_object
        props = context.scene.exgs
        try:
            opts = compress_options(props)
            cams = compress_cameras(context, ob, props)
        except (ExgsError, ValueError) as e:
            self.report({"ERROR"}, f"ExGS compress: {e}")
            return None
        scene = convert.pointcloud_to_scene(ob.data, antialiased=bool(ob.exgs.antialiased))
        self._source = ob.name
        return CompressJob(scene=scene, options=opts, cameras=cams)

    def execute(self, context):
        """Synchronous run (scripts, ``blender -b``, tests: no event loop there)."""
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        job.run()
        return self._finish(context, job)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        self._job = job
        _JOBS[context.scene.name] = job
        props = context.scene.exgs
        props.job_running, props.job_progress, props.job_stage, props.job_message = True, 0.0, "starting", ""
        job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        props = context.scene.exgs
        if event.type == "ESC" or not props.job_running:
            job.cancel()
        if event.type != "TIMER" and not job.done:
            return {"PASS_THROUGH"}
        props.job_progress, props.job_stage = job.progress, job.stage
        context.window_manager.progress_update(int(job.progress * 100))
        if context.area is not None:
            context.area.tag_redraw()
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        context.workspace.status_text_set(f"ExGS compress: {job.stage} {job.progress * 100:.0f}% (Esc cancels)")
        if not job.done:
            return {"PASS_THROUGH"}
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        context.workspace.status_text_set(None)
        _JOBS.pop(context.scene.name, None)
        props.job_running = False
        return self._finish(context, job)

    def _finish(self, context, job):
        props = context.scene.exgs
        props.job_progress = job.progress
        props.job_stage = job.stage
        if job.cancelled:
            props.job_message = "cancelled"
            self.report({"WARNING"}, "ExGS compress: cancelled")
            return {"CANCELLED"}
        if job.error:
            props.job_message = job.error.splitlines()[0]
            self.report({"ERROR"}, f"ExGS compress: {job.error}")
            return {"CANCELLED"}
        src = bpy.data.objects.get(self._source)
        out = job.result
        rep = out.report
        try:  # everything that can fail before the scene changes: nothing half-done on an error
            cache = cache_dir() / f"{hashlib.sha1(out.data).hexdigest()[:16]}.exgs"
            cache.write_bytes(out.data)
        except OSError as e:
            props.job_message = f"cannot keep the compressed file: {e}"
            self.report({"ERROR"}, f"ExGS compress: cannot keep the compressed file: {e}")
            return {"CANCELLED"}
        name = (src.name if src else "splats") + ".exgs"
        coll = src.users_collection[0] if src is not None and src.users_collection else None
        ob = create_splat_object(
            context, out.scene, name, collection=coll, orient=False, source=src.exgs.source_path if src else ""
        )
        made = ob.exgs
        made.exgs_cache = str(cache)
        made.exgs_cache_hash = scene_hash(convert.pointcloud_to_scene(ob.data))
        made.gaussians_before, made.gaussians_after = rep.gaussians_in, rep.gaussians_out
        made.source_bytes = src.exgs.source_bytes if src is not None else 0
        made.sh3_ply_bytes, made.compressed_bytes = rep.bytes_sh3_ply, rep.bytes_out
        if src is not None:
            ob.matrix_world = src.matrix_world.copy()
            made.orientation = src.exgs.orientation[:]
            made.antialiased = src.exgs.antialiased
            src.hide_set(True)
            src.hide_render = True
        for o in context.selected_objects:
            o.select_set(False)
        ob.select_set(True)
        context.view_layer.objects.active = ob
        msg = (
            f"{rep.gaussians_in:,} -> {rep.gaussians_out:,} Gaussians, "
            + "; ".join(size_lines(made))
            + f" (in {job.seconds:.1f} s{'; ' + FIRST_USE if job.first_use else ''})"
        )
        props.job_message = size_lines(made)[0]
        self.report({"INFO"}, "ExGS compress: " + msg)
        return {"FINISHED"}


class EXGS_OT_compress_cancel(bpy.types.Operator):
    """Cancel the running compression"""

    bl_idname = "exgs.compress_cancel"
    bl_label = "Cancel Compression"

    def execute(self, context):
        job = _JOBS.get(context.scene.name)
        if job is not None:
            job.cancel()
        context.scene.exgs.job_running = False
        return {"FINISHED"}


# =========================================================================== restoration worker environment


#: The Set Up Worker run in progress or last finished: {"thread", "log", "error", "python", "cancel"}.
SETUP: dict = {}


def setup_worker_status() -> str:
    """One line for the preferences: where the worker's Python is, or what Set Up Worker is doing / did."""
    from exgs_core.worker import WorkerError, resolve_python
    from exgs_core.worker.environment import default_dir

    th = SETUP.get("thread")
    if th is not None and th.is_alive():
        return f"Setting up the worker in {default_dir()} (log: {SETUP['log']})..."
    if SETUP.get("error"):
        return f"Set Up Worker failed: {SETUP['error']}"
    from . import preferences

    try:
        return f"Worker Python: {resolve_python(preferences.restore_settings().python)}"
    except WorkerError:
        return f"No worker environment yet ({default_dir()}): Set Up Worker creates it"


class EXGS_OT_setup_worker(bpy.types.Operator):
    """Create the restoration worker's Python environment (torch, diffusers: several GB from PyPI) in the place ExGS
    looks for it; restored renders use it from then on"""

    bl_idname = "exgs.setup_worker"
    bl_label = "Set Up Worker"

    def _begin(self):
        import tempfile

        from exgs_core.worker.environment import default_dir, find_base_python, setup_commands

        if not getattr(bpy.app, "online_access", True):
            base = find_base_python() or "python3"
            cmds = "; ".join(" ".join(c) for c in setup_commands(base))
            self.report(
                {"ERROR"},
                "ExGS: Blender's online access is off (Preferences > System > Network), so the "
                f"add-on downloads nothing. Allow it, or run: {cmds}",
            )
            return None
        th = SETUP.get("thread")
        if th is not None and th.is_alive():
            self.report({"WARNING"}, "ExGS: the worker environment is already being set up")
            return None
        fd, log = tempfile.mkstemp(prefix="exgs-worker-setup-", suffix=".log")
        os.close(fd)
        import threading

        SETUP.clear()
        SETUP.update(log=log, error=None, python=None, cancel=threading.Event(), dir=str(default_dir()))
        return log

    @staticmethod
    def _run() -> None:
        from exgs_core.worker import WorkerError
        from exgs_core.worker.environment import create

        try:
            with open(SETUP["log"], "ab") as f:
                SETUP["python"] = create(log=f, cancel=SETUP["cancel"])
        except (WorkerError, OSError) as e:
            SETUP["error"] = str(e)

    def execute(self, context):
        """Synchronous (scripts, ``blender -b``)."""
        if self._begin() is None:
            return {"CANCELLED"}
        self._run()
        if SETUP["error"]:
            self.report({"ERROR"}, f"ExGS: Set Up Worker failed: {SETUP['error']} (log: {SETUP['log']})")
            return {"CANCELLED"}
        self.report({"INFO"}, f"ExGS: worker environment ready: {SETUP['python']}")
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if self._begin() is None:
            return {"CANCELLED"}
        import threading

        SETUP["thread"] = threading.Thread(target=self._run, name="exgs-setup-worker", daemon=True)
        SETUP["thread"].start()

        def poll():  # redraw the preferences until it is done
            for win in context.window_manager.windows:
                for area in win.screen.areas:
                    if area.type == "PREFERENCES":
                        area.tag_redraw()
            return 1.0 if SETUP["thread"].is_alive() else None

        bpy.app.timers.register(poll, first_interval=1.0)
        self.report(
            {"INFO"}, f"ExGS: setting up the worker environment in {SETUP['dir']} (minutes; log: {SETUP['log']})"
        )
        return {"FINISHED"}


classes = (EXGS_OT_import_scene, EXGS_OT_export_scene, EXGS_OT_compress, EXGS_OT_compress_cancel, EXGS_OT_setup_worker)


def cancel_all_jobs() -> None:
    for job in list(_JOBS.values()):
        job.cancel()
    _JOBS.clear()
    if SETUP.get("cancel") is not None:
        SETUP["cancel"].set()
