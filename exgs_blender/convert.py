"""exgs scenes <-> Blender point clouds. The one module that moves Gaussian data in and out of Blender.

Blender's Gaussian-splat attribute schema (Blender 5.3 ``PointCloud.type == 'GAUSSIAN_SPLAT'``; checked against
bpy 5.3.0's own PLY importer), used on every version:

=====================  ==============================  =============================================
attribute              type                             meaning
=====================  ==============================  =============================================
``position``           FLOAT_VECTOR                     centre (object space)
``scale``              FLOAT_VECTOR                     **linear** per-axis scale (exp of log_scales)
``rotation``           QUATERNION                       w, x, y, z (normalised)
``radiance:base``      FLOAT4 (5.3+) / FLOAT_COLOR      SH DC r, g, b + **sigmoid(opacity)**
``radiance:sh_0..14``  FLOAT_VECTOR                     higher SH coefficients 1..15 (r, g, b each)
=====================  ==============================  =============================================

On Blender < 5.3 (no ``GAUSSIAN_SPLAT`` type and no FLOAT4 attributes) the same names sit on a plain point cloud,
``radiance:base`` as a FLOAT_COLOR (4 floats) and ``radius`` set for display. Everything goes through
``foreach_get``/``foreach_set`` on flat float32 arrays: no per-point Python loops.

Objects remember what the file implied in ``object.exgs`` (:mod:`.properties`): the orientation applied at import
(so export writes back into the file's axes) and the ``antialiased`` rendering flag.
"""

from __future__ import annotations

import bpy
import numpy as np

from exgs_core.conventions import logit, sh_degree_from_count, sigmoid
from exgs_core.scene import GaussianScene

ATTR_POSITION = "position"
ATTR_SCALE = "scale"
ATTR_ROTATION = "rotation"
ATTR_BASE = "radiance:base"
SH_ATTR = "radiance:sh_{}"
MAX_REST = 15


def has_native_splats() -> bool:
    """True on Blender builds whose point clouds have the ``GAUSSIAN_SPLAT`` type (5.3+)."""
    prop = bpy.types.PointCloud.bl_rna.properties.get("type")
    return prop is not None and "GAUSSIAN_SPLAT" in {i.identifier for i in prop.enum_items}


def _has_float4() -> bool:
    items = bpy.types.Attribute.bl_rna.properties["data_type"].enum_items
    return "FLOAT4" in {i.identifier for i in items}


def _key(data_type: str) -> str:
    return {
        "FLOAT_VECTOR": "vector",
        "QUATERNION": "value",
        "FLOAT4": "vector",
        "FLOAT_COLOR": "color",
        "FLOAT": "value",
    }[data_type]


def is_splat_data(data) -> bool:
    """True for point-cloud data carrying the splat schema (at least ``radiance:base``)."""
    return isinstance(data, bpy.types.PointCloud) and data.attributes.get(ATTR_BASE) is not None


def is_splat_object(ob) -> bool:
    return ob is not None and ob.type == "POINTCLOUD" and is_splat_data(ob.data)


# --------------------------------------------------------------------------- creating point clouds


def _new_pointcloud_sized(name: str, n: int, context) -> bpy.types.PointCloud:
    """A new PointCloud datablock with ``n`` points (positions unset)."""
    pc = bpy.data.pointclouds.new(name)
    if hasattr(pc, "resize"):  # Blender 5.3+
        pc.resize(n)
        return pc
    # Blender 4.2-5.2 have no Python API to size a point cloud: size a mesh and convert it (10 ms for 1M points).
    bpy.data.pointclouds.remove(pc)
    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    tmp = bpy.data.objects.new(name + ".exgs_tmp", me)
    scene = context.scene
    scene.collection.objects.link(tmp)
    try:
        with context.temp_override(
            active_object=tmp, object=tmp, selected_objects=[tmp], selected_editable_objects=[tmp]
        ):
            bpy.ops.object.convert(target="POINTCLOUD")
        pc = tmp.data
        if not isinstance(pc, bpy.types.PointCloud):
            raise RuntimeError("could not create a point cloud (object.convert failed)")
        tmp.data = bpy.data.pointclouds.new(name + ".exgs_dummy")  # detach ours before deleting the object
    finally:
        dummy = (
            tmp.data if isinstance(tmp.data, bpy.types.PointCloud) and tmp.data.name.endswith(".exgs_dummy") else None
        )
        bpy.data.objects.remove(tmp)
        if dummy is not None:
            bpy.data.pointclouds.remove(dummy)
        if me.users == 0:
            bpy.data.meshes.remove(me)
    for junk in [a.name for a in pc.attributes if a.name.startswith(".select")]:
        pc.attributes.remove(pc.attributes[junk])
    return pc


def _set(pc, name: str, data_type: str, values: np.ndarray) -> None:
    attr = pc.attributes.get(name)
    if attr is not None and attr.data_type != data_type and name != ATTR_POSITION:
        pc.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = pc.attributes.new(name, data_type, "POINT")
    attr.data.foreach_set(_key(attr.data_type), np.ascontiguousarray(values, dtype=np.float32).ravel())


