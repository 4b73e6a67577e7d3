"""Menus, the FileHandler (drag and drop) and the 3D-view sidebar panel (tab "ExGS"). Layout only."""

from __future__ import annotations

import bpy

from . import convert, operators
from .properties import size_lines


def menu_import(self, context):
    self.layout.operator(
        operators.EXGS_OT_import_scene.bl_idname, text="Gaussian Splats (.ply/.spz/.sog/.glb/.splat/.exgs)"
    )


def menu_export(self, context):
    self.layout.operator(operators.EXGS_OT_export_scene.bl_idname, text="Gaussian Splats (.exgs/.spz/.sog/.glb/.ply)")


class EXGS_FH_import(bpy.types.FileHandler):
    bl_idname = "EXGS_FH_import"
    bl_label = "ExGS Gaussian splats"
    bl_import_operator = "exgs.import_scene"
    bl_export_operator = "exgs.export_scene"
    bl_file_extensions = ".ply;.splat;.spz;.sog;.glb;.exgs"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type in {"VIEW_3D", "OUTLINER"}


class EXGS_PT_compress(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ExGS"
    bl_label = "Compress"

    def draw(self, context):
        layout = self.layout
        props = context.scene.exgs
        ob = context.active_object
        if not convert.is_splat_object(ob):
            layout.label(text="Select a Gaussian-splat object", icon="INFO")
        else:
            layout.label(text=f"{ob.name}: {len(ob.data.points):,} Gaussians", icon="POINTCLOUD_DATA")
            from exgs_core.presets import FAST_HINT_GAUSSIANS

            if len(ob.data.points) >= FAST_HINT_GAUSSIANS and props.speed == "BEST":
                layout.label(text="Large scene: Speed Fast compresses about 5x quicker", icon="INFO")
        col = layout.column()
        col.prop(props, "size_mode", expand=True)
        col.prop(props, "ratio" if props.size_mode == "RATIO" else "target_mb")
        if props.size_mode == "TARGET":
            col.prop(props, "sh_keep_auto")
        col.prop(props, "sh_keep")
        col.prop(props, "speed", expand=True)
        fast = props.speed == "FAST"
        col.prop(props, "refit")
        row = col.row()
        row.enabled = not fast  # Fast stores no scene head
        row.prop(props, "scene_head")
        col.prop(props, "views")
        if props.views == "JSON":
            col.prop(props, "cameras_json")
        elif props.views == "AUTO":
            if fast:
                from exgs_core.presets import FAST_PRESET

                col.label(text=f"Auto views: {FAST_PRESET['views']} (Fast)")
            else:
                col.prop(props, "auto_views")
        from .jobs import WARMUP

        if WARMUP.running:  # first use after installing: kernels compile in the background
            layout.label(
                text=f"Preparing kernels (first use, once per machine): {WARMUP.progress * 100:.0f}%", icon="TIME"
            )
        if props.job_running:
            row = layout.row()
            row.progress(
                factor=props.job_progress, text=f"{props.job_stage} {props.job_progress * 100:.0f}%"
            ) if hasattr(row, "progress") else row.label(text=f"{props.job_stage} {props.job_progress * 100:.0f}%")
            layout.operator(operators.EXGS_OT_compress_cancel.bl_idname, icon="CANCEL")
        else:
            layout.operator(operators.EXGS_OT_compress.bl_idname, icon="MOD_DECIM")
        if props.job_message:
            layout.label(text=props.job_message)
        if ob is not None and convert.is_splat_object(ob) and ob.exgs.gaussians_before:
            box = layout.box()
            e = ob.exgs
            box.label(text=f"Gaussians: {e.gaussians_before:,} -> {e.gaussians_after:,}")
            for line in size_lines(e):  # against the user's own file first; the SH3-PLY ratio labelled
                box.label(text=line)
        col = layout.column(align=True)
        col.label(text="Export", icon="EXPORT")
        row = col.row(align=True)
        for fid in ("EXGS", "SPZ", "SOG", "GLB"):
            op = row.operator(operators.EXGS_OT_export_scene.bl_idname, text=operators._EXPORT_BY_ID[fid][3])
            op.file_format = fid
        row = col.row(align=True)
        for fid in ("CPLY", "SPLAT", "PLY"):
            op = row.operator(operators.EXGS_OT_export_scene.bl_idname, text=operators._EXPORT_BY_ID[fid][3])
            op.file_format = fid


class EXGS_PT_render(bpy.types.Panel):
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_label = "ExGS"
    COMPAT_ENGINES = {"EXGS"}

    @classmethod
    def poll(cls, context):
        return context.engine in cls.COMPAT_ENGINES

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        sc = context.scene
        layout.prop(sc.exgs, "color_input")
        layout.prop(sc.render, "film_transparent", text="Transparent background")
        if sc.world is not None and not sc.render.film_transparent:
            layout.prop(sc.world, "color", text="Background")
        layout.prop(context.view_layer, "use_pass_z", text="Depth pass")
        layout.prop(sc.exgs, "restore", text="Restore (scene head / GaussPainter)")
        if sc.exgs.restore:
            layout.prop(sc.exgs, "temporal")
            from .engine.final import restore_state, visible_head
            from .engine.restoring import head_alone
            from .preferences import restore_settings

            head = visible_head(sc)
            on, why_not = restore_state(sc, head)
            if on and head_alone(restore_settings(context), head):
                if head.is_identity:  # an .exgs whose encoder kept no head: GaussPainter does not run on .exgs renders
                    layout.label(text="Shown as rendered: the .exgs file has no scene head", icon="INFO")
                else:
                    layout.label(text="Restored by the file's scene head, in Blender (no worker needed)", icon="INFO")
            if why_not:  # frames render unrestored: say why, and offer the fix
                col = layout.column(align=True)
                col.label(text="Renders will not be restored:", icon="ERROR")
                col.label(text=why_not[:200])
                if "worker environment" in why_not:
                    col.operator(operators.EXGS_OT_setup_worker.bl_idname, icon="CONSOLE")
        vt = context.scene.view_settings.view_transform
        if vt != "Standard" and context.scene.exgs.color_input == "SRGB":
            layout.label(text=f"View transform '{vt}' changes the trained colours; 'Standard' keeps them", icon="ERROR")


classes = (EXGS_FH_import, EXGS_PT_compress, EXGS_PT_render)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister():
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
