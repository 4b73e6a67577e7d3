import json

import numpy as np
import pytest

from exgs_core import CameraError, GaussianScene
from exgs_core.views import auto_views, load_cameras_json, save_cameras_json, scene_frame, split_views


def scene_with(means):
    s = GaussianScene.empty(len(means))
    s.means = np.asarray(means, np.float32)
    return s


@pytest.fixture
def blob(rng):
    return scene_with(rng.normal(size=(4000, 3)) * [1.0, 0.5, 2.0] + [5, -2, 1])


@pytest.fixture
def room(rng):
    d = rng.normal(size=(6000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return scene_with(d * rng.uniform(8, 10, size=(6000, 1)))


def test_object_vs_room_rule(blob, room):
    assert scene_frame(blob).kind == "orbit"
    assert scene_frame(room).kind == "inside"
    assert scene_frame(room, mode="orbit").kind == "orbit"


def test_orbit_views_frame_the_object(blob):
    fr = scene_frame(blob)
    cams = auto_views(blob, 12, 320, 240)
    assert len(cams) == 12
    for c in cams:
        # the centre projects to the image centre and lies in front
        x = c.world_to_camera @ np.append(fr.center, 1)
        assert x[2] > 0
        assert abs(c.fx * x[0] / x[2] + c.cx - 160) < 1e-6 and abs(c.fy * x[1] / x[2] + c.cy - 120) < 1e-6
        # the radius sphere fits in the frame: distance >= r / sin(min fov / 2)
        d = np.linalg.norm(c.position - fr.center)
        assert d * np.sin(min(c.fov_x, c.fov_y) / 2) >= fr.radius
        # elevation within [-15, 60] degrees above the horizontal (up = -y)
        e = np.degrees(np.arcsin(np.dot((c.position - fr.center) / d, fr.up)))
        assert -15.01 <= e <= 60.01


def test_inside_views_look_outwards(room):
    fr = scene_frame(room)
    for c in auto_views(room, 8, 64, 64):
        assert np.linalg.norm(c.position - fr.center) <= 0.1 * fr.radius + 1e-6
        assert np.dot(c.forward, c.position - fr.center) < 0  # displaced backwards, looking outwards


def test_eval_views_differ_from_train_views(blob, room):
    for s in (blob, room):
        tr = auto_views(s, 16, 64, 64, split="train")
        ev = auto_views(s, 16, 64, 64, split="eval")
        for e in ev:
            dmin = min(np.abs(e.world_to_camera - t.world_to_camera).max() for t in tr)
            assert dmin > 1e-3
        # deterministic
        again = auto_views(s, 16, 64, 64, split="eval")
        assert all(np.array_equal(a.world_to_camera, b.world_to_camera) for a, b in zip(ev, again, strict=False))


def test_cameras_json_round_trip_and_errors(tmp_path, blob):
    cams = auto_views(blob, 5, 200, 100)
    p = tmp_path / "cameras.json"
    save_cameras_json(cams, p)
    back = load_cameras_json(p)
    for a, b in zip(cams, back, strict=False):
        np.testing.assert_allclose(a.world_to_camera, b.world_to_camera, atol=1e-9)
        assert (a.fx, a.width, a.height) == (b.fx, b.width, b.height)
    half = load_cameras_json(p, width=100)
    assert half[0].width == 100 and half[0].height == 50 and half[0].fx == pytest.approx(cams[0].fx / 2)
    data = json.loads(p.read_text())
    bad = tmp_path / "bad.json"
    for mutate, msg in [
        (lambda d: d[1].pop("fx"), "camera #1: missing field 'fx'"),
        (lambda d: d[0].__setitem__("rotation", [[1, 0], [0, 1]]), "camera #0"),
        (lambda d: d[2].__setitem__("rotation", [[2, 0, 0], [0, 1, 0], [0, 0, 1]]), "not a rotation"),
        (lambda d: d[0].__setitem__("width", -3), "camera #0"),
        # found by fuzzing: Infinity escaped as a raw OverflowError; 64.5 was silently truncated to 64
        (lambda d: d[0].__setitem__("width", float("inf")), "camera #0: bad value: width must be a whole number"),
        (lambda d: d[1].__setitem__("height", 64.5), "camera #1: bad value: height must be a whole number"),
        (lambda d: d[1].__setitem__("height", True), "camera #1: bad value: height must be a number"),
    ]:
        d = json.loads(json.dumps(data))
        mutate(d)
        bad.write_text(json.dumps(d))
        with pytest.raises(CameraError, match=msg) as ei:
            load_cameras_json(bad)
        assert str(bad) in str(ei.value)
    bad.write_text("{not json")
    with pytest.raises(CameraError, match="JSON"):
        load_cameras_json(bad)
    with pytest.raises(CameraError, match="no such file"):
        load_cameras_json(tmp_path / "missing.json")


def test_3dgs_cameras_json_convention(tmp_path):
    # graphdeco writes position = camera centre and rotation = camera-to-world rotation (OpenCV axes)
    entry = {
        "id": 0,
        "img_name": "a",
        "width": 100,
        "height": 80,
        "position": [0, 0, -4],
        "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        "fx": 90.0,
        "fy": 90.0,
    }
    p = tmp_path / "cameras.json"
    p.write_text(json.dumps([entry]))
    cam = load_cameras_json(p)[0]
    np.testing.assert_allclose(cam.position, [0, 0, -4])
    x = cam.world_to_camera @ np.array([0, 0, 0, 1.0])
    assert x[2] == pytest.approx(4)  # the origin is 4 units in front


def test_split_views_every_8th(blob):
    cams = auto_views(blob, 20, 32, 32)
    train, test = split_views(cams)
    assert len(test) == 3 and len(train) == 17


def test_ring_and_bowl_are_objects_box_room_is_a_room(rng):
    # a torus (hollow centre, but an empty cone along its axis) is an object, in any orientation
    t = rng.uniform(0, 2 * np.pi, 8000)
    p = rng.uniform(0, 2 * np.pi, 8000)
    R, a = 1.0, 0.45
    torus = np.stack([(R + a * np.cos(p)) * np.cos(t), (R + a * np.cos(p)) * np.sin(t), a * np.sin(p)], 1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert scene_frame(scene_with(torus)).kind == "orbit"
    assert scene_frame(scene_with(torus @ q.T)).kind == "orbit"
    # a bowl (half sphere shell) is an object
    d = rng.normal(size=(8000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 1] = np.abs(d[:, 1])
    assert scene_frame(scene_with(d * 3)).kind == "orbit"
    # a box room: floor, ceiling and four walls
    u = rng.uniform(-1, 1, size=(12000, 3))
    face = rng.integers(0, 6, 12000)
    u[np.arange(12000), face // 2] = np.where(face % 2, 1.0, -1.0)
    room = u * [4, 1.5, 3]
    assert scene_frame(scene_with(room)).kind == "inside"


def test_up_comes_from_the_reader(blob):
    from exgs_testpaths import DATA

    from exgs_core import load

    spz = load(DATA / "playcanvas_biker_head4096.v4.spz")
    assert spz.up == (0.0, 1.0, 0.0)  # SPZ stores right-up-back axes
    cam = auto_views(spz, 1, 64, 64)[0]
    # world +y points up in the image: camera y (down) has a negative +y component
    assert cam.camera_to_world[:3, 1] @ np.array([0, 1.0, 0]) < 0
    ply_cam = auto_views(blob, 1, 64, 64)[0]
    assert ply_cam.camera_to_world[:3, 1] @ np.array([0, 1.0, 0]) > 0  # PLY: y-down
