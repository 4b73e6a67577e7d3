"""exgs_core.worker against hostile or unlucky input: other users' files in the temp folder, cancelled requests
whose work is still running, malformed messages, and compress outputs next to the user's own files."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import exgs_core as ex
import exgs_core.views  # noqa: F401  (ex.views)
from exgs_core.errors import ExgsError, FormatError, OutputError
from exgs_core.worker import WorkerClient, WorkerCrashed, WorkerError, protocol, scene_key
from exgs_core.worker.server import SCENE_FIELDS, Server

DATA = Path(__file__).resolve().parent / "data"
DELAY = 1.5  # seconds a render or restore takes in the worker below (EXGS_WORKER_TEST_DELAY)


def _scene_and_camera(w=64, h=48):
    scene = ex.load(str(DATA / "donut_sh0_2000.ply"))
    cam = ex.views.auto_views(scene, 1, w, h)[0]
    return scene, cam


def _after(seconds):
    t = time.monotonic()
    return lambda: time.monotonic() - t > seconds


@pytest.fixture(scope="module")
def slow_worker():
    """A worker whose renders take DELAY seconds more, writing their frame only at the end (as a long render)."""
    w = WorkerClient(env={"EXGS_WORKER_TEST_DELAY": str(DELAY)})
    w.start()
    yield w
    w.stop()


def _sync(w):
    f = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(w.echo(f), f)


# --------------------------------------------------------------------------------- 1. the worker's import path
def _evil_package(folder: Path, marker: Path, real: Path) -> None:
    """An ``exgs_core`` package in ``folder`` that records its import in ``marker``, then behaves as the real one."""
    (folder / "exgs_core").mkdir(parents=True)
    init = real / "__init__.py"
    (folder / "exgs_core" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\n"
        f"__path__[:] = [{str(real)!r}]\n"
        f"exec(compile(open({str(init)!r}).read(), {str(init)!r}, 'exec'))\n"
    )


@pytest.mark.parametrize("where", ["old PYTHONPATH folder", "temp folder"])
def test_worker_never_imports_code_from_shared_temp_folders(tmp_path, monkeypatch, where):
    """Another local user can create folders in the shared temp folder before us: neither a pre-created
    ``exgs-worker-path-<uid>`` (the old fixed PYTHONPATH folder) nor an ``exgs_core`` package in the temp folder
    itself (the worker's old working directory, first on its sys.path) may be imported by the worker."""
    from exgs_core.worker import client

    real = Path(client.__file__).resolve().parents[1]
    marker = tmp_path / "imported-hostile-code"
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    old = shared_tmp / f"exgs-worker-path-{os.getuid() if hasattr(os, 'getuid') else 0}"
    if where == "temp folder":
        _evil_package(shared_tmp, marker, real)
    else:
        _evil_package(old, marker, real)
        os.chmod(old, 0o777)  # world-writable, as a folder another user made for us
    # exgs_core as if installed in a site-packages with numpy beside it (the case that needs a PYTHONPATH link)
    site = tmp_path / "site"
    (site / "numpy").mkdir(parents=True)
    (site / "exgs_core").mkdir()
    for entry in real.iterdir():
        (site / "exgs_core" / entry.name).symlink_to(entry)
    monkeypatch.setattr(client, "__file__", str(site / "exgs_core" / "_" / "client.py"))
    monkeypatch.setattr(client.tempfile, "gettempdir", lambda: str(shared_tmp))
    monkeypatch.setattr(client, "_PRIVATE_DIR", None, raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    w = WorkerClient()
    try:
        f = np.arange(6, dtype=np.float32)
        assert np.array_equal(w.echo(f), f)
    finally:
        w.stop()
    assert not marker.exists(), f"the worker imported another user's code: {marker.read_text()}"


def test_private_worker_folder_is_ours_and_removed_at_exit(tmp_path):
    code = (
        "import os, stat; from exgs_core.worker import client; d = client._private_dir(); st = os.lstat(d); "
        "assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode); "
        "assert client._private_dir() == d; print(d)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, TMPDIR=str(tmp_path)),
    )
    assert out.returncode == 0, out.stderr
    d = out.stdout.strip()
    assert d.startswith(str(tmp_path)) and not os.path.exists(d)


# ------------------------------------------------------------------------------ 2. cancelled requests
def test_cancelled_render_does_not_overwrite_the_next_requests_input(slow_worker):
    w = slow_worker
    scene, cam = _scene_and_camera()
    assert w.render(scene, cam, backend="cpu", cancel=_after(0.3)) is None
    f = np.random.default_rng(0).random((cam.height, cam.width, 3), dtype=np.float32)
    g = f.copy()
    assert np.array_equal(w.echo(f), g)  # same size as the abandoned frame: it would land on the same memory
    assert np.array_equal(f, g)


@pytest.mark.slow
def test_cancel_then_another_scene_renders_that_scene(slow_worker):
    w = slow_worker
    a, cam = _scene_and_camera()
    b = a.subset(np.arange(0, a.n, 7))  # small: its upload fits where the abandoned frame is written
    assert w.render(a, cam, backend="cpu", cancel=_after(0.3)) is None
    want = ex.render(b, cam, backend="cpu").rgb
    np.testing.assert_allclose(w.render(b, cam, backend="cpu").rgb, want, atol=1e-6)
    np.testing.assert_allclose(w.render(b, cam, backend="cpu").rgb, want, atol=1e-6)  # the cached scene too


def test_cancel_stays_responsive_while_an_abandoned_request_runs(slow_worker):
    """The next request does not wait for the abandoned one before it can itself be cancelled, and every
    abandoned reply is still accounted for (the echo after them gets its own reply)."""
    w = slow_worker
    scene, cam = _scene_and_camera()
    assert w.render(scene, cam, backend="cpu", cancel=_after(0.2)) is None
    t = time.monotonic()
    assert w.render(scene, cam, backend="cpu", cancel=_after(0.2)) is None
    assert time.monotonic() - t < 0.9 * DELAY
    _sync(w)
    res = w.render(scene, cam, backend="cpu")
    np.testing.assert_allclose(res.rgb, ex.render(scene, cam, backend="cpu").rgb, atol=1e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_abandoned_segments_are_released_by_the_worker(slow_worker):
    w = slow_worker
    scene, cam = _scene_and_camera()
    for _ in range(2):
        assert w.render(scene, cam, backend="cpu", cancel=_after(0.2)) is None
    _sync(w)
    _sync(w)
    maps = Path(f"/proc/{w.pid}/maps").read_text()
    assert "(deleted)" not in "\n".join(line for line in maps.splitlines() if "/psm_" in line or "/wnsm_" in line)


def test_set_scene_with_a_wrong_digest_is_not_kept():
    scene, _ = _scene_and_camera()
    srv = Server()
    ins = {f: np.ascontiguousarray(getattr(scene, f)) for f in SCENE_FIELDS}
    key = scene_key(scene)
    assert srv.op_set_scene({"key": key, "digest": key}, ins, {})["n"] == scene.n
    bad = dict(ins, means=ins["means"] + 1)
    with pytest.raises(ExgsError, match="corrupt"):
        srv.op_set_scene({"key": key, "digest": key}, bad, {})
    assert key not in srv.scenes  # not the corrupted one, and not the older one the client meant to replace
    assert srv.op_set_scene({"key": "mine", "digest": None}, bad, {})["n"] == scene.n  # caller-chosen keys


# ------------------------------------------------------------------------------ 3. malformed messages
@pytest.mark.parametrize(
    "dtype", ["O", "|O", "V8", "<c8", ">f4", ">i4", "<f16", "<M8[s]", "U4", "S4", [["a", "<f4"]], "(2,)<f4", None, 4]
)
def test_view_accepts_only_plain_numeric_dtypes(dtype):
    buf = bytearray(256)
    with pytest.raises(protocol.ProtocolError, match="dtype"):
        protocol.view(buf, {"shm": "x", "offset": 0, "shape": [4], "dtype": dtype})


@pytest.mark.parametrize(
    "dtype", ["<f4", "<f8", "<f2", "|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "=f4"]
)
def test_view_plain_dtypes(dtype):
    buf = bytearray(256)
    a = protocol.view(buf, {"shm": "x", "offset": 64, "shape": [2, 3], "dtype": dtype})
    assert a.shape == (2, 3) and a.dtype == np.dtype(dtype)


@pytest.mark.parametrize(
    "desc",
    [
        {"offset": 0, "shape": [-1], "dtype": "<f4"},
        {"offset": 0, "shape": [1 << 62, 1 << 62], "dtype": "<f4"},  # overflows int64: must not wrap to 0
        {"offset": 0, "shape": [2.5], "dtype": "<f4"},
        {"offset": 0, "shape": [True], "dtype": "<f4"},
        {"offset": 0, "shape": "4", "dtype": "<f4"},
        {"offset": 0, "shape": [1] * 40, "dtype": "<f4"},
        {"offset": -4, "shape": [4], "dtype": "<f4"},
        {"offset": 1.5, "shape": [4], "dtype": "<f4"},
        {"offset": 250, "shape": [4], "dtype": "<f4"},
        {"offset": 1 << 70, "shape": [0], "dtype": "<f4"},
        {"shape": [4], "dtype": "<f4"},
        {"offset": 0, "dtype": "<f4"},
        "not a descriptor",
    ],
)
def test_view_checks_shape_and_offset(desc):
    if isinstance(desc, dict):
        desc = {"shm": "x", **desc}
    with pytest.raises(protocol.ProtocolError):
        protocol.view(bytearray(256), desc)


def test_recv_msg_rejects_deep_nesting_as_a_bad_message():
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(protocol.BadMessage, match="nest"):
        protocol.recv_msg(io.BytesIO(len(deep).to_bytes(4, "little") + deep))
    assert issubclass(protocol.BadMessage, protocol.ProtocolError)


def _raw_reply(w, payload: bytes) -> dict:
    w.proc.stdin.write(len(payload).to_bytes(4, "little") + payload)
    w.proc.stdin.flush()
    r, _, _ = select.select([w.proc.stdout], [], [], 20)
    assert r, "no reply within 20 s"
    return protocol.recv_msg(w.proc.stdout)


@pytest.mark.skipif(os.name != "posix", reason="select() on a pipe")
def test_worker_survives_bad_messages(slow_worker):
    w = slow_worker
    _sync(w)
    pid = w.pid
    w._arena.shm.buf[:256] = b"\xa5" * 256  # garbage where object pointers would be read
    obj = {"shm": w._arena.shm.name, "offset": 0, "shape": [8], "dtype": "O"}
    with pytest.raises(WorkerError, match="dtype") as ei:
        w._call("echo", {}, {"frame": obj}, {"frame": dict(obj, offset=128)})
    assert not isinstance(ei.value, WorkerCrashed) and w.pid == pid
    for payload, why in ((b"[" * 100_000 + b"]" * 100_000, "nest"), (b"\xff\xfe", "JSON"), (b"[1]", "object")):
        reply = _raw_reply(w, payload)
        assert reply["ok"] is False and reply["type"] == "ProtocolError" and why in reply["error"], reply
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for bad in (deep, object()):  # arguments that cannot be sent: a typed error here, the worker untouched
        with pytest.raises(WorkerError) as ei:
            w._call("echo", {"x": bad})
        assert not isinstance(ei.value, WorkerCrashed)
    _sync(w)
    assert w.pid == pid and w.starts == 1


# ------------------------------------------------------------------------------ 4. compress in the worker
OPTS = {"ratio": 0.5, "views": 2, "view_size": 32}


def test_worker_compress_leaves_the_users_tmp_file_alone(slow_worker, tmp_path):
    out = tmp_path / "out.exgs"
    mine = tmp_path / "out.exgs.tmp"
    mine.write_bytes(b"my own notes")
    r = slow_worker.compress(str(DATA / "donut_sh0_2000.ply"), str(out), OPTS)
    assert out.stat().st_size == r["bytes"] > 0 and ex.load(str(out)).n == 1000
    assert mine.read_bytes() == b"my own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.exgs", "out.exgs.tmp"]  # no temporary left


def test_worker_compress_errors_are_typed_and_name_the_path(slow_worker, tmp_path):
    w = slow_worker
    out = tmp_path / "missing folder" / "out.exgs"
    t = time.monotonic()
    with pytest.raises(OutputError, match="does not exist") as ei:
        w.compress(str(DATA / "donut_sh0_2000.ply"), str(out), OPTS)
    assert ei.value.path == str(out) and isinstance(ei.value, WorkerError)
    assert time.monotonic() - t < 2  # checked before the work, as the CLI does
    src = tmp_path / "nope.ply"
    with pytest.raises(FormatError, match="no such file") as ei:
        w.compress(str(src), str(tmp_path / "out.exgs"), OPTS)
    assert ei.value.path == str(src)
    with pytest.raises(ExgsError, match="ratioo"):
        w.compress(str(DATA / "donut_sh0_2000.ply"), str(tmp_path / "out.exgs"), {"ratioo": 0.5})
    assert list(tmp_path.iterdir()) == []
    assert w.alive