def scene_to_pointcloud(scene: GaussianScene, name: str, context) -> bpy.types.PointCloud:
    """A new PointCloud datablock holding ``scene`` in Blender's splat schema (see module docstring)."""
    n = scene.n
    pc = _new_pointcloud_sized(name, n, context)
    if has_native_splats():
        pc.type = "GAUSSIAN_SPLAT"
    pos = pc.attributes.get(ATTR_POSITION) or pc.attributes.new(ATTR_POSITION, "FLOAT_VECTOR", "POINT")
    pos.data.foreach_set("vector", np.ascontiguousarray(scene.means, np.float32).ravel())
    _set(pc, ATTR_SCALE, "FLOAT_VECTOR", np.exp(scene.log_scales))
    q = scene.quats.astype(np.float32)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.divide(q, norm, out=np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)), where=norm > 0)
    _set(pc, ATTR_ROTATION, "QUATERNION", q)
    base = np.empty((n, 4), np.float32)
    base[:, :3] = scene.sh[:, 0]
    base[:, 3] = sigmoid(scene.opacity_logits)
    _set(pc, ATTR_BASE, "FLOAT4" if _has_float4() else "FLOAT_COLOR", base)
    for j in range(1, scene.sh.shape[1]):
        _set(pc, SH_ATTR.format(j - 1), "FLOAT_VECTOR", scene.sh[:, j])
    if not has_native_splats():
        # Plain point clouds draw spheres of ``radius``: the largest axis gives a readable preview.
        rad = pc.attributes.get("radius") or pc.attributes.new("radius", "FLOAT", "POINT")
        rad.data.foreach_set("value", np.exp(scene.log_scales.max(axis=1)).astype(np.float32))
    return pc


# --------------------------------------------------------------------------- reading point clouds


def _get(pc, name: str, width: int) -> np.ndarray | None:
    attr = pc.attributes.get(name)
    if attr is None:
        return None
    n = len(pc.points)
    buf = np.empty(n * width, np.float32)
    attr.data.foreach_get(_key(attr.data_type), buf)
    return buf.reshape(n, width)


def pointcloud_to_scene(pc, *, antialiased: bool = False) -> GaussianScene:
    """The GaussianScene stored in a point cloud (object space). Missing attributes take neutral defaults:
    scale 0.01, identity rotation; ``radiance:base`` is required (else ValueError)."""
    n = len(pc.points)
    base = _get(pc, ATTR_BASE, 4)
    if base is None:
        raise ValueError(f"point cloud {pc.name!r} has no {ATTR_BASE!r} attribute (not Gaussian splat data)")
    means = _get(pc, ATTR_POSITION, 3)
    if means is None:
        raise ValueError(f"point cloud {pc.name!r} has no {ATTR_POSITION!r} attribute")
    scale = _get(pc, ATTR_SCALE, 3)
    rot = _get(pc, ATTR_ROTATION, 4)
    rest = []
    for j in range(MAX_REST):
        a = _get(pc, SH_ATTR.format(j), 3)
        if a is None:
            break
        rest.append(a)
    k = 1 + len(rest)
    for kk in (16, 9, 4, 1):  # keep a complete band structure
        if k >= kk:
            k = kk
            break
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = base[:, :3]
    for j in range(1, k):
        sh[:, j] = rest[j - 1]
    sh_degree_from_count(k)
    log_scales = np.log(np.maximum(scale, 1e-30)) if scale is not None else np.full((n, 3), np.log(0.01), np.float32)
    quats = rot if rot is not None else np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1))
    meta = {"format": "blender"}
    return GaussianScene(
        means.astype(np.float32),
        quats.astype(np.float32),
        log_scales.astype(np.float32),
        logit(base[:, 3]),
        sh,
        meta=meta,
    )


def object_scene(ob, *, world: bool = True, matrix=None) -> GaussianScene:
    """The splats of object ``ob`` (evaluated or original), in world space when ``world`` (object transform
    applied, SH rotated), else object space; ``matrix`` overrides the transform used."""
    from exgs_core.sh_rotation import transform_scene

    props = getattr(ob, "exgs", None)
    aa = bool(props.antialiased) if props is not None else False
    scene = pointcloud_to_scene(ob.data, antialiased=aa)
    if matrix is None and not world:
        return scene
    m = np.array(matrix if matrix is not None else ob.matrix_world, dtype=np.float64)
    return transform_scene(scene, m)


def merge_scenes(scenes: list[GaussianScene]) -> GaussianScene:
    """One scene holding all Gaussians of ``scenes`` (SH padded with zeros to the highest degree)."""
    if len(scenes) == 1:
        return scenes[0]
    k = max(s.sh.shape[1] for s in scenes)
    sh = np.concatenate([np.pad(s.sh, ((0, 0), (0, k - s.sh.shape[1]), (0, 0))) for s in scenes])
    cat = lambda f: np.concatenate([getattr(s, f) for s in scenes])  # noqa: E731
    aa = any(s.antialiased for s in scenes)
    return GaussianScene(
        cat("means"),
        cat("quats"),
        cat("log_scales"),
        cat("opacity_logits"),
        sh,
        meta={"format": "blender"},
        antialiased=aa,
    )


def up_to_z_matrix(up) -> np.ndarray:
    """float64 [4, 4] rotation taking the scene's ``up`` direction to Blender's +Z (minimal rotation)."""
    u = np.asarray(up, np.float64)
    u = u / np.linalg.norm(u)
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(u, z)
    c = float(u @ z)
    m = np.eye(4)
    if np.linalg.norm(v) < 1e-12:
        if c < 0:
            m[:3, :3] = np.diag([1.0, -1.0, -1.0])
        return m
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    m[:3, :3] = np.eye(3) + vx + vx @ vx / (1 + c)
    return m
