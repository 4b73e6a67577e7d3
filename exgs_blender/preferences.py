"""Add-on preferences: render device, restoration (and where it runs: the worker process or in-process),
viewport resolution. ``bl_idname`` is the package name, so the
same code works as ``exgs_blender`` (development) and ``bl_ext.<repo>.exgs`` (installed extension)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

ADDON_ID = __package__


class EXGS_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    device: EnumProperty(
        name="Render device",
        items=[
            ("AUTO", "Auto", "gsplat on CUDA when torch + gsplat + a GPU are available, else the CPU renderer", 0),
            ("CPU", "CPU", "exgs_core's numba CPU rasteriser", 1),
            ("CUDA", "CUDA", "gsplat on CUDA (fails with a clear error when unavailable)", 2),
        ],
        default="AUTO",
    )
    restoration: BoolProperty(
        name="Restoration",
        default=True,
        description="Allow GaussPainter restoration (switched on per scene in Render Properties > ExGS); "
        "off = plain renders everywhere",
    )
    worker_mode: EnumProperty(
        name="Run restoration",
        items=[
            (
                "WORKER",
                "Worker process",
                "In a separate Python process with torch (any Blender version; "
                "started on demand, restarted after a crash)",
                0,
            ),
            (
                "IN_PROCESS",
                "In Blender",
                "Inside Blender's own Python (needs torch + diffusers importable "
                "here; no process start, but torch shares Blender's process)",
                1,
            ),
        ],
        default="WORKER",
    )
    worker_python: StringProperty(
        name="Worker Python",
        subtype="FILE_PATH",
        default="",
        description="Python executable for the worker (needs torch, diffusers, numpy, numba). Empty: found "
        "automatically: $EXGS_WORKER_PYTHON, Blender's own Python when torch imports there, else the "
        "worker environment that Set Up Worker creates (~/.local/share/exgs/worker on Linux)",
    )
    painter_weights: StringProperty(
        name="GaussPainter weights",
        subtype="DIR_PATH",
        default="",
        description="Folder of GaussPainter weights (config.json + vae/ + unet/ safetensors). Empty: "
        "$EXGS_PAINTER_WEIGHTS, else the checkpoint shipped with exgs",
    )
    viewport_scale: FloatProperty(
        name="Viewport resolution",
        min=0.05,
        max=1.0,
        default=0.5,
        subtype="FACTOR",
        description="Final resolution of the progressive viewport render, as a fraction of the region",
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "device")
        col.prop(self, "viewport_scale")
        col.prop(self, "restoration")
        sub = col.column()
        sub.active = self.restoration
        sub.prop(self, "worker_mode")
        if self.worker_mode == "WORKER":
            sub.prop(self, "worker_python")
            from .operators import EXGS_OT_setup_worker, setup_worker_status

            row = sub.row()
            row.label(text=setup_worker_status())
            row.operator(EXGS_OT_setup_worker.bl_idname, icon="CONSOLE")
        sub.prop(self, "painter_weights")
        from .engine import restoring

        st = restoring.status_line()
        if st:
            sub.label(text=st)


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


def restore_settings(context=None):
    """The preferences as :class:`exgs_core.worker.RestoreSettings` (mode, worker Python, weights folder, torch
    device): what the restoration backend needs, and its cache key."""
    import os

    from exgs_core.worker.settings import RestoreSettings

    p = get(context)
    env_weights = os.environ.get("EXGS_PAINTER_WEIGHTS") or None  # farms / bare register(): no preferences
    if p is None:
        return RestoreSettings(weights=env_weights)
    return RestoreSettings(
        enabled=bool(p.restoration),
        mode=p.worker_mode,
        python=bpy.path.abspath(p.worker_python) if p.worker_python else None,
        weights=bpy.path.abspath(p.painter_weights) if p.painter_weights else env_weights,
        device={"AUTO": None, "CPU": "cpu", "CUDA": "cuda"}[p.device],
    )


classes = (EXGS_AddonPreferences,)
