"""The EXGS render engine: F12 equals exgs_core's render, animation, passes, camera conversion, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


def data(name: str) -> str:
    return str(DATA / name)


SAVE = os.environ.get("EXGS_TEST_RENDERS")  # a folder to keep the test renders in (to look at them)


def _keep(path: Path) -> None:
    if SAVE:
        import shutil

        Path(SAVE).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SAVE) / f"{os.environ.get('EXGS_BLENDER_TAG', 'bpy')}_{path.name}")


def _png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _aim(bpy, ob, co, direction=(0.55, -0.7, 0.45)):
    """Point camera ``co`` at the middle of ``ob``'s splats from ``direction``, framing them."""
    from mathutils import Vector

    import exgs_core

    bpy.context.view_layer.update()
    s = exgs_core.load(ob.exgs.source_path)
    lo, hi = s.robust_bounds()
    m = np.array(ob.matrix_world)
    centre = (m @ np.append((lo + hi) / 2, 1.0))[:3]
    size = np.linalg.norm(m[:3, :3] @ (hi - lo))
    d = np.array(direction) / np.linalg.norm(direction)
    co.location = centre + d * size * 1.6
    co.rotation_euler = (Vector(centre) - co.location).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()


def _setup(bpy, fixture="donut_sh0_2000.ply", w=160, h=120):
    assert bpy.ops.exgs.import_scene(filepath=data(fixture)) == {"FINISHED"}
    ob = bpy.context.active_object
    sc = bpy.context.scene
    sc.render.engine = "EXGS"
    cam = bpy.data.cameras.new("cam")
    co = bpy.data.objects.new("cam", cam)
    sc.collection.objects.link(co)
    sc.camera = co
    r = sc.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = w, h, 100
    r.dither_intensity = 0.0
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    sc.view_settings.view_transform = "Standard"
    sc.view_settings.look = "None"
    sc.view_settings.exposure = 0.0
    sc.view_settings.gamma = 1.0
    _aim(bpy, ob, co)
    return ob, co


def _core_render(bpy, ob, co):
    """exgs_core's own render of the object's source file, moved by the object's transform, same camera."""
    import exgs_core
    from exgs_core.camera import Camera
    from exgs_core.sh_rotation import transform_scene

    sc = bpy.context.scene
    cd = co.data
    r = sc.render
    cam = Camera.from_blender(
        np.array(co.matrix_world),
        lens_mm=cd.lens,
        sensor_width_mm=cd.sensor_width,
        sensor_height_mm=cd.sensor_height,
        sensor_fit=cd.sensor_fit,
        shift_x=cd.shift_x,
        shift_y=cd.shift_y,
        width=r.resolution_x,
        height=r.resolution_y,
        pixel_aspect=r.pixel_aspect_x / r.pixel_aspect_y,
        clip_start=cd.clip_start,
        clip_end=cd.clip_end,
    )
    scene = transform_scene(exgs_core.load(ob.exgs.source_path), np.array(ob.matrix_world, np.float64))
    from exgs_core.render import render  # (exgs_core.render the function is shadowed by the subpackage once imported)

    return render(scene, cam, backend="cpu")


@pytest.mark.parametrize("fixture", ["donut_sh0_2000.ply", "supersplat_label_sh3_1000.ply"])
def test_f12_equals_core_render(addon, tmp_path, fixture):
    bpy = addon
    ob, co = _setup(bpy, fixture)
    if "label" in fixture:  # move and rotate the object too: transforms and SH rotation in play
        ob.rotation_euler.z += 0.4
        ob.rotation_euler.x += 0.3
        ob.location.x += 0.1
        _aim(bpy, ob, co)
    out = tmp_path / f"f12_{Path(fixture).stem}.png"
    bpy.context.scene.render.filepath = str(out)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    _keep(out)
    got = _png(out).astype(int)
    want = _core_render(bpy, ob, co)
    assert want.alpha.mean() > 0.05, "the fixture should cover part of the frame"
    ref = want.to_uint8().astype(int)
    diff = np.abs(got - ref)
    assert got.shape == ref.shape
    assert diff.max() <= 1, f"max diff {diff.max()}/255 at {np.unravel_index(diff.argmax(), diff.shape)}"


