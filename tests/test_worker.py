"""exgs_core.worker: protocol, shared memory, the worker process (render / restore / echo / crash and restart),
and exgs_core.temporal (reprojection, stabiliser, flicker measures)."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import exgs_core as ex
import exgs_core.views  # noqa: F401  (ex.views)
from exgs_core import temporal
from exgs_core.worker import LocalBackend, WorkerClient, WorkerCrashed, WorkerError, protocol, resolve_python

DATA = Path(__file__).resolve().parent / "data"
TINY = {"vae_channels": 8, "latent_channels": 4, "unet_channels": [8, 16], "norm_num_groups": 4, "out_init_scale": 1.0}


def _scene_and_camera(w=64, h=48):
    scene = ex.load(str(DATA / "donut_sh0_2000.ply"))
    cam = ex.views.auto_views(scene, 1, w, h)[0]
    return scene, cam


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    import torch

    from exgs_core.painter.model import make_painter, save_painter

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("painter") / "tiny"
    save_painter(make_painter(TINY), d)
    return str(d)


@pytest.fixture(scope="module")
def worker(tiny_weights):
    w = WorkerClient(weights=tiny_weights, device="cpu")
    yield w
    w.stop()


# ----------------------------------------------------------------------------------------------- protocol
def test_messages_roundtrip_and_limits():
    buf = io.BytesIO()
    protocol.send_msg(buf, {"op": "x", "args": {"a": [1, 2.5, "é"]}})
    protocol.send_msg(buf, {"op": "y"})
    buf.seek(0)
    assert protocol.recv_msg(buf) == {"op": "x", "args": {"a": [1, 2.5, "é"]}}
    assert protocol.recv_msg(buf)["op"] == "y"
    with pytest.raises(EOFError):
        protocol.recv_msg(buf)
    with pytest.raises(protocol.ProtocolError, match="limit"):
        protocol.recv_msg(io.BytesIO((protocol.MAX_MESSAGE + 1).to_bytes(4, "little")))
    with pytest.raises(protocol.ProtocolError, match="JSON"):
        protocol.recv_msg(io.BytesIO((3).to_bytes(4, "little") + b"{{{"))
    with pytest.raises(EOFError):  # truncated message
        protocol.recv_msg(io.BytesIO((10).to_bytes(4, "little") + b"{}"))


def test_arena_layout_views_and_bounds():
    arena = protocol.Arena()
    try:
        descs, views = arena.layout({"a": ((3, 4), np.float32), "b": ((5,), np.uint8)})
        views["a"][...] = 7
        views["b"][...] = 3
        a = protocol.view(arena.shm.buf, descs["a"])  # what the worker does after attach()
        assert a.shape == (3, 4) and (a == 7).all() and descs["b"]["offset"] % protocol.ALIGN == 0
        bad = dict(descs["a"], offset=arena.shm.size)
        with pytest.raises(protocol.ProtocolError, match="does not fit"):
            protocol.view(arena.shm.buf, bad)
        del a
        name = arena.shm.name
        del views
        arena.layout({"big": ((arena.shm.size,), np.uint8)})  # grows: a new segment replaces the old one
        assert arena.shm.name != name
    finally:
        arena.close()


def test_resolve_python():
    with pytest.raises(WorkerError, match="does not exist"):
        resolve_python("/nonexistent/python")
    assert os.path.isfile(resolve_python())


def test_worker_environment_is_found_once_created(tmp_path, monkeypatch):
    """Without torch here and without a checkout .venv (a stock Blender with the zip), no worker is a
    WorkerNotFound that tells how to create one; once created at the default place (the documented commands,
    here without packages), it is found with no setting."""
    from exgs_core.worker import WorkerNotFound, client, environment

    home = tmp_path / "worker home"
    monkeypatch.setenv("EXGS_WORKER_HOME", str(home))
    monkeypatch.delenv("EXGS_WORKER_PYTHON", raising=False)
    monkeypatch.setattr(client, "has_torch_here", lambda: False)
    monkeypatch.setattr(client, "repo_venv_python", lambda: None)
    with pytest.raises(WorkerNotFound, match="(?s)no worker environment.*Set Up Worker.*exgs_core.worker.environment"):
        resolve_python()
    cmds = environment.setup_commands(sys.executable, home)
    assert cmds[0] == [sys.executable, "-m", "venv", str(home)] and "torch" in cmds[1] and "diffusers" in cmds[1]
    log = tmp_path / "setup.log"
    with open(log, "wb") as f:
        py = environment.create(packages=(), log=f)
    assert py == str(environment.python_in(home)) and "-m venv" in log.read_text()
    assert resolve_python() == py


# ------------------------------------------------------------------------------------------------- worker
def test_hello_echo_and_errors(worker):
    info = worker.start()
    assert info["protocol"] == protocol.PROTOCOL_VERSION and info["pid"] == worker.pid and info["torch"]
    f = np.random.default_rng(0).random((1080, 1920, 4), dtype=np.float32)
    assert np.array_equal(worker.echo(f), f)
    assert np.array_equal(worker.noop_roundtrip(f), f)
    with pytest.raises(WorkerError, match="unknown op"):
        worker._call("nope", {})
    with pytest.raises(WorkerError, match="unknown scene"):
        worker._call("render", {"key": "missing", "camera": {}})
    assert worker.alive  # errors in requests do not kill it


def test_render_and_restore_match_in_process(worker, tiny_weights):
    scene, cam = _scene_and_camera()
    res = worker.render(scene, cam, backend="cpu")
    ref = ex.render(scene, cam, backend="cpu")
    np.testing.assert_allclose(res.rgb, ref.rgb, atol=1e-6)
    np.testing.assert_allclose(res.alpha, ref.alpha, atol=1e-6)
    assert ref.alpha.mean() > 0.05
    local = LocalBackend(tiny_weights, device="cpu")
    want = local.restore(ref.rgb, ref.alpha)
    got = worker.restore(ref.rgb, ref.alpha, ref.depth)
    assert got.shape == ref.rgb.shape and np.abs(got - want).max() < 1e-5
    raw, restored = worker.render_restore(scene, cam, backend="cpu")
    np.testing.assert_allclose(raw.rgb, ref.rgb, atol=1e-6)
    assert np.abs(restored - want).max() < 1e-5
    assert not np.allclose(restored, ref.rgb)  # the (random) painter changed the frame


def test_worker_switching_scenes_renders_each_scene(worker):
    """The worker keeps each scene converted/uploaded between frames; switching scenes must not reuse a stale one."""
    a, cam = _scene_and_camera()
    b = a.subset(np.arange(0, a.n, 3))
    for s in (a, b, a, b):
        got = worker.render(s, cam, backend="cpu")
        np.testing.assert_allclose(got.rgb, ex.render(s, cam, backend="cpu").rgb, atol=1e-6)
    assert not np.allclose(worker.render(a, cam, backend="cpu").rgb, got.rgb)


def test_missing_weights_is_a_clear_error(tmp_path):
    w = WorkerClient(weights=str(tmp_path / "nope"))
    try:
        with pytest.raises(WorkerError, match="weights folder does not exist"):
            w.restore(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32))
        assert w.alive
    finally:
        w.stop()


@pytest.mark.slow
def test_crash_mid_request_is_reported_and_next_request_restarts(tiny_weights):
    w = WorkerClient(weights=tiny_weights, device="cpu", env={"EXGS_WORKER_TEST_DELAY": "3"})
    try:
        w.start()
        pid = w.pid
        rgb = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
        a = np.ones((32, 32), np.float32)

        def kill_when_busy():
            t = time.time()
            while not w.busy and time.time() - t < 30:
                time.sleep(0.01)
            time.sleep(0.3)
            os.kill(pid, signal.SIGKILL)

        th = threading.Thread(target=kill_when_busy)
        th.start()
        with pytest.raises(WorkerCrashed, match=r"stopped during 'restore' \(killed by signal SIGKILL") as ei:
            w.restore(rgb, a)
        th.join()
        assert "restarted" in str(ei.value) and not w.alive
        w.extra_env["EXGS_WORKER_TEST_DELAY"] = "0"
        out = w.restore(rgb, a)  # starts a new worker
        assert out.shape == rgb.shape and w.pid != pid and w.starts == 2
    finally:
        w.stop()


@pytest.mark.slow
def test_cancel_leaves_the_worker_in_sync(tiny_weights):
    w = WorkerClient(weights=tiny_weights, device="cpu", env={"EXGS_WORKER_TEST_DELAY": "1"})
    try:
        rgb = np.random.default_rng(2).random((16, 16, 3), dtype=np.float32)
        a = np.ones((16, 16), np.float32)
        t = time.time()
        assert w.restore(rgb, a, cancel=lambda: time.time() - t > 0.2) is None
        f = np.arange(12, dtype=np.float32).reshape(3, 4)
        assert np.array_equal(w.echo(f), f)  # the stale reply was drained first
    finally:
        w.stop()


def test_stop_ends_the_process_and_frees_shared_memory(tiny_weights):
    w = WorkerClient(weights=tiny_weights)
    w.echo(np.zeros((4, 4), np.float32))
    proc, name, log = w.proc, w._arena.shm.name, w.log_path
    assert os.path.isfile(log)
    w.stop()
    assert proc.poll() is not None and w._arena.shm is None and not os.path.exists(log)
    with pytest.raises(FileNotFoundError):
        protocol.attach(name)


def test_compress_in_worker(worker, tmp_path):
    out = tmp_path / "d.exgs"
    r = worker.compress(str(DATA / "donut_sh0_2000.ply"), str(out), {"ratio": 0.5, "views": 4, "view_size": 64})
    assert out.stat().st_size == r["bytes"] > 0
    assert ex.load(str(out)).n == 1000


# ----------------------------------------------------------------------------------------------- temporal
def test_push_pull_fills_holes():
    v = np.zeros((9, 13), np.float32)
    w = np.zeros((9, 13), np.float32)
    v[:, :6], w[:, :6] = 2.0, 1.0
    v[:, 7:], w[:, 7:] = 4.0, 1.0
    out = temporal.push_pull(v, w)
    assert (
        np.allclose(out[:, :6], 2) and np.allclose(out[:, 7:], 4) and (2 <= out[:, 6]).all() and (out[:, 6] <= 4).all()
    )


def test_reproject_identity_and_shift():
    _, cam = _scene_and_camera()
    d = np.full((cam.height, cam.width), 3.0, np.float32)
    px, py, pz = temporal.reproject(d, cam, cam)
    assert np.allclose(px, np.arange(cam.width)[None], atol=1e-4) and np.allclose(pz, 3, atol=1e-5)
    m = cam.world_to_camera.copy()
    m[0, 3] += 0.3  # previous camera: the world 0.3 further right in camera x
    prev = ex.Camera(m, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)
    px, _, _ = temporal.reproject(d, cam, prev)
    assert np.allclose(px - np.arange(cam.width)[None], cam.fx * 0.3 / 3, atol=1e-3)


def test_stabilizer_damps_residual_flicker_without_touching_a_steady_one():
    scene, cam = _scene_and_camera()
    res = ex.render(scene, cam, backend="cpu")
    rng = np.random.default_rng(0)
    st = temporal.TemporalStabilizer()
    steady_out, noisy_out, noisy_in = [], [], []
    base = np.clip(res.rgb + 0.1, 0, 1)
    for _ in range(6):
        steady_out.append(st(res.rgb, res.alpha, res.depth, base, cam))
    assert np.abs(steady_out[-1] - base).max() < 1e-5  # a stable restorer passes through unchanged
    st.reset()
    for _ in range(6):
        r = np.clip(base + rng.normal(0, 0.03, base.shape).astype(np.float32), 0, 1)
        noisy_in.append(r)
        noisy_out.append(st(res.rgb, res.alpha, res.depth, r, cam))
    assert st.last_valid_fraction > 0.9
    assert temporal.flicker(noisy_out) < 0.6 * temporal.flicker(noisy_in)
    assert temporal.excess_flicker(noisy_in, noisy_in) == 0


def test_stabilizer_rejects_large_changes():
    scene, cam = _scene_and_camera()
    res = ex.render(scene, cam, backend="cpu")
    st = temporal.TemporalStabilizer()
    st(res.rgb, res.alpha, res.depth, np.clip(res.rgb + 0.5, 0, 1), cam)
    new = np.clip(res.rgb, 0, 1)  # the residual vanished: history must not ghost back in
    out = st(res.rgb, res.alpha, res.depth, new, cam)
    assert np.abs(out - new).mean() < 0.01


def test_worker_dead_while_idle_restarts_on_the_next_request(tiny_weights):
    w = WorkerClient(weights=tiny_weights)
    try:
        w.start()
        pid = w.pid
        os.kill(pid, signal.SIGKILL)
        w.proc.wait(10)
        f = np.ones((2, 3), np.float32)
        assert np.array_equal(w.echo(f), f)
        assert w.pid != pid and w.starts == 2 and "SIGKILL" in w.last_crash and "between requests" in w.last_crash
    finally:
        w.stop()


def test_local_backend_in_process(tiny_weights):
    scene, cam = _scene_and_camera(32, 24)
    b = LocalBackend(tiny_weights, device="cpu")
    res, restored = b.render_restore(scene, cam, backend="cpu")
    assert restored.shape == res.rgb.shape and b.alive
