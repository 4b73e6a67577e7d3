"""exgs Blender add-on: a thin layer over :mod:`exgs_core` (import, compress, export, EXGS render engine).

Status: the add-on's operators, panel and render engine are built in the Blender issue (#5); this package
currently only registers and unregisters cleanly, so that the extension layout and build can be exercised.
"""

_classes: tuple = ()


def register():
    import bpy

    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister():
    import bpy

    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