def test_animation_three_frames_differ(addon, tmp_path):
    bpy = addon
    ob, co = _setup(bpy)
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, 3
    co.keyframe_insert("location", frame=1)
    co.location.x += 0.1 * np.linalg.norm(co.location)
    co.keyframe_insert("location", frame=3)
    sc.render.filepath = str(tmp_path / "anim_")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    files = sorted(tmp_path.glob("anim_*.png"))
    assert [f.name for f in files] == ["anim_0001.png", "anim_0002.png", "anim_0003.png"]
    frames = [_png(f).astype(int) for f in files]
    for f in files:
        _keep(f)
    for i in range(3):
        assert frames[i].mean() > 5, "frame is empty"
        for j in range(i + 1, 3):
            assert np.abs(frames[i] - frames[j]).mean() > 0.5, (i, j)


def test_passes_depth_and_alpha(addon, tmp_path):
    bpy = addon
    ob, co = _setup(bpy)
    sc = bpy.context.scene
    sc.view_layers[0].use_pass_z = True
    sc.render.film_transparent = True
    im = sc.render.image_settings
    if hasattr(im, "media_type"):  # Blender 5.0+: multilayer is a media type
        im.media_type = "MULTI_LAYER_IMAGE"
    im.file_format = "OPEN_EXR_MULTILAYER"
    out = tmp_path / "passes.exr"
    sc.render.filepath = str(out)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    head = out.read_bytes()[:4096]
    for chan in (b"Depth.Z", b"Alpha.A", b"Combined.R", b"Combined.A"):
        assert chan in head, chan


def test_frame_pixels_colour_and_layout():
    """Pass contents: sRGB -> linear, bottom-up rows, depth 1e10 where empty, straight vs premultiplied."""
    from bl_ext.user_default.exgs.engine.final import EMPTY_DEPTH, frame_pixels, linear_to_srgb, srgb_to_linear

    from exgs_core.render.result import RenderResult

    rgb = np.zeros((2, 3, 3), np.float32)
    rgb[0, 0] = 0.5  # top-left, full coverage
    alpha = np.zeros((2, 3), np.float32)
    alpha[0, 0] = 1.0
    depth = np.zeros((2, 3), np.float32)
    depth[0, 0] = 2.0
    res = RenderResult(rgb, alpha, depth, None, "cpu", 1)
    comb, z, a = frame_pixels(res, transparent=False, background_srgb=np.float32([1, 1, 1]), color_input="SRGB")
    assert comb.shape == (2, 3, 4)
    np.testing.assert_allclose(comb[1, 0, :3], srgb_to_linear(np.float32([0.5] * 3)), atol=1e-6)  # flipped
    np.testing.assert_allclose(comb[0, 0, :3], 1.0, atol=1e-6)  # white background, opaque
    assert z[1, 0] == 2.0 and z[0, 0] == EMPTY_DEPTH and a[1, 0] == 1.0
    comb, _, _ = frame_pixels(res, transparent=True, background_srgb=np.float32([1, 1, 1]), color_input="SRGB")
    assert comb[0, 0, 3] == 0 and comb[0, 0, :3].max() == 0
    x = np.linspace(0, 1.5, 50, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)


@pytest.mark.parametrize(
    "fit,shift,aspect,size",
    [
        ("AUTO", (0, 0), (1, 1), (64, 48)),
        ("VERTICAL", (0.1, -0.05), (1, 1), (50, 80)),
        ("HORIZONTAL", (-0.2, 0.1), (2, 1), (80, 50)),
    ],
)
def test_camera_matches_blender_projection(addon, fit, shift, aspect, size):
    """Our camera projects points where Blender's own camera matrix does (calc_matrix_camera)."""
    from bl_ext.user_default.exgs.engine.camera import camera_from_object

    bpy = addon
    sc = bpy.context.scene
    cd = bpy.data.cameras.new("c")
    cd.sensor_fit, (cd.shift_x, cd.shift_y), cd.lens = fit, shift, 35
    co = bpy.data.objects.new("c", cd)
    sc.collection.objects.link(co)
    co.location, co.rotation_euler = (1, -2, 0.5), (1.2, 0.1, 0.3)
    r = sc.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = *size, 100
    r.pixel_aspect_x, r.pixel_aspect_y = aspect
    bpy.context.view_layer.update()
    dg = bpy.context.evaluated_depsgraph_get()
    W, H = size
    P = np.array(co.calc_matrix_camera(dg, x=W, y=H, scale_x=aspect[0], scale_y=aspect[1]))
    V = np.array(co.matrix_world.inverted())
    cam = camera_from_object(co, r)
    rng = np.random.default_rng(0)
    pts = np.array(co.matrix_world)[:3, 3] + rng.normal(size=(20, 3)) * 0.3 + np.array(co.matrix_world)[:3, 2] * -3
    for p in pts:
        clip = P @ V @ np.append(p, 1)
        ndc = clip[:3] / clip[3]
        u_b, v_b = (ndc[0] + 1) / 2 * W, (1 - ndc[1]) / 2 * H
        pc = cam.world_to_camera @ np.append(p, 1)
        u, v = cam.fx * pc[0] / pc[2] + cam.cx, cam.fy * pc[1] / pc[2] + cam.cy
        np.testing.assert_allclose([u, v], [u_b, v_b], atol=1e-3)


