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


def unregister():
    global _registered
    import bpy

    from . import engine, operators, preferences, properties, ui

    operators.cancel_all_jobs()
    ui.unregister()
    engine.unregister()
    for c in reversed(preferences.classes + operators.classes):
        bpy.utils.unregister_class(c)
    properties.unregister()
    _registered = False
