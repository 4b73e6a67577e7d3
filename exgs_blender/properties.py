"""Property groups: ``scene.exgs`` (compression settings and job status) and ``object.exgs`` (what a splat
object came from). Enum items carry explicit indices so .blend files stay compatible."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

IDENTITY16 = tuple(float(i % 5 == 0) for i in range(16))


class EXGS_PG_object(bpy.types.PropertyGroup):
    """Per-object facts about a splat object."""

    source_path: StringProperty(name="Source", description="File the splats were imported from", subtype="FILE_PATH")
    source_format: StringProperty(name="Format")
    orientation: FloatVectorProperty(
        name="Import orientation", size=16, default=IDENTITY16,
        description="Row-major 4x4 rotation applied at import (file axes -> Blender); export undoes it",
    )
    antialiased: BoolProperty(name="Antialiased", description="Render with gsplat's antialiased (Mip-Splatting) mode")
    gaussians_before: IntProperty(name="Gaussians before", default=0)
    gaussians_after: IntProperty(name="Gaussians after", default=0)
    bytes_source: IntProperty(name="Source bytes (SH3 PLY)", default=0)
    bytes_out: IntProperty(name="Compressed bytes", default=0)
    exgs_cache: StringProperty(name="Compressed file", subtype="FILE_PATH",
                               description="The .exgs bytes the compressor wrote for this object")
    exgs_cache_hash: StringProperty(name="Hash of the data the compressed file decodes to")


class EXGS_PG_scene(bpy.types.PropertyGroup):
    """Compression settings (3D view sidebar, tab "ExGS") and the running job's status."""

    size_mode: EnumProperty(
        name="Size", items=[("RATIO", "Retention ratio", "Keep this fraction of the Gaussians", 0),
                            ("TARGET", "Target size", "Choose the ratio so the file fits this many MB", 1)],
        default="RATIO",
    )
    ratio: FloatProperty(name="Retention", min=0.001, max=1.0, default=0.1, subtype="FACTOR",
                         description="Fraction of the Gaussians kept (rho)")
    target_mb: FloatProperty(name="Target MB", min=0.001, default=1.0, description="Largest allowed file size")
    sh_keep: FloatProperty(name="SH keep", min=0.0, max=1.0, default=0.1, subtype="FACTOR",
                           description="Fraction of the kept Gaussians that keep their higher SH")
    sh_keep_auto: BoolProperty(name="Choose SH keep", default=True,
                               description="Target size: try SH keep 0.1, 0.3 and 1.0 (and the value above) and "
                                           "keep the best-looking file that fits (slower)")
    views: EnumProperty(
        name="Views", items=[("AUTO", "Automatic", "Automatic orbit / inside-out views", 0),
                             ("CAMERAS", "Scene cameras", "Every camera object in the scene", 1),
                             ("JSON", "cameras.json", "Cameras from a 3DGS cameras.json", 2)],
        default="AUTO",
    )
    cameras_json: StringProperty(name="cameras.json", subtype="FILE_PATH")
    auto_views: IntProperty(name="Auto views", min=1, max=256, default=24)
    # status of the running/last job (written by the operator on the main thread)
    job_running: BoolProperty(default=False, options={"SKIP_SAVE"})
    job_progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    job_stage: StringProperty(default="", options={"SKIP_SAVE"})
    job_message: StringProperty(default="", options={"SKIP_SAVE"})
    # rendering
    color_input: EnumProperty(
        name="Splat colours",
        items=[("SRGB", "sRGB", "Splat colours are display sRGB (every 3DGS capture): converted to scene linear, "
                "so the Standard view transform shows the trained colours", 0),
               ("LINEAR", "Linear", "Splat colours are already scene linear", 1)],
        default="SRGB",
    )
    # the update re-declares the passes, so the compositor's Render Layers node shows Unrestored / Mask
    # (an update must return None: hence list.clear())
    restore: BoolProperty(
        name="Restore", default=False,
        update=lambda self, context: [vl.update_render_passes() for vl in self.id_data.view_layers].clear(),
        description="Run GaussPainter on this scene's renders (F12, animation, viewport): Combined is the restored "
                    "image, the Unrestored and Mask passes keep the raw render and its coverage mask",
    )
    temporal: BoolProperty(
        name="Temporal stabilisation", default=True,
        description="Animations: blend each frame's restoration with the previous frame's, reprojected with "
                    "depth, so restored frames do not flicker",
    )


classes = (EXGS_PG_object, EXGS_PG_scene)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.Object.exgs = bpy.props.PointerProperty(type=EXGS_PG_object)
    bpy.types.Scene.exgs = bpy.props.PointerProperty(type=EXGS_PG_scene)


def unregister():
    del bpy.types.Scene.exgs
    del bpy.types.Object.exgs
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