def test_orthographic_camera_renders(addon, tmp_path):
    bpy = addon
    ob, co = _setup(bpy)
    co.data.type = "ORTHO"
    co.data.ortho_scale = 0.35
    out = tmp_path / "ortho.png"
    bpy.context.scene.render.filepath = str(out)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    _keep(out)
    assert _png(out).mean() > 5


def test_errors_are_reported_not_empty_frames(addon, tmp_path, monkeypatch):
    bpy = addon
    ob, co = _setup(bpy)
    bpy.context.scene.render.filepath = str(tmp_path / "x.png")
    co.data.type = "PANO"
    with pytest.raises(RuntimeError, match="PANO"):
        bpy.ops.render.render(write_still=True)
    co.data.type = "PERSP"
    from bl_ext.user_default.exgs import preferences

    from exgs_core.render import has_gsplat

    if not has_gsplat():
        monkeypatch.setattr(preferences, "render_backend", lambda context=None: "gsplat")
        with pytest.raises(RuntimeError, match="(?i)gsplat|torch|cuda"):
            bpy.ops.render.render(write_still=True)


def test_viewport_camera_and_progressive_worker(addon):
    """The viewport's pure parts: region matrices -> camera (checked against projection), worker steps."""
    import time

    from bl_ext.user_default.exgs.engine import final, viewport
    from bl_ext.user_default.exgs.engine.camera import camera_from_view

    bpy = addon
    ob, co = _setup(bpy)
    dg = bpy.context.evaluated_depsgraph_get()
    W, H = 120, 90
    P = np.array(co.calc_matrix_camera(dg, x=W, y=H))
    V = np.array(co.matrix_world.inverted())
    cam = camera_from_view(V, P, W, H)
    p = np.array([0.01, 0.02, 0.03])
    clip = P @ V @ np.append(p, 1)
    ndc = clip[:3] / clip[3]
    pc = cam.world_to_camera @ np.append(p, 1)
    np.testing.assert_allclose(
        [cam.fx * pc[0] / pc[2] + cam.cx, cam.fy * pc[1] / pc[2] + cam.cy],
        [(ndc[0] + 1) / 2 * W, (1 - ndc[1]) / 2 * H],
        atol=1e-3,
    )
    scene, names = final.gather_splats(dg)
    assert names == [ob.name] and scene.n == 2000
    vp = viewport.ViewportRenderer()
    vp.set_scene(scene)
    vp.request(V, P, W, H, True, 1.0)
    t = time.time()
    while time.time() - t < 120:
        got = vp.latest()
        if got is not None and got[1]:
            break
        time.sleep(0.05)
    vp.stop()
    assert vp.error is None
    rgba, finished = vp.latest()
    assert finished and rgba.shape == (H, W, 4) and rgba[..., 3].max() > 0.5


