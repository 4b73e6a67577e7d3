"""Add-on preferences: render device, restoration, viewport resolution. ``bl_idname`` is the package name, so the
same code works as ``exgs_blender`` (development) and ``bl_ext.<repo>.exgs`` (installed extension)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty

ADDON_ID = __package__


class EXGS_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    device: EnumProperty(
        name="Render device",
        items=[("AUTO", "Auto", "gsplat on CUDA when torch + gsplat + a GPU are available, else the CPU renderer", 0),
               ("CPU", "CPU", "exgs_core's numba CPU rasteriser", 1),
               ("CUDA", "CUDA", "gsplat on CUDA (fails with a clear error when unavailable)", 2)],
        default="AUTO",
    )
    restoration: BoolProperty(
        name="Restoration", default=False,
        description="Restore renders of compressed scenes with GaussPainter (needs the restoration backend; "
                    "off = plain renders)",
    )
    viewport_scale: FloatProperty(
        name="Viewport resolution", min=0.05, max=1.0, default=0.5, subtype="FACTOR",
        description="Final resolution of the progressive viewport render, as a fraction of the region",
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "device")
        col.prop(self, "restoration")
        col.prop(self, "viewport_scale")


def get(context=None) -> EXGS_AddonPreferences | None:
    """The preferences, or None when the add-on is not enabled through the preferences (e.g. bare register())."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def render_backend(context=None) -> str:
    """exgs_core render backend name for the chosen device ("auto", "cpu" or "gsplat")."""
    p = get(context)
    dev = p.device if p is not None else "AUTO"
    return {"AUTO": "auto", "CPU": "cpu", "CUDA": "gsplat"}[dev]


def viewport_scale(context=None) -> float:
    p = get(context)
    return float(p.viewport_scale) if p is not None else 0.5


classes = (EXGS_AddonPreferences,)
