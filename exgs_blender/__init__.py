"""exgs Blender add-on: a thin layer over :mod:`exgs_core` (import, compress, export, the EXGS render engine).

Import ranks (each module imports only lower ones): properties, preferences, jobs < convert < operators, engine <
ui < this file. exgs_core (bundled in the extension as a wheel, like numba/plyfile/zstandard/pillow) never imports
bpy. ``register()``/``unregister()`` can run any number of times and leave nothing behind.
"""

from __future__ import annotations

_registered = False


def register():
    global _registered
    import bpy

    from . import engine, operators, preferences, properties, ui

    if _registered:
        unregister()
    properties.register()
    for c in preferences.classes + operators.classes:
        bpy.utils.register_class(c)
    engine.register()
    ui.register()
    _registered = True
    from . import jobs

    jobs.WARMUP.start()  # compile the kernels now, in a child process, instead of in the first F12 / compress


def unregister():
    global _registered
    import bpy

    from . import engine, jobs, operators, preferences, properties, ui

    jobs.WARMUP.cancel()  # the warm-up child process: Blender may remove our wheels next
    operators.cancel_all_jobs()
    ui.unregister()
    engine.unregister()
    for c in reversed(preferences.classes + operators.classes):
        bpy.utils.unregister_class(c)
    properties.unregister()
    _registered = False


def warmup_state() -> dict:
    """Where the background kernel compilation started at enable stands (for scripts and benchmarks)."""
    from . import jobs

    w = jobs.WARMUP
    progress = w.progress  # reads the child's log: stage and seconds are current after this
    return {
        "stage": w.stage,
        "progress": progress,
        "seconds": round(w.seconds, 3),
        "error": w.error,
        "running": w.running,
    }