def test_viewport_texture_upload_draws_the_frame(addon):
    """The viewport's draw path (Buffer -> RGBA16F texture -> draw_texture_2d) reproduces the frame; GPU drawing
    only works inside a render() with a GPU context in background mode, so a throwaway engine hosts it."""
    bpy = addon
    out = {}

    class _GpuHost(bpy.types.RenderEngine):
        bl_idname = "EXGS_TEST_GPU"
        bl_label = "exgs gpu test"
        bl_use_gpu_context = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

        def render(self, depsgraph):
            try:
                import gpu
                from bl_ext.user_default.exgs.engine.viewport import upload_texture
                from gpu_extras.presets import draw_texture_2d
                from mathutils import Matrix

                rgba = np.random.default_rng(0).random((48, 64, 4)).astype(np.float32)
                tex = upload_texture(rgba)
                off = gpu.types.GPUOffScreen(64, 48)
                with off.bind():
                    fb = gpu.state.active_framebuffer_get()
                    fb.clear(color=(0, 0, 0, 0))
                    with gpu.matrix.push_pop():
                        gpu.matrix.load_matrix(Matrix.Identity(4))
                        gpu.matrix.load_projection_matrix(Matrix.Identity(4))
                        draw_texture_2d(tex, (-1, -1), 2, 2)
                    px = np.array(fb.read_color(0, 0, 64, 48, 4, 0, "FLOAT").to_list(), np.float32)
                off.free()
                out["diff"] = float(np.abs(px.reshape(48, 64, 4) - rgba).max())
            except Exception as e:  # noqa: BLE001 - engine exceptions are only logged: carry it out
                out["error"] = f"{type(e).__name__}: {e}"

    bpy.utils.register_class(_GpuHost)
    try:
        sc = bpy.context.scene
        sc.render.engine = "EXGS_TEST_GPU"
        cd = bpy.data.cameras.new("c")
        co = bpy.data.objects.new("c", cd)
        sc.collection.objects.link(co)
        sc.camera = co
        sc.render.resolution_x, sc.render.resolution_y = 64, 48
        bpy.ops.render.render()
    finally:
        bpy.context.scene.render.engine = "BLENDER_WORKBENCH"
        bpy.utils.unregister_class(_GpuHost)
    if "error" in out and "not available" in out["error"]:
        pytest.skip(f"no GPU drawing here: {out['error']}")
    assert "error" not in out, out
    assert out["diff"] < 4e-3  # half-float texture


def test_saved_blend_renders_in_a_fresh_load(addon, tmp_path):
    """What a farm does: save the .blend, open it again (splats live in the file), render a frame."""
    bpy = addon
    ob, co = _setup(bpy)
    first = tmp_path / "a.png"
    bpy.context.scene.render.filepath = str(first)
    bpy.ops.render.render(write_still=True)
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert bpy.context.scene.render.engine == "EXGS"
    again = tmp_path / "b.png"
    bpy.context.scene.render.filepath = str(again)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    assert np.array_equal(_png(first), _png(again))


def test_exgs_scene_head_travels_with_the_object(addon):
    """An .exgs with a scene head (docs/FORMAT.md 4.2): the imported object keeps the head's payload, and a frame with
    that object alone carries it to restoration (``meta["exgs_head"]``); with a second splat object in view the head
    does not apply (it was fitted to one scene's renders), and a damaged payload falls back to the generic painter."""
    from bl_ext.user_default.exgs.engine import final
    from bl_ext.user_default.exgs.engine.restoring import frame_head

    from exgs_core import load
    from exgs_core.codec.head import scene_head

    bpy = addon
    golden = DATA / "golden" / "golden_v2_biker_sh0_1024_head.exgs"
    payload = scene_head(load(golden)).to_bytes()
    assert bpy.ops.exgs.import_scene(filepath=str(golden)) == {"FINISHED"}
    ob = bpy.context.active_object
    assert ob.exgs.head_hex == payload.hex()
    scene, names = final.gather_splats(bpy.context.evaluated_depsgraph_get())
    assert names == [ob.name] and scene_head(scene).to_bytes() == payload
    assert bpy.ops.exgs.import_scene(filepath=data("donut_sh0_2000.ply")) == {"FINISHED"}
    assert bpy.context.active_object.exgs.head_hex == ""
    scene, names = final.gather_splats(bpy.context.evaluated_depsgraph_get())
    assert len(names) == 2 and scene_head(scene) is None
    assert frame_head([payload]).to_bytes() == payload
    assert frame_head([payload, None]) is None and frame_head([None]) is None and frame_head([]) is None
    assert frame_head([payload[:-3]]) is None
