"""Property groups: ``scene.exgs`` (compression settings and job status) and ``object.exgs`` (what a splat
object came from). Enum items carry explicit indices so .blend files stay compatible."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

from exgs_core.conventions import human_bytes

IDENTITY16 = tuple(float(i % 5 == 0) for i in range(16))


class EXGS_PG_object(bpy.types.PropertyGroup):
    """Per-object facts about a splat object."""

    source_path: StringProperty(name="Source", description="File the splats were imported from", subtype="FILE_PATH")
    source_format: StringProperty(name="Format")
    orientation: FloatVectorProperty(
        name="Import orientation",
        size=16,
        default=IDENTITY16,
        description="Row-major 4x4 rotation applied at import (file axes -> Blender); export undoes it",
    )
    antialiased: BoolProperty(name="Antialiased", description="Render with gsplat's antialiased (Mip-Splatting) mode")
    head_hex: StringProperty(
        name="Scene head",
        default="",
        description="The scene head of the .exgs these splats came from (hex of its HEAD section): it restores the "
        "frame (instead of GaussPainter, unless the painter weights ask to run after it) when this is the only "
        "splat object in the frame",
        options={"HIDDEN"},
    )
    gaussians_before: IntProperty(name="Gaussians before", default=0)
    gaussians_after: IntProperty(name="Gaussians after", default=0)
    # Byte counts are decimal strings: Blender's IntProperty is 32-bit (a 9M-Gaussian SH3 PLY is > 2**31 bytes).
    # Read and write them as ints through source_bytes / sh3_ply_bytes / compressed_bytes below.
    source_bytes_text: StringProperty(
        name="Source file bytes", default="", description="Size of the file the splats were imported from"
    )
    sh3_ply_bytes_text: StringProperty(
        name="SH3 PLY bytes", default="", description="Size of the uncompressed scene as a standard SH3 3DGS PLY"
    )
    compressed_bytes_text: StringProperty(
        name="Compressed bytes", default="", description="Size of the compressed .exgs file"
    )
    exgs_cache: StringProperty(
        name="Compressed file", subtype="FILE_PATH", description="The .exgs bytes the compressor wrote for this object"
    )
    exgs_cache_hash: StringProperty(name="Hash of the data the compressed file decodes to")

    source_bytes = property(
        lambda self: _count(self.source_bytes_text),
        lambda self, v: setattr(self, "source_bytes_text", _text(v)),
        doc="int: bytes of the source file (0: unknown, e.g. not imported from a file)",
    )
    sh3_ply_bytes = property(
        lambda self: _count(self.sh3_ply_bytes_text),
        lambda self, v: setattr(self, "sh3_ply_bytes_text", _text(v)),
        doc="int: bytes of the scene as an SH3 PLY before compression (0: not compressed)",
    )
    compressed_bytes = property(
        lambda self: _count(self.compressed_bytes_text),
        lambda self, v: setattr(self, "compressed_bytes_text", _text(v)),
        doc="int: bytes of the compressed .exgs (0: not compressed)",
    )


def _count(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _text(value) -> str:
    v = int(value)
    if v < 0:
        raise ValueError(f"a byte count cannot be negative ({v})")
    return str(v)


class EXGS_PG_scene(bpy.types.PropertyGroup):
    """Compression settings (3D view sidebar, tab "ExGS") and the running job's status."""

    size_mode: EnumProperty(
        name="Size",
        items=[
            ("RATIO", "Retention ratio", "Keep this fraction of the Gaussians", 0),
            ("TARGET", "Target size", "Choose the ratio so the file fits this many MB", 1),
        ],
        default="RATIO",
    )
    ratio: FloatProperty(
        name="Retention",
        min=0.001,
        max=1.0,
        default=0.1,
        subtype="FACTOR",
        description="Fraction of the Gaussians kept (rho)",
    )
    target_mb: FloatProperty(name="Target MB", min=0.001, default=1.0, description="Largest allowed file size")
    sh_keep: FloatProperty(
        name="SH keep",
        min=0.0,
        max=1.0,
        default=0.1,
        subtype="FACTOR",
        description="Fraction of the kept Gaussians that keep their higher SH",
    )
    sh_keep_auto: BoolProperty(
        name="Choose SH keep",
        default=True,
        description="Target size: try SH keep 0.1, 0.3 and 1.0 (and the value above) and "
        "keep the best-looking file that fits (slower)",
    )
    speed: EnumProperty(
        name="Speed",
        items=[
            ("BEST", "Best", "Judge three merge rules, the codec steps and a scene head on check views (default)", 0),
            (
                "FAST",
                "Fast",
                "For very large scenes: one merge rule, the compact codec, no scene head, 12 automatic views; "
                "3-5x faster, up to several dB lower on fuzzy scenes",
                1,
            ),
        ],
        default="BEST",
    )
    refit: BoolProperty(
        name="Refit colours",
        default=True,
        description="Refit the kept Gaussians' colours against the original's renders (least squares; "
        "about +2 dB at 10 %, a second or two more)",
    )
    scene_head: EnumProperty(
        name="Scene head",
        items=[
            ("auto", "Auto", "Store a small restoration filter in the .exgs where it pays for its bytes", 0),
            ("off", "Off", "No scene head", 1),
            ("always", "Always", "Always store the best scene head, even where retention would pay more", 2),
        ],
        default="auto",
        description="Scene head: a restoration filter fitted against the original, applied when rendering",
    )
    views: EnumProperty(
        name="Views",
        items=[
            ("AUTO", "Automatic", "Automatic orbit / inside-out views", 0),
            ("CAMERAS", "Scene cameras", "Every camera object in the scene", 1),
            ("JSON", "cameras.json", "Cameras from a 3DGS cameras.json", 2),
        ],
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
        items=[
            (
                "SRGB",
                "sRGB",
                "Splat colours are display sRGB (every 3DGS capture): converted to scene linear, "
                "so the Standard view transform shows the trained colours",
                0,
            ),
            ("LINEAR", "Linear", "Splat colours are already scene linear", 1),
        ],
        default="SRGB",
    )
    # the update re-declares the passes, so the compositor's Render Layers node shows Unrestored / Mask
    # (an update must return None: hence list.clear())
    restore: BoolProperty(
        name="Restore",
        default=False,
        update=lambda self, context: [vl.update_render_passes() for vl in self.id_data.view_layers].clear(),
        description="Restore this scene's renders (F12, animation, viewport): an .exgs object by its file's scene head "
        "(as rendered when it has none), other splats by GaussPainter; Combined is the restored image, the "
        "Unrestored and Mask passes keep the raw render and its coverage mask",
    )
    temporal: BoolProperty(
        name="Temporal stabilisation",
        default=True,
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


# --------------------------------------------------------------------------------------------- size reports
def size_lines(e) -> list[str]:
    """What an object's compression did to its size, for the panel and the report (``e`` = ``object.exgs``):
    the ratio against the user's own source file first, the SH3-PLY ratio labelled as such."""
    out, src, ply = e.compressed_bytes, e.source_bytes, e.sh3_ply_bytes
    name = os.path.basename(e.source_path) if e.source_path else ""
    lines = []
    if out:
        if src:
            lines.append(
                f"{human_bytes(src)} source file{f' ({name})' if name else ''} -> {human_bytes(out)}: "
                f"{src / out:.1f}x smaller"
            )
        else:
            lines.append(f"Compressed: {human_bytes(out)} (no source file to compare with)")
        if ply:
            lines.append(f"vs. SH3 PLY ({human_bytes(ply)}): {ply / out:.1f}x smaller")
    return lines
