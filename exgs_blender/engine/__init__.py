"""The ``EXGS`` render engine: a dispatcher to :mod:`.final` (F12, animation, ``-b``) and :mod:`.viewport`."""

from __future__ import annotations

import bpy

from . import final, restoring, viewport


class ExgsRenderEngine(bpy.types.RenderEngine):
    bl_idname = "EXGS"
    bl_label = "ExGS"
    bl_use_preview = False  # material previews have no splats
    bl_use_postprocess = True  # compositor and sequencer still run after our frames
    bl_use_eevee_viewport = False  # Material preview shows our own render, not EEVEE
    bl_use_shading_nodes_custom = False  # keep Blender's shader nodes for other engines' materials
    bl_use_gpu_context = False  # exgs_core renders on CPU/CUDA itself; no OpenGL needed in final renders

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # the old no-argument form gives silently empty renders on 5.0
        self._viewport = None

    def __del__(self):
        vp = getattr(self, "_viewport", None)
        if vp is not None:
            vp.stop()
        sup = getattr(super(), "__del__", None)
        if sup is not None:
            sup()

    # ------------------------------------------------------------------ final
    def render(self, depsgraph):
        final.render(self, depsgraph)

    def update_render_passes(self, scene=None, renderlayer=None):
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        self.register_pass(scene, renderlayer, *final.ALPHA_PASS)
        if renderlayer.use_pass_z:
            self.register_pass(scene, renderlayer, *final.DEPTH_PASS)
        if scene is not None and getattr(getattr(scene, "exgs", None), "restore", False):
            self.register_pass(scene, renderlayer, *final.UNRESTORED_PASS)
            self.register_pass(scene, renderlayer, *final.MASK_PASS)

    # ------------------------------------------------------------------ viewport
    def view_update(self, context, depsgraph):
        from .. import preferences

        first = self._viewport is None
        if first:
            self._viewport = viewport.ViewportRenderer()
        vp = self._viewport
        vp.backend = preferences.render_backend(context)
        settings = preferences.restore_settings(context)
        vp.worker_settings = settings
        vp.remote = final.render_in_worker(vp.backend, settings)
        vp.temporal = bool(getattr(context.scene, "exgs", None) and context.scene.exgs.temporal)
        if first or _splats_changed(depsgraph):  # selection changes etc. do not re-read the splats
            scene, _names = final.gather_splats(depsgraph)
            vp.set_scene(scene)
        from exgs_core.codec.head import scene_head

        on, vp.notice = final.restore_state(context.scene, scene_head(vp.scene) if vp.scene is not None else None)
        vp.restore_settings = settings if on else None

    def view_draw(self, context, depsgraph):
        from .. import preferences

        if self._viewport is None:
            self.view_update(context, depsgraph)
        region, rv3d = context.region, context.region_data
        vp = self._viewport
        vp.request(
            rv3d.view_matrix,
            rv3d.window_matrix,
            region.width,
            region.height,
            rv3d.is_perspective,
            preferences.viewport_scale(context),
        )
        got = vp.latest()
        if vp.error:
            self.update_stats("", f"ExGS viewport: {vp.error}")
        elif vp.notice:
            self.update_stats("", f"ExGS viewport: not restored: {vp.notice}")
        elif got is None:
            from ..jobs import FIRST_USE, kernels_ready

            if not kernels_ready():
                self.update_stats("", f"ExGS viewport: {FIRST_USE}...")
        elif vp.restore_settings is not None and got is not None and not got[1]:
            self.update_stats("", "ExGS viewport: restoring...")
        if got is None:
            self.tag_redraw()
            return
        rgba, finished = got
        viewport.draw_frame(self, context, rgba, region.width, region.height)
        if not finished:
            self.tag_redraw()


def _splats_changed(depsgraph) -> bool:
    """True when an update may change what the splats look like: point-cloud data, a point-cloud object's
    transform/geometry/visibility, or a collection (objects added, removed, hidden)."""
    for u in depsgraph.updates:
        idb = u.id
        if isinstance(idb, (bpy.types.PointCloud, bpy.types.Collection)):
            return True
        if (
            isinstance(idb, bpy.types.Object)
            and idb.type == "POINTCLOUD"
            and (u.is_updated_transform or u.is_updated_geometry)
        ):
            return True
    return False


# Panels of other engines that also make sense for ours.
_PANELS = (
    "RENDER_PT_format",
    "RENDER_PT_frame_range",
    "RENDER_PT_output",
    "RENDER_PT_color_management",
    "RENDER_PT_color_management_display_settings",
    "RENDER_PT_film",
    "DATA_PT_camera",
    "DATA_PT_lens",
    "DATA_PT_camera_display",
    "VIEWLAYER_PT_layer",
    "RENDER_PT_post_processing",
    "RENDER_PT_stamp",
    "RENDER_PT_encoding",
    "RENDER_PT_output_views",
    "WORLD_PT_context_world",
    "DATA_PT_context_camera",
    "OBJECT_PT_context_object",
    "RENDER_PT_format_presets",
    "RENDER_PT_time_stretching",
    "RENDER_PT_color_management_curves",
    "RENDER_PT_color_management_white_balance",
    "RENDER_PT_color_management_white_balance_presets",
    "RENDER_PT_color_management_advanced",
    "RENDER_PT_color_management_working_space",
    "RENDER_PT_output_color_management",
    "RENDER_PT_output_pixel_density",
    "RENDER_PT_encoding_video",
    "RENDER_PT_encoding_audio",
    "RENDER_PT_ffmpeg_presets",
    "RENDER_PT_stamp_burn",
    "RENDER_PT_stamp_note",
)


def _compat_panels():
    for name in _PANELS:
        p = getattr(bpy.types, name, None)
        if p is not None and hasattr(p, "COMPAT_ENGINES"):
            yield p


def register():
    bpy.utils.register_class(ExgsRenderEngine)
    for p in _compat_panels():
        p.COMPAT_ENGINES.add(ExgsRenderEngine.bl_idname)


def unregister():
    restoring.shutdown()  # the worker process goes with the add-on
    for p in _compat_panels():
        p.COMPAT_ENGINES.discard(ExgsRenderEngine.bl_idname)
    bpy.utils.unregister_class(ExgsRenderEngine)
